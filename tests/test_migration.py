"""A warehouse made by an older bookhelper-etl (1.0.0: schema version 1, 2.0.0: version 2, and the later versions)
is upgraded in place on the first run, into the reader's tables and the job's own schema, and then equals a fresh
load."""

import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from catalog import catalog, differences
from conftest import query, run_cli
from warehouse import reading_state, whole_state

from bookhelper.schema import SCHEMA_VERSION
from samples.calibre import CalibreBook, write_calibre_library
from samples.kindle import KindleCompletion, ReadingInterval, write_kindle_export
from samples.statistics import Book, write_statistics_file

# Every test here starts from an empty database (what a first run or an upgrade finds).
pytestmark = pytest.mark.empty_database

SCHEMAS = ("public", "bookhelper")
T0 = 1_719_860_400  # 2024-07-01 19:00 UTC
BERLIN_SUMMER = 7200
SCHEMA_V1 = Path(__file__).with_name("schema_v1.sql")
SCHEMA_V2 = Path(__file__).with_name("schema_v2.sql")

# What 1.0.0 stored for a local-clock Kindle in Berlin: epochs converted to UTC, sessions split by device.
V1_ROWS = """
INSERT INTO devices (device_id, name, timezone, clock) VALUES (1, 'kindle', 'Europe/Berlin', 'local'),
                                                               (2, 'boox', 'UTC', 'utc');
INSERT INTO authors (author_id, name) VALUES (1, 'John Williams'), (2, 'Nobody Any More');
INSERT INTO books (book_id, book_key, title, author_id, file_hash, page_count)
VALUES (1, 'md5:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'Stoner', 1, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 300);
INSERT INTO book_authors VALUES (1, 1, 1);
INSERT INTO page_views (book_id, page, start_epoch, duration, total_pages, device_id)
SELECT 1, page, %(t0)s + 100 * page - %(offset)s, 60, 300, 1 FROM generate_series(1, 5) AS page;
INSERT INTO device_books VALUES (1, 1, 5, 300, %(t0)s + 500, 0, 'stale', now());
INSERT INTO reading_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,
                              start_page, end_page, total_pages, device, read_number)
VALUES (1, to_timestamp(%(t0)s + 100 - %(offset)s), to_timestamp(%(t0)s + 300 - %(offset)s), 180, 3, 3, 1, 3, 300,
        'kindle', 1),
       (1, to_timestamp(%(t0)s + 400 - %(offset)s), to_timestamp(%(t0)s + 560 - %(offset)s), 120, 2, 2, 4, 5, 300,
        'boox', 1);
INSERT INTO etl_runs (run_uuid, started_at, finished_at, status, device, script_version)
VALUES ('00000000-0000-0000-0000-000000000001', now(), now(), 'success', 'kindle', '1.0.0');
SELECT setval(pg_get_serial_sequence('devices', 'device_id'), 2);
"""


def test_a_version_1_warehouse_is_migrated_in_place_and_equals_a_fresh_load(
    tmp_path, database_url, new_database, empty_env_file
):
    query(database_url, SCHEMA_V1.read_text())
    query(database_url, V1_ROWS, {"t0": T0, "offset": BERLIN_SUMMER})
    stats = write_statistics_file(tmp_path / "kindle.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, page, T0 + 100 * page, 60, 300) for page in range(1, 6)])
    kindle = {"ETL_TIMEZONE": "Europe/Berlin", "ETL_DEVICE_CLOCK": "local"}

    result = run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url,
                     **kindle)

    assert result.returncode == 0, result.stderr
    assert f"upgrading the warehouse schema to version {SCHEMA_VERSION}" in result.stderr
    once = new_database()
    assert run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=once,
                   **kindle).returncode == 0
    assert reading_state(database_url) == reading_state(once)
    assert differences(catalog(database_url, ("public", "bookhelper")), catalog(once, ("public", "bookhelper"))) == []
    # The raw KOReader start_time is the row's identity again: no row was added.
    assert query(database_url, "SELECT count(*), min(start_epoch) FROM page_views") == [(5, T0 + 100)]
    # History stays: the run records and the devices.
    assert query(database_url, "SELECT script_version FROM etl_runs ORDER BY run_id") == [("1.0.0",), ("3.1.0",)]
    assert query(database_url, "SELECT device_id, name FROM devices ORDER BY 1") == [(1, "kindle"), (2, "boox")]
    assert query(database_url, """SELECT data_type FROM information_schema.columns
                                  WHERE column_name = 'device_id' GROUP BY 1""") == [("integer",)]
    assert query(database_url, "SELECT max_value FROM pg_sequences WHERE sequencename LIKE 'devices%%'") == [
        (2**31 - 1,)]
    assert query(database_url, "SELECT value FROM schema_meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION),)]


def test_a_second_run_after_the_migration_changes_nothing(tmp_path, database_url, empty_env_file):
    query(database_url, SCHEMA_V1.read_text())
    query(database_url, V1_ROWS, {"t0": T0, "offset": BERLIN_SUMMER})
    stats = write_statistics_file(tmp_path / "kindle.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, page, T0 + 100 * page, 60, 300) for page in range(1, 6)])
    settings = {"ETL_TIMEZONE": "Europe/Berlin", "ETL_DEVICE_CLOCK": "local"}
    assert run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url,
                   **settings).returncode == 0
    before = reading_state(database_url)

    again = run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url)

    assert again.returncode == 0, again.stderr
    assert "0 of 1 books changed" in again.stderr
    assert reading_state(database_url) == before


# What 2.0.0 stored: two devices, a book with two authors, its page views, sessions (under 2.0.0's rule, where a
# session under 30 s had 0 minutes), a sidecar with a highlight, a Calibre match with an edition, a tag and a
# publisher, the reader's override of a match, and the run records.
V2_ROWS = """
INSERT INTO devices (device_id, name, timezone, clock) VALUES (1, 'boox', 'UTC', 'utc'), (2, 'kobo', 'UTC', 'utc');
INSERT INTO authors (author_id, name) VALUES (1, 'Terry Pratchett'), (2, 'Neil Gaiman'), (3, 'John Williams');
INSERT INTO books (book_id, book_key, title, author_id, file_hash, page_count, language, series, metadata_hash)
VALUES (1, 'md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'Good Omens', 1, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 400, 'en-GB',
        'Discworld #2', 'old'),
       (2, 'md5:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'Stoner', 3, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 300, 'en', NULL,
        'old');
INSERT INTO book_authors VALUES (1, 1, 1), (1, 2, 2), (2, 3, 1);
INSERT INTO page_views (book_id, page, start_epoch, duration, total_pages, device_id)
SELECT 1, page, %(t0)s + 100 * page, 60, 400, 1 FROM generate_series(1, 5) AS page
UNION ALL SELECT 2, page, %(t0)s + 9000 + 100 * page, 20, 300, 2 FROM generate_series(1, 1) AS page;
INSERT INTO device_book_ids VALUES (1, 1, 1, 'md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'),
                                   (2, 1, 2, 'md5:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee');
INSERT INTO device_books VALUES (1, 1, 5, 300, %(t0)s + 500, 0, 'stale', now()), (2, 2, 1, 20, %(t0)s + 9100, 0,
                                                                                       'stale', now());
INSERT INTO reading_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,
                              start_page, end_page, total_pages, device, read_number)
VALUES (1, to_timestamp(%(t0)s + 100), to_timestamp(%(t0)s + 560), 300, 5, 5, 1, 5, 400, 'boox', 1),
       (2, to_timestamp(%(t0)s + 9100), to_timestamp(%(t0)s + 9120), 20, 0, 1, 1, 1, 300, 'kobo', 1);
INSERT INTO book_sidecars (device_id, book_id, sidecar_path, status, rating)
VALUES (1, 1, 'Good Omens.sdr/metadata.epub.lua', 'complete', 5);
INSERT INTO sidecar_files VALUES (1, 'Good Omens.sdr/metadata.epub.lua', 'hash', 1, now());
INSERT INTO highlights (device_id, book_id, position, kind, text) VALUES (1, 1, 1, 'highlight', 'Wisdom');
INSERT INTO publishers (publisher_id, name) VALUES (1, 'Gollancz');
INSERT INTO book_editions (book_id, isbn, format, publisher_id, source, calibre_id)
VALUES (1, '9780575048003', 'EPUB', 1, 'calibre', 7);
INSERT INTO book_calibre (book_id, calibre_id, match_rule, title) VALUES (1, 7, 'file_md5', 'Good Omens');
INSERT INTO calibre_match_overrides (book_id, calibre_id, note) VALUES (2, NULL, 'not in my library');
INSERT INTO tags (tag_id, name) VALUES (1, 'fantasy');
INSERT INTO book_tags VALUES (1, 1, 'calibre');
INSERT INTO book_identifiers VALUES (1, 'calibre', 'isbn', '9780575048003');
INSERT INTO schema_meta VALUES ('session_gap_seconds', '1800'), ('calibre_fingerprint', 'old');
INSERT INTO etl_runs (run_uuid, started_at, finished_at, status, device, script_version)
VALUES ('00000000-0000-0000-0000-000000000002', now(), now(), 'success', 'boox', '2.0.0');
INSERT INTO sync_status (source, device, last_run_at, last_status) VALUES ('koreader', 'boox', now(), 'success');
SELECT setval(pg_get_serial_sequence('books', 'book_id'), 2), setval(pg_get_serial_sequence('authors', 'author_id'), 3),
       setval(pg_get_serial_sequence('devices', 'device_id'), 2);
"""
V2_BOOKS = [Book(1, "Good Omens", "Terry Pratchett\nNeil Gaiman", 400, "a" * 32, series="Discworld #2",
                 language="en-GB")]


def v2_files(tmp_path):
    boox = write_statistics_file(tmp_path / "boox.sqlite3", V2_BOOKS,
                                 [(1, page, T0 + 100 * page, 60, 400) for page in range(1, 6)])
    kobo = write_statistics_file(tmp_path / "kobo.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                 [(1, 1, T0 + 9100, 20, 300)])
    return [(boox, "boox"), (kobo, "kobo")]


def test_a_version_2_warehouse_is_upgraded_in_place_and_then_equals_a_fresh_load(
    tmp_path, database_url, new_database, empty_env_file
):
    query(database_url, SCHEMA_V2.read_text())
    query(database_url, V2_ROWS, {"t0": T0})
    files = v2_files(tmp_path)

    for stats, device in files:
        result = run_cli("--stats-db", stats, "--device", device, env_file=empty_env_file,
                         DATABASE_URL=database_url, ETL_TIMEZONE="UTC")
        assert result.returncode == 0, result.stderr
    once = new_database()
    for stats, device in files:
        assert run_cli("--stats-db", stats, "--device", device, env_file=empty_env_file, DATABASE_URL=once,
                       ETL_TIMEZONE="UTC").returncode == 0

    assert reading_state(database_url) == reading_state(once)
    assert differences(catalog(database_url, ("public", "bookhelper")), catalog(once, ("public", "bookhelper"))) == []
    # The same ids, the reader's columns filled as a fresh load fills them, nothing doubled.
    assert query(database_url, """SELECT book_id, title, author, language, series_name, series_number, source
                                  FROM public.books ORDER BY 1""") == [
        (1, "Good Omens", "Terry Pratchett", "en", "Discworld", Decimal("2.00"), "koreader"),
        (2, "Stoner", "John Williams", "en", None, None, "koreader")]
    assert query(database_url, "SELECT book_id, duration_seconds, duration_minutes FROM public.reading_sessions"
                               " ORDER BY 1") == [(1, 300, 5), (2, 20, 1)]
    # History stays: run records, devices, sidecars and highlights, the reader's override.
    assert query(database_url, "SELECT script_version FROM etl_runs ORDER BY run_id") == [
        ("2.0.0",), ("3.1.0",), ("3.1.0",)]
    assert query(database_url, "SELECT device_id, name FROM devices ORDER BY 1") == [(1, "boox"), (2, "kobo")]
    assert query(database_url, "SELECT book_id, status, rating FROM book_sidecars") == [(1, "complete", 5)]
    assert query(database_url, "SELECT book_id, text FROM highlights") == [(1, "Wisdom")]
    assert query(database_url, "SELECT book_id, calibre_id, note FROM calibre_match_overrides") == [
        (2, None, "not in my library")]
    assert query(database_url, "SELECT source, device, last_status FROM device_sync ORDER BY device") == [
        ("koreader", "boox", "success"), ("koreader", "kobo", "success")]
    # Nothing of 2.0.0's layout is left in the reader's schema.
    assert query(database_url, """SELECT count(*) FROM pg_tables WHERE schemaname = 'public'
                                  AND tablename NOT IN ('authors', 'publishers', 'books', 'book_editions',
                                                        'reading_sessions', 'sync_status')""") == [(0,)]


def test_a_version_2_warehouse_upgraded_by_one_device_loses_nothing_of_the_other(tmp_path, database_url,
                                                                                 empty_env_file):
    query(database_url, SCHEMA_V2.read_text())
    query(database_url, V2_ROWS, {"t0": T0})
    boox, _kobo = v2_files(tmp_path)

    result = run_cli("--stats-db", boox[0], "--device", "boox", env_file=empty_env_file, DATABASE_URL=database_url,
                     ETL_TIMEZONE="UTC")

    assert result.returncode == 0, result.stderr
    # The other device's book and its reading wait, whole, for that device's next run.
    assert query(database_url, """SELECT k.book_key, b.title, s.duration_seconds
                                  FROM book_keys k JOIN books b USING (book_id) JOIN reading_sessions s USING (book_id)
                                  ORDER BY 1""") == [
        ("md5:" + "a" * 32, "Good Omens", 300), ("md5:" + "e" * 32, "Stoner", 20)]


@pytest.mark.parametrize("version", ["2", "1"])
def test_an_upgrade_is_one_transaction(tmp_path, database_url, empty_env_file, version):
    query(database_url, (SCHEMA_V2 if version == "2" else SCHEMA_V1).read_text())
    query(database_url, (V2_ROWS if version == "2" else V1_ROWS), {"t0": T0, "offset": 0})
    before = query(database_url, "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN"
                                 " ('public', 'bookhelper') ORDER BY 1, 2")
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, 1, T0, 60, 300)])

    dry = run_cli("--stats-db", stats, "--dry-run", env_file=empty_env_file, DATABASE_URL=database_url)

    assert dry.returncode == 0, dry.stderr
    assert query(database_url, "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN"
                               " ('public', 'bookhelper') ORDER BY 1, 2") == before


def test_a_version_4_warehouse_trades_the_page_views_foreign_key_for_the_trigger_and_equals_a_fresh_one(
    tmp_path, database_url, new_database, empty_env_file
):
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, page, T0 + 100 * page, 60, 300) for page in range(1, 6)])
    fresh = new_database()
    assert run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=fresh).returncode == 0
    assert run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=database_url).returncode == 0
    # what version 4 had: a foreign key from page_views to book_keys, no trigger
    query(database_url, """
        DROP TRIGGER page_views_follow_book ON bookhelper.book_keys;
        DROP FUNCTION bookhelper.page_views_follow_book();
        ALTER TABLE bookhelper.page_views ADD CONSTRAINT page_views_book_id_fkey FOREIGN KEY (book_id)
            REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE;
        UPDATE bookhelper.schema_meta SET value = '4' WHERE key = 'schema_version'""")

    result = run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=database_url)

    assert result.returncode == 0, result.stderr
    assert f"upgrading the warehouse schema to version {SCHEMA_VERSION}" in result.stderr
    assert differences(catalog(database_url, SCHEMAS), catalog(fresh, SCHEMAS)) == []
    query(database_url, "DELETE FROM books")
    assert query(database_url, "SELECT count(*) FROM bookhelper.page_views") == [(0,)]


def test_a_version_5_warehouse_reads_the_calibre_library_again_to_name_the_kindle_books_it_holds(
    tmp_path, database_url, new_database, empty_env_file
):
    library = write_calibre_library(tmp_path / "library", [CalibreBook(
        1, "The Lantern Keeper", ["Calla Whitcombe"], identifiers={"amazon": "B0TESTKND1"})]).metadata_db.parent
    export = write_kindle_export(tmp_path / "kindle", [ReadingInterval(T0, T0 + 600, "B0TESTKND1", millis=600_000)])
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, 1, T0, 60, 300)])
    inputs = ("--stats-db", stats, "--calibre-library", library, "--kindle-export", export)
    settings = {"env_file": empty_env_file, "ETL_TIMEZONE": "UTC"}
    fresh = new_database()
    assert run_cli(*inputs, DATABASE_URL=fresh, **settings).returncode == 0
    # what version 5 had: no calibre_asins, the library's fingerprint stored, the Kindle book titled by its ASIN
    assert run_cli(*inputs[:2], *inputs[4:], DATABASE_URL=database_url, **settings).returncode == 0
    assert run_cli(*inputs[:4], DATABASE_URL=database_url, **settings).returncode == 0
    query(database_url, """
        DROP TABLE bookhelper.calibre_asins;
        UPDATE bookhelper.schema_meta SET value = '5' WHERE key = 'schema_version'""")

    result = run_cli(*inputs, DATABASE_URL=database_url, **settings)

    assert result.returncode == 0, result.stderr
    assert f"upgrading the warehouse schema to version {SCHEMA_VERSION}" in result.stderr
    assert differences(catalog(database_url, SCHEMAS), catalog(fresh, SCHEMAS)) == []
    assert query(database_url, "SELECT title, author FROM books ORDER BY 1") == [
        ("Stoner", "John Williams"), ("The Lantern Keeper", "Calla Whitcombe")]
    assert whole_state(database_url) == whole_state(fresh)


def test_a_version_5_warehouse_reads_the_kindle_export_again_for_its_completion_records(tmp_path, database_url,
                                                                                        empty_env_file):
    export = write_kindle_export(tmp_path / "kindle", [ReadingInterval(T0, T0 + 600, "B0TESTKND1", millis=600_000)],
                                 completions=[KindleCompletion("B0TESTKND1", "2024-07-01")])
    settings = {"env_file": empty_env_file, "HOME": str(tmp_path), "DATABASE_URL": database_url, "ETL_TIMEZONE": "UTC"}
    assert run_cli("--kindle-export", export, **settings).returncode == 0
    # what version 5 had: no kindle_finishes, the export's fingerprint stored
    query(database_url, """
        DROP VIEW bookhelper.finished_books;
        DROP TABLE bookhelper.kindle_finishes;
        UPDATE bookhelper.schema_meta SET value = '5' WHERE key = 'schema_version'""")

    result = run_cli("--kindle-export", export, **settings)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT title, read_number, finished_on FROM bookhelper.finished_books") == [
        ("B0TESTKND1", 1, datetime.date(2024, 7, 1))]


def test_a_version_6_warehouse_reads_the_kindle_export_again_and_dates_a_finish_by_its_record(tmp_path, database_url,
                                                                                              empty_env_file):
    second = T0 + 86400
    export = write_kindle_export(tmp_path / "kindle", [ReadingInterval(start, start + 600, "B0TESTKND1", millis=600_000)
                                                       for start in (T0, second)],
                                 completions=[KindleCompletion("B0TESTKND1", "2024-07-01"),
                                              KindleCompletion("B0TESTKND1", "2024-07-02", how="MANUAL")])
    settings = {"env_file": empty_env_file, "HOME": str(tmp_path), "DATABASE_URL": database_url, "ETL_TIMEZONE": "UTC"}
    assert run_cli("--kindle-export", export, **settings).returncode == 0
    # what version 6 made of two records a day apart with a session between: two finishes, the second a re-read
    query(database_url, """
        UPDATE reading_sessions SET read_number = 2, read_instance_id = gen_random_uuid()
        WHERE start_time = to_timestamp(%(second)s) AT TIME ZONE 'UTC';
        INSERT INTO bookhelper.kindle_finishes (book_id, start_time, device, completed_on)
        SELECT book_id, to_timestamp(%(t0)s) AT TIME ZONE 'UTC', device, '2024-07-01' FROM bookhelper.kindle_finishes;
        UPDATE bookhelper.kindle_finishes SET completed_on = '2024-07-02'
        WHERE start_time = to_timestamp(%(second)s) AT TIME ZONE 'UTC';
        UPDATE bookhelper.schema_meta SET value = '6' WHERE key = 'schema_version'""", {"t0": T0, "second": second})
    assert len(query(database_url, "SELECT * FROM bookhelper.finished_books")) == 2

    result = run_cli("--kindle-export", export, **settings)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT read_number FROM reading_sessions ORDER BY start_time") == [(1,), (1,)]
    assert query(database_url, "SELECT title, read_number, finished_on FROM bookhelper.finished_books") == [
        ("B0TESTKND1", 1, datetime.date(2024, 7, 1))]
