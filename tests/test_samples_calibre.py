"""The Calibre library fixture is real: calibre's schema and triggers, files where the database
says, KOReader md5s as the scenario claims, WAL as CWA leaves it, and readable without calibre."""

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samples.calibre import (
    CALIBRE_APPLICATION_ID,
    EMPTY_FILE_MD5,
    RULES,
    SCENARIO_COLUMNS,
    UNKNOWN_PUBDATE,
    CalibreBook,
    CalibreFormat,
    build_scenario,
    calibre_book_path,
    close_wal_writers,
    koreader_partial_md5,
    register_calibre_functions,
    sidecar_path,
    write_calibre_library,
)

ROOT = Path(__file__).resolve().parent.parent

# The sample offsets as the fact sheet lists them (LuaJIT's lshift(1024, 2*i), i = -1..10).
SAMPLE_OFFSETS = (0, 1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24, 1 << 26, 1 << 28, 1 << 30)


def partial_md5_of_file(path: Path) -> str:
    """KOReader's partialMD5 as util.lua runs it: seek, read 1 KiB, stop when a read returns nothing."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for offset in SAMPLE_OFFSETS:
            handle.seek(offset)
            sample = handle.read(1024)
            if not sample:
                break
            digest.update(sample)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The default scenario, read-only: tests that change a library build their own."""
    return build_scenario(tmp_path_factory.mktemp("scenario"))


def plain(path) -> sqlite3.Connection:
    """A connection like the ETL's: no calibre functions registered."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def one_book_library(directory, **options):
    book = CalibreBook(1, "The Hobbit", ["J.R.R. Tolkien"], formats=[CalibreFormat("EPUB", b"epub bytes")])
    return write_calibre_library(directory, [book], **options)


# --- calibre's schema and its triggers ---------------------------------------------------


def test_insert_trigger_computes_sort_and_uuid_with_the_registered_functions(tmp_path):
    library = write_calibre_library(tmp_path, [])
    conn = sqlite3.connect(library.metadata_db)
    register_calibre_functions(conn, seed=7)
    book_id = conn.execute("INSERT INTO books (title) VALUES ('The Hobbit')").lastrowid
    sort, book_uuid = conn.execute("SELECT sort, uuid FROM books WHERE id = ?", (book_id,)).fetchone()
    assert sort == "Hobbit, The"
    assert uuid.UUID(book_uuid).version == 4
    conn.execute("UPDATE books SET title = 'A Wizard of Earthsea' WHERE id = ?", (book_id,))
    assert conn.execute("SELECT sort FROM books WHERE id = ?", (book_id,)).fetchone() == ("Wizard of Earthsea, A",)
    conn.execute("INSERT INTO series (name) VALUES ('The Expanse')")
    assert conn.execute("SELECT sort FROM series").fetchall() == [("Expanse, The",)]
    # user_version 27's trigger gives every new book its pages row.
    assert conn.execute("SELECT book FROM books_pages_link").fetchall() == [(book_id,)]


def test_generated_books_keep_their_uuids_and_get_calibres_title_sort(scenario):
    conn = plain(scenario.library.metadata_db)
    uuids = dict(conn.execute("SELECT id, uuid FROM books").fetchall())
    assert uuids == {book.id: book.uuid for book in scenario.calibre_books}
    sorts = dict(conn.execute("SELECT id, sort FROM books WHERE id IN (1, 3, 5)").fetchall())
    assert sorts == {1: "Left Hand of Darkness, The", 3: "Piranesi", 5: "Fire Upon the Deep, A"}


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO books (title) VALUES ('New')",
        "UPDATE books SET has_cover = 0 WHERE id = 1",
        "INSERT INTO series (name) VALUES ('New Series')",
        "UPDATE series SET name = 'Renamed' WHERE id = 1",
        "SELECT * FROM meta",
        "SELECT * FROM tag_browser_series",
        "SELECT * FROM tag_browser_filtered_tags",
        "SELECT * FROM tag_browser_filtered_custom_column_1",
    ],
)
def test_statements_that_need_calibre_functions_fail_on_a_plain_connection(scenario, statement):
    conn = sqlite3.connect(scenario.library.metadata_db)  # they fail while being prepared: nothing is written
    with pytest.raises(sqlite3.OperationalError, match="no such function"):
        conn.execute(statement)


def test_every_table_reads_on_a_plain_read_only_connection(scenario):
    conn = plain(scenario.library.metadata_db)
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    assert {"books", "data", "custom_column_1", "books_custom_column_1_link", "book_format_checksums"} <= set(tables)
    for table in tables:
        conn.execute(f'SELECT * FROM "{table}"').fetchall()
    # Views without calibre functions read as well; these are the ones an ETL might be tempted by.
    for view in ("tag_browser_authors", "tag_browser_tags", "tag_browser_custom_column_1"):
        conn.execute(f"SELECT * FROM {view}").fetchall()
    assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]


def test_meta_view_lists_authors_in_link_order_with_calibres_aggregates(scenario):
    conn = sqlite3.connect(scenario.library.metadata_db)

    class SortConcat:  # calibre's SortedConcatenate: values ordered by the given index, joined by ","
        def __init__(self):
            self.values = {}

        def step(self, index, value):
            self.values[index] = value

        def finalize(self):
            return ",".join(self.values[k] for k in sorted(self.values))

    class Concat:
        def __init__(self):
            self.values = []

        def step(self, value):
            self.values.append(value)

        def finalize(self):
            return ",".join(self.values)

    conn.create_aggregate("sortconcat", 2, SortConcat)
    conn.create_aggregate("concat", 1, Concat)
    assert conn.execute("SELECT authors, formats FROM meta WHERE id = 10").fetchone() == (
        "Terry Pratchett,Neil Gaiman", "EPUB")
    assert conn.execute("SELECT authors, formats FROM meta WHERE id = 3").fetchone() == ("Susanna Clarke", "EPUB,PDF")


PER_BOOK_TABLES = ("books_authors_link", "books_publishers_link", "books_ratings_link", "books_series_link",
                   "books_tags_link", "books_languages_link", "data", "comments", "identifiers")


def rows_of_book(conn, table, book_id):
    return conn.execute(f"SELECT count(*) FROM {table} WHERE book = ?", (book_id,)).fetchone()[0]


def test_deleting_a_book_cascades_as_calibres_triggers_do(tmp_path):
    library = build_scenario(tmp_path).library
    conn = sqlite3.connect(library.metadata_db)  # deleting calls no calibre function
    assert all(rows_of_book(conn, table, 1) for table in PER_BOOK_TABLES)
    conn.execute("DELETE FROM books WHERE id = 1")
    assert [table for table in PER_BOOK_TABLES if rows_of_book(conn, table, 1)] == []
    # calibre deletes custom values through a TEMP trigger of its own connection: the file has none.
    assert rows_of_book(conn, "books_custom_column_2_link", 1) == 1  # #ko_status
    # These two cascade by foreign key, which only connections that enable it (calibre's, CWA's) enforce.
    assert (rows_of_book(conn, "book_format_checksums", 1), rows_of_book(conn, "books_pages_link", 1)) == (3, 1)


def test_checksums_and_pages_rows_cascade_under_foreign_keys(tmp_path):
    library = build_scenario(tmp_path).library
    conn = sqlite3.connect(library.metadata_db, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM books WHERE id = 1")
    assert (rows_of_book(conn, "book_format_checksums", 1), rows_of_book(conn, "books_pages_link", 1)) == (0, 0)


def test_foreign_key_triggers_guard_link_rows_and_categories(scenario, tmp_path):
    copy = tmp_path / "metadata.db"
    shutil.copy(scenario.library.metadata_db, copy)
    conn = sqlite3.connect(copy)
    with pytest.raises(sqlite3.IntegrityError, match="book not in books"):
        conn.execute("INSERT INTO data (book, format, uncompressed_size, name) VALUES (999, 'EPUB', 1, 'x')")
    with pytest.raises(sqlite3.IntegrityError, match="author not in authors"):
        conn.execute("INSERT INTO books_authors_link (book, author) VALUES (1, 999)")
    with pytest.raises(sqlite3.IntegrityError, match="authors is still referenced"):
        conn.execute("DELETE FROM authors")


@pytest.mark.parametrize("version", [25, 26, 27])
def test_schema_versions(tmp_path, version):
    library = build_scenario(tmp_path, user_version=version).library
    conn = plain(library.metadata_db)

    def columns(table):
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]

    assert conn.execute("PRAGMA user_version").fetchone() == (version,)
    assert conn.execute("PRAGMA application_id").fetchone() == (CALIBRE_APPLICATION_ID if version == 27 else 0,)
    assert ({"isbn", "lccn", "flags"} & set(columns("books"))) == ({"isbn", "lccn", "flags"} if version < 27 else set())
    assert ("link" in columns("series")) == (version >= 26)
    assert ("link" in columns("custom_column_1")) == (version >= 26)
    assert bool(columns("books_pages_link")) == (version == 27)
    # Identifiers hold the ISBN in every version; books.isbn, where it exists, stays empty.
    assert conn.execute("SELECT val FROM identifiers WHERE book = 1 AND type = 'isbn'").fetchone() == (
        "9780441478125",)


# --- what the library holds --------------------------------------------------------------


def test_library_contents_read_back_as_calibre_stores_them(scenario):
    conn = plain(scenario.library.metadata_db)
    authors = conn.execute(
        "SELECT a.name FROM books_authors_link l JOIN authors a ON a.id = l.author WHERE l.book = ? ORDER BY l.id",
        (10,)).fetchall()
    assert authors == [("Terry Pratchett",), ("Neil Gaiman",)]
    assert conn.execute("SELECT author_sort FROM books WHERE id = 10").fetchone() == (
        "Pratchett, Terry & Gaiman, Neil",)
    assert conn.execute("SELECT name FROM authors WHERE name LIKE 'Rooksby%'").fetchone() == ("Rooksby| Rikky",)
    assert conn.execute("SELECT pubdate FROM books WHERE id = 5").fetchone() == (UNKNOWN_PUBDATE,)
    assert [r for (r,) in conn.execute("SELECT rating FROM ratings ORDER BY rating")] == [0, 7, 9, 10]
    assert conn.execute(
        "SELECT group_concat(code) FROM (SELECT g.lang_code AS code FROM books_languages_link l"
        " JOIN languages g ON g.id = l.lang_code WHERE book = 16 ORDER BY item_order)").fetchone() == ("ita,deu",)
    assert conn.execute("SELECT name, series_index FROM books JOIN books_series_link s ON s.book = books.id"
                        " JOIN series ON series.id = s.series WHERE books.id = 12").fetchone() == ("Discworld", 8.0)
    assert conn.execute("SELECT uuid FROM library_id").fetchall() == [("8f1d5c4e-2b7a-4c1e-9d3f-6a5b4c3d2e1f",)]


def test_custom_columns_are_stored_by_datatype(scenario):
    conn = plain(scenario.library.metadata_db)
    numbers = {label: (number, datatype, normalized)
               for number, label, datatype, normalized in conn.execute(
                   "SELECT id, label, datatype, normalized FROM custom_columns")}
    assert set(numbers) == {column.label for column in SCENARIO_COLUMNS}

    def values(label, book_id):
        number, _datatype, normalized = numbers[label]
        if normalized:
            return conn.execute(
                f"SELECT v.value, l.* FROM books_custom_column_{number}_link l JOIN custom_column_{number} v"
                f" ON v.id = l.value WHERE l.book = ? ORDER BY l.id", (book_id,)).fetchall()
        return conn.execute(f"SELECT value FROM custom_column_{number} WHERE book = ?", (book_id,)).fetchall()

    assert values("ko_md5", 2)[0][0] == scenario.stat_books[1].md5
    assert [row[0] for row in values("genre", 1)] == ["Science Fiction", "Classics"]
    assert values("reading_order", 1)[0][0] == "Reading List" and values("reading_order", 1)[0][-1] == 3.5
    assert values("shelf", 1)[0][0] == "Owned"
    assert values("ko_rating", 1)[0][0] == 8
    assert values("ko_progint", 1) == [(100,)]
    assert values("ko_progfloat", 2) == [(0.45,)]
    assert values("ko_statusbool", 2) == [(0,)]
    assert values("ko_start", 1) == [("2024-02-01 20:00:00+00:00",)]
    assert values("ko_review", 1) == [("Ice and politics.",)]
    number = numbers["formats"][0]
    assert conn.execute(f"SELECT count(*) FROM custom_column_{number}").fetchone() == (0,)


@pytest.mark.parametrize("split", [False, True])
def test_format_files_are_where_the_database_says(tmp_path, split):
    scenario = build_scenario(tmp_path, split=split)
    library = scenario.library
    assert (library.books_dir != library.metadata_db.parent) == split
    conn = plain(library.metadata_db)
    rows = conn.execute("SELECT data.book, books.path, data.name, data.format, data.uncompressed_size"
                        " FROM data JOIN books ON books.id = data.book").fetchall()
    contents = {(b.id, f.format): f.content for b in scenario.calibre_books for f in b.formats}
    assert len(rows) == len(contents)
    for book_id, path, name, fmt, _size in rows:
        assert (library.books_dir / path / f"{name}.{fmt.lower()}").read_bytes() == contents[(book_id, fmt)]
    if split:
        assert [p.name for p in library.metadata_db.parent.iterdir()] == ["metadata.db"]
    # Book 16's folder predates a title edit: rebuilding the path from the title would miss it.
    path, title, author = conn.execute(
        "SELECT path, title, name FROM books JOIN books_authors_link l ON l.book = books.id"
        " JOIN authors ON authors.id = l.author WHERE books.id = 16").fetchone()
    assert path != calibre_book_path(16, title, author)
    # Book 4's recorded size is stale, as in real libraries.
    size = next(size for book_id, *_rest, size in rows if book_id == 4)
    assert size != len(contents[(4, "EPUB")])


def test_cover_files_match_has_cover(scenario):
    conn = plain(scenario.library.metadata_db)
    for path, has_cover in conn.execute("SELECT path, has_cover FROM books"):
        assert (scenario.library.books_dir / path / "cover.jpg").exists() == bool(has_cover)


# --- KOReader's md5 and the scenario's claims -------------------------------------------


def test_partial_md5_of_known_files(tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert partial_md5_of_file(empty) == koreader_partial_md5(b"") == EMPTY_FILE_MD5
    # The fact sheet's 5 MB example: eight samples, 8 KiB hashed, the last at 4 MiB.
    content = bytes(range(256)) * (5_000_000 // 256) + b"tail"
    samples = [(0, 1024), (1024, 2048), (4096, 5120), (16384, 17408), (65536, 66560), (262144, 263168),
               (1048576, 1049600), (4194304, 4195328)]
    expected = hashlib.md5(b"".join(content[a:b] for a, b in samples)).hexdigest()
    assert koreader_partial_md5(content) == expected


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([1, 1023, 1024, 1025, 4096, 4097, 16384, 70_000, 262_144, 262_145, 1_048_577]),
       st.integers(0, 2**32))
def test_partial_md5_of_bytes_equals_koreaders_file_reading(tmp_path_factory, size, seed):
    content = (seed.to_bytes(5, "big") * (size // 5 + 1))[:size]
    path = tmp_path_factory.mktemp("md5") / "book"
    path.write_bytes(content)
    assert koreader_partial_md5(content) == partial_md5_of_file(path)


def test_statistics_md5s_are_the_device_files(scenario):
    conn = sqlite3.connect(scenario.statistics_path)
    rows = dict(conn.execute("SELECT id, md5 FROM book").fetchall())
    assert rows == {book.id: partial_md5_of_file(scenario.device_files[book.id]) for book in scenario.stat_books}
    for book in scenario.stat_books:
        sidecar = sidecar_path(scenario.device_files[book.id]).read_text(encoding="utf-8")
        assert f'["partial_md5_checksum"] = "{book.md5}"' in sidecar
        identifiers = scenario.sidecar_identifiers.get(book.id, "")
        assert f'["identifiers"] = "{identifiers.replace(chr(10), chr(92) + chr(10))}"' in sidecar


def library_evidence(scenario, stat_book):
    """Which rules have evidence for which Calibre books, straight from the files and tables."""
    conn = plain(scenario.library.metadata_db)
    md5 = stat_book.md5
    ko_md5_column = conn.execute("SELECT id FROM custom_columns WHERE label = 'ko_md5'").fetchone()[0]
    file_md5 = set()
    for book_id, path, name, fmt in conn.execute(
            "SELECT book, path, name, format FROM data JOIN books ON books.id = data.book"):
        if partial_md5_of_file(scenario.library.format_path(path, name, fmt)) == md5:
            file_md5.add(book_id)
    identifiers = scenario.sidecar_identifiers.get(stat_book.id, "")
    by_identifier = {book_id for book_id, book_uuid in conn.execute("SELECT id, uuid FROM books")
                     if f"uuid:{book_uuid}" in identifiers.split("\n")}
    by_identifier |= {book_id for book_id, isbn in conn.execute("SELECT book, val FROM identifiers WHERE type = 'isbn'")
                      if isbn in identifiers.replace("-", "")}
    return {
        "cwa_checksum": {b for (b,) in conn.execute("SELECT book FROM book_format_checksums WHERE checksum = ?",
                                                    (md5,))},
        "ko_md5_column": {b for (b,) in conn.execute(
            f"SELECT book FROM books_custom_column_{ko_md5_column}_link l JOIN custom_column_{ko_md5_column} v"
            " ON v.id = l.value WHERE v.value = ?", (md5,))},
        "file_md5": file_md5 if md5 != EMPTY_FILE_MD5 else set(),
        "identifier": by_identifier,
    }


def test_each_expected_match_has_its_evidence_and_no_earlier_rule_decides(scenario):
    """Rules run in order; one that finds several books narrows the candidates for the next."""
    assert set(RULES) == {match.rule for match in scenario.expected.values() if match}
    assert set(scenario.expected) == {book.id for book in scenario.stat_books}
    stat_books = {book.id: book for book in scenario.stat_books}
    for stat_id, match in scenario.expected.items():
        evidence = library_evidence(scenario, stat_books[stat_id])
        candidates = {book.id for book in scenario.calibre_books}
        for rule in RULES[:RULES.index(match.rule)] if match else RULES[:4]:
            found = evidence[rule] & candidates
            assert len(found) != 1, (stat_id, rule, evidence)
            candidates = found or candidates
        if match and match.rule != "title_author":
            assert evidence[match.rule] & candidates == {match.calibre_id}, (stat_id, evidence)


def test_embedded_metadata_copies_differ_from_the_library_file(scenario):
    """Exports with metadata embedded (rules 1, 2 and the uuid case) are not byte-identical."""
    library_files = {b.id: [f.content for f in b.formats] for b in scenario.calibre_books}
    for stat_id in (1, 2, 5):
        device = scenario.device_files[stat_id].read_bytes()
        calibre_id = scenario.expected[stat_id].calibre_id
        assert all(koreader_partial_md5(device) != koreader_partial_md5(c) for c in library_files[calibre_id])


def test_scenario_holds_ambiguous_books(scenario):
    conn = plain(scenario.library.metadata_db)
    twins = conn.execute(
        "SELECT group_concat(id) FROM (SELECT id, title, author_sort FROM books ORDER BY id)"
        " GROUP BY lower(title), author_sort HAVING count(*) > 1 ORDER BY min(id)").fetchall()
    assert twins == [("6,7",), ("13,14",)]
    kafka = [f.content for b in scenario.calibre_books if b.id in (13, 14) for f in b.formats]
    assert kafka[0] == kafka[1]


def test_scenario_is_deterministic(tmp_path):
    first, again, other = (build_scenario(tmp_path / name, seed=seed)
                           for name, seed in (("a", 3), ("b", 3), ("c", 4)))

    def dump(scenario):
        return list(sqlite3.connect(scenario.library.metadata_db).iterdump())

    assert dump(first) == dump(again)
    assert [b.md5 for b in first.stat_books] == [b.md5 for b in again.stat_books]
    assert first.expected == again.expected == other.expected
    assert [b.md5 for b in first.stat_books] != [b.md5 for b in other.stat_books]


# --- journal mode ----------------------------------------------------------------------


def test_wal_library_keeps_its_last_transaction_in_the_wal_file(tmp_path):
    library = one_book_library(tmp_path / "lib", wal=True, checkpoint=False)
    try:
        wal_file = Path(f"{library.metadata_db}-wal")
        assert wal_file.stat().st_size > 0
        assert plain(library.metadata_db).execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert plain(library.metadata_db).execute("SELECT title FROM books").fetchall() == [("The Hobbit",)]
        # A copy of metadata.db alone silently misses what is still in -wal.
        alone = tmp_path / "alone.db"
        shutil.copy(library.metadata_db, alone)
        assert sqlite3.connect(alone).execute("SELECT name FROM sqlite_master WHERE name = 'books'").fetchall() == []
    finally:
        close_wal_writers()
    assert sqlite3.connect(library.metadata_db).execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_default_journal_mode_is_calibres_rollback_journal(tmp_path):
    library = one_book_library(tmp_path)
    assert plain(library.metadata_db).execute("PRAGMA journal_mode").fetchone() == ("delete",)


def test_library_without_cwa_has_no_checksum_table(tmp_path):
    library = one_book_library(tmp_path, cwa=False)
    assert plain(library.metadata_db).execute(
        "SELECT name FROM sqlite_master WHERE name = 'book_format_checksums'").fetchall() == []


# --- the command line -------------------------------------------------------------------


def test_cli_writes_a_demo_library_device_and_statistics_file(tmp_path):
    result = subprocess.run([sys.executable, "-m", "samples.calibre", str(tmp_path), "--split", "--wal"],
                            capture_output=True, text=True, check=True, cwd=ROOT)
    assert "statistics book  1 -> (1, 'cwa_checksum')" in result.stdout
    assert (tmp_path / "library" / "metadata.db").exists()
    assert (tmp_path / "books").is_dir() and (tmp_path / "device").is_dir()
    assert sqlite3.connect(tmp_path / "statistics.sqlite3").execute("SELECT count(*) FROM book").fetchone() == (19,)
    assert plain(tmp_path / "library" / "metadata.db").execute("PRAGMA journal_mode").fetchone() == ("wal",)
