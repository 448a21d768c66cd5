"""Operations: log files, journald, healthchecks, --status (install, units, logrotate: test_install.py)."""

import os
import re
import subprocess
import sys

import pytest
from conftest import SCRIPT, cli_env, query, run_cli

import extract_koreader_stats as etl_module
from bookhelper.core import component_logger
from samples.statistics import generate


def test_the_log_file_follows_a_rotation_between_two_lines(tmp_path):
    log_file = tmp_path / "bookhelper-etl.log"
    etl_module.setup_logging(-1)
    try:
        etl_module.add_log_file(log_file, "--log-file", 0)
        logger = component_logger("ETL")
        logger.info("first line")
        log_file.rename(tmp_path / "bookhelper-etl.log.1")  # what logrotate does without copytruncate
        logger.info("second line")
    finally:
        for handler in list(etl_module.log.handlers):
            etl_module.log.removeHandler(handler)
            handler.close()
    assert "first line" in (tmp_path / "bookhelper-etl.log.1").read_text()
    rotated_away = (tmp_path / "bookhelper-etl.log.1").read_text()
    assert "second line" not in rotated_away
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[INFO\] \[ETL\] second line\n", log_file.read_text())


def test_under_journald_stderr_lines_carry_no_timestamp(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    err_path = tmp_path / "stderr"
    with err_path.open("w") as err:
        info = os.fstat(err.fileno())
        subprocess.run(
            [sys.executable, str(SCRIPT), "--env-file", str(empty_env_file), "--stats-db", str(stats), "--dry-run"],
            stderr=err, env=cli_env(JOURNAL_STREAM=f"{info.st_dev}:{info.st_ino}"), timeout=60,
        )
    lines = err_path.read_text().splitlines()
    assert lines and all(line.startswith("[INFO] [") or line.startswith("[WARNING] [") for line in lines)
    plain = run_cli("--stats-db", stats, "--dry-run", env_file=empty_env_file)
    assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[INFO\]", plain.stderr)


def test_healthcheck_pings_start_and_exit_code_with_the_log_tail_and_one_run_id(
    tmp_path, etl, database_url, ping_server
):
    url, recorder = ping_server
    stats = generate(tmp_path / "s.sqlite3", books=2, days=5)

    result = etl(stats, ETL_HEALTHCHECK_URL=url)

    assert result.returncode == 0
    (start, start_body), (end, end_body) = recorder.pings
    run_uuid = query(database_url, "SELECT run_uuid::text FROM etl_runs")[0][0]
    assert start == f"/ping/check-uuid/start?rid={run_uuid}"
    assert end == f"/ping/check-uuid/0?rid={run_uuid}"
    assert "finished with exit code 0" in end_body and "[REPORT] sessions:" in end_body


def test_a_failing_run_pings_its_exit_code(tmp_path, etl, ping_server):
    url, recorder = ping_server
    bad = tmp_path / "s.sqlite3"
    bad.write_text("not a database")
    result = etl(bad, ETL_HEALTHCHECK_URL=url)
    assert result.returncode == 65
    assert recorder.pings[-1][0].startswith("/ping/check-uuid/65?rid=")
    assert "not an SQLite database" in recorder.pings[-1][1]


def test_a_failing_ping_is_a_warning_and_never_changes_the_exit_code(tmp_path, etl, ping_server):
    url, recorder = ping_server
    recorder.status = 500
    stats = generate(tmp_path / "s.sqlite3", books=1, days=3)
    result = etl(stats, ETL_HEALTHCHECK_URL=url)
    assert result.returncode == 0
    assert "[WARNING] [ETL] healthcheck ping /start failed" in result.stderr
    unreachable = etl(stats, ETL_HEALTHCHECK_URL="http://127.0.0.1:9/nothing-listens")
    assert unreachable.returncode == 0


def test_status_shows_the_last_runs_and_each_devices_settings_and_sync(tmp_path, etl, database_url, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=3, days=10)
    assert etl(stats, "--device", "palma", ETL_TIMEZONE="Europe/Berlin", ETL_DEVICE_CLOCK="local").returncode == 0

    result = run_cli("--status", env_file=empty_env_file, DATABASE_URL=database_url)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Last runs" in out and "Devices" in out and "Most read books" in out
    assert re.search(r"palma\s+success\s+0\s", out)
    assert re.search(r"palma\s+Europe/Berlin\s+local\s+\d{4}-\d\d-\d\d", out)
    assert "The last run was recorded 0 hour(s) 0 minute(s) ago." in out


@pytest.mark.empty_database
def test_status_on_an_empty_warehouse_says_so(database_url, empty_env_file):
    result = run_cli("--status", env_file=empty_env_file, DATABASE_URL=database_url)
    assert result.returncode == 0
    assert "no run has completed" in result.stdout
