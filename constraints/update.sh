#!/usr/bin/env bash
# Rewrites constraints/tested.txt: the exact versions with which CI's sequence passed (.ci/run: the README's main
# job and test command in one fresh virtual environment). Install with them to reproduce the studies' and the
# benchmarks' numbers:
#
#   pip install "torch==2.13.0" -e ".[test]" -c constraints/tested.txt
#
# The default install (the README's commands) stays on the newest versions pyproject.toml allows.
# Usage: constraints/update.sh   (runs the whole of .ci/run: about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
FREEZE_TO="$PWD/constraints/tested.txt.new" .ci/run
mv constraints/tested.txt.new constraints/tested.txt
echo "constraints/tested.txt: $(grep -vc '^#' constraints/tested.txt) pinned packages"
