# Sourced by scripts/start and scripts/test: make .venv (installing Debian's venv module if it is missing)
# and install livecart into it, with the extras named in $1 (e.g. "test").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv .venv 2>/dev/null; then
    echo "Installing Debian's python3-venv (needs root)..." >&2
    rm -rf .venv
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv .venv
  fi
  .venv/bin/python -m pip install -q --upgrade pip
fi
extras=${1:-}
.venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
