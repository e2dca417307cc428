#!/usr/bin/env bash
# Debian packages the tests use, collected from scripts/deps.d/*.apt (one name per line).
# Installs only what is missing; needs root (CI runs as root) or passwordless sudo.
set -euo pipefail
cd "$(dirname "$0")"
mapfile -t wanted < <(cat ./*.apt 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
[ "${#wanted[@]}" -gt 0 ] || exit 0
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
[ "${#missing[@]}" -gt 0 ] || { echo "apt: all ${#wanted[@]} packages present"; exit 0; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
echo "apt: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
