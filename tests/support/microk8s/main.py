"""Entry point of the bin/ wrappers: `python -S main.py microk8s|snap|cloud-init ARGS...`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.support.microk8s import cli

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:]))
