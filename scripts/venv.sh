# Sourced by scripts/start and scripts/test: make .venv (installing Debian's venv module if it is missing),
# install livecart into it with the extras named in $1 (e.g. "test"), and make sure the PostgreSQL server
# binaries are there (Debian's postgresql) unless DATABASE_URL names a server to use instead.
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
# The tests always run the embedded PostgreSQL; the server does when DATABASE_URL is unset. Look for its
# binaries exactly as the server will (find_bindir: POSTGRES_BIN, Debian's /usr/lib/postgresql, PATH).
found='import os; from server.ledger.embedded import find_bindir; find_bindir(os.environ.get("POSTGRES_BIN"))'
if { [ "$extras" = test ] || [ -z "${DATABASE_URL:-}" ]; } && ! .venv/bin/python -c "$found" 2>/dev/null; then
  echo "Installing Debian's postgresql (needs root)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  # The package may make and start a `main` cluster of its own. We never use it (ours lives in DATA_DIR,
  # on a unix socket there), so stop it if it runs; in a container it usually never started.
  service postgresql stop >/dev/null 2>&1 || true
fi
