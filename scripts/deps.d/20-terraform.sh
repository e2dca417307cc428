#!/usr/bin/env bash
# Terraform tooling for offline use (the Terraform registry is unreachable here and in CI):
#  - a `terraform` or `tofu` binary: the one on PATH, else OpenTofu built from the Go module proxy
#    into $MK8S_CACHE/bin;
#  - the pinned bpg/proxmox provider built with Go into a filesystem mirror
#    ($MK8S_CACHE/terraform/mirror/<registry>/bpg/proxmox/VERSION/linux_amd64/), and a CLI config
#    pointing there ($MK8S_CACHE/terraform/cli.tfrc).
# Idempotent: a warm run only checks that the files exist. `invoke tools` runs this script.
# Keep the versions in sync with mk8s/edges/tools.py and terraform/versions.tf.
set -euo pipefail
PROVIDER_VERSION=0.80.0
OPENTOFU_VERSION=1.10.7
CACHE="${MK8S_CACHE:-$HOME/.cache/mk8s}"
BIN="$CACHE/bin"
TFDIR="$CACHE/terraform"
MIRROR="$TFDIR/mirror"
PLATFORM=linux_amd64
mkdir -p "$BIN" "$MIRROR"

# Go builds share 2 cores with the rest of CI: low priority, no cgo, no debug info.
gobuild() {  # gobuild MODULE VERSION PACKAGE_DIR OUTPUT
  local module=$1 version=$2 pkg=$3 out=$4 dir
  # `go install mod@version` also asks the proxy for the module's version list (deprecation
  # check), which the proxy refuses for some modules; download the exact version and build it
  # with its own go.mod/go.sum instead.
  dir=$(GOFLAGS=-mod=mod go mod download -json "$module@v$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "deps: could not download $module@v$version" >&2; exit 1; }
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false nice -n 10 \
    go build -trimpath -ldflags="-s -w" -o "$out.tmp" "./$pkg")
  mv "$out.tmp" "$out"
}

if command -v terraform >/dev/null 2>&1 || command -v tofu >/dev/null 2>&1 || [ -x "$BIN/tofu" ]; then
  echo "terraform: binary present ($(command -v terraform || command -v tofu || echo "$BIN/tofu"))"
else
  command -v go >/dev/null || { echo "deps: neither terraform/tofu nor go is installed" >&2; exit 1; }
  echo "terraform: building OpenTofu v$OPENTOFU_VERSION into $BIN/tofu"
  gobuild github.com/opentofu/opentofu "$OPENTOFU_VERSION" cmd/tofu "$BIN/tofu"
fi

provider="$BIN/terraform-provider-proxmox_v$PROVIDER_VERSION"
if [ ! -x "$provider" ]; then
  command -v go >/dev/null || { echo "deps: go is needed to build the bpg/proxmox provider" >&2; exit 1; }
  echo "terraform: building bpg/proxmox v$PROVIDER_VERSION"
  gobuild github.com/bpg/terraform-provider-proxmox "$PROVIDER_VERSION" . "$provider"
fi

# Unpacked filesystem-mirror layout, for terraform (registry.terraform.io) and tofu
# (registry.opentofu.org) alike; hard links keep one copy on disk.
for registry in registry.terraform.io registry.opentofu.org; do
  dest="$MIRROR/$registry/bpg/proxmox/$PROVIDER_VERSION/$PLATFORM"
  mkdir -p "$dest"
  ln -f "$provider" "$dest/terraform-provider-proxmox_v$PROVIDER_VERSION"
done

cat > "$TFDIR/cli.tfrc.tmp" <<CONF
# Written by mk8s: providers come from the local mirror only.
provider_installation {
  filesystem_mirror {
    path    = "$MIRROR"
    include = ["registry.terraform.io/bpg/proxmox", "registry.opentofu.org/bpg/proxmox"]
  }
}
CONF
mv "$TFDIR/cli.tfrc.tmp" "$TFDIR/cli.tfrc"
echo "terraform: provider mirror ready in $MIRROR"
