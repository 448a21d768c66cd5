#!/usr/bin/env bash
# The test command (README, .ci/run): a virtualenv with the dev requirements, ruff, a Python 3.9
# compatibility check, then the suite against a real PostgreSQL. The suite runs against an
# embedded server and, when one answers at 127.0.0.1:5432 (as on CI), its database tests against
# that one too. Tests run in parallel, two workers per CPU (TEST_WORKERS to choose; 0 runs them in
# this process). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
"$venv/bin/ruff" check --quiet .
"$venv/bin/vermin" --quiet --no-tips --violations -t=3.9- --backport dataclasses --eval-annotations \
  extract_koreader_stats.py bookhelper tests benchmarks samples
echo "== tests against an embedded PostgreSQL"
# Two workers per CPU: a worker often waits for PostgreSQL or a subprocess (measured: 4 beat 2 and 6 here).
workers=${TEST_WORKERS:-$(( $(nproc) * 2 ))}
env -u TEST_DATABASE_URL "$venv/bin/python" -m pytest -q -n "$workers" "$@"
local_url=${LOCAL_TEST_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}
if "$venv/bin/python" -c "import psycopg2, sys; psycopg2.connect(sys.argv[1], connect_timeout=3).close()" \
    "$local_url" 2>/dev/null; then
  echo "== tests against the PostgreSQL server at 127.0.0.1:5432"
  TEST_DATABASE_URL=$local_url "$venv/bin/python" -m pytest -q -n "$workers" -m database "$@"
else
  echo "== no PostgreSQL answers at 127.0.0.1:5432; ran against the embedded server only"
fi
