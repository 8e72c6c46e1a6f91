#!/usr/bin/env bash
# Debian packages the tests use: redis-server (Debian's 7.0), valkey-server (8.0, from
# bookworm-backports: Redis-compatible with WAITAOF, for the durable-ack tests), curl, and
# chromium + chromium-driver (the web console's browser tests drive a real headless Chromium).
# Idempotent; installs nothing that is already there.
set -euo pipefail
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v curl >/dev/null || missing+=(curl)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
need_valkey=0
command -v valkey-server >/dev/null || need_valkey=1
[ ${#missing[@]} -eq 0 ] && [ $need_valkey -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
if [ $need_valkey -eq 1 ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "system-deps: adding bookworm-backports for valkey-server"
  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/magent2-backports.list
fi
[ $need_valkey -eq 0 ] || missing_text="valkey-server"
echo "system-deps: installing ${missing[*]} ${missing_text:-}"
apt-get update -qq
[ ${#missing[@]} -eq 0 ] || apt-get install -y -qq "${missing[@]}" >/dev/null
[ $need_valkey -eq 0 ] || apt-get install -y -qq -t bookworm-backports valkey-server >/dev/null
