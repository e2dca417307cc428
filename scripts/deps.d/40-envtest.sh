#!/usr/bin/env bash
# envtest binaries for the cluster-check tests: kube-apiserver built from k8s.io/kubernetes
# (tools/envtest/go.mod pins the version and the staging-module replaces) into
# $MK8S_CACHE/bin. Cached: rebuilt only when tools/envtest/go.mod or go.sum change (their hash
# is stamped next to the binary). etcd comes from Debian (etcd-server, conformance.apt).
# Go builds run under `nice`: CI machines are small and shared.
set -euo pipefail
cd "$(dirname "$0")/../.."
MK8S_CACHE="${MK8S_CACHE:-$HOME/.cache/mk8s}"
bin="$MK8S_CACHE/bin"
mkdir -p "$bin"
mod=tools/envtest
stamp="$bin/kube-apiserver.inputs"
want=$(cat "$mod/go.mod" "$mod/go.sum" | sha256sum | cut -d' ' -f1)
if [ -x "$bin/kube-apiserver" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "envtest: kube-apiserver cached ($("$bin/kube-apiserver" --version))"
else
  command -v go >/dev/null || { echo "envtest: go is required to build kube-apiserver" >&2; exit 1; }
  version=$(sed -n 's/^\s*k8s.io\/kubernetes \(v[0-9.]*\).*$/\1/p' "$mod/go.mod")
  [ -n "$version" ] || { echo "envtest: cannot read the k8s.io/kubernetes version from $mod/go.mod" >&2; exit 1; }
  minor=$(echo "$version" | cut -d. -f2)
  start=$(date +%s)
  # Version stamps so /version reports what was built (clients and tests read it).
  pkg=k8s.io/component-base/version
  ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  echo "envtest: building kube-apiserver $version (cold build takes several minutes)"
  # Module and build caches under $MK8S_CACHE (shared with the other Go-built tools) unless set.
  (cd "$mod" && GOMODCACHE="${GOMODCACHE:-$MK8S_CACHE/gomod}" GOCACHE="${GOCACHE:-$MK8S_CACHE/gocache}" \
    GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0 nice -n 10 go build -trimpath -ldflags "$ldflags" \
    -o "$bin/kube-apiserver.new" k8s.io/kubernetes/cmd/kube-apiserver)
  mv "$bin/kube-apiserver.new" "$bin/kube-apiserver"
  echo "$want" > "$stamp"
  echo "envtest: built $("$bin/kube-apiserver" --version) in $(( $(date +%s) - start ))s"
fi
command -v etcd >/dev/null || [ -x /usr/bin/etcd ] || { echo "envtest: etcd missing (Debian etcd-server)" >&2; exit 1; }
