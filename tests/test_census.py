"""The census of a statistics file, leaf page by leaf page: the leaves as SQLite itself lays them out, the same
counts as the row-by-row rule the load filters with, and a cache that spares a night the unchanged pages
without ever changing what the census says, whatever the edits in between (SQLite files only, no server)."""

import shutil
import sqlite3
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import extract_koreader_stats as etl
from bookhelper import sqlite_pages
from samples.statistics import CURRENT_VERSION, Book, close_wal_writers, schema_script, write_statistics_file

T0 = 1_700_000_000
NOW = T0 + 400 * 86400
BOOKS = [Book(i, f"Book {i}", "An Author", 300, f"{i:032x}") for i in (1, 2, 3)] + [Book(4, None, None, 10, md5=None)]


def rows_of_days(days, first_day=0, books=(1, 2, 3)):
    """Three sittings a day over ``days`` days, each of a few dozen pages."""
    return [(books[(day + sitting) % len(books)], page, T0 + day * 86400 + sitting * 7200 + page * 40, 30, 300)
            for day in range(first_day, first_day + days) for sitting in range(3) for page in range(1, 41)]


def census(path, now=NOW, cache_dir=None, dry_run=False):
    """(skipped by reason, per book id rows) of the file, and how many leaves were read (not reused)."""
    workdir = Path(tempfile.mkdtemp())
    try:
        conn, _version = etl.open_snapshot(path, workdir)
        _books, _key_of, unusable = etl.transform_books(etl.extract_book_rows(conn))
        cache = etl.CensusCache(cache_dir / "census.sqlite3", writable=not dry_run) if cache_dir else None
        problems, per_book = etl.extract_page_census(conn, now, unusable, cache)
        read = conn.execute("SELECT count(*) FROM temp.census_leaves WHERE NOT known").fetchone()[0]
        conn.close()
        return (sorted(problems), sorted(per_book, key=repr)), read
    finally:
        shutil.rmtree(workdir)


def row_by_row(path, now=NOW):
    """The same counts, row by row, with the rule the load sends rows by (PAGE_ROW_PROBLEM_SQL)."""
    conn = sqlite3.connect(path)
    _books, _key_of, unusable = etl.transform_books(etl.extract_book_rows(conn))
    conn.execute("CREATE TEMP TABLE unusable_books (id_book INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO temp.unusable_books VALUES (?)", [(i,) for i in unusable])
    problems = conn.execute(
        f"""SELECT problem, count(*) FROM (SELECT {etl.PAGE_ROW_PROBLEM_SQL} AS problem
            FROM page_stat_data p LEFT JOIN book b ON b.id = p.id_book) WHERE problem IS NOT NULL GROUP BY 1""",
        etl.page_row_bounds(now),
    ).fetchall()
    counts = conn.execute(
        "SELECT id_book, count(*), sum(start_time > :waiting) FROM page_stat_data"
        " WHERE typeof(id_book) = 'integer' GROUP BY id_book", etl.page_row_bounds(now),
    ).fetchall()
    conn.close()
    return sorted(problems), sorted(counts)


def leaves_as_sqlite_sees_them(path):
    """Each leaf page of page_stat_data, in rowid order, with its cell count, from SQLite's dbstat table."""
    conn = sqlite3.connect(path)
    try:
        return [n for (n,) in conn.execute(
            "SELECT ncell FROM dbstat WHERE name = 'page_stat_data' AND pagetype = 'leaf' ORDER BY path")]
    finally:
        conn.close()


@pytest.mark.parametrize("days", [0, 1, 30, 400])
def test_the_leaves_are_sqlites_own_and_their_ranges_hold_their_rows(tmp_path, days):
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(days))
    conn = sqlite3.connect(path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'page_stat_data'").fetchone()[0]
    leaves = sqlite_pages.table_leaves(path, root)

    assert [leaf.cells for leaf in leaves] == (leaves_as_sqlite_sees_them(path) or [0])
    assert leaves[0].first_rowid == sqlite_pages.MIN_ROWID and leaves[-1].last_rowid == sqlite_pages.MAX_ROWID
    assert all(a.last_rowid + 1 == b.first_rowid for a, b in zip(leaves, leaves[1:]))
    for leaf in leaves:
        held = conn.execute("SELECT count(*) FROM page_stat_data WHERE rowid BETWEEN ? AND ?",
                            (leaf.first_rowid, leaf.last_rowid)).fetchone()[0]
        assert held == leaf.cells
    if days == 400:
        assert len(leaves) > 50
    conn.close()


def test_a_table_that_is_not_a_rowid_b_tree_has_no_leaves_and_is_counted_whole(tmp_path):
    path = tmp_path / "statistics.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(etl_schema_without_rowid())
    conn.executemany("INSERT INTO page_stat_data VALUES (?, ?, ?, ?, ?)", rows_of_days(5))
    conn.commit()
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'page_stat_data'").fetchone()[0]
    conn.close()

    assert sqlite_pages.table_leaves(path, root) is None
    (problems, per_book), read = census(path, cache_dir=tmp_path / "cache")
    assert read == 1  # the whole table, as one
    assert (problems, [(i, n, f) for i, n, _d, _s, f in per_book]) == row_by_row(path)  # one part per book


def etl_schema_without_rowid():
    return """
        CREATE TABLE book (id INTEGER PRIMARY KEY, title TEXT, authors TEXT, notes INTEGER, last_open INTEGER,
            highlights INTEGER, pages INTEGER, series TEXT, language TEXT, md5 TEXT, total_read_time INTEGER,
            total_read_pages INTEGER);
        INSERT INTO book (id, title, authors, md5) VALUES (1, 'A', 'B', 'c'), (2, 'D', 'E', 'f'), (3, 'G', 'H', 'i');
        CREATE TABLE page_stat_data (id_book INTEGER, page INTEGER, start_time INTEGER, duration INTEGER,
            total_pages INTEGER, PRIMARY KEY (id_book, page, start_time)) WITHOUT ROWID;
        PRAGMA user_version = 20221111;
    """


def test_a_valid_rows_change_beside_a_huge_skipped_duration_changes_the_fingerprint(tmp_path):
    rows = rows_of_days(2) + [(1, 99, T0 + 5 * 86400, 2**60, 300)]  # skipped: duration out of range
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows)
    before = census(path)[0]
    conn = sqlite3.connect(path)
    # the last valid row, book 1's too, in the huge one's leaf page
    conn.execute("UPDATE page_stat_data SET duration = 31 WHERE rowid = (SELECT max(rowid) - 1 FROM page_stat_data)")
    conn.commit()
    conn.close()
    assert census(path)[0] != before


def test_a_text_book_id_is_an_unknown_book_whatever_the_columns_declared_type(tmp_path):
    path = tmp_path / "statistics.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(schema_script(CURRENT_VERSION).replace("id_book integer,", "id_book text,", 1))
    conn.execute("INSERT INTO book (id, title, authors, md5) VALUES (1, 'T', 'A', ?)", ("a" * 32,))
    conn.executemany("INSERT INTO page_stat_data VALUES ('1', ?, ?, 30, 300)", [(p, T0 + 40 * p) for p in range(1, 11)])
    conn.commit()
    conn.close()
    (problems, _parts), _read = census(path)
    assert problems == [("unknown book", 10)] == row_by_row(path)[0]


def test_a_night_reads_only_the_pages_that_changed_and_counts_the_same(tmp_path):
    cache = tmp_path / "cache"
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(300))
    first, read_first = census(path, cache_dir=cache)
    again, read_again = census(path, cache_dir=cache)
    assert first == census(path)[0] and read_first > 50
    assert again == first and read_again == 0

    write_statistics_file(path, BOOKS, rows_of_days(301))
    grown, read_grown = census(path, cache_dir=cache)
    assert 0 < read_grown <= 3
    assert grown == census(path)[0]  # no cache: the whole file read
    assert grown != first


def test_one_changed_row_in_the_middle_of_the_file_is_found(tmp_path):
    cache = tmp_path / "cache"
    rows = rows_of_days(300)
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows)
    before, _ = census(path, cache_dir=cache)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE page_stat_data SET duration = 31 WHERE rowid = 10000")
    conn.commit()
    conn.close()

    after, read = census(path, cache_dir=cache)
    assert read == 1
    assert after == census(path)[0] != before


@pytest.mark.parametrize("column, value", [("id_book", "x" * 5000), ("duration", "12" + "x" * 5000),
                                           ("start_time", "soon"), ("page", b"\x00" * 5000)])
def test_a_leaf_whose_values_are_not_all_inside_it_as_numbers_is_read_again(tmp_path, column, value):
    """A long text before a row's numbers pushes them onto overflow pages: they change while the leaf's bytes
    stay the same. A text start or duration counts by its value, which may be on those pages too."""
    cache = tmp_path / "cache"
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(30))
    conn = sqlite3.connect(path)
    conn.execute(f"UPDATE page_stat_data SET {column} = ? WHERE rowid = 1000", (value,))
    conn.commit()
    census(path, cache_dir=cache)
    conn.execute("UPDATE page_stat_data SET duration = 31 WHERE rowid = 1000" if column != "duration"
                 else "UPDATE page_stat_data SET duration = '13' || substr(duration, 3) WHERE rowid = 1000")
    conn.commit()
    conn.close()

    assert census(path, cache_dir=cache)[0] == census(path)[0]


def test_a_long_value_after_the_counted_ones_can_spill_them_too_on_small_pages(tmp_path):
    """On 512-byte pages a row keeps as little as 39 bytes in its leaf: a long total_pages, the last column,
    takes part of the duration onto an overflow page, where it changes while the leaf's bytes stay the same."""
    path = tmp_path / "statistics.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size = 512")
    conn.executescript(schema_script(CURRENT_VERSION))
    conn.execute("INSERT INTO book (id, title, authors, md5) VALUES (?, 'T', 'A', ?)", (2**60, "a" * 32))
    conn.execute("INSERT INTO page_stat_data VALUES (?, ?, ?, ?, ?)", (2**60, 2**60, -2**50, 2**60, b"x" * 9086))
    conn.commit()
    census(path, cache_dir=tmp_path / "cache")
    conn.execute("UPDATE page_stat_data SET duration = duration + 255")
    conn.commit()
    conn.close()

    assert census(path, cache_dir=tmp_path / "cache")[0] == census(path)[0]


@pytest.mark.parametrize("hours_after_the_last_row", [-30, 13])  # the last rows out of range; still waiting
def test_rows_whose_counts_change_as_time_passes_are_counted_again_each_night(tmp_path, hours_after_the_last_row):
    """A leaf holding rows newer than the waiting window (or dated after the valid window) is never reused: as
    time passes they stop waiting (become valid)."""
    cache = tmp_path / "cache"
    rows = rows_of_days(10)
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows)
    last = max(start for _i, _p, start, _d, _t in rows)
    tonight = last + 3600 * hours_after_the_last_row
    assert census(path, now=tonight, cache_dir=cache)[0] == census(path, now=tonight)[0]
    _, read = census(path, now=tonight, cache_dir=cache)
    assert read >= 1
    later = last + etl.WAITING_WINDOW + 3600
    assert census(path, now=later, cache_dir=cache)[0] == census(path, now=later)[0]


def test_a_dry_run_reads_the_cache_and_writes_none(tmp_path):
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(50))
    cache = tmp_path / "cache"
    census(path, cache_dir=cache, dry_run=True)
    assert not cache.exists()
    census(path, cache_dir=cache)
    stamp = (cache / "census.sqlite3").stat().st_mtime_ns
    write_statistics_file(path, BOOKS, rows_of_days(51))
    counted, read = census(path, cache_dir=cache, dry_run=True)
    assert 0 < read <= 3 and counted == census(path)[0]
    assert (cache / "census.sqlite3").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["garbage", "damaged pages", "other version", "unwritable folder"])
def test_a_damaged_or_unwritable_cache_only_costs_time(tmp_path, damage, caplog):
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(50))
    cache = tmp_path / "cache"
    cache.mkdir()
    if damage == "garbage":
        (cache / "census.sqlite3").write_bytes(b"not an SQLite file" * 100)
    elif damage == "damaged pages":  # its header intact, its tables not
        census(path, cache_dir=cache)
        with open(cache / "census.sqlite3", "r+b") as damaged:
            page_size = int.from_bytes(damaged.read(18)[16:18], "big")
            size = damaged.seek(0, 2)
            damaged.seek(page_size)
            damaged.write(b"\xff" * (size - page_size))
    elif damage == "other version":
        census(path, cache_dir=cache)
        conn = sqlite3.connect(cache / "census.sqlite3")
        conn.execute("UPDATE part SET row_count = row_count + 1")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()
        conn.close()
    else:
        cache = tmp_path / "not-a-folder"
        cache.write_text("")
    with caplog.at_level("INFO"):
        counted, _read = census(path, cache_dir=cache)
    assert counted == census(path)[0]
    if damage != "other version":
        assert "no census cache tonight" in caplog.text


def test_a_cache_another_run_is_writing_only_costs_time(tmp_path):
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(50))
    cache = tmp_path / "cache"
    census(path, cache_dir=cache)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE page_stat_data SET duration = 31 WHERE rowid = 5")
    conn.commit()
    conn.close()
    other = sqlite3.connect(cache / "census.sqlite3", isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")  # another night's run, storing its leaves
    try:
        counted, _read = census(path, cache_dir=cache)
    finally:
        other.close()
    assert counted == census(path)[0]


def test_a_wal_that_holds_the_newest_rows_is_counted(tmp_path):
    path = write_statistics_file(tmp_path / "statistics.sqlite3", BOOKS, rows_of_days(40), wal=True)
    try:
        assert Path(f"{path}-wal").stat().st_size > 0
        counted, _ = census(path, cache_dir=tmp_path / "cache")
    finally:
        close_wal_writers()
    assert counted == census(path)[0]
    assert sum(n for _i, n, *_rest in counted[1]) == 40 * 3 * 40


# Any history of edits: the cache never changes what the census says ---------------------------------

values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-5, 10**10), st.none(), st.floats(allow_nan=False),
                   st.text(max_size=3), st.binary(max_size=3), st.just("x" * 5000))
edits = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 20)),
    st.tuples(st.just("update"), st.integers(0, 10**6), st.sampled_from(etl.PAGE_STAT_COLUMNS), values),
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("untitle"), st.sampled_from([1, 2, 3])),
    st.tuples(st.just("later"), st.integers(0, 3 * 86400)),
), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=edits)
def test_property_after_any_edits_the_cached_census_equals_a_whole_read_and_the_row_rule(tmp_path, edits):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = write_statistics_file(folder / "statistics.sqlite3", BOOKS, rows_of_days(60))
    cache, now, day = folder / "cache", T0 + 61 * 86400, 60
    census(path, now=now, cache_dir=cache)
    for edit in edits:
        conn = sqlite3.connect(path)
        count = conn.execute("SELECT count(*) FROM page_stat_data").fetchone()[0]
        kind = edit[0]
        if kind == "append":
            conn.executemany("INSERT OR IGNORE INTO page_stat_data VALUES (?, ?, ?, ?, ?)",
                             rows_of_days(edit[1] // 10 + 1, first_day=day)[: edit[1] * 5])
            day += edit[1] // 10 + 1
        elif kind == "update" and count:
            # OR IGNORE: KOReader's NOT NULL and UNIQUE constraints refuse some values, as they would on the device.
            conn.execute(f"UPDATE OR IGNORE page_stat_data SET {edit[2]} = ? WHERE rowid = "
                         "(SELECT rowid FROM page_stat_data LIMIT 1 OFFSET ?)", (edit[3], edit[1] % count))
        elif kind == "delete" and count:
            conn.execute("DELETE FROM page_stat_data WHERE rowid = (SELECT rowid FROM page_stat_data LIMIT 1 OFFSET ?)",
                         (edit[1] % count,))
        elif kind == "untitle":
            conn.execute("UPDATE book SET title = NULL, md5 = NULL WHERE id = ?", (edit[1],))
        elif kind == "later":
            now += edit[1]
        conn.commit()
        conn.close()
        cached, _ = census(path, now=now, cache_dir=cache)
        whole, _ = census(path, now=now)
        assert cached == whole
        problems, parts = cached  # a book id's parts, one per leaf holding its rows
        rows, waiting = Counter(), Counter()
        for id_book, count, _duration, _start, future in parts:
            if isinstance(id_book, int):
                rows[id_book] += count
                waiting[id_book] += future
        assert (problems, sorted((i, rows[i], waiting[i]) for i in rows)) == row_by_row(path, now)
