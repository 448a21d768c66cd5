"""What several test modules share: page rows drawn by hypothesis, two synced devices' files, settings in
the environment for an in-process run."""

import contextlib
import os
import random

from hypothesis import strategies as st

from samples.statistics import Book, make_books, simulate_reading, write_statistics_file

T0 = 1_700_000_000
GAP = 1800


@st.composite
def book_rows(draw, id_book):
    """One book's page rows as a reader makes them, with pauses right at the gap's edges."""
    rows = {}
    total = draw(st.integers(0, 20))
    clock = T0 + draw(st.integers(0, 5000))
    for _ in range(draw(st.integers(0, 25))):
        page = draw(st.integers(1, total + 2))
        duration = draw(st.sampled_from([0, 5, 30, 120, 7200]) | st.integers(0, 600))
        rows[(id_book, page, clock)] = (id_book, page, clock, duration, total)
        if draw(st.integers(0, 9)) == 0:
            total += draw(st.sampled_from([-3, 4]))  # a font change
            total = max(total, 0)
        pause = draw(st.sampled_from([0, 1, GAP - 1, GAP, GAP + 1, 90_000, -(duration // 2)]) | st.integers(0, 4000))
        clock += duration + pause
    return list(rows.values())



def synced_files(tmp_path, seed=7):
    """Two devices' files after KOReader's statistics sync: each holds the union of both devices' rows.

    The devices number the same books differently (books match on md5), and a few shared rows
    carry different durations (one device flushed a longer stay).
    """
    rng = random.Random(seed)
    books = make_books(6, rng)
    rows_a = simulate_reading(books, 40, rng, start_epoch=T0)
    rows_b = simulate_reading(books, 40, rng, start_epoch=T0 + 3 * 3600)
    union = {r[:3]: r for r in rows_a + rows_b}
    file_a = dict(union)
    file_b = dict(union)
    for key in rng.sample(sorted(union), 15):
        book, page, start, duration, total = union[key]
        file_b[key] = (book, page, start, duration + rng.randint(1, 60), total)
    for key in rng.sample(sorted(union), 10):
        book, page, start, duration, total = union[key]
        file_a[key] = (book, page, start, duration + rng.randint(1, 60), total)
    renumber = {b.id: 100 + len(books) - b.id for b in books}
    books_b = [Book(renumber[b.id], b.title, b.authors, b.pages, b.md5, b.series, b.language, b.last_open)
               for b in books]
    rows_in_b = [(renumber[b], p, s, d, t) for (b, p, s, d, t) in file_b.values()]
    path_a = write_statistics_file(tmp_path / "a.sqlite3", books, list(file_a.values()))
    path_b = write_statistics_file(tmp_path / "b.sqlite3", books_b, rows_in_b)
    md5_of = {b.id: b.md5 for b in books}
    expected = {}
    for key in union:
        md5 = md5_of[key[0]]
        longest = max(file_a[key][3], file_b[key][3])
        expected[f"md5:{md5}"] = expected.get(f"md5:{md5}", 0) + longest
    return path_a, path_b, expected


@contextlib.contextmanager
def environment(**values):
    """Settings in the process environment for an in-process run (main() reads them as cron would)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update({name: value for name, value in values.items() if value is not None})
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def examples(thorough: int) -> int:
    """How many examples a property that runs the ETL against PostgreSQL tries: ``thorough`` with
    TEST_EXAMPLES=thorough (.ci/run), a third of it by default, so that the test command stays quick."""
    return thorough if os.environ.get("TEST_EXAMPLES") == "thorough" else max(3, thorough // 3)
