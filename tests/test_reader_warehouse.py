"""The reader's warehouse is the contract: the ETL adopts a database the reader's own scripts initialised,
builds the same schema on a fresh one, writes only what it owns, and fits every value to the reader's types."""

import datetime
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
from catalog import catalog, missing_or_changed
from conftest import ROOT, query
from warehouse import reading_state

from samples.statistics import Book, write_statistics_file

T0 = 1_700_000_000
MD5 = "ab" * 16
READER_SCHEMAS = ("public",)


def stats_file(tmp_path, books, rows, name="statistics.sqlite3"):
    return write_statistics_file(tmp_path / name, books, rows)


def good_omens(tmp_path, pages=5, name="statistics.sqlite3"):
    book = Book(1, "Good Omens", "Terry Pratchett\nNeil Gaiman", 400, MD5, series="Discworld #2", language="en-GB")
    return stats_file(tmp_path, [book], [(1, p, T0 + 100 * p, 60, 400) for p in range(1, pages + 1)], name)


# The catalog --------------------------------------------------------------------------------------


@pytest.mark.empty_database
def test_a_fresh_warehouse_holds_the_readers_schema_exactly_with_ours_only_added(
    tmp_path, etl, database_url, reader_database
):
    assert etl(good_omens(tmp_path)).returncode == 0

    assert missing_or_changed(catalog(reader_database, READER_SCHEMAS), catalog(database_url, READER_SCHEMAS)) == []


def test_loading_into_the_readers_database_changes_none_of_their_objects(tmp_path, etl, reader_database,
                                                                          new_database):
    pristine = new_database()
    for script in ("create_schema.sql", "create_indexes.sql"):
        query(pristine, (ROOT.parent / "shared" / "reader-warehouse" / script).read_text())

    result = etl(good_omens(tmp_path), DATABASE_URL=reader_database)

    assert result.returncode == 0, result.stderr
    assert missing_or_changed(catalog(pristine, READER_SCHEMAS), catalog(reader_database, READER_SCHEMAS)) == []
    # What the job adds to the reader's tables are appended columns only.
    last_columns = """SELECT column_name FROM information_schema.columns WHERE table_schema = 'public'
                      AND table_name = %s ORDER BY ordinal_position DESC LIMIT %s"""
    assert query(reader_database, last_columns, ("book_editions", 3)) == [
        ("calibre_uuid",), ("calibre_id",), ("created_at",)]
    assert query(reader_database, last_columns, ("reading_sessions", 6)) == [
        ("time_precision",), ("total_pages",), ("end_page",), ("start_page",), ("duration_seconds",), ("created_at",)]


def test_the_same_files_give_the_same_warehouse_on_a_fresh_and_on_the_readers_database(
    tmp_path, etl, database_url, reader_database
):
    stats = good_omens(tmp_path)
    assert etl(stats).returncode == 0
    assert etl(stats, DATABASE_URL=reader_database).returncode == 0

    assert reading_state(reader_database) == reading_state(database_url)


# The seed's and the runbook's queries --------------------------------------------------------------


def test_the_readers_validation_queries_answer_after_a_run(tmp_path, etl, reader_database):
    before = time.time()
    assert etl(good_omens(tmp_path), DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, "SELECT COUNT(*) FROM reading_sessions WHERE data_source = 'koreader'") == [(1,)]
    assert query(reader_database, "SELECT COUNT(*) FROM books WHERE source = 'koreader'") == [(1,)]
    (last_sync,), = query(reader_database, "SELECT last_sync_time FROM sync_status WHERE source_name = 'koreader'")
    # naive UTC, as every TIMESTAMP of the reader's
    assert before - 5 <= last_sync.replace(tzinfo=datetime.timezone.utc).timestamp() <= time.time() + 5
    assert query(reader_database, """SELECT sync_status, records_synced, records_created, sync_mode, last_sync_cursor
                                     FROM sync_status WHERE source_name = 'koreader'""") == [
        ("success", 5, 1, "incremental", "2023-11-14T22:21:40Z")]
    assert query(reader_database, """SELECT COUNT(*) FROM reading_sessions rs
                                     WHERE NOT EXISTS (SELECT 1 FROM books b WHERE b.book_id = rs.book_id)""") == [(0,)]
    assert query(reader_database, """SELECT book_id, start_time, device, COUNT(*) FROM reading_sessions
                                     GROUP BY book_id, start_time, device HAVING COUNT(*) > 1""") == []
    assert query(reader_database, """SELECT COUNT(*) AS total_books, COUNT(hardcover_book_id), COUNT(cover_url),
                                     COUNT(hardcover_rating), COUNT(author_id), COUNT(publisher_id) FROM books""") == [
        (1, 0, 0, 0, 1, 0)]


def test_the_readers_views_give_the_minutes_as_their_definitions_compute_them(tmp_path, etl, reader_database):
    rows = [(1, 1, T0, 20, 400), (1, 2, T0 + 20, 75, 400),  # one session: 95 s, 2 minutes
            (1, 3, T0 + 9000, 10, 400)]  # another: 10 s, still 1 minute by the reader's CHECK
    book = Book(1, "Good Omens", "Terry Pratchett", 400, MD5)
    assert etl(stats_file(tmp_path, [book], rows), DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, """SELECT title, author, total_read_time_ebook_minutes, total_read_time_minutes,
                                            total_pages_read_ebook, ebook_session_count, total_sessions, read_count
                                     FROM book_stats""") == [("Good Omens", "Terry Pratchett", 3, 3, 3, 2, 2, 1)]
    assert query(reader_database, "SELECT sum(duration_seconds) FROM reading_sessions") == [(105,)]
    assert query(reader_database, """SELECT author_name, books_read, total_sessions, total_ebook_minutes
                                     FROM author_analytics""") == [("Terry Pratchett", 1, 2, 3)]
    assert query(reader_database, """SELECT title, author_name, duration_minutes, pages_read, end_time - start_time
                                     FROM reading_timeline""") == [
        ("Good Omens", "Terry Pratchett", 1, 1, datetime.timedelta(seconds=10)),
        ("Good Omens", "Terry Pratchett", 2, 2, datetime.timedelta(seconds=95))]
    assert query(reader_database, "SELECT count(*) FROM tandem_reading_sessions") == [(0,)]


# What the job never touches ------------------------------------------------------------------------

ENRICHMENT = """
UPDATE books SET isbn_13 = '9780552137034', asin = 'B0000000XX', hardcover_book_id = 'hc-1', description = 'A novel',
                 genres = '["Fantasy"]', moods = '["funny"]', user_rating = 4.50, user_owns_ebook = true,
                 user_reading_status = 'read', cover_url = 'https://covers.example/1.jpg', publisher_name = 'Corgi';
"""


def test_enrichment_written_between_runs_survives_a_grown_file(tmp_path, etl, reader_database):
    assert etl(good_omens(tmp_path, pages=3), DATABASE_URL=reader_database).returncode == 0
    query(reader_database, ENRICHMENT)
    enriched = query(reader_database, "SELECT * FROM books")

    result = etl(good_omens(tmp_path, pages=9, name="grown.sqlite3"), DATABASE_URL=reader_database)

    assert result.returncode == 0, result.stderr
    assert "sessions: 0 inserted, 1 updated" in result.stderr
    columns = [name for (name,) in query(reader_database, """SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name = 'books' ORDER BY ordinal_position""")]
    after = dict(zip(columns, query(reader_database, "SELECT * FROM books")[0]))
    before = dict(zip(columns, enriched[0]))
    assert {k: v for k, v in after.items() if k != "updated_at"} == {k: v for k, v in before.items()
                                                                      if k != "updated_at"}
    assert query(reader_database, "SELECT sum(duration_seconds) FROM reading_sessions") == [(540,)]


def test_a_book_the_enrichment_created_first_is_reused_not_doubled(tmp_path, etl, reader_database):
    query(reader_database, """
        INSERT INTO authors (author_name, author_hardcover_id) VALUES ('Terry Pratchett', 'hc-a-1');
        INSERT INTO books (title, author_id, isbn_13, hardcover_book_id, source)
        SELECT 'Good Omens: The Nice and Accurate Prophecies', author_id, '9780552137034', 'hc-1', 'hardcover'
        FROM authors;""")

    result = etl(stats_file(tmp_path, [Book(1, "Good Omens (Discworld)", "Terry Pratchett", 400, MD5)],
                            [(1, 1, T0, 60, 400)]), DATABASE_URL=reader_database)

    assert result.returncode == 0, result.stderr
    assert "1 of the new ones found as the warehouse's existing rows" in result.stderr
    assert query(reader_database, """SELECT b.title, b.file_hash, b.source, b.isbn_13, b.hardcover_book_id,
                                            a.author_hardcover_id, k.matched_by, k.created_book
                                     FROM books b JOIN authors a USING (author_id) JOIN book_keys k USING (book_id)
                                  """) == [("Good Omens (Discworld)", MD5, "hardcover", "9780552137034", "hc-1",
                                            "hc-a-1", "title_author", False)]
    assert query(reader_database, "SELECT count(*) FROM authors") == [(1,)]


def test_a_book_an_earlier_loader_left_is_found_by_its_file_hash(tmp_path, etl, reader_database):
    query(reader_database, f"INSERT INTO books (title, file_hash) VALUES ('Good Omens, an old title', '{MD5}')")

    assert etl(good_omens(tmp_path), DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, "SELECT b.book_id, k.matched_by FROM books b JOIN book_keys k USING (book_id)") == [
        (1, "file_hash")]


def test_a_title_and_author_that_two_rows_share_decide_nothing(tmp_path, etl, reader_database):
    query(reader_database, """
        INSERT INTO authors (author_name) VALUES ('Terry Pratchett');
        INSERT INTO books (title, author_id, source) SELECT 'Good Omens', author_id, 'hardcover' FROM authors;
        INSERT INTO books (title, author_id, source) SELECT 'Good Omens', author_id, 'hardcover' FROM authors;""")

    assert etl(good_omens(tmp_path), DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, "SELECT count(*), count(*) FILTER (WHERE source = 'koreader') FROM books") == [
        (3, 1)]


def test_another_sources_session_is_untouched_and_counted_by_book_stats(tmp_path, etl, reader_database):
    assert etl(good_omens(tmp_path, pages=3), DATABASE_URL=reader_database).returncode == 0
    query(reader_database, """INSERT INTO reading_sessions (book_id, start_time, duration_minutes, device, media_type,
                                                            data_source)
                              SELECT book_id, '2023-01-01 10:00', 45, 'audible-app', 'audiobook', 'audible'
                              FROM books""")
    other = query(reader_database, "SELECT * FROM reading_sessions WHERE data_source = 'audible'")

    assert etl(good_omens(tmp_path, pages=9, name="grown.sqlite3"), "--gap-minutes", "5",
               DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, "SELECT * FROM reading_sessions WHERE data_source = 'audible'") == other
    assert query(reader_database, """SELECT total_read_time_ebook_minutes, total_read_time_audio_minutes,
                                            total_sessions FROM book_stats""") == [(9, 45, 2)]


def test_koreader_sessions_of_an_earlier_loader_are_never_doubled_nor_silently_deleted(tmp_path, etl,
                                                                                       reader_database):
    query(reader_database, f"""
        INSERT INTO books (title, file_hash) VALUES ('Good Omens', '{MD5}');
        INSERT INTO reading_sessions (book_id, start_time, duration_minutes, device)
        SELECT book_id, '2023-11-14 22:15:00', 9, 'boox-palma-2' FROM books;""")
    stats = good_omens(tmp_path)

    refused = etl(stats, DATABASE_URL=reader_database)

    assert refused.returncode == 78
    errors = [line for line in refused.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "1 KOReader sessions that bookhelper-etl did not derive" in errors[0]
    assert "--replace-koreader-sessions" in errors[0]
    assert query(reader_database, "SELECT count(*) FROM reading_sessions") == [(1,)]
    assert query(reader_database, "SELECT to_regnamespace('bookhelper')") == [(None,)]

    taken = etl(stats, "--replace-koreader-sessions", DATABASE_URL=reader_database)

    assert taken.returncode == 0, taken.stderr
    assert "replacing 1 KOReader sessions of an earlier loader" in taken.stderr
    assert query(reader_database, "SELECT book_id, duration_minutes, duration_seconds FROM reading_sessions") == [
        (1, 5, 300)]


# Values that do not fit the reader's types ---------------------------------------------------------


def test_every_value_is_fitted_to_the_readers_columns_and_the_full_text_kept(tmp_path, etl, reader_database):
    long_title, long_author, long_series = "T" * 300, "A" * 300, "S" * 300 + " #2.555"
    books = [Book(1, long_title, long_author, 400, MD5, series=long_series, language="eng"),
             Book(2, "Zhongwen", "Lu Xun", 100, "cd" * 16, series="Call to Arms #1000", language="zh_CN"),
             Book(3, "Plain", "Someone", 100, "ef" * 16, series="N/A", language="English"),
             Book(4, "Nowhere", "Someone", 100, "01" * 16, series="Saga #II", language="Klingon"),
             Book(5, None, None, 100, "23" * 16, series="#3", language="en-US")]
    rows = [(n, 1, T0 + 1000 * n, 60, 100) for n in range(1, 6)]

    result = etl(stats_file(tmp_path, books, rows), DATABASE_URL=reader_database)

    assert result.returncode == 0, result.stderr
    assert re.search(r"3 values were cut to fit the reader's columns \(author: 1, series: 1, title: 1\)",
                     result.stderr)
    fitted = query(reader_database, "SELECT file_hash, title, author, series_name, series_number, language FROM books")
    assert {row[0]: row[1:] for row in fitted} == {
        MD5: ("T" * 255, "A" * 255, "S" * 255, Decimal("2.56"), "en"),
        "cd" * 16: ("Zhongwen", "Lu Xun", "Call to Arms", None, "zh"),
        "ef" * 16: ("Plain", "Someone", None, None, "en"),
        "01" * 16: ("Nowhere", "Someone", "Saga #II", None, None),
        "23" * 16: ("(untitled)", None, None, Decimal("3.00"), "en")}
    assert query(reader_database, f"SELECT title, series, language FROM book_keys WHERE book_key = 'md5:{MD5}'") == [
        (long_title, long_series, "eng")]
    assert query(reader_database, "SELECT name FROM author_names WHERE length(name) = 300") == [(long_author,)]


def test_a_device_name_longer_than_the_readers_column_is_refused_in_one_line(tmp_path, etl, reader_database):
    result = etl(good_omens(tmp_path), "--device", "d" * 51, DATABASE_URL=reader_database)

    assert result.returncode == 78
    assert "holds at most 50" in result.stderr
    assert query(reader_database, "SELECT count(*) FROM books") == [(0,)]


def test_koreader_counts_of_notes_and_highlights_land_in_the_readers_columns(tmp_path, etl, reader_database):
    book = Book(1, "Good Omens", "Terry Pratchett", 400, MD5, notes=3, highlights=12)

    assert etl(stats_file(tmp_path, [book], [(1, 1, T0, 60, 400)]), DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, "SELECT notes, highlights, device_stats_source FROM books") == [
        (3, 12, "statistics.sqlite3")]


def test_a_database_in_another_time_zone_stores_naive_utc_and_accepts_a_session_that_just_began(
    tmp_path, etl, reader_database
):
    dbname = query(reader_database, "SELECT current_database()")[0][0]
    query(reader_database, f"ALTER DATABASE {dbname} SET TimeZone = 'America/New_York'")
    just_now = int(time.time()) - 600  # an hour west of UTC would make this "the future" to the CHECK
    book = Book(1, "Good Omens", "Terry Pratchett", 400, MD5)
    stats = stats_file(tmp_path, [book], [(1, 1, just_now, 60, 400)])

    # The dry run's sample shows the session in UTC whatever this machine's zone.
    dry = etl(stats, "--dry-run", DATABASE_URL=reader_database, TZ="America/New_York")
    result = etl(stats, DATABASE_URL=reader_database)

    utc_minute = datetime.datetime.fromtimestamp(just_now, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    assert f"sample: {utc_minute} UTC | Good Omens" in dry.stderr
    assert result.returncode == 0, result.stderr
    (start,), = query(reader_database, "SELECT start_time FROM reading_sessions")
    assert start == datetime.datetime.fromtimestamp(just_now, datetime.timezone.utc).replace(tzinfo=None)


def test_page_rows_whose_session_would_start_in_the_future_wait(tmp_path, etl, reader_database):
    later = int(time.time()) + 3600
    book = Book(1, "Good Omens", "Terry Pratchett", 400, MD5)

    result = etl(stats_file(tmp_path, [book], [(1, 1, T0, 60, 400), (1, 2, later, 60, 400)]),
                 DATABASE_URL=reader_database)

    assert result.returncode == 0, result.stderr
    assert query(reader_database, "SELECT count(*), sum(duration_seconds) FROM reading_sessions") == [(1, 60)]
    assert query(reader_database, "SELECT future_rows FROM device_books") == [(1,)]


# Documentation ---------------------------------------------------------------------------------------


def test_every_column_of_every_table_and_view_is_documented(tmp_path, etl, database_url):
    assert etl(good_omens(tmp_path)).returncode == 0
    documented = Path(ROOT / "docs" / "schema.md").read_text()
    sections = {}
    for heading, body in re.findall(r"^### `([\w.]+)`[^\n]*\n(.*?)(?=^### |^## |\Z)", documented, re.M | re.S):
        sections[heading] = set(re.findall(r"^\| `(\w+)`", body, re.M))
    columns = query(database_url, """SELECT c.table_schema || '.' || c.table_name, c.column_name
                                     FROM information_schema.columns c
                                     WHERE c.table_schema IN ('public', 'bookhelper')""")
    missing = sorted(f"{table}.{column}" for table, column in columns if column not in sections.get(table, ()))
    assert missing == []


def test_a_book_the_reader_deletes_comes_back_whole_from_the_file_and_nothing_doubles(
    tmp_path, etl, database_url, new_database
):
    stats = good_omens(tmp_path)
    assert etl(stats).returncode == 0
    query(database_url, "DELETE FROM books")
    assert query(database_url, "SELECT count(*) FROM page_views") == [(0,)]

    assert etl(stats).returncode == 0

    once = new_database(warehouse=True)
    assert etl(stats, DATABASE_URL=once).returncode == 0
    assert reading_state(database_url) == reading_state(once)
