"""A bad value is a skipped row, never a failed night.

Every value that crosses from the statistics file into PostgreSQL is range-checked first: a bad page
row is skipped and counted by reason, a bad book field becomes NULL. One named test per value that
once made a run exit 70, then a property: a fuzzer that writes values of every SQLite storage class
and of extreme size into every column of ``book`` and ``page_stat_data``, next to two good books whose
warehouse rows must be exactly those of a file holding the good books alone.

Files are written in KOReader's layout (``samples.statistics.schema_script``), with raw values inserted through
sqlite3 so that the storage class of each value is the fuzzer's choice.
"""

import hashlib
import math
import re
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ISOLATED_SETTINGS, query, reset_warehouse
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouse import STATE_QUERIES

import extract_koreader_stats as etl_module
from samples.statistics import CURRENT_VERSION, Book, schema_script

T0 = 1_700_000_000
NOW = int(time.time())
MAX_INTEGER = 2**31 - 1
EARLIEST_START = 946684800  # 2000-01-01
DEVICE = "boox-palma-2"


@pytest.fixture
def database_url(emptied_module_database):
    """This module's database, emptied for each test."""
    return emptied_module_database


def md5_of(text):
    return hashlib.md5(text.encode()).hexdigest()


def cjk_name(count, seed=1):
    """``count`` distinct CJK characters in no repeating pattern: PostgreSQL cannot compress the name
    into an index entry (a repeated character would be compressed and fit)."""
    return "".join(chr(0x4E00 + (seed + i * 7919) % 20000) for i in range(count))


GOOD_BOOKS = [
    Book(1, "Good Omens", "Terry Pratchett\nNeil Gaiman", 120, md5_of("good-1"), "N/A", "en", T0 + 20_000),
    Book(2, "Stoner", "John Williams", 40, md5_of("good-2"), "Campus #1", "de", T0 + 100_000),
]
GOOD_KEYS = [f"md5:{book.md5}" for book in GOOD_BOOKS]
# Book 1: two sittings. Book 2: read to the end, then a re-read begins.
GOOD_ROWS = (
    [(1, p, T0 + 60 * p, 45, 120) for p in range(1, 9)]
    + [(1, p, T0 + 10_000 + 60 * p, 50, 120) for p in range(9, 15)]
    + [(2, p, T0 + 3_000 + 30 * p, 20, 40) for p in range(1, 41)]
    + [(2, p, T0 + 90_000 + 30 * p, 25, 40) for p in range(1, 6)]
)

BOOK_COLUMNS = ("id", "title", "authors", "notes", "last_open", "highlights", "pages", "series", "language", "md5",
                "total_read_time", "total_read_pages")
PAGE_COLUMNS = ("id_book", "page", "start_time", "duration", "total_pages")


@dataclass(frozen=True)
class Raw:
    """A value written as an SQL expression, e.g. text that is not UTF-8: CAST(x'ff' AS TEXT)."""

    sql: str


def invalid_text(data: bytes) -> Raw:
    return Raw(f"CAST(x'{data.hex()}' AS TEXT)")


def book_values(book: Book, **fields):
    """A good book as a row of KOReader's book table, with some fields replaced."""
    values = {"id": book.id, "title": book.title, "authors": book.authors, "notes": 0, "last_open": book.last_open,
              "highlights": 0, "pages": book.pages, "series": book.series, "language": book.language,
              "md5": book.md5, "total_read_time": 0, "total_read_pages": 0}
    values.update(fields)
    return tuple(values[column] for column in BOOK_COLUMNS)


def insert(conn, table, columns, values) -> bool:
    """Insert one raw row; False when SQLite refuses it (a UNIQUE or NOT NULL constraint, a full rowid)."""
    expressions, params = [], []
    for value in values:
        if isinstance(value, Raw):
            expressions.append(value.sql)
        else:
            expressions.append("?")
            params.append(value)
    try:
        conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(expressions)})", params)
    except sqlite3.Error:
        return False
    return True


def raw_file(path, books, rows):
    """A statistics file in KOReader's 20221111 layout holding exactly these raw book and page rows."""
    conn = sqlite3.connect(path)
    conn.executescript(schema_script(CURRENT_VERSION))
    for values in books:
        assert insert(conn, "book", BOOK_COLUMNS, values), values
    for values in rows:
        assert insert(conn, "page_stat_data", PAGE_COLUMNS, values), values
    conn.commit()
    conn.close()
    return Path(path)


def good_file(path, extra_books=(), extra_rows=()):
    return raw_file(path, [book_values(b) for b in GOOD_BOOKS] + list(extra_books), GOOD_ROWS + list(extra_rows))


def expected_page_views(rows, keys):
    """page_views rows (as warehouse.STATE_QUERIES shows them) for page rows (id_book, page, start, dur, total)."""
    return sorted((keys[r[0]], r[1], r[2], r[3], r[4], DEVICE) for r in rows)


GOOD_KEY_OF = {book.id: f"md5:{book.md5}" for book in GOOD_BOOKS}
GOOD_BOOK_ROWS = [
    ("md5:" + b.md5, b.title, b.authors.split("\n")[0], b.md5, b.pages, b.language,
     None if b.series == "N/A" else b.series, "koreader")
    for b in GOOD_BOOKS
]


def skip_record(url):
    """(rows_read, rows_skipped, skipped_by_reason) of the one run in the warehouse."""
    (row,) = query(url, "SELECT rows_read, rows_skipped, skipped_by_reason FROM etl_runs")
    return row


def assert_one_skipped_row(result, url, rows_read):
    """Exactly one page row skipped, under one reason, in the log line and in etl_runs. Returns the reason."""
    read, skipped, reasons = skip_record(url)
    assert (read, skipped) == (rows_read, 1)
    assert isinstance(reasons, dict) and list(reasons.values()) == [1], reasons
    (reason,) = reasons
    lines = [line for line in result.stderr.splitlines() if "invalid page rows" in line]
    assert len(lines) == 1, result.stderr
    assert re.search(rf"skipped 1 invalid page rows \({re.escape(reason)}: 1\)$", lines[0]), lines[0]
    return reason


def assert_good_run(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "[ERROR]" not in result.stderr


# Named cases: each once exited 70 -----------------------------------------------------------------


@pytest.mark.parametrize("page", [2**31, 2**63 - 1], ids=["2**31", "2**63-1"])
def test_a_page_number_beyond_postgresqls_integer_is_a_skipped_row(tmp_path, etl, database_url, page):
    stats = good_file(tmp_path / "statistics.sqlite3", extra_rows=[(1, page, T0 + 50_000, 30, 120)])

    result = etl(stats)

    assert_good_run(result)
    assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(GOOD_ROWS, GOOD_KEY_OF)
    reason = assert_one_skipped_row(result, database_url, len(GOOD_ROWS) + 1)
    assert "page" in reason


@pytest.mark.parametrize("start_time", [2**53 + 1, 2**63 - 1, -(2**63)], ids=["2**53+1", "2**63-1", "-2**63"])
def test_a_start_time_beyond_any_timestamp_is_a_skipped_row(tmp_path, etl, database_url, start_time):
    """Found by the property: a skipped row's start_time still reached PostgreSQL (exit 70)."""
    stats = good_file(tmp_path / "statistics.sqlite3", extra_rows=[(1, 20, start_time, 30, 120)])

    result = etl(stats)

    assert_good_run(result)
    assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(GOOD_ROWS, GOOD_KEY_OF)
    assert "start_time" in assert_one_skipped_row(result, database_url, len(GOOD_ROWS) + 1)


def test_huge_durations_of_a_book_under_two_ids_never_overflow_its_fingerprint(tmp_path, etl, database_url):
    """Found by the property: a book's fingerprint sums the durations of all its rows (skipped ones too,
    so that their change is seen), and the sum over two ids of one book passed PostgreSQL's bigint (exit 70)."""
    twin = book_values(GOOD_BOOKS[0], id=3, title="Good Omens (a copy)")
    stats = good_file(tmp_path / "statistics.sqlite3", extra_books=[twin],
                      extra_rows=[(3, 20, T0 + 50_000, 2**63 - 1, 120)])

    result = etl(stats)

    assert_good_run(result)
    assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(GOOD_ROWS, GOOD_KEY_OF)
    assert "duration" in assert_one_skipped_row(result, database_url, len(GOOD_ROWS) + 1)
    again = etl(stats)
    assert_good_run(again)
    assert query(database_url, "SELECT books_changed FROM etl_runs ORDER BY run_id") == [(2,), (0,)]


@pytest.mark.parametrize("total_pages", [2**31, 2**63 - 1], ids=["2**31", "2**63-1"])
def test_a_total_pages_beyond_postgresqls_integer_never_fails_the_run(tmp_path, etl, database_url, total_pages):
    """The row is skipped with its reason, or (the documented 'none stored') lands with total_pages 0."""
    bad = (1, 20, T0 + 50_000, 30, total_pages)
    stats = good_file(tmp_path / "statistics.sqlite3", extra_rows=[bad])

    result = etl(stats)

    assert_good_run(result)
    views = query(database_url, STATE_QUERIES["page_views"])
    read, skipped, _reasons = skip_record(database_url)
    if skipped:
        assert views == expected_page_views(GOOD_ROWS, GOOD_KEY_OF)
        assert "page" in assert_one_skipped_row(result, database_url, len(GOOD_ROWS) + 1)
    else:
        assert views == expected_page_views(GOOD_ROWS + [bad[:4] + (0,)], GOOD_KEY_OF)
        assert read == len(GOOD_ROWS) + 1


@pytest.mark.parametrize("pages", [2**31, 2**63 - 1], ids=["2**31", "2**63-1"])
def test_a_book_with_more_pages_than_postgresqls_integer_lands_without_a_page_count(
    tmp_path, etl, database_url, pages
):
    book = Book(3, "Moths of the Fens", "Rooksby, Rikky", pages, md5_of("moths"), "N/A", "en", T0)
    rows = [(3, p, T0 + 200_000 + 40 * p, 30, 300) for p in range(1, 6)]
    stats = good_file(tmp_path / "statistics.sqlite3", [book_values(book)], rows)

    result = etl(stats)

    assert_good_run(result)
    assert query(database_url, STATE_QUERIES["books"]) == sorted(
        GOOD_BOOK_ROWS + [("md5:" + book.md5, book.title, "Rooksby, Rikky", book.md5, None, "en", None, "koreader")]
    )
    keys = {**GOOD_KEY_OF, 3: "md5:" + book.md5}
    assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(GOOD_ROWS + rows, keys)
    assert skip_record(database_url)[1] == 0


@pytest.mark.parametrize(
    "last_open, storage",
    [(10**15, "integer"), (1.7e12, "integer"), (1_700_000_000_123.5, "real")],
    ids=["10**15", "1.7e12 (SQLite stores it as INTEGER)", "milliseconds as REAL"],
)
def test_a_last_open_far_in_the_future_or_in_milliseconds_becomes_null(
    tmp_path, etl, database_url, last_open, storage
):
    book = Book(3, "Piranesi", "Susanna Clarke", 250, md5_of("piranesi"), "N/A", "en", last_open)
    rows = [(3, p, T0 + 200_000 + 40 * p, 30, 250) for p in range(1, 6)]
    stats = good_file(tmp_path / "statistics.sqlite3", [book_values(book)], rows)
    with sqlite3.connect(stats) as conn:
        assert conn.execute("SELECT typeof(last_open) FROM book WHERE id = 3").fetchone() == (storage,)

    result = etl(stats)

    assert_good_run(result)
    assert query(
        database_url, "SELECT book_key, extract(year FROM last_open_at) FROM book_keys WHERE title = 'Piranesi'"
    ) == [("md5:" + book.md5, None)]
    assert query(database_url, STATE_QUERIES["books"]) == sorted(
        GOOD_BOOK_ROWS + [("md5:" + book.md5, "Piranesi", "Susanna Clarke", book.md5, 250, "en", None, "koreader")]
    )
    keys = {**GOOD_KEY_OF, 3: "md5:" + book.md5}
    assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(GOOD_ROWS + rows, keys)


def test_an_author_name_of_1000_cjk_characters_lands_whole_and_stays_unique(tmp_path, etl, database_url):
    long_name = cjk_name(1000)  # 3,000 bytes: more than a btree entry holds
    other_long_name = long_name[:-1] + "一"  # differs in its last character only
    assert len(long_name) == 1000 and len(long_name.encode()) > 2700 and other_long_name != long_name
    books = [
        Book(3, "こころ", long_name, 300, md5_of("kokoro"), "N/A", "ja", T0),
        Book(4, "門", "Ann Other\n" + long_name, 300, md5_of("mon"), "N/A", "ja", T0),
        Book(5, "それから", other_long_name, 300, md5_of("sorekara"), "N/A", "ja", T0),
    ]
    rows = [(b.id, p, T0 + 300_000 * b.id + 40 * p, 30, 300) for b in books for p in range(1, 4)]
    stats = good_file(tmp_path / "statistics.sqlite3", [book_values(b) for b in books], rows)
    keys = {b.id: "md5:" + b.md5 for b in books}

    for _ in range(2):  # a re-run of the same file adds nothing
        result = etl(stats)

        assert_good_run(result)
        names = query(database_url, "SELECT name FROM author_names ORDER BY name")
        assert sorted(n for (n,) in names) == sorted(
            ["Terry Pratchett", "Neil Gaiman", "John Williams", "Ann Other", long_name, other_long_name]
        )
        book_authors = query(database_url, STATE_QUERIES["book_authors"])
        assert [row for row in book_authors if row[0] in keys.values()] == sorted(
            [(keys[3], 1, long_name), (keys[4], 1, "Ann Other"), (keys[4], 2, long_name), (keys[5], 1, other_long_name)]
        )
        assert query(
            database_url,
            """SELECT count(DISTINCT ba.author_id) FROM book_authors ba JOIN book_keys b USING (book_id)
               WHERE b.book_key IN (%s, %s)""",
            (keys[3], keys[4]),
        ) == [(2,)]  # long_name is one author for both books, Ann Other the other
        assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(
            GOOD_ROWS + rows, {**GOOD_KEY_OF, **keys}
        )


NOT_UTF8 = Raw("CAST(x'ff00fe' AS TEXT)")


@pytest.mark.parametrize("field", ["last_open", "pages"])
def test_text_that_is_not_utf8_in_a_number_field_of_a_book_becomes_null(tmp_path, etl, database_url, field):
    book = Book(3, "Kafka am Strand", "Haruki Murakami", 500, md5_of("kafka"), "N/A", "de", T0)
    rows = [(3, p, T0 + 200_000 + 40 * p, 30, 500) for p in range(1, 6)]
    stats = good_file(tmp_path / "statistics.sqlite3", [book_values(book, **{field: NOT_UTF8})], rows)

    result = etl(stats)

    assert_good_run(result)
    key = "md5:" + book.md5
    page_count = None if field == "pages" else 500
    assert query(database_url, STATE_QUERIES["books"]) == sorted(
        GOOD_BOOK_ROWS + [(key, book.title, "Haruki Murakami", book.md5, page_count, "de", None, "koreader")]
    )
    last_open = None if field == "last_open" else T0
    assert query(
        database_url, "SELECT extract(epoch FROM last_open_at)::bigint FROM book_keys WHERE book_key = %s", (key,)
    ) == [(last_open,)]
    keys = {**GOOD_KEY_OF, 3: "md5:" + book.md5}
    assert query(database_url, STATE_QUERIES["page_views"]) == expected_page_views(GOOD_ROWS + rows, keys)


@pytest.mark.parametrize("column", PAGE_COLUMNS)
def test_text_that_is_not_utf8_in_a_page_row_is_a_skipped_row(tmp_path, etl, database_url, column):
    row = dict(zip(PAGE_COLUMNS, (1, 20, T0 + 50_000, 30, 120)))
    row[column] = NOT_UTF8
    stats = good_file(tmp_path / "statistics.sqlite3", extra_rows=[tuple(row.values())])

    result = etl(stats)

    assert_good_run(result)
    views = query(database_url, STATE_QUERIES["page_views"])
    if column == "total_pages" and not skip_record(database_url)[1]:  # as for a total_pages beyond 2**31-1
        assert views == expected_page_views(GOOD_ROWS + [(1, 20, T0 + 50_000, 30, 0)], GOOD_KEY_OF)
    else:
        assert views == expected_page_views(GOOD_ROWS, GOOD_KEY_OF)
        assert_one_skipped_row(result, database_url, len(GOOD_ROWS) + 1)


# The property -------------------------------------------------------------------------------------

INT_EXTREMES = [0, 1, -1, 5, MAX_INTEGER, 2**31, 2**31 + 1, -(2**31), -(2**31) - 1, 2**32, 2**53 + 1, 2**63 - 1,
                -(2**63), -(2**63) + 1, 7200, 7201, EARLIEST_START - 1, EARLIEST_START, T0, NOW + 40 * 86400,
                1_700_000_000_000, 10**15, 4102444800]
REAL_EXTREMES = [math.inf, -math.inf, math.nan, 1.7e12, 1_700_000_000_123.5, T0 + 0.5, 0.5, -0.0, 2147483648.5,
                 9.3e18, 1e19, 1e308, -1e308, 5e-324]
LONG_NAMES = [cjk_name(1000), cjk_name(1000, seed=2) + "\n" + cjk_name(1000), "Ann\n" + cjk_name(1000)]
TEXT_EXTREMES = ["", " ", "N/A", "\x00", "a\x00b", "Title\x00", "\n", "\n\n", "1", "2147483648", "１２", "1e999",
                 "nan", "本" * 1000, "x" * 300_000, "\ufeff", "\U0001f4da" * 100, "d41d8cd98f00b204e9800998ecf8427e",
                 "N/A\nN/A", "Rooksby, Rikky", "'; DROP TABLE books; --", "\\N", "a\tb\\c", *LONG_NAMES]
INVALID_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00\xff", b"abc\x80", b"\xfe" * 50_000]
BLOB_EXTREMES = [b"", b"\x00" * 16, bytes(200_000), b"\xff\xfe", b"12"]

any_value = st.one_of(
    st.none(),
    st.sampled_from(INT_EXTREMES) | st.integers(-(2**63), 2**63 - 1),
    st.sampled_from(REAL_EXTREMES) | st.floats(),
    st.sampled_from(TEXT_EXTREMES) | st.text(max_size=40),
    (st.sampled_from(INVALID_UTF8) | st.binary(min_size=1, max_size=40)).map(invalid_text),
    st.sampled_from(BLOB_EXTREMES) | st.binary(max_size=40),
)

OTHER_MD5S = [md5_of(f"other-{i}") for i in range(3)]
PLAUSIBLE = {
    "title": st.text(max_size=30),
    "authors": st.text(max_size=30) | st.sampled_from(LONG_NAMES),
    "series": st.text(max_size=20),
    "language": st.text(max_size=5),
    "md5": st.sampled_from(OTHER_MD5S + [None, ""]) | st.text(alphabet="0123456789abcdefABCDEF ", max_size=34),
    "last_open": st.integers(0, 4102444800),
    "pages": st.integers(0, MAX_INTEGER),
    "page": st.integers(1, MAX_INTEGER) | st.integers(1, 50),
    "start_time": st.integers(EARLIEST_START, NOW) | st.integers(T0, T0 + 100_000),
    "duration": st.integers(0, 7200),
    "total_pages": st.integers(0, MAX_INTEGER) | st.integers(0, 50),
}


def column_value(column):
    """Anything at all, or a value that KOReader could have written there."""
    return st.one_of(any_value, plausible(column))


def plausible(column):
    return PLAUSIBLE.get(column, st.integers(0, 1000))


@st.composite
def raw_values(draw, columns):
    """Values for ``columns``: all wild, all plausible but one wild value, or all plausible (so that
    rows and books with extreme but valid values land too)."""
    mode = draw(st.sampled_from(["wild", "one bad value", "plausible"]))
    bad = draw(st.sampled_from(columns)) if mode == "one bad value" else None
    return tuple(
        draw(column_value(c) if mode == "wild" else any_value if c == bad else plausible(c)) for c in columns
    )


HOSTILE_BOOK_IDS = st.none() | st.sampled_from([3, 4, 100, MAX_INTEGER, 2**31, 2**63 - 1, 0, -1, -(2**63)])


@st.composite
def hostile_book(draw):
    return (draw(HOSTILE_BOOK_IDS),) + draw(raw_values(BOOK_COLUMNS[1:]))


OUT_OF_RANGE = {
    "page": st.sampled_from([0, -1, 2**31, 2**63 - 1, -(2**63), 1e19, math.inf]),
    "start_time": st.sampled_from([0, EARLIEST_START - 1, NOW + 40 * 86400, 2**63 - 1, 1.7e12, -math.inf]),
    "duration": st.sampled_from([-1, 7201, 2**31, -(2**63), 1e300]),
}


@st.composite
def stray_page_row(draw):
    """A hostile row of a good book (with a value out of range, or anything: write_fuzzed_file keeps
    only the rows that must be skipped), or a row of any id at all."""
    if draw(st.booleans()):
        return (draw(any_value),) + draw(raw_values(PAGE_COLUMNS[1:]))
    row = dict(zip(PAGE_COLUMNS[1:], draw(raw_values(PAGE_COLUMNS[1:]))))
    bad = draw(st.sampled_from(sorted(OUT_OF_RANGE)))
    row[bad] = draw(OUT_OF_RANGE[bad] | any_value)
    return (draw(st.sampled_from([1, 2])),) + tuple(row[c] for c in PAGE_COLUMNS[1:])


FUZZED_GOOD_FIELDS = ("notes", "last_open", "highlights", "pages", "total_read_time", "total_read_pages")


@st.composite
def fuzzed_file(draw):
    """(good books' fuzzed fields, hostile books, hostile page rows)."""
    good_fields = [{c: draw(column_value(c)) for c in FUZZED_GOOD_FIELDS if draw(st.booleans())} for _ in GOOD_BOOKS]
    books = draw(st.lists(hostile_book(), max_size=4))
    rows = []
    for book in books:
        id_book = 3 if book[0] is None else book[0]  # 3: the first automatic id
        rows += [(id_book,) + draw(raw_values(PAGE_COLUMNS[1:])) for _ in range(draw(st.integers(0, 4)))]
    rows += [draw(stray_page_row()) for _ in range(draw(st.integers(0, 6)))]
    return good_fields, books, rows


def clearly_invalid(storage, number, text, low, high):
    """True when no reading of a stored value can make it a valid number in [low, high]."""
    if storage in ("integer", "real"):
        return not low <= number <= high
    if storage == "text":
        try:
            value = float(text.decode("utf-8", "replace").strip())
        except ValueError:
            return True
        return not low <= value <= high
    return True  # blob or NULL


def stored(column):
    """SQL giving a column's storage class, its number and its text bytes."""
    return (f"typeof({column}), CASE WHEN typeof({column}) IN ('integer', 'real') THEN {column} END, "
            f"CASE WHEN typeof({column}) = 'text' THEN CAST({column} AS BLOB) END")


def write_fuzzed_file(path, good_fields, books, rows):
    """Write the file; drop the hostile rows of the good books that might be valid. Returns
    (rows in the file, hostile rows of good books that any implementation must skip)."""
    # Autocommit: a refused hostile row (SQLITE_FULL rolls back the whole transaction) loses nothing else.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema_script(CURRENT_VERSION))
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for book, fields in zip(GOOD_BOOKS, good_fields):
        assert insert(conn, "book", BOOK_COLUMNS, book_values(book, **fields))
    for values in GOOD_ROWS:
        assert insert(conn, "page_stat_data", PAGE_COLUMNS, values)
    conn.execute("COMMIT")
    for values in books:
        insert(conn, "book", BOOK_COLUMNS, values)
    for values in rows:
        insert(conn, "page_stat_data", PAGE_COLUMNS, values)
    assert conn.execute("SELECT count(*) FROM book WHERE id IN (1, 2)").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM page_stat_data WHERE rowid <= ?", (len(GOOD_ROWS),)).fetchone() == (
        len(GOOD_ROWS),
    )
    must_skip = 0
    hostile_of_good = conn.execute(
        f"""SELECT rowid, {stored('page')}, {stored('start_time')}, {stored('duration')} FROM page_stat_data
            WHERE rowid > ? AND typeof(id_book) = 'integer' AND id_book IN (1, 2)""",
        (len(GOOD_ROWS),),
    ).fetchall()
    bounds = [(1, MAX_INTEGER), (EARLIEST_START, int(time.time()) + 2 * 86400), (0, 7200)]
    for rowid, *values in hostile_of_good:
        if any(clearly_invalid(*values[3 * i:3 * i + 3], *bounds[i]) for i in range(3)):
            must_skip += 1
        else:
            conn.execute("DELETE FROM page_stat_data WHERE rowid = ?", (rowid,))
    (count,) = conn.execute("SELECT count(*) FROM page_stat_data").fetchone()
    good_stored = conn.execute(
        f"SELECT {stored('pages')}, {stored('last_open')} FROM book WHERE id IN (1, 2) ORDER BY id"
    ).fetchall()
    conn.close()
    return count, must_skip, good_stored


GOOD_STATE_QUERIES = {
    "reading_sessions": """
        SELECT b.book_key, to_jsonb(s) - 'session_id' - 'book_id' - 'created_at' - 'updated_at'
        FROM reading_sessions s JOIN book_keys b USING (book_id) WHERE b.book_key = ANY(%(keys)s)
        ORDER BY b.book_key, s.start_time, s.device""",
    "page_views": """
        SELECT b.book_key, d.name, to_jsonb(p) - 'book_id' - 'device_id'
        FROM page_views p JOIN book_keys b USING (book_id) JOIN devices d USING (device_id)
        WHERE b.book_key = ANY(%(keys)s) ORDER BY b.book_key, p.page, p.start_epoch""",
    # page_count, last_open_at, notes and highlights come from fuzzed fields: checked on their own.
    "books": """
        SELECT to_jsonb(b) - 'book_id' - 'author_id' - 'created_at' - 'updated_at' - 'page_count' - 'notes'
               - 'highlights',
               to_jsonb(k) - 'book_id' - 'author_id' - 'last_open_at' - 'metadata_hash' - 'loaded_at', a.author_name
        FROM book_keys k JOIN books b USING (book_id) LEFT JOIN authors a ON a.author_id = b.author_id
        WHERE k.book_key = ANY(%(keys)s) ORDER BY k.book_key""",
    "book_authors": """
        SELECT b.book_key, ba.position, a.name
        FROM book_authors ba JOIN book_keys b USING (book_id) JOIN author_names a ON a.author_id = ba.author_id
        WHERE b.book_key = ANY(%(keys)s) ORDER BY 1, 2""",
}


def good_state(url):
    return {name: query(url, sql, {"keys": GOOD_KEYS}) for name, sql in GOOD_STATE_QUERIES.items()}


def reset(url):
    reset_warehouse(url)


def run_in_process(url, stats, env_file):
    return etl_module.main(["--stats-db", str(stats), "--database-url", url, "--env-file", str(env_file), "-q"])


def expected_pages(storage, number, text):
    """What a fuzzed ``pages`` must become: the number when it is an integer of 1..2**31-1, None when it
    can be nothing valid, and ... where the contract leaves it open (a REAL or numeric text in range)."""
    if storage == "integer" and 1 <= number <= MAX_INTEGER:
        return number
    if clearly_invalid(storage, number, text, 1, MAX_INTEGER):
        return None
    return ...


def expected_last_open(storage, number, text):
    """The same for ``last_open``: an integer epoch since 2000 up to now is kept; a negative one, one in
    milliseconds (or later than the year 5000) or anything that is not a number becomes None."""
    if storage == "integer" and EARLIEST_START <= number <= NOW:
        return number
    if clearly_invalid(storage, number, text, 0, 10**11):
        return None
    return ...


def test_property_hostile_values_anywhere_never_fail_the_run_nor_touch_the_good_books(
    database_url, empty_env_file, monkeypatch, capsys
):
    for name in ISOLATED_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ETL_TIMEZONE", "UTC")
    with tempfile.TemporaryDirectory() as directory:
        reset(database_url)
        assert run_in_process(database_url, good_file(Path(directory) / "good.sqlite3"), empty_env_file) == 0
    reference = good_state(database_url)
    assert [len(reference[name]) for name in ("reading_sessions", "page_views", "books")] == [4, len(GOOD_ROWS), 2]
    codes = []

    @settings(max_examples=examples(50), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(fuzzed_file())
    def check(case):
        good_fields, books, rows = case
        with tempfile.TemporaryDirectory() as directory:
            stats = Path(directory) / "statistics.sqlite3"
            row_count, must_skip, good_stored = write_fuzzed_file(stats, good_fields, books, rows)
            reset(database_url)
            capsys.readouterr()

            code = run_in_process(database_url, stats, empty_env_file)

        err = capsys.readouterr().err
        codes.append(code)
        assert code in (0, 65), err
        assert "Traceback" not in err
        if code == 65:
            return
        assert good_state(database_url) == reference
        read, skipped, reasons = skip_record(database_url)
        reasons = reasons or {}
        assert read == row_count
        assert sum(reasons.values()) == skipped >= must_skip, reasons
        assert all(isinstance(n, int) and n > 0 and reason for reason, n in reasons.items()), reasons
        # A bad book field is NULL, never a nonsense value: no year 55840, no page count below 1.
        assert query(
            database_url,
            """SELECT count(*) FROM book_keys k JOIN books b USING (book_id)
               WHERE k.last_open_at NOT BETWEEN '1970-01-01' AND '2101-01-01' OR b.page_count < 1
                  OR b.notes < 0 OR b.highlights < 0""",
        ) == [(0,)]
        stored_fields = query(
            database_url,
            """SELECT page_count, extract(epoch FROM last_open_at)::bigint FROM book_keys JOIN books USING (book_id)
               WHERE book_key = ANY(%(keys)s) ORDER BY array_position(%(keys)s, book_key)""",
            {"keys": GOOD_KEYS},
        )
        for (page_count, last_open), values in zip(stored_fields, good_stored):
            pages, opened = expected_pages(*values[:3]), expected_last_open(*values[3:])
            assert pages is ... or page_count == pages, (page_count, values)
            assert opened is ... or last_open == opened, (last_open, values)

    check()
    assert 0 in codes, f"no run exited 0: {codes}"
