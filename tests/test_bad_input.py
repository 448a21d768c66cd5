"""Bad statistics files: one clear line, the documented exit code, nothing written."""

import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from conftest import SCRIPT, cli_env
from warehouse import table_names

from samples.statistics import generate, write_statistics_file

# Every test here starts from an empty database (what a first run or an upgrade finds).
pytestmark = pytest.mark.empty_database


def missing(tmp_path):
    return tmp_path / "nope" / "statistics.sqlite3"


def directory(tmp_path):
    path = tmp_path / "statistics.sqlite3"
    path.mkdir()
    return path


def zero_bytes(tmp_path):
    path = tmp_path / "statistics.sqlite3"
    path.write_bytes(b"")
    return path


def text_file(tmp_path):
    path = tmp_path / "statistics.sqlite3"
    path.write_text("title,authors\nDune,Frank Herbert\n")
    return path


def truncated(tmp_path):
    path = generate(tmp_path / "statistics.sqlite3", books=5, days=60)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def corrupted_page(tmp_path):
    path = generate(tmp_path / "statistics.sqlite3", books=5, days=60)
    page_size = 4096
    with path.open("r+b") as database:
        database.seek(page_size * 3)
        database.write(os.urandom(page_size))
    return path


def not_koreader(tmp_path):
    path = tmp_path / "statistics.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE recipes (name text)")
    return path


def unknown_version(tmp_path):
    path = write_statistics_file(tmp_path / "statistics.sqlite3", [], [])
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 20991231")
    return path


def pre_2020(tmp_path):
    return write_statistics_file(tmp_path / "statistics.sqlite3", [], [], version=0)


@pytest.mark.parametrize(
    "make_file, code, words",
    [
        (missing, 66, "no such file"),
        (directory, 66, "is a directory"),
        (zero_bytes, 65, "is empty"),
        (text_file, 65, "not an SQLite database"),
        (truncated, 65, "corrupt"),
        (corrupted_page, 65, "corrupt"),
        (not_koreader, 65, "without KOReader's"),
        (unknown_version, 65, "unknown statistics schema version 20991231"),
        (pre_2020, 65, "pre-2020"),
    ],
)
def test_bad_file_gets_one_clear_line_its_exit_code_and_no_write(tmp_path, etl, database_url, make_file, code, words):
    path = make_file(tmp_path)

    result = etl(path)

    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, result.stderr
    assert str(path) in errors[0] and words in errors[0]
    assert "Traceback" not in result.stderr
    assert table_names(database_url) == set()


def test_a_traceback_appears_only_with_verbose(tmp_path, etl):
    path = text_file(tmp_path)
    assert "Traceback" in etl(path, "-v").stderr
    assert "Traceback" not in etl(path).stderr


def test_an_unreadable_file_exits_66(tmp_path, database_url):
    """As root, the run drops the capabilities that let root read any file."""
    stats = generate(tmp_path / "statistics.sqlite3", books=2, days=5)
    stats.chmod(0)
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to test permissions as root"
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]
    env_file = tmp_path / "empty.env"
    env_file.write_text("")

    result = subprocess.run(
        [*prefix, sys.executable, str(SCRIPT), "--stats-db", str(stats), "--env-file", str(env_file)],
        capture_output=True, text=True, timeout=60, env=cli_env(DATABASE_URL=database_url),
    )

    assert result.returncode == 66, result.stderr
    assert f"{stats}: cannot be read (Permission denied)" in result.stderr
    assert table_names(database_url) == set()
