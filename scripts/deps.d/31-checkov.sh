#!/usr/bin/env bash
# checkov for the security scan of the rendered manifests. It pins many libraries of its own,
# so it lives in its own venv under $MK8S_CACHE, never in the project's environment.
set -euo pipefail
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
CACHE="${MK8S_CACHE:-$HOME/.cache/mk8s}"
VENV="$CACHE/checkov-$CHECKOV_VERSION"
mkdir -p "$CACHE/bin"
if [ -x "$VENV/bin/checkov" ] && [ "$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('checkov'))" 2>/dev/null)" = "$CHECKOV_VERSION" ]; then
  echo "checkov $CHECKOV_VERSION: cached at $VENV"
else
  start=$(date +%s)
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  echo "checkov $CHECKOV_VERSION: installed in $(( $(date +%s) - start ))s -> $VENV"
fi
ln -sf "$VENV/bin/checkov" "$CACHE/bin/checkov"
