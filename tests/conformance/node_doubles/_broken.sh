# Sourced by the node-check doubles after _state.sh: a defect file `broken-<command>` makes
# the command fail with nothing on stdout (a missing binary, a sudo refusal), which every
# node check must call "could not read", never a pass.
if has "broken-$(basename "$0")"; then
  echo "$(basename "$0"): simulated failure on $SSHD_NODE" >&2
  exit 1
fi
