"""The benchmark script works (on a tiny history: timings are for python -m benchmarks.bench, never the suite)."""

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_the_benchmark_runs_on_a_tiny_history_and_prints_its_table(pg_server_url):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--scale", "0.004", "--naive-sample", "5",
         "--repeat", "1", "--database-url", pg_server_url],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    for words in ("full load", "nightly, one more day", "nightly, no change", "reference: plain COPY",
                  "reference: per-row INSERT", "Targets (heavy file):", "round trips, first load <= 25",
                  "peak RSS"):
        assert words in result.stdout
    assert "bench_" not in subprocess.run(  # it dropped the databases it made
        [sys.executable, "-c", "import psycopg2,sys; c=psycopg2.connect(sys.argv[1]); k=c.cursor();"
         "k.execute('SELECT string_agg(datname, \\',\\') FROM pg_database'); print(k.fetchone()[0])", pg_server_url],
        capture_output=True, text=True,
    ).stdout
