# Sourced by the doubles: $S is this node's defect directory.
S="${NODE_STATE:?NODE_STATE unset}/${SSHD_NODE:?SSHD_NODE unset}"
has() { [ -e "$S/$1" ]; }
