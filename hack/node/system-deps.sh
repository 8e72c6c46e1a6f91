#!/usr/bin/env bash
# Debian packages the real node needs (hack/node/README.md): the container runtime (containerd,
# runc, CNI plugins), image building without Docker (buildah, debootstrap), kube-proxy's helpers
# (iptables, conntrack), nft to save and restore the host's ruleset, gcc for the pause binary.
# Idempotent; installs nothing that is already there.
set -euo pipefail
declare -A commands=(
  [containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
  [buildah]=buildah [debootstrap]=debootstrap [iptables]=iptables [conntrack]=conntrack
  [nft]=nftables [gcc]=gcc [ip]=iproute2
)
missing=()
for command in "${!commands[@]}"; do
  if [[ $command == /* ]]; then [[ -x $command ]] && continue; else command -v "$command" >/dev/null && continue; fi
  missing+=("${commands[$command]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "node/system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
