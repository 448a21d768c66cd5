"""What a nightly job meets in its first weeks: missing packages, waits, limits, stale files, signals,
log files it cannot write, failed nights in --status, progress on a terminal, and the report."""

import json
import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time

import psycopg2
import pytest
from conftest import SCRIPT, cli_env, query, run_cli
from pgtools import wait_for_statement
from warehouse import table_names

import extract_koreader_stats as etl_module
from samples.statistics import Book, generate, write_statistics_file

T0 = 1_700_000_000
DAY = 86400


# Running it by hand ------------------------------------------------------------------------------


def test_help_and_version_work_without_the_packages_and_a_run_names_the_missing_one(tmp_path, empty_env_file):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")

    for flag in ("--help", "--version"):
        shown = subprocess.run([python, str(SCRIPT), flag], capture_output=True, text=True, env=cli_env())
        assert shown.returncode == 0, shown.stderr
    run = subprocess.run([python, str(SCRIPT), "--env-file", str(empty_env_file)], capture_output=True, text=True,
                         env=cli_env(DATABASE_URL="embedded"))

    assert run.returncode == 78
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) <= 2  # the error, and the final line
    assert "psycopg2-binary" in run.stderr and "bookhelper-etl command" in run.stderr


def test_a_run_says_that_it_waits_for_another_runs_lock(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=3)
    holder = psycopg2.connect(database_url)
    try:
        holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (etl_module.ADVISORY_LOCK_KEY,))
        waited = etl(stats, ETL_LOCK_WAIT_SECONDS="1")
        started = time.monotonic()
        at_once = etl(stats, ETL_LOCK_WAIT_SECONDS="0")
        elapsed = time.monotonic() - started
    finally:
        holder.close()

    assert waited.returncode == 75
    assert "holds the warehouse lock; waiting up to 1 s" in waited.stderr
    assert at_once.returncode == 75
    assert "waiting" not in at_once.stderr
    assert elapsed < 5


def test_progress_shows_on_a_terminal_and_never_in_a_pipe(tmp_path, etl, database_url, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=4, days=30)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--env-file", str(empty_env_file), "--stats-db", str(stats)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower,
        env=cli_env(DATABASE_URL=database_url, ETL_TIMEZONE="UTC"),
    )
    os.close(follower)
    terminal = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        terminal += chunk
    os.close(leader)
    assert process.wait(60) == 0

    assert re.search(rb"\r  sending page rows: [\d,]+ of [\d,]+ \(\d+%\), \d+ of 4 books, [\d.]+ s", terminal)
    piped = etl(stats, "--dry-run")
    assert "sending page rows" not in piped.stderr


# Limits and settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, value, words", [
    ("ETL_STATEMENT_TIMEOUT", "2147484", "must be at most 2147483"),
    ("ETL_LOCK_WAIT_SECONDS", "99999999", "must be at most 2147483"),
    ("DATABASE_URL", "postgresql://u@127.0.0.1:99999/db", "'99999' is not a port"),
])
def test_settings_past_postgresqls_limits_are_configuration_errors_at_once(tmp_path, empty_env_file, name, value,
                                                                          words):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    settings = {"DATABASE_URL": "postgresql://u@127.0.0.1:1/db", name: value}
    started = time.monotonic()
    result = run_cli("--stats-db", stats, env_file=empty_env_file, **settings)
    assert result.returncode == 78, result.stderr
    assert words in result.stderr
    assert time.monotonic() - started < 10


def test_runs_never_use_up_the_device_and_author_identities(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=3, days=5)
    for _ in range(4):
        assert etl(stats).returncode == 0
    assert etl(stats, "--dry-run").returncode == 0
    sequences = dict(query(database_url, "SELECT sequencename, last_value FROM pg_sequences"))
    assert sequences["devices_device_id_seq"] == 1
    assert sequences["authors_author_id_seq"] == query(database_url, "SELECT max(author_id) FROM authors")[0][0]


def test_a_short_password_masks_only_itself(tmp_path, database_url, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    params = psycopg2.extensions.parse_dsn(database_url)
    if params.get("host", "").startswith("/"):
        pytest.skip("needs a TCP server to put a password in the URL")
    user, host, port = params.get("user", "postgres"), params["host"], params.get("port", 5432)
    url = f"postgresql://{user}:o@{host}:{port}/{params['dbname']}"

    result = run_cli("--stats-db", stats, "-v", env_file=empty_env_file, DATABASE_URL=url, ETL_TIMEZONE="UTC")

    assert result.returncode == 0, result.stderr
    assert "bookhelper-etl 3." in result.stderr and "normal run" in result.stderr
    assert ":o@" not in result.stderr


# Errors say what really happened ------------------------------------------------------------------------


def test_a_file_that_fails_while_its_rows_are_sent_is_a_bad_source_and_is_recorded(tmp_path, etl, database_url):
    good = write_statistics_file(tmp_path / "good.sqlite3", [Book(1, "Stoner", "J. Williams", 40, "e" * 32)],
                                 [(1, 1, T0, 60, 40)])
    assert etl(good).returncode == 0
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(good.read_bytes())
    conn = sqlite3.connect(broken)
    conn.executescript("""
        ALTER TABLE page_stat_data RENAME TO old_rows;
        CREATE TABLE page_stat_data (id_book integer, page integer, start_time integer, duration integer);
        INSERT INTO page_stat_data SELECT id_book, page, start_time, duration + 5 FROM old_rows;
        DROP TABLE old_rows;
    """)
    conn.close()

    result = etl(broken)

    assert result.returncode == 65, result.stderr
    assert "cannot be read (no such column: p.total_pages)" in result.stderr
    assert "ETL_STATEMENT_TIMEOUT" not in result.stderr
    assert query(database_url, "SELECT status, exit_code FROM etl_runs ORDER BY run_id") == [
        ("success", 0), ("failed", 65)]


def test_failed_nights_are_recorded_and_status_says_when_the_last_run_is_old(tmp_path, etl, database_url,
                                                                              empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=2, days=5)
    assert etl(stats).returncode == 0
    missing = etl(tmp_path / "typo.sqlite3")
    not_sqlite = tmp_path / "half-synced.sqlite3"
    not_sqlite.write_text("syncthing was here")
    broken = etl(not_sqlite)

    assert (missing.returncode, broken.returncode) == (66, 65)
    runs = query(database_url, "SELECT status, exit_code, error_message LIKE '%%typo%%' FROM etl_runs ORDER BY run_id")
    assert runs == [("success", 0, None), ("failed", 66, True), ("failed", 65, False)]
    assert query(database_url, "SELECT last_status, last_exit_code FROM device_sync") == [("failed", 65)]
    assert query(database_url, "SELECT sync_status, last_sync_time IS NOT NULL FROM public.sync_status"
                               " WHERE source_name = 'koreader'") == [("failed", True)]

    query(database_url, "UPDATE etl_runs SET started_at = started_at - interval '50 hours', "
                        "finished_at = finished_at - interval '50 hours'")
    status = run_cli("--status", env_file=empty_env_file, DATABASE_URL=database_url)
    assert status.returncode == 0, status.stderr
    assert "No run has been recorded for 2 day(s) 2 hour(s)" in status.stdout
    assert re.search(r"failed\s+66\s", status.stdout)


# A stale source ----------------------------------------------------------------------------------------------


def test_a_file_that_stopped_syncing_loads_but_alarms(tmp_path, etl, database_url, empty_env_file, ping_server):
    url, recorder = ping_server
    old = int(time.time()) - 20 * DAY
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "J. Williams", 40, "e" * 32)],
                                  [(1, 1, old, 60, 40)])
    os.utime(stats, (old + 100, old + 100))

    result = etl(stats, ETL_HEALTHCHECK_URL=url)

    assert result.returncode == 79, result.stderr
    assert re.search(r"\[WARNING\] \[ETL\] .*s\.sqlite3 looks stale: its newest page row is from .* \(20 days ago\) "
                     r"and it last changed .* \(19 days ago\); check that Syncthing", result.stderr)
    assert query(database_url, "SELECT count(*) FROM reading_sessions") == [(1,)]
    assert recorder.pings[-1][0].startswith("/ping/check-uuid/79?rid=")
    assert "looks stale" in recorder.pings[-1][1]
    status = run_cli("--status", env_file=empty_env_file, DATABASE_URL=database_url)
    assert re.search(r"boox-palma-2\s+UTC\s+utc\s+\S+ \S+ \S+\s+\S+ \S+ \S+\s+stale\s+79", status.stdout)
    assert etl(stats, ETL_STALE_AFTER_DAYS="0").returncode == 0
    os.utime(stats)  # Syncthing brought it again, with nothing new read: the file is alive
    assert etl(stats).returncode == 0


# Logs --------------------------------------------------------------------------------------------------------


def test_a_log_file_that_cannot_be_opened_never_stops_the_load(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the log folder should be")

    result = etl(stats, "--log-file", blocked / "etl.log")

    assert result.returncode == 0, result.stderr
    assert re.search(r"\[WARNING\] \[ETL\] cannot write the log file .*etl\.log \(.*, from --log-file\)", result.stderr)
    assert query(database_url, "SELECT count(*) > 0 FROM reading_sessions") == [(True,)]
    from_env = etl(stats, ETL_LOG_FILE=str(blocked / "etl.log"))
    assert "from ETL_LOG_FILE in the environment" in from_env.stderr


def test_a_new_log_file_is_made_0640(tmp_path, etl):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    log_file = tmp_path / "logs" / "etl.log"
    old_umask = os.umask(0o022)
    try:
        assert etl(stats, "--log-file", log_file).returncode == 0
    finally:
        os.umask(old_umask)
    assert log_file.stat().st_mode & 0o777 == 0o640


# Signals ---------------------------------------------------------------------------------------------------


@pytest.mark.empty_database
def test_sigterm_rolls_back_removes_the_copy_logs_and_pings(tmp_path, database_url, empty_env_file, ping_server):
    url, recorder = ping_server
    stats = generate(tmp_path / "big.sqlite3", books=40, days=900, seed=8)
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--env-file", str(empty_env_file), "--stats-db", str(stats)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_env(DATABASE_URL=database_url, ETL_TIMEZONE="UTC", ETL_HEALTHCHECK_URL=url, TMPDIR=str(private_tmp)),
    )
    assert wait_for_statement(database_url, "COPY page_views"), "never saw the COPY"
    process.send_signal(signal.SIGTERM)
    _out, err = process.communicate(timeout=60)

    assert process.returncode == 143, err
    assert "[ERROR] [ETL] stopped by SIGTERM" in err
    assert "Traceback" not in err
    assert list(private_tmp.iterdir()) == []
    assert table_names(database_url) == set()
    assert recorder.pings[-1][0].startswith("/ping/check-uuid/143?rid=")


# The report ----------------------------------------------------------------------------------------------------


def test_report_writes_a_page_from_the_warehouse_and_a_load_can_write_it_too(tmp_path, etl, database_url,
                                                                              empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=3, days=20)
    nightly = tmp_path / "site" / "reading.html"
    nightly.parent.mkdir()

    loaded = etl(stats, ETL_REPORT_FILE=str(nightly))
    by_hand = run_cli("--report", tmp_path / "by-hand.html", env_file=empty_env_file, DATABASE_URL=database_url)

    assert loaded.returncode == 0, loaded.stderr
    assert by_hand.returncode == 0, by_hand.stderr
    assert "[REPORT] wrote the report" in by_hand.stderr
    for page in (nightly, tmp_path / "by-hand.html"):
        data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                                    page.read_text(), re.S).group(1))
        assert data["totals"]["reading_seconds"] == query(
            database_url, "SELECT sum(reading_seconds)::bigint FROM book_reading")[0][0]
    unwritable = run_cli("--report", tmp_path / "no" / "such" / "dir" / "r.html", env_file=empty_env_file,
                         DATABASE_URL=database_url)
    assert unwritable.returncode == 78
    assert "cannot write the report" in unwritable.stderr

