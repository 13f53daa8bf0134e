#!/usr/bin/env bash
# Rewrites constraints/tested.txt: the exact versions with which the README's test command passed, in a fresh
# virtual environment. Install with them to reproduce the studies' and benchmarks' numbers:
#
#   pip install "torch==2.13.0" -e ".[test]" -c constraints/tested.txt
#
# The default install (the README's commands) stays on the newest versions pyproject.toml allows.
# Usage: constraints/update.sh [PYTEST ARGS...]   (e.g. -x; the whole suite by default; a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
test_command="$(python3 .ci/readme_commands.py test)"
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip
eval "$test_command" "$@"   # only a passing run gets this far (set -e)
{
  echo "# Versions with which the README's test command passed ($(date -u +%Y-%m-%d), $(python -V),"
  echo "# $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), ktae $(git rev-parse --short HEAD))."
  echo "# Written by constraints/update.sh; use with pip's -c to reproduce the studies' numbers."
  python -m pip freeze --exclude-editable | grep -v -E '^(-e |ktae[= ])'
} > constraints/tested.txt
echo "constraints/tested.txt: $(grep -vc '^#' constraints/tested.txt) pinned packages"
