#!/usr/bin/env bash
# Pinned kubeconform for the manifest tests: every built overlay is checked strictly, native kinds
# against Kubernetes 1.33's schemas and custom kinds against the upstream CRDs (tests/manifests/
# test_kubeconform.py makes both schema sets). Built with the Go toolchain through the module
# proxy; cached in $MK8S_CACHE/bin like kustomize (30-kustomize.sh).
set -euo pipefail
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
CACHE="${MK8S_CACHE:-$HOME/.cache/mk8s}"
BIN="$CACHE/bin"
target="$BIN/kubeconform-$KUBECONFORM_VERSION"
mkdir -p "$BIN"
if [ -x "$target" ] && "$target" -v 2>/dev/null | grep -q "${KUBECONFORM_VERSION#v}"; then
  echo "kubeconform $KUBECONFORM_VERSION: cached at $target"
  ln -sf "$(basename "$target")" "$BIN/kubeconform"
  exit 0
fi
[ -x /usr/local/go/bin/go ] && ! command -v go >/dev/null && export PATH="/usr/local/go/bin:$PATH"
command -v go >/dev/null || { echo "kubeconform: needs Go (https://go.dev/dl) to build $KUBECONFORM_VERSION" >&2; exit 1; }
start=$(date +%s)
tmp="$(mktemp -d "$CACHE/kubeconform-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# kubeconform prints its version from main.version, set at link time like its release builds.
GOBIN="$tmp" GOFLAGS="${GOFLAGS:--buildvcs=false}" GOMODCACHE="${GOMODCACHE:-$CACHE/gomod}" \
  GOCACHE="${GOCACHE:-$CACHE/gocache}" \
  nice -n 10 go install -ldflags "-s -w -X main.version=${KUBECONFORM_VERSION#v}" \
  "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"
mv "$tmp/kubeconform" "$target"
ln -sf "$(basename "$target")" "$BIN/kubeconform"
echo "kubeconform $KUBECONFORM_VERSION: built in $(( $(date +%s) - start ))s -> $target"
