"""A Calibre library as an optional input: matching, what lands, current state, cost and safety."""

import hashlib
import re
import sqlite3

import pytest
from conftest import query, run_cli

from bookhelper.core import clean_text, make_book_key, normalise_md5, split_authors
from bookhelper.matching import isbn_columns
from samples.calibre import (
    CalibreBook,
    CalibreFormat,
    build_scenario,
    calibre_book_path,
    calibre_file_name,
    register_calibre_functions,
    write_calibre_library,
)
from samples.calibre import koreader_partial_md5 as calibre_partial_md5
from samples.statistics import Book, write_statistics_file

MATCHES = """
    SELECT b.book_key, c.calibre_id, c.match_rule FROM book_calibre c JOIN book_keys b USING (book_id) ORDER BY 1"""


def key_of(book):
    """The warehouse key of a statistics book, by the ETL's own rule."""
    file_hash = normalise_md5(book.md5)
    title, authors = clean_text(book.title), split_authors(book.authors)
    return make_book_key(file_hash, title, authors)


@pytest.fixture
def scenario(tmp_path):
    return build_scenario(tmp_path / "scenario")


def load(etl, scenario, *args, **settings):
    return etl(scenario.statistics_path, "--sidecar-dir", scenario.device_dir, "--calibre-library",
               scenario.library.metadata_db.parent, *args, **settings)


def test_each_book_is_matched_by_the_first_rule_that_decides(etl, database_url, scenario):
    result = load(etl, scenario)

    assert result.returncode == 0, result.stderr
    by_key = {}
    for book in scenario.stat_books:
        by_key.setdefault(key_of(book), []).append(scenario.expected[book.id])
    # Two statistics books with one md5 are one warehouse book; where their expectations differ
    # (the same file imported twice into Calibre), the book is ambiguous and stays unmatched.
    expected = sorted((key, matches[0].calibre_id, matches[0].rule)
                      for key, matches in by_key.items() if matches[0] and len(set(matches)) == 1)
    assert query(database_url, MATCHES) == expected
    assert any(len(set(matches)) > 1 for matches in by_key.values()), "the scenario has a shared md5"
    assert "Calibre: 13 of 18 books matched (cwa_checksum: 1, ko_md5_column: 1, file_md5: 3, identifier: 2, " \
           "title_author: 6), 5 unmatched or ambiguous" in result.stderr


def calibre_uuids(scenario):
    conn = sqlite3.connect(f"file:{scenario.library.metadata_db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT id, uuid FROM books"))
    finally:
        conn.close()


def test_publishers_editions_tags_and_identifiers_land_as_whole_rows(etl, database_url, scenario):
    assert load(etl, scenario).returncode == 0
    matched = {calibre_id: key for key, calibre_id, _rule in query(database_url, MATCHES)}
    uuids = calibre_uuids(scenario)

    expected_editions, expected_tags, expected_identifiers, expected_publishers = [], [], [], []
    for book in scenario.calibre_books:
        key = matched.get(book.id)
        if key is None:
            continue
        formats = sorted({f.format for f in book.formats}) or [None]
        published = None if book.pubdate.startswith("0101") else book.pubdate[:10]
        isbn = book.identifiers.get("isbn")
        isbn_13, isbn_10 = isbn_columns(isbn) if isbn else (None, None)
        expected_editions += [(key, isbn_13 or isbn_10, fmt, book.publisher, book.id, uuids[book.id],
                               published, int(published[:4]) if published else None) for fmt in formats]
        # The publisher is a row of the reader's publishers, which the book (empty there before) refers to.
        expected_publishers.append((key, book.publisher, isbn, book.publisher, book.publisher, isbn_13, isbn_10))
        expected_tags += [(key, tag) for tag in book.tags]
        expected_identifiers += [(key, scheme, value) for scheme, value in book.identifiers.items()]
    editions = query(database_url, """
        SELECT b.book_key, e.isbn_specific, e.edition_format, e.publisher_specific, e.calibre_id, e.calibre_uuid,
               e.release_date::text, e.publication_year
        FROM book_editions e JOIN book_keys b USING (book_id)
        WHERE e.calibre_id IS NOT NULL ORDER BY 1, 3""")
    assert editions == sorted(expected_editions, key=lambda row: (row[0], row[2] or ""))
    assert query(database_url, """
        SELECT k.book_key, c.publisher, c.isbn, b.publisher_name, p.publisher_name, b.isbn_13, b.isbn_10
        FROM book_calibre c JOIN book_keys k USING (book_id) JOIN books b USING (book_id)
        LEFT JOIN publishers p ON p.publisher_id = b.publisher_id ORDER BY 1""") == sorted(expected_publishers)
    assert query(database_url, """SELECT b.book_key, g.name FROM book_tags t JOIN tags g USING (tag_id)
                                  JOIN book_keys b USING (book_id) ORDER BY 1, 2""") == sorted(expected_tags)
    assert query(database_url, """SELECT b.book_key, i.scheme, i.value FROM book_identifiers i
                                  JOIN book_keys b USING (book_id) ORDER BY 1, 2, 3""") == sorted(expected_identifiers)


def test_publisher_and_tag_analytics_add_up_to_the_matched_books_reading(etl, database_url, scenario):
    assert load(etl, scenario).returncode == 0
    by_tag = query(database_url, """
        SELECT g.name, sum(s.reading_seconds)::bigint FROM book_reading s JOIN book_tags t USING (book_id)
        JOIN tags g USING (tag_id) GROUP BY 1 ORDER BY 1""")
    by_publisher = query(database_url, """
        SELECT e.publisher_specific, sum(s.reading_seconds)::bigint
        FROM book_reading s JOIN (SELECT DISTINCT book_id, publisher_specific FROM book_editions
                                  WHERE calibre_id IS NOT NULL AND publisher_specific IS NOT NULL) e USING (book_id)
        GROUP BY 1 ORDER BY 1""")
    assert by_tag and by_publisher
    assert query(database_url, "SELECT tag, reading_seconds::bigint FROM tag_analytics ORDER BY 1") == by_tag
    assert query(database_url, "SELECT name, reading_seconds::bigint FROM publisher_reading ORDER BY 1") == (
        by_publisher)
    assert query(database_url, "SELECT count(*) FROM book_reading WHERE publisher IS NOT NULL AND tags IS NOT NULL"
                 ) != [(0,)]


def test_a_rerun_changes_nothing_and_an_edit_in_calibre_is_reflected(etl, database_url, scenario):
    assert load(etl, scenario).returncode == 0
    state = """SELECT b.book_key, e.publisher_specific, array_agg(DISTINCT g.name ORDER BY g.name)
               FROM book_keys b LEFT JOIN book_editions e USING (book_id)
               LEFT JOIN book_tags t ON t.book_id = b.book_id LEFT JOIN tags g USING (tag_id)
               GROUP BY 1, 2 ORDER BY 1, 2"""
    before = query(database_url, state)

    again = load(etl, scenario)
    assert again.returncode == 0
    assert "the Calibre library and the books are unchanged" in again.stderr
    assert query(database_url, state) == before

    conn = sqlite3.connect(scenario.library.metadata_db)
    conn.execute("UPDATE publishers SET name = 'Gollancz' WHERE name = 'Ace Books'")
    conn.execute("DELETE FROM books_tags_link WHERE book = 1 AND tag = (SELECT id FROM tags WHERE name = 'Classics')")
    conn.commit()
    conn.close()
    edited = load(etl, scenario)

    assert edited.returncode == 0, edited.stderr
    first = [row for row in query(database_url, state) if row[1] in ("Gollancz", "Ace Books")]
    assert [(publisher, tags) for _key, publisher, tags in first] == [("Gollancz", ["Science Fiction"])]
    assert query(database_url, "SELECT count(*) FROM publishers WHERE publisher_name = 'Ace Books'") == [(0,)]


def test_a_reader_can_correct_a_match_by_hand(etl, database_url, scenario):
    assert load(etl, scenario).returncode == 0
    stoner = [key_of(b) for b in scenario.stat_books if b.id == 7][0]  # ambiguous: two Stoner editions
    hobbit = [key_of(b) for b in scenario.stat_books if b.id == 8][0]
    query(database_url, """INSERT INTO calibre_match_overrides (book_id, calibre_id, note)
                           SELECT book_id, 7, 'the Vintage paperback' FROM book_keys WHERE book_key = %s
                           UNION ALL SELECT book_id, NULL, 'not this one' FROM book_keys WHERE book_key = %s""",
          (stoner, hobbit))

    assert load(etl, scenario).returncode == 0

    matches = dict((key, (calibre_id, rule)) for key, calibre_id, rule in query(database_url, MATCHES))
    assert matches[stoner] == (7, "manual")
    assert hobbit not in matches
    assert query(database_url, "SELECT count(*) FROM calibre_match_overrides") == [(2,)]


def test_a_corrupt_library_skips_enrichment_but_loads_the_reading(etl, database_url, scenario):
    data = bytearray(scenario.library.metadata_db.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    scenario.library.metadata_db.write_bytes(bytes(data))

    result = load(etl, scenario)

    assert result.returncode == 80, result.stderr  # loaded, and the healthcheck hears of the library
    assert result.stderr.count("[WARNING] [EXTRACT] Calibre library skipped") == 1
    assert query(database_url, "SELECT count(*) > 0 FROM reading_sessions") == [(True,)]
    assert query(database_url, "SELECT count(*) FROM book_calibre") == [(0,)]
    notes = query(database_url, "SELECT notes FROM etl_runs")[0][0]
    assert notes.startswith("Calibre library skipped:") and "metadata.db cannot be read" in notes


@pytest.mark.parametrize("wal", [False, True])
def test_the_library_folder_is_byte_identical_after_a_run(tmp_path, etl, database_url, wal):
    scenario = build_scenario(tmp_path / "wal" if wal else tmp_path / "plain", wal=wal)
    folder = scenario.library.metadata_db.parent

    def snapshot():
        return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns,
                       hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else None) for p in folder.rglob("*"))

    before = snapshot()
    result = load(etl, scenario)
    assert result.returncode == 0, result.stderr
    assert snapshot() == before
    assert query(database_url, "SELECT count(*) > 10 FROM book_calibre") == [(True,)]


CALIBRE_STATE = ("SELECT * FROM book_calibre ORDER BY book_id", "SELECT * FROM book_tags ORDER BY 1, 2",
                 "SELECT * FROM book_editions ORDER BY edition_id", "SELECT * FROM book_identifiers ORDER BY 1, 2, 3")


@pytest.mark.parametrize("missing", ["folder", "metadata.db"])
def test_a_library_missing_tonight_is_skipped_loudly_and_what_it_gave_stays(
        tmp_path, etl, database_url, empty_env_file, scenario, ping_server, missing):
    url, recorder = ping_server
    assert load(etl, scenario).returncode == 0
    before = [query(database_url, statement) for statement in CALIBRE_STATE]
    unmounted = tmp_path / "nas"
    if missing == "metadata.db":
        unmounted.mkdir()  # the mount point of a share that is not mounted

    result = etl(scenario.statistics_path, "--sidecar-dir", scenario.device_dir, "--calibre-library", unmounted,
                 ETL_HEALTHCHECK_URL=url)

    assert result.returncode == 80, result.stderr
    assert re.search(r"\[WARNING\] \[EXTRACT\] Calibre library skipped: .*nas holds no metadata\.db \(not mounted\? "
                     r"check --calibre-library or CALIBRE_LIBRARY\); the reading still loads", result.stderr)
    assert [query(database_url, statement) for statement in CALIBRE_STATE] == before
    assert query(database_url, "SELECT count(*) > 0 FROM reading_sessions") == [(True,)]
    assert recorder.pings[-1][0].startswith("/ping/check-uuid/80?rid=")
    assert "Calibre library skipped" in recorder.pings[-1][1]
    status = run_cli("--status", env_file=empty_env_file, DATABASE_URL=database_url)
    assert re.search(r"partial\s+80\s+.*Calibre library skipped", status.stdout)


def test_calibre_fills_the_readers_shared_columns_only_while_empty_or_still_its_own(etl, database_url, scenario):
    assert load(etl, scenario).returncode == 0
    shared = """SELECT b.title, b.isbn_13, b.publisher_name, p.publisher_name FROM books b
                LEFT JOIN publishers p USING (publisher_id) WHERE b.title IN ('The Left Hand of Darkness',
                'Middlemarch') ORDER BY 1"""
    assert query(database_url, shared) == [("Middlemarch", None, "Penguin Classics", "Penguin Classics"),
                                           ("The Left Hand of Darkness", "9780441478125", "Ace Books", "Ace Books")]
    # The enrichment job writes its own values into one book; then Calibre corrects both books.
    query(database_url, """UPDATE books SET isbn_13 = '9780000000002', publisher_name = 'Hardcover House'
                           WHERE title = 'Middlemarch'""")
    conn = sqlite3.connect(scenario.library.metadata_db)
    conn.execute("UPDATE publishers SET name = 'Gollancz' WHERE name = 'Ace Books'")
    conn.execute("UPDATE publishers SET name = 'Penguin' WHERE name = 'Penguin Classics'")
    conn.execute("UPDATE identifiers SET val = '978-0-441-47812-5 ' WHERE val = '9780441478125'")
    conn.commit()
    conn.close()

    assert load(etl, scenario).returncode == 0

    assert query(database_url, shared) == [("Middlemarch", "9780000000002", "Hardcover House", "Penguin"),
                                           ("The Left Hand of Darkness", "9780441478125", "Gollancz", "Gollancz")]
    # The job's own publisher row that no book names any more is gone; a value it wrote, it may clear.
    assert query(database_url, "SELECT count(*) FROM publishers WHERE publisher_name IN ('Ace Books', "
                               "'Penguin Classics')") == [(0,)]


def test_a_new_book_takes_the_readers_row_of_the_isbn_calibre_gives_it(etl, reader_database, scenario):
    query(reader_database, """INSERT INTO books (title, isbn_13, hardcover_book_id, source)
                              VALUES ('Hainish 4', '9780441478125', 'hc-lhod', 'hardcover')""")

    assert load(etl, scenario, DATABASE_URL=reader_database).returncode == 0

    assert query(reader_database, """SELECT b.title, b.hardcover_book_id, b.source, k.matched_by
                                     FROM books b JOIN book_keys k USING (book_id)
                                     WHERE b.isbn_13 = '9780441478125'""") == [
        ("The Left Hand of Darkness", "hc-lhod", "hardcover", "isbn")]


def test_a_book_matched_by_title_is_matched_by_its_file_once_the_file_appears(tmp_path, etl, database_url,
                                                                              new_database):
    content = b"an epub, as the device holds it " * 400
    stats = write_statistics_file(tmp_path / "s.sqlite3",
                                  [Book(1, "Stoner", "John Williams", 100, calibre_partial_md5(content))],
                                  [(1, 1, 1_700_000_000, 60, 100)])
    library = write_calibre_library(tmp_path / "library", [
        CalibreBook(1, "Stoner", ["John Williams"], formats=[CalibreFormat("EPUB", content)])], cwa=False)
    book_file = library.format_path(calibre_book_path(1, "Stoner", "John Williams"),
                                    calibre_file_name("Stoner", "John Williams"), "EPUB")
    book_file.rename(tmp_path / "away.epub")  # on the NAS, not copied yet
    assert etl(stats, "--calibre-library", library.metadata_db.parent).returncode == 0
    assert [rule for _key, _id, rule in query(database_url, MATCHES)] == ["title_author"]
    (tmp_path / "away.epub").rename(book_file)

    assert etl(stats, "--calibre-library", library.metadata_db.parent).returncode == 0

    once = new_database(warehouse=True)
    assert etl(stats, "--calibre-library", library.metadata_db.parent, DATABASE_URL=once).returncode == 0
    assert query(database_url, MATCHES) == query(once, MATCHES)
    assert [rule for _key, _id, rule in query(database_url, MATCHES)] == ["file_md5"]


@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_a_library_caught_mid_write_is_read_as_its_last_commit(tmp_path, etl, database_url, scenario, journal_mode):
    writer = sqlite3.connect(scenario.library.metadata_db, isolation_level=None)
    register_calibre_functions(writer)
    writer.execute(f"PRAGMA journal_mode={journal_mode}")
    writer.execute("PRAGMA cache_size=1")  # the uncommitted pages reach the database file (or the -wal)
    writer.execute("BEGIN")
    writer.execute("INSERT INTO tags (name) VALUES ('rolled back')")
    writer.execute("INSERT INTO books_tags_link (book, tag) SELECT id, (SELECT max(id) FROM tags) FROM books")
    writer.execute("CREATE TABLE filler (x TEXT)")
    writer.executemany("INSERT INTO filler VALUES (?)", [("f" * 900,)] * 5000)
    try:
        result = load(etl, scenario)
    finally:
        writer.execute("ROLLBACK")
        writer.close()

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(*) FROM tags WHERE name = 'rolled back'") == [(0,)]
    assert query(database_url, "SELECT count(*) > 0 FROM book_tags") == [(True,)]
