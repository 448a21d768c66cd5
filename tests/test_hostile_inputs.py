"""Odd but possible data in the optional inputs (Calibre, sidecars): a bad value is a skipped or cleaned
value, counted, and the night goes on; every storage class and extreme size, in every field read."""

import sqlite3

import pytest
from conftest import query
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bookhelper.calibre import IDENTIFIER_LENGTH, extract_calibre_library
from bookhelper.luadata import parse_lua_data
from bookhelper.sidecars import SidecarFile, sidecar_payload, transform_sidecar
from samples.calibre import library_for_statistics, register_calibre_functions
from samples.sidecars import dump_lua
from samples.statistics import Book, write_statistics_file

T0 = 1_700_000_000
MD5 = "ab" * 16


@pytest.fixture
def stats(tmp_path):
    books = [Book(1, "Stoner", "John Williams", 200, MD5), Book(2, "Dune", "Frank Herbert", 500, "cd" * 16)]
    rows = [(1, page, T0 + 60 * page, 50, 200) for page in range(1, 30)]
    rows += [(2, page, T0 + 86400 + 60 * page, 40, 500) for page in range(1, 20)]
    return write_statistics_file(tmp_path / "statistics.sqlite3", books, rows)


# Calibre ---------------------------------------------------------------------------------------------------


def hostile_library(directory, stats):
    """The statistics' books in a library whose first book carries what a real library can hold: a NUL in a
    tag and in its publisher, identifiers of 9,000 characters, invalid UTF-8 in a tag, a NUL in its folder
    and its file's name."""
    library = library_for_statistics(directory, stats)
    conn = sqlite3.connect(library.metadata_db)
    register_calibre_functions(conn)
    try:
        conn.execute("INSERT INTO tags (name) VALUES ('sci' || char(0) || 'fi')")
        conn.execute("INSERT INTO tags (name) VALUES (CAST(X'4e6f7665ff6c' AS TEXT))")  # "Nove\xffl"
        conn.execute("INSERT INTO books_tags_link (book, tag) SELECT 1, id FROM tags WHERE name LIKE 'sci%' "
                     "OR name LIKE 'Nove%'")
        conn.execute("UPDATE publishers SET name = 'Vintage' || char(0) || ' Books' "
                     "WHERE id = (SELECT publisher FROM books_publishers_link WHERE book = 1)")
        conn.execute("INSERT INTO identifiers (book, type, val) VALUES (1, 'goodreads', ?)", ("9" * 9000,))
        conn.execute("UPDATE identifiers SET val = ? WHERE book = 2 AND type = 'isbn'", ("978" + "0" * 8997,))
        conn.execute("UPDATE books SET path = path || char(0) || 'x' WHERE id = 1")
        conn.execute("INSERT INTO data (book, format, uncompressed_size, name) VALUES (1, 'PDF', 1, 'a' || char(0))")
        conn.commit()
    finally:
        conn.close()
    return library


def test_bad_values_in_a_calibre_library_are_cleaned_or_skipped_and_counted(tmp_path, etl, database_url, stats):
    library = hostile_library(tmp_path / "calibre", stats)

    result = etl(stats, "--calibre-library", library.metadata_db.parent)

    assert result.returncode == 0, result.stderr
    assert "Calibre: skipped or cleaned 7 values (NUL removed: 4, identifier too long: 2, invalid UTF-8, " \
           "replaced: 1)" in result.stderr
    tags = query(database_url, """
        SELECT k.book_key, g.name FROM book_tags t JOIN tags g USING (tag_id) JOIN book_keys k USING (book_id)
        WHERE g.name IN ('scifi', 'Nove\ufffdl') ORDER BY 2""")
    assert tags == [(f"md5:{MD5}", "Nove\ufffdl"), (f"md5:{MD5}", "scifi")]
    assert query(database_url, "SELECT publisher FROM book_calibre c JOIN book_keys k USING (book_id) "
                               "WHERE k.book_key = %s", (f"md5:{MD5}",)) == [("Vintage Books",)]
    assert query(database_url, "SELECT max(length(value)) <= %s FROM book_identifiers", (IDENTIFIER_LENGTH,)) == [
        (True,)]
    assert query(database_url, "SELECT count(*) FROM book_calibre") == [(2,)]
    assert query(database_url, "SELECT count(*) FROM reading_sessions") == [(2,)]


STORAGE_CLASSES = {
    "null": None, "integer": -(2**63), "real": 1e308, "blob": b"\x00\xff\xfe", "empty": "",
    "huge": "x" * 200_000, "invalid UTF-8": "CAST(X'c328ff' AS TEXT)", "NUL": "'a' || char(0) || 'b'",
}
# Every value the extraction reads: (table, column, the row's condition).
CALIBRE_FIELDS = [
    ("books", "title", "id = 1"), ("books", "uuid", "id = 1"), ("books", "pubdate", "id = 1"),
    ("books", "series_index", "id = 1"), ("books", "path", "id = 1"), ("books", "last_modified", "id = 1"),
    ("authors", "name", "id = 1"), ("publishers", "name", "id = 1"), ("series", "name", "1 = 1"),
    ("tags", "name", "id = 1"), ("identifiers", "type", "book = 1"), ("identifiers", "val", "book = 1"),
    ("languages", "lang_code", "id = 1"), ("ratings", "rating", "1 = 1"), ("data", "format", "book = 1"),
    ("data", "name", "book = 1"), ("book_format_checksums", "checksum", "book = 2"),
]


@pytest.fixture(scope="module")
def pristine_library(tmp_path_factory):
    directory = tmp_path_factory.mktemp("calibre")
    books = [Book(1, "Stoner", "John Williams", 200, MD5), Book(2, "Dune", "Frank Herbert", 500, "cd" * 16)]
    stats = write_statistics_file(directory / "statistics.sqlite3", books, [(1, 1, T0, 50, 200)])
    return library_for_statistics(directory / "library", stats).metadata_db.parent


@pytest.mark.parametrize("table, column, where", CALIBRE_FIELDS)
def test_any_storage_class_in_any_calibre_field_is_read_without_failing(tmp_path, pristine_library, table, column,
                                                                       where):
    for kind, value in STORAGE_CLASSES.items():
        library = tmp_path / kind
        library.mkdir()
        (library / "metadata.db").write_bytes((pristine_library / "metadata.db").read_bytes())
        conn = sqlite3.connect(library / "metadata.db")
        register_calibre_functions(conn)
        try:
            if isinstance(value, str) and value.startswith(("CAST", "'")):
                conn.execute(f"UPDATE {table} SET {column} = {value} WHERE {where}")
            else:
                conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", (value,))
        except (sqlite3.IntegrityError, sqlite3.OperationalError):
            continue  # calibre's constraints (or its trigger functions) keep this value out of any library
        finally:
            conn.commit()
            conn.close()
        workdir = tmp_path / f"{kind}-work"
        workdir.mkdir()

        calibre = extract_calibre_library(library, workdir)

        assert sorted(calibre.books) == [1, 2], kind
        for book in calibre.books.values():
            texts = [book.title, book.uuid, book.publisher, book.series, *book.authors, *book.tags,
                     *book.languages, *(part for pair in book.identifiers for part in pair),
                     *(part for pair in book.formats for part in pair)]
            assert all(isinstance(text, str) and "\x00" not in text for text in texts if text is not None), kind
            assert all(len(scheme) + len(value) <= IDENTIFIER_LENGTH for scheme, value in book.identifiers), kind
            assert book.rating is None or 1 <= book.rating <= 5, kind


# Sidecars --------------------------------------------------------------------------------------------------

lua_keys = st.one_of(st.integers(-5, 5), st.text(max_size=6))
lua_scalars = st.one_of(st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                        st.booleans(), st.text(max_size=40), st.just("x" * 5_000), st.just("a\x00b"),
                        st.sampled_from(["2024-02-30", "2024-03-01 21:15:00", "9999-99-99 99:99:99", "complete"]))
lua_values = st.recursive(lua_scalars, lambda children: st.dictionaries(lua_keys, children, max_size=4),
                          max_leaves=12)
SIDECAR_FIELDS = ("doc_props", "doc_pages", "percent_finished", "summary", "annotations", "highlight",
                  "bookmarks", "stats", "partial_md5_checksum")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(SIDECAR_FIELDS), lua_values, max_size=6),
       st.sampled_from(["annotations", "highlight", "bookmarks"]), lua_values)
def test_any_lua_data_in_any_sidecar_field_is_read_without_failing(fields, list_field, item):
    entry = {name: item for name in ("text", "notes", "note", "pos0", "pos1", "datetime", "datetime_updated",
                                     "chapter", "pageno", "page", "color", "drawer", "highlighted")}
    data = {"partial_md5_checksum": MD5, **fields}
    data.setdefault(list_field, {5: {1: entry}} if list_field == "highlight" else {1: entry})
    loaded = parse_lua_data(b"return " + dump_lua(data))

    book = transform_sidecar(SidecarFile("Books/x.sdr/metadata.epub.lua", "h", T0, loaded))

    if book is not None:
        payload = sidecar_payload([book])
        assert "\\u0000" not in payload
        assert book.doc_pages is None or 1 <= book.doc_pages <= 2**31 - 1
        assert all(h.page is None or 0 <= h.page <= 2**31 - 1 for h in book.highlights)


def test_a_pdf_position_with_mixed_keys_loads(tmp_path, etl, database_url, stats):
    position = {1: 12.5, 2: 30, "page": 4, "x": 1.5}
    data = {"partial_md5_checksum": MD5, "annotations": {1: {"datetime": "2024-03-01 21:15:00", "text": "quote",
                                                             "pos0": position, "pos1": position, "pageno": 4}}}
    sidecar = tmp_path / "device" / "Books" / "Stoner.sdr" / "metadata.pdf.lua"
    sidecar.parent.mkdir(parents=True)
    sidecar.write_bytes(b"return " + dump_lua(data))

    result = etl(stats, "--sidecar-dir", tmp_path / "device")

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT pos0, pos1 FROM highlights") == [
        ('{"1": 12.5, "2": 30, "page": 4, "x": 1.5}', '{"1": 12.5, "2": 30, "page": 4, "x": 1.5}')]
