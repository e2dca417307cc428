#!/bin/sh
# Install MicroK8s from channel ${CHANNEL} and hold it; idempotent.
# /etc/microk8s.yaml (the launch configuration) is read by `snap install`: it is written by
# cloud-init's write_files before this runs. Auto-refresh has broken HA clusters
# (canonical/microk8s#1022, #2491, #4775): upgrades go through `invoke upgrade` only.
set -eu
if ! snap list microk8s >/dev/null 2>&1; then
  snap install microk8s --classic --channel=${CHANNEL}
fi
snap refresh --hold microk8s
usermod -a -G microk8s ${ADMIN_USER}
