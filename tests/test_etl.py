"""The ETL end to end against a real PostgreSQL: what lands, re-runs, grown copies, dry runs."""

import datetime
import os
import sqlite3
import uuid

import pytest
from catalog import catalog, differences
from conftest import query, reset_warehouse, run_cli
from warehouse import book_seconds, table_names, warehouse_state

import extract_koreader_stats as etl_module
from bookhelper.core import make_book_key
from bookhelper.schema import SCHEMA_VERSION
from bookhelper.sessions import READ_NAMESPACE
from samples.statistics import Book, close_wal_writers, generate, write_statistics_file

UTC = datetime.timezone.utc
MD5_A = "a" * 32
MD5_B = "b" * 32
T0 = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def at(epoch):
    return datetime.datetime.fromtimestamp(epoch, UTC)


def read_id(book_key, number):
    return str(uuid.uuid3(READ_NAMESPACE, f"{book_key}/read/{number}"))


def two_books():
    return [
        Book(1, "Good Omens", "Terry Pratchett\nNeil Gaiman", 400, MD5_A, series="N/A", language="en",
             last_open=T0 + 5000),
        Book(2, "Notes\x00", "N/A", 10, None, series="Notebooks #2", language="N/A", last_open=T0),
    ]


def two_books_rows():
    return [
        (1, 1, T0, 60, 400),
        (1, 2, T0 + 61, 30, 400),
        (1, 3, T0 + 100, 45, 400),
        (1, 4, T0 + 100 + 45 + 1800 + 1, 20, 410),  # after the gap: a new session
        (2, 1, T0 + 10, 50, 10),
    ]


def test_first_load_lands_whole_rows(tmp_path, etl, database_url):
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", two_books(), two_books_rows())

    result = etl(stats)

    assert result.returncode == 0, result.stderr
    notes_key = make_book_key(None, "Notes", ())
    state = warehouse_state(database_url)
    assert state["books"] == sorted([
        (f"md5:{MD5_A}", "Good Omens", "Terry Pratchett", MD5_A, 400, "en", None, "koreader"),
        (notes_key, "Notes", None, None, 10, None, "Notebooks #2", "koreader"),
    ])
    assert state["book_authors"] == [
        (f"md5:{MD5_A}", 1, "Terry Pratchett"),
        (f"md5:{MD5_A}", 2, "Neil Gaiman"),
    ]
    assert state["reading_sessions"] == sorted([
        (f"md5:{MD5_A}", at(T0), at(T0 + 145), 135, 2, 3, 1, 3, 400, "boox-palma-2", "ebook", "koreader",
         read_id(f"md5:{MD5_A}", 1), 1),
        (f"md5:{MD5_A}", at(T0 + 1946), at(T0 + 1966), 20, 1, 1, 4, 4, 410, "boox-palma-2", "ebook", "koreader",
         read_id(f"md5:{MD5_A}", 1), 1),
        (notes_key, at(T0 + 10), at(T0 + 60), 50, 1, 1, 1, 1, 10, "boox-palma-2", "ebook", "koreader",
         read_id(notes_key, 1), 1),
    ])
    assert len(state["page_views"]) == 5
    assert "sessions: 3 inserted, 0 updated, 0 unchanged" in result.stderr


def test_a_session_ending_at_ninety_percent_then_restarting_counts_a_second_read(tmp_path, etl, database_url):
    rows = [(1, page, T0 + 60 * page, 50, 10) for page in range(1, 11)]  # one sitting, the whole book
    rows += [(1, 1, T0 + 86400, 50, 10)]  # the next day, page 1 again
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Short", "A", 10, MD5_A)], rows)
    assert etl(stats).returncode == 0
    assert query(database_url, "SELECT read_number FROM reading_sessions ORDER BY start_time") == [(1,), (2,)]


def test_reading_time_per_book_equals_koreaders_total(tmp_path, etl, database_url):
    stats = generate(tmp_path / "statistics.sqlite3", books=10, days=120, seed=3, hostile=True)

    assert etl(stats).returncode == 0

    with sqlite3.connect(stats) as source:
        koreader_totals = dict(source.execute(
            """SELECT 'md5:' || b.md5, sum(p.duration) FROM page_stat_data p JOIN book b ON b.id = p.id_book
               WHERE p.page >= 1 AND p.duration BETWEEN 0 AND 7200 AND p.start_time > 946684800
                 AND p.start_time < strftime('%s', 'now') + 86400
               GROUP BY b.md5"""
        ).fetchall())
    assert book_seconds(database_url) == koreader_totals
    assert query(database_url, "SELECT sum(duration)::bigint FROM page_views")[0][0] == sum(koreader_totals.values())


def test_rerun_on_the_same_file_changes_nothing_but_the_run_records(tmp_path, etl, database_url):
    stats = generate(tmp_path / "statistics.sqlite3", books=8, days=60, seed=5, hostile=True)
    assert etl(stats).returncode == 0
    before = warehouse_state(database_url)

    again = etl(stats)

    assert again.returncode == 0
    assert warehouse_state(database_url) == before
    assert "0 of 8 books changed" in again.stderr
    runs = query(database_url, "SELECT status, sessions_inserted, sessions_updated FROM etl_runs ORDER BY run_id")
    assert runs[0][0] == "success" and runs[0][1] > 0
    assert runs[1] == ("success", 0, 0)


def test_a_grown_copy_extends_a_partial_session_exactly_like_one_load_of_the_newer_file(
    tmp_path, etl, database_url, new_database, empty_env_file
):
    books = [Book(1, "Piranesi", "Susanna Clarke", 240, MD5_A)]
    full = [(1, page, T0 + 70 * page, 60, 240) for page in range(1, 40)]
    # The copy taken mid-reading lacks pages 10-35: it shows two sessions 1830 s apart,
    # which the late rows of the full file bridge into one.
    partial = [row for row in full if not 10 <= row[1] <= 35]
    first = write_statistics_file(tmp_path / "first.sqlite3", books, partial)
    assert etl(first).returncode == 0
    assert len(query(database_url, "SELECT 1 FROM reading_sessions")) == 2

    second = write_statistics_file(tmp_path / "second.sqlite3", books, full)
    grown = etl(second)

    assert grown.returncode == 0, grown.stderr
    once = new_database(warehouse=True)
    assert run_cli("--stats-db", second, env_file=empty_env_file, DATABASE_URL=once).returncode == 0
    assert warehouse_state(database_url) == warehouse_state(once)
    assert len(query(database_url, "SELECT 1 FROM reading_sessions")) == 1
    assert "1 merged away" in grown.stderr


def test_rows_living_only_in_the_wal_are_loaded_and_the_synced_folder_is_untouched(tmp_path, etl, database_url):
    synced = tmp_path / "Sync"
    synced.mkdir()
    stats = write_statistics_file(synced / "statistics.sqlite3", two_books(), two_books_rows(), wal=True)
    try:
        assert os.path.exists(f"{stats}-wal")
        immutable = sqlite3.connect(f"file:{stats}?immutable=1", uri=True)
        assert immutable.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0  # all in the -wal
        immutable.close()
        before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in synced.iterdir()}
        synced.chmod(0o555)

        result = etl(stats)

        synced.chmod(0o755)
        after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in synced.iterdir()}
    finally:
        synced.chmod(0o755)
        close_wal_writers()
    assert result.returncode == 0, result.stderr
    assert after == before
    assert len(query(database_url, "SELECT 1 FROM page_views")) == 5


@pytest.mark.empty_database
def test_the_warehouse_the_tests_start_from_is_the_one_a_first_run_creates(tmp_path, etl, database_url, new_database):
    """Most tests start from a copy of an empty warehouse made once per session (conftest), not from an empty
    database: that copy must be what a first run makes, object for object."""
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", [Book(1, "Stoner", "John Williams", 40, None)],
                                  [(1, 1, T0, 30, 40)])

    assert etl(stats).returncode == 0

    schemas = ("public", "bookhelper")
    copy = new_database(warehouse=True)
    assert differences(catalog(database_url, schemas), catalog(copy, schemas)) == []
    # What the properties do between examples gives the same warehouse again: no row but the version, every
    # identity restarted.
    reset_warehouse(database_url)
    contents = """SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
                  WHERE schemaname IN ('public', 'bookhelper') ORDER BY 1"""
    for url in (database_url, copy):
        tables = [name for (name,) in query(url, contents)]
        assert [name for name in tables if query(url, f"SELECT count(*) FROM {name}") != [(0,)]] == [
            "bookhelper.schema_meta"]
        assert query(url, "SELECT key, value FROM schema_meta") == [("schema_version", str(SCHEMA_VERSION))]
        assert query(url, "SELECT count(*) FROM pg_sequences WHERE schemaname IN ('public', 'bookhelper')"
                          " AND last_value IS NOT NULL") == [(0,)]


@pytest.mark.empty_database
def test_dry_run_counts_exactly_and_leaves_nothing_behind_not_even_the_schema(tmp_path, etl, database_url):
    stats = generate(tmp_path / "statistics.sqlite3", books=6, days=40, seed=11)

    dry = etl(stats, "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert table_names(database_url) == set()
    real = etl(stats)
    inserted = query(database_url, "SELECT count(*) FROM reading_sessions")[0][0]
    assert f"dry run, would be: sessions: {inserted} inserted, 0 updated" in dry.stderr
    assert f"sessions: {inserted} inserted, 0 updated" in real.stderr
    assert "sample:" in dry.stderr
    before = warehouse_state(database_url)
    runs = query(database_url, "SELECT count(*) FROM etl_runs")

    dry_again = etl(stats, "--dry-run")

    assert "dry run, would be: sessions: 0 inserted, 0 updated" in dry_again.stderr
    assert warehouse_state(database_url) == before
    assert query(database_url, "SELECT count(*) FROM etl_runs") == runs


def test_dry_run_without_a_database_previews_from_the_file(tmp_path, empty_env_file):
    stats = write_statistics_file(tmp_path / "s.sqlite3", two_books(), two_books_rows())

    result = run_cli("--stats-db", stats, "--dry-run", env_file=empty_env_file)

    assert result.returncode == 0
    assert "this file alone gives 3 sessions" in result.stderr


def test_no_database_configured_exits_78_naming_the_three_ways(tmp_path, empty_env_file):
    stats = write_statistics_file(tmp_path / "s.sqlite3", two_books(), two_books_rows())

    result = run_cli("--stats-db", stats, env_file=empty_env_file)

    assert result.returncode == 78
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1
    assert "DATABASE_URL" in errors[0] and "NEON_HOST" in errors[0] and "embedded" in errors[0]
    assert "Traceback" not in result.stderr


def test_edited_metadata_updates_the_known_book(tmp_path, etl, database_url):
    rows = [(1, 1, T0, 60, 100)]
    first = write_statistics_file(
        tmp_path / "a.sqlite3", [Book(1, "Draft", "Anon", 100, MD5_A, last_open=T0)], rows)
    assert etl(first).returncode == 0
    edited = write_statistics_file(
        tmp_path / "b.sqlite3", [Book(1, "Final Title", "Ann Author\nBo Author", 100, MD5_A, last_open=T0 + 9)], rows)

    result = etl(edited)

    assert result.returncode == 0
    assert "books: 0 inserted, 1 updated" in result.stderr
    state = warehouse_state(database_url)
    assert [row[:3] for row in state["books"]] == [(f"md5:{MD5_A}", "Final Title", "Ann Author")]
    assert state["book_authors"] == [(f"md5:{MD5_A}", 1, "Ann Author"), (f"md5:{MD5_A}", 2, "Bo Author")]
    assert len(state["reading_sessions"]) == 1


def test_odd_titles_and_authors_round_trip_exactly(tmp_path, etl, database_url):
    odd = [
        "It's \"quoted\"", "back\\slash \\N", "tab\there", "new\nline", "emoji 📚🦉", "semi;colon -- drop",
        "percent %s %(x)s", "Ünïcødé ß", "\x00nul in the middle\x00 of it\x00",
    ]
    books = [Book(i, title, f"{title} author\nSecond, Author", 10, f"{i:032x}") for i, title in enumerate(odd, 1)]
    rows = [(i, 1, T0 + i * 100, 30, 10) for i in range(1, len(odd) + 1)]
    stats = write_statistics_file(tmp_path / "s.sqlite3", books, rows)

    assert etl(stats).returncode == 0

    expected = [t.replace("\x00", "").strip() for t in odd]
    titles = query(database_url,
                   "SELECT b.title, k.title FROM books b JOIN book_keys k USING (book_id) ORDER BY b.file_hash")
    assert [row[0] for row in titles] == expected  # the reader's column
    assert [row[1] for row in titles] == expected  # the job's whole KOReader title
    authors = query(database_url, "SELECT name FROM author_names ORDER BY name")
    # Authors split on newlines only: "new\nline author" is two authors, "Second, Author" one.
    names = {part for t in expected for part in f"{t} author".split("\n")} | {"Second, Author"}
    assert sorted(name for (name,) in authors) == sorted(names)


def test_invalid_rows_are_skipped_counted_by_reason_and_recorded(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=3, days=10, seed=2, hostile=True)

    result = etl(stats)

    assert result.returncode == 0
    reasons = query(database_url, "SELECT skipped_by_reason FROM etl_runs")[0][0]
    assert reasons == {"no book id": 1, "unknown book": 1, "start_time out of range": 2,
                       "duration out of range": 2, "page below 1": 1}
    assert "skipped 7 invalid page rows" in result.stderr


def test_an_empty_koreader_database_succeeds_with_zero_sessions(tmp_path, etl, database_url):
    stats = write_statistics_file(tmp_path / "s.sqlite3", [], [])

    result = etl(stats)

    assert result.returncode == 0, result.stderr
    assert "0 sessions" in result.stderr
    assert query(database_url, "SELECT count(*) FROM reading_sessions") == [(0,)]


def test_older_schema_versions_load_including_duplicate_book_rows(tmp_path, etl, database_url):
    books = [Book(1, "Same", "", 100, MD5_A, last_open=T0), Book(2, "Same", "", 100, MD5_A, last_open=T0 + 1)]
    rows = [(1, 1, T0, 30, 100), (2, 2, T0 + 40, 30, 100), (2, 3, T0 + 80, 30, 100)]
    for version in (20201022, 20201010):
        stats = write_statistics_file(tmp_path / f"{version}.sqlite3", books, rows, version=version)
        result = etl(stats)
        assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(*), sum(duration_seconds) FROM reading_sessions") == [(1, 90)]
    assert query(database_url, "SELECT count(*) FROM books") == [(1,)]


def test_a_warehouse_from_a_newer_release_is_refused(tmp_path, etl, database_url):
    stats = write_statistics_file(tmp_path / "s.sqlite3", two_books(), two_books_rows())
    assert etl(stats).returncode == 0
    query(database_url, "UPDATE schema_meta SET value = '99' WHERE key = 'schema_version' RETURNING 1")

    result = etl(stats)

    assert result.returncode == 78
    assert "newer than this script" in result.stderr


def test_help_documents_the_exit_codes_and_bad_arguments_exit_64(empty_env_file):
    help_text = run_cli("--help", env_file=empty_env_file).stdout
    for code in ("64", "65", "66", "70", "75", "78"):
        assert f"  {code}  " in help_text
    for setting in etl_module.SETTINGS:
        assert f"  {setting.env} " in help_text
    assert run_cli("--gap-minutes", "soon", env_file=empty_env_file).returncode == 64
    assert run_cli("--no-such-flag", env_file=empty_env_file).returncode == 64
    assert etl_module.__version__ in run_cli("--version", env_file=empty_env_file).stdout


def test_a_page_count_near_the_integer_limit_is_judged_by_the_finish_rule_without_overflow(tmp_path, etl,
                                                                                          database_url):
    huge = 2**31 - 2
    # Two KOReader ids of one file: the server derives the sessions (nine times the page count overflowed).
    books = [Book(1, "Stoner", "J. Williams", huge, "e" * 32), Book(2, "Stoner (NYRB)", "J. Williams", huge, "e" * 32)]
    stats = write_statistics_file(tmp_path / "s.sqlite3", books, [(1, 1, T0, 60, huge), (2, huge, T0 + 60, 60, huge)])

    result = etl(stats)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT read_number, end_page, total_pages FROM reading_sessions") == [(1, huge, huge)]
    assert query(database_url, "SELECT count(*) FROM finished_books") == [(1,)]
