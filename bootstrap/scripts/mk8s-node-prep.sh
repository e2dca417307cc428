#!/bin/sh
# Node preparation Kubernetes needs; idempotent (safe on every boot and every re-run).
set -eu
# The kubelet expects no swap; also keep it off after reboots.
swapoff -a
sed -i -E 's@^([^#].*[[:space:]]swap[[:space:]].*)$@# mk8s: swap off # \1@' /etc/fstab
for module in br_netfilter overlay; do modprobe "$module"; done
sysctl --system >/dev/null
systemctl enable --now qemu-guest-agent chrony
