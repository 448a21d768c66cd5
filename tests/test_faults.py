"""Faults against a real server: kills, concurrent runs, lost connections, locks and timeouts."""

import signal
import subprocess
import sys
import time

import psycopg2
import pytest
from conftest import SCRIPT, cli_env, query, run_cli
from helpers import synced_files
from pgtools import Forwarder, free_port, wait_for_backends_to_end, wait_for_statement
from warehouse import book_seconds, table_names, warehouse_state

import extract_koreader_stats as etl_module
from samples.statistics import generate, write_statistics_file


@pytest.fixture(scope="module")
def big_files(tmp_path_factory):
    """A grown pair of files: the second adds months of reading (about 70,000 page rows in all)."""
    directory = tmp_path_factory.mktemp("big")
    small = generate(directory / "small.sqlite3", books=40, days=300, seed=21)
    big = generate(directory / "big.sqlite3", books=40, days=1200, seed=21)
    return small, big


def start_etl(stats, url, env_file, *args, **settings):
    settings.setdefault("ETL_TIMEZONE", "UTC")
    private_tmp = env_file.parent / "run-tmp"  # a killed run's copy stays in the test's own folder
    private_tmp.mkdir(exist_ok=True)
    settings.setdefault("TMPDIR", str(private_tmp))
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--env-file", str(env_file), "--stats-db", str(stats), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(DATABASE_URL=url, **settings),
    )


# Where to kill a run: while it runs a statement (seen in pg_stat_activity, so the point is certain
# however fast the run), or 0.1 s after its start, while it still reads the file.
KILL_POINTS = {
    # A first load: books nobody loaded go straight into page_views and reading_sessions.
    "first load": [(None, 0.1), ("pg_advisory_xact_lock", None), ("COPY page_views", None),
                   ("COPY reading_sessions", None)],
    # A grown file: known books are staged, merged and their sessions derived again on the server.
    "grown file": [(None, 0.1), ("pg_advisory_xact_lock", None), ("COPY incoming_pages", None),
                   ("INSERT INTO page_views", None)],
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(KILL_POINTS))
@pytest.mark.empty_database
def test_sigkill_at_any_point_leaves_the_warehouse_as_it_was_and_the_next_run_completes(
    scenario, big_files, etl, database_url, new_database, empty_env_file
):
    small, big = big_files
    if scenario == "grown file":
        assert etl(small).returncode == 0
    before = warehouse_state(database_url) if scenario == "grown file" else None
    killed_during = []

    for needle, delay in KILL_POINTS[scenario]:
        holder = psycopg2.connect(database_url)
        if needle == "pg_advisory_xact_lock":  # kill it while it waits for another run's lock
            holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (etl_module.ADVISORY_LOCK_KEY,))
        process = start_etl(big, database_url, empty_env_file)
        if needle:
            assert wait_for_statement(database_url, needle), f"never saw {needle}"
        else:
            time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        holder.close()
        killed_during.append(process.returncode)
        wait_for_backends_to_end(database_url)
        if before is None:
            assert table_names(database_url) == set(), f"killed during {needle or delay}"
        else:
            assert warehouse_state(database_url) == before, f"killed during {needle or delay}"

    assert killed_during == [-signal.SIGKILL] * len(KILL_POINTS[scenario])
    assert etl(big).returncode == 0
    once = new_database()
    assert run_cli("--stats-db", big, env_file=empty_env_file, DATABASE_URL=once, ETL_TIMEZONE="UTC").returncode == 0
    assert warehouse_state(database_url) == warehouse_state(once)


def test_three_runs_at_once_serialize_and_the_result_is_exact(tmp_path, database_url, empty_env_file):
    path_a, path_b, expected = synced_files(tmp_path)
    runs = [
        start_etl(path_a, database_url, empty_env_file, "--device", "palma"),
        start_etl(path_b, database_url, empty_env_file, "--device", "kobo"),
        start_etl(path_a, database_url, empty_env_file, "--device", "palma"),
    ]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    assert book_seconds(database_url) == expected
    assert query(database_url, "SELECT count(*) FROM etl_runs WHERE status = 'success'") == [(3,)]


def test_a_run_that_cannot_get_the_lock_in_time_exits_75(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=2, days=5)
    holder = psycopg2.connect(database_url)
    try:
        holder.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (etl_module.ADVISORY_LOCK_KEY,))
        started = time.monotonic()
        result = etl(stats, ETL_LOCK_WAIT_SECONDS="1")
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 75
    assert "another bookhelper-etl run holds the warehouse lock" in result.stderr
    assert elapsed < 15


def test_a_hung_statement_is_cut_off_by_the_statement_timeout(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=2, days=5)
    assert etl(stats).returncode == 0
    holder = psycopg2.connect(database_url)
    try:
        holder.cursor().execute("LOCK TABLE bookhelper.book_keys IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = etl(stats, ETL_STATEMENT_TIMEOUT="2")
        elapsed = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 75, result.stderr
    assert "ETL_STATEMENT_TIMEOUT" in result.stderr
    assert elapsed < 20


def test_connections_refused_for_a_while_are_retried_until_the_server_answers(
    tmp_path, pg_server_url, database_url, empty_env_file
):
    stats = generate(tmp_path / "s.sqlite3", books=3, days=10)
    port = free_port()
    dbname = psycopg2.extensions.parse_dsn(database_url)["dbname"]
    user = psycopg2.extensions.parse_dsn(database_url).get("user", "postgres")
    url = f"postgresql://{user}@127.0.0.1:{port}/{dbname}"
    forwarder = Forwarder(database_url, port)
    process = start_etl(stats, url, empty_env_file, ETL_MAX_RETRIES="6", ETL_RETRY_MAX_SECONDS="1")
    try:
        time.sleep(1.5)  # Neon waking up: nothing answers yet
        forwarder.start()
        _out, err = process.communicate(timeout=60)
    finally:
        forwarder.stop()
    assert process.returncode == 0, err
    assert "retrying the whole transaction" in err
    assert query(database_url, "SELECT count(*) FROM etl_runs") == [(1,)]


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["first load", "grown file"])
def test_a_backend_terminated_mid_run_is_retried_as_a_whole_transaction(
    scenario, big_files, etl, database_url, new_database, empty_env_file, tmp_path
):
    small, big = big_files
    # The schema exists (a first load of another device, or the smaller file), so that the test can hold the
    # run at its last statement, with all of its writes done in the transaction, however fast the machine.
    assert etl(small if scenario == "grown file" else write_statistics_file(tmp_path / "e.sqlite3", [], [])
               ).returncode == 0
    holder = psycopg2.connect(database_url)
    holder.cursor().execute("LOCK TABLE bookhelper.etl_runs IN EXCLUSIVE MODE")
    try:
        process = start_etl(big, database_url, empty_env_file, ETL_RETRY_MAX_SECONDS="1")
        pid = wait_for_statement(database_url, "INSERT INTO etl_runs")
        assert pid
        query(database_url, "SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        holder.rollback()
        holder.close()
    _out, err = process.communicate(timeout=120)

    assert process.returncode == 0, err
    assert "retrying the whole transaction" in err
    once = new_database(warehouse=True)
    if scenario == "first load":
        assert run_cli("--stats-db", tmp_path / "e.sqlite3", env_file=empty_env_file, DATABASE_URL=once,
                       ETL_TIMEZONE="UTC").returncode == 0
    assert run_cli("--stats-db", big, env_file=empty_env_file, DATABASE_URL=once, ETL_TIMEZONE="UTC").returncode == 0
    assert warehouse_state(database_url) == warehouse_state(once)
    assert query(database_url, "SELECT count(*) FROM etl_runs") == [(2,)]


def test_an_unreachable_database_exits_75_within_the_bound_of_its_settings(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    started = time.monotonic()
    result = run_cli("--stats-db", stats, env_file=empty_env_file,
                     DATABASE_URL=f"postgresql://reader:pw@127.0.0.1:{free_port()}/db",
                     ETL_MAX_RETRIES="2", ETL_RETRY_MAX_SECONDS="1", ETL_CONNECT_TIMEOUT="1")
    elapsed = time.monotonic() - started
    assert result.returncode == 75
    assert "after 3 attempt(s)" in result.stderr
    assert elapsed < 3 * 1 + 2 * 1 + 5
