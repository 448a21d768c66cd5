"""Hypothesis properties of whole loads against a real PostgreSQL.

Each example resets the test databases, writes generated files and runs main() in
process (the CLI tests cover the subprocess path).
"""

import tempfile
from pathlib import Path

import pytest
from conftest import query, reset_warehouse
from helpers import GAP, T0, book_rows, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouse import warehouse_state

import extract_koreader_stats as etl_module
from bookhelper.sessions import number_reads, transform_sessions
from samples.statistics import Book, write_statistics_file

DB_SETTINGS = settings(
    max_examples=examples(25), deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

rows_strategy = st.tuples(book_rows(1), book_rows(2), book_rows(3)).map(lambda books: [r for b in books for r in b])

BOOKS = [Book(i, f"Book {i}", f"Author {i}", 30, f"{i:032x}") for i in (1, 2, 3)]


def load(url, rows, env_file, name="statistics.sqlite3", *extra):
    with tempfile.TemporaryDirectory() as directory:
        path = write_statistics_file(Path(directory) / name, BOOKS, rows)
        code = etl_module.main(["--stats-db", str(path), "--database-url", url, "--env-file", str(env_file), "-q",
                                *extra])
    assert code == 0


@DB_SETTINGS
@given(rows=rows_strategy)
def test_property_sessions_in_the_warehouse_follow_the_python_rule(rows, database_url, empty_env_file):
    reset_warehouse(database_url)
    load(database_url, rows, empty_env_file)

    for book in BOOKS:
        book_rows = [(p, s, d, t) for b, p, s, d, t in rows if b == book.id]
        expected = transform_sessions(book_rows, GAP)
        reads = number_reads(expected)
        stored = query(
            database_url,
            """SELECT extract(epoch FROM start_time)::bigint, extract(epoch FROM end_time)::bigint,
                      duration_seconds, pages_read, start_page, end_page, total_pages, read_number
               FROM reading_sessions s JOIN books b USING (book_id) WHERE b.file_hash = %s
               ORDER BY start_time""",
            (book.md5,),
        )
        assert stored == [
            (s.start_time, s.end_time, s.duration_seconds, s.pages_read, s.start_page, s.end_page, s.total_pages, n)
            for s, n in zip(expected, reads)
        ]


@pytest.mark.slow
@DB_SETTINGS
@given(rows=rows_strategy, cut=st.integers(0, 30_000), rnd=st.randoms(use_true_random=False))
def test_property_an_earlier_copy_then_the_full_file_equals_one_load_of_the_full_file(
    rows, cut, rnd, two_warehouses, empty_env_file
):
    step_by_step, once = two_warehouses
    reset_warehouse(step_by_step)
    reset_warehouse(once)
    # An earlier copy: the rows up to a moment, less a few older ones that another device merges in later.
    earlier = [r for r in rows if r[2] < T0 + cut and rnd.random() > 0.2]

    load(step_by_step, earlier, empty_env_file)
    load(step_by_step, rows, empty_env_file)
    load(once, rows, empty_env_file)

    assert warehouse_state(step_by_step) == warehouse_state(once)
    before = warehouse_state(once)
    load(once, rows, empty_env_file)
    assert warehouse_state(once) == before
