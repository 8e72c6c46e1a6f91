#!/usr/bin/env bash
# Puts kube-apiserver, kube-controller-manager, etcd, kubectl and helm on .tools/bin;
# `hack/tools.sh node` adds what a real node needs: kubelet, kube-proxy, kube-scheduler, CoreDNS
# and a static pause binary for the sandbox image (see hack/node/README.md).
#
# No Docker and no downloads of release binaries: everything is built with `go build` from the Go
# module proxy (hack/k8s/go.mod pins Kubernetes and replaces each staging module with its
# published version; etcd comes from the same module graph). Binaries are cached by version under
# ${XDG_CACHE_HOME:-~/.cache}/magent2, so only the first run pays the build (~6 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=v1.36.3     # keep in step with hack/k8s/go.mod
HELM_VERSION=v3.21.4
COREDNS_VERSION=v1.15.0
KEDA_VERSION=v2.21.0    # keep in step with tests/k8s/keda.py

cache="${XDG_CACHE_HOME:-$HOME/.cache}/magent2"
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
k8s_bin="$cache/k8s-$K8S_VERSION/bin"
helm_bin="$cache/helm-$HELM_VERSION-k8s1.$minor/bin"
tools_bin="$PWD/.tools/bin"
mkdir -p "$k8s_bin" "$helm_bin" "$tools_bin"

# Two runs on one machine (two checkouts, or CI beside a developer) share the cache: one builds,
# the other waits for it instead of racing it.
exec 9>"$cache/.lock"
if ! flock -n 9; then
  echo "tools.sh: another build holds $cache/.lock; waiting for it ..." >&2
  flock 9
fi

command -v go >/dev/null || { echo "tools.sh: Go is required (https://go.dev/doc/install)" >&2; exit 1; }
export GOFLAGS="${GOFLAGS:-} -trimpath" CGO_ENABLED=0

build() {  # build <name> <dir> <cmd...>: time a build, unless its binary is cached
  local name=$1 dir=$2; shift 2
  if [[ -x "$dir/$name" ]]; then return; fi
  local started=$SECONDS
  echo "tools.sh: building $name (first run only) ..." >&2
  "$@"
  echo "tools.sh: built $name in $((SECONDS - started))s" >&2
}

# Stamp the release, or the binaries report v0.0.0 and clients' version checks misbehave.
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build_k8s() {
  (cd hack/k8s && go build -ldflags "$k8s_ldflags" -o "$k8s_bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl ./etcd)
}
for name in kube-apiserver kube-controller-manager kubectl etcd; do
  build "$name" "$k8s_bin" build_k8s
done
# Helm's default Kubernetes version for `helm template` and lint, as its own Makefile sets it.
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
for pkg in pkg/lint/rules pkg/chartutil; do
  helm_ldflags+=" -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$minor"
done
build helm "$helm_bin" env GOBIN="$helm_bin" go install -ldflags "$helm_ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"

for name in kube-apiserver kube-controller-manager kubectl etcd; do ln -sf "$k8s_bin/$name" "$tools_bin/$name"; done
ln -sf "$helm_bin/helm" "$tools_bin/helm"

if [[ "${1:-}" == node ]]; then
  build_node() {
    (cd hack/k8s && go build -ldflags "$k8s_ldflags" -o "$k8s_bin/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kube-scheduler)
  }
  for name in kubelet kube-proxy kube-scheduler; do
    build "$name" "$k8s_bin" build_node
    ln -sf "$k8s_bin/$name" "$tools_bin/$name"
  done
  coredns_bin="$cache/coredns-$COREDNS_VERSION/bin"
  mkdir -p "$coredns_bin"
  build coredns "$coredns_bin" env GOBIN="$coredns_bin" go install -ldflags "-s -w" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  ln -sf "$coredns_bin/coredns" "$tools_bin/coredns"
  # The sandbox image cannot be pulled here: a pause process of our own (sleeps until signalled).
  pause_bin="$cache/pause-1/bin"
  mkdir -p "$pause_bin"
  build pause "$pause_bin" env CGO_ENABLED=1 gcc -static -Os -o "$pause_bin/pause" hack/node/pause.c
  ln -sf "$pause_bin/pause" "$tools_bin/pause"
  # KEDA's operator and metrics adapter, for spec.autoscaling on the node. Its module has a replace
  # directive, so `go install pkg@version` refuses it: build inside a copy of the module instead.
  keda_bin="$cache/keda-$KEDA_VERSION/bin"
  mkdir -p "$keda_bin"
  build_keda() {
    local dir src
    dir=$(go mod download -json "github.com/kedacore/keda/v2@$KEDA_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    src=$(mktemp -d)
    cp -r "$dir/." "$src" && chmod -R u+w "$src"
    (cd "$src" && go build -ldflags "-s -w" -o "$keda_bin/keda" ./cmd/operator \
      && go build -ldflags "-s -w" -o "$keda_bin/keda-adapter" ./cmd/adapter)
    rm -rf "$src"
  }
  for name in keda keda-adapter; do
    build "$name" "$keda_bin" build_keda
    ln -sf "$keda_bin/$name" "$tools_bin/$name"
  done
fi
echo "tools.sh: $(ls "$tools_bin" | tr '\n' ' ')in $tools_bin" >&2
