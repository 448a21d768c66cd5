"""Synthetic KOReader statistics files for the tests, the quick start and the benchmark.

Every file it writes has KOReader's exact layout (tables, indexes, the ``numbers``
table, the ``page_stat`` view and ``PRAGMA user_version``), filled with invented
reading: no real person's data. The reading patterns are the ones the ETL must
survive: several sittings a day, pauses shorter and longer than the session gap,
book switches, back-paging, font changes that alter ``total_pages``, re-reads,
multi-author and unicode titles, sittings across midnight and, on request, hostile
rows.

Run it from the repository root to write a file::

    python3 -m samples.statistics sample.sqlite3 --books 12 --days 90
"""

import argparse
import hashlib
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

CURRENT_VERSION = 20221111

BOOK_TABLE = """
CREATE TABLE IF NOT EXISTS book (
    id integer PRIMARY KEY autoincrement,
    title text, authors text,
    notes integer, last_open integer, highlights integer,
    pages integer, series text, language text, md5 text,
    total_read_time integer, total_read_pages integer
);
"""
PAGE_TABLE = """
CREATE TABLE IF NOT EXISTS page_stat_data (
    id_book integer,
    page integer NOT NULL DEFAULT 0,
    start_time integer NOT NULL DEFAULT 0,
    duration integer NOT NULL DEFAULT 0,
    total_pages integer NOT NULL DEFAULT 0,
    UNIQUE (id_book, page, start_time),
    FOREIGN KEY(id_book) REFERENCES book(id)
);
"""
START_TIME_INDEX = "CREATE INDEX IF NOT EXISTS page_stat_data_start_time ON page_stat_data(start_time);"
NUMBERS_AND_VIEW = """
CREATE TABLE IF NOT EXISTS numbers (number INTEGER PRIMARY KEY);
WITH RECURSIVE counter AS (SELECT 1 as N UNION ALL SELECT N + 1 FROM counter WHERE N < 1000)
    INSERT INTO numbers SELECT N AS number FROM counter;
CREATE VIEW IF NOT EXISTS page_stat AS
    SELECT id_book, first_page + idx - 1 AS page, start_time, duration / (last_page - first_page + 1) AS duration
    FROM (
        SELECT id_book, page, total_pages, pages, start_time, duration,
            ((page - 1) * pages) / total_pages + 1 AS first_page,
            max(((page - 1) * pages) / total_pages + 1, (page * pages) / total_pages) AS last_page,
            idx
        FROM page_stat_data
        JOIN book ON book.id = id_book
        JOIN (SELECT number as idx FROM numbers) AS N ON idx <= (last_page - first_page + 1)
    );
"""


def schema_script(version: int) -> str:
    """The DDL KOReader runs for a given ``user_version`` (20221111, 20201022, 20201010, 0)."""
    if version == 0:
        return (
            "CREATE TABLE info (version integer);\n"
            + BOOK_TABLE
            + "CREATE TABLE page_stat (id_book integer, page integer, start_time integer, period integer);\n"
        )
    title_index = "UNIQUE INDEX" if version >= 20221111 else "INDEX"
    script = BOOK_TABLE
    script += f"CREATE {title_index} IF NOT EXISTS book_title_authors_md5 ON book(title, authors, md5);\n"
    script += PAGE_TABLE
    if version >= 20201022:
        script += START_TIME_INDEX + "\n"
    script += NUMBERS_AND_VIEW
    script += f"PRAGMA user_version = {version};\n"
    return script


@dataclass
class Book:
    """A row of KOReader's ``book`` table."""

    id: int
    title: Optional[str]
    authors: Optional[str]
    pages: int
    md5: Optional[str]
    series: Optional[str] = "N/A"
    language: Optional[str] = "en"
    last_open: Optional[int] = None
    notes: int = 0
    highlights: int = 0


# (id_book, page, start_time, duration, total_pages), as in page_stat_data.
PageRow = tuple[Optional[int], int, int, int, int]


def write_statistics_file(
    path,
    books: Sequence[Book],
    page_rows: Sequence[PageRow],
    version: int = CURRENT_VERSION,
    wal: bool = False,
) -> Path:
    """Write ``books`` and ``page_rows`` to a new statistics file in KOReader's layout.

    With ``wal=True`` the file is left in WAL mode with its rows still in the ``-wal``
    file (no checkpoint), as a device that was copied mid-use leaves it.
    Returns the path. An existing file is replaced.
    """
    path = Path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executescript(schema_script(version))
    totals = _book_totals(page_rows)
    conn.executemany(
        "INSERT INTO book (id, title, authors, notes, last_open, highlights, pages, series,"
        " language, md5, total_read_time, total_read_pages) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (b.id, b.title, b.authors, b.notes, b.last_open, b.highlights, b.pages, b.series, b.language, b.md5)
            + totals.get(b.id, (0, 0))
            for b in books
        ],
    )
    table = "page_stat" if version == 0 else "page_stat_data"
    columns = "id_book, page, start_time, " + ("period" if version == 0 else "duration, total_pages")
    placeholders = "?,?,?,?" if version == 0 else "?,?,?,?,?"
    rows = [r[:4] for r in page_rows] if version == 0 else page_rows
    conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})", rows)
    conn.commit()
    if wal:
        # Keep the connection's data in the -wal file: copy the files while it is open.
        _leave_open.append(conn)
    else:
        conn.close()
    return path


_leave_open: list[sqlite3.Connection] = []


def close_wal_writers() -> None:
    """Close connections kept open by ``write_statistics_file(wal=True)`` (checkpoints them)."""
    while _leave_open:
        _leave_open.pop().close()


def _book_totals(page_rows: Sequence[PageRow]) -> dict:
    totals: dict = {}
    for id_book, page, _start, duration, _total in page_rows:
        seconds, pages = totals.get(id_book, (0, set()))
        pages.add(page)
        totals[id_book] = (seconds + duration, pages)
    return {k: (seconds, len(pages)) for k, (seconds, pages) in totals.items()}


TITLES = [
    "The Left Hand of Darkness", "Middlemarch", "Der Zauberberg", "Cien años de soledad",
    "Война и мир", "こころ", "Les Misérables", "A Fire Upon the Deep", "The Dispossessed",
    "Il nome della rosa", "Project Hail Mary", "Good Omens", "Kafka am Strand", "Stoner",
    "The Name of the Wind", "Piranesi", "The Remains of the Day", "Ficciones", "Moths of the Fens",
]
AUTHORS = [
    "Ursula K. Le Guin", "George Eliot", "Thomas Mann", "Gabriel García Márquez", "Лев Толстой",
    "夏目漱石", "Victor Hugo", "Vernor Vinge", "Ursula K. Le Guin", "Umberto Eco", "Andy Weir",
    "Terry Pratchett\nNeil Gaiman",
    "Haruki Murakami", "John Williams", "Patrick Rothfuss", "Susanna Clarke", "Kazuo Ishiguro",
    "Jorge Luis Borges", "Rooksby, Rikky",
]
LANGUAGES = ["en", "de", "es", "ru", "ja", "fr", "it", "N/A"]


def make_books(count: int, rng: random.Random) -> list[Book]:
    """Invented books: unicode titles, multi-author rows, a comma inside a name, N/A values."""
    books = []
    for i in range(1, count + 1):
        base = TITLES[(i - 1) % len(TITLES)]
        title = base if i <= len(TITLES) else f"{base} ({i // len(TITLES) + 1}. Auflage)"
        series = "N/A" if i % 3 else f"Cycle #{i % 7 + 1}"
        md5 = hashlib.md5(f"book-{i}-{title}".encode()).hexdigest()
        books.append(
            Book(
                id=i, title=title, authors=AUTHORS[(i - 1) % len(AUTHORS)], pages=rng.randint(120, 640),
                md5=md5, series=series, language=LANGUAGES[i % len(LANGUAGES)],
            )
        )
    return books


DAY = 86400


def simulate_reading(
    books: Sequence[Book],
    days: int,
    rng: random.Random,
    start_epoch: int = 1_600_000_000,
    sittings_per_day: tuple[int, int] = (0, 4),
    max_seconds_per_page: int = 120,
) -> list[PageRow]:
    """Page rows as KOReader records them while a reader works through ``books``."""
    rows: list[PageRow] = []
    progress = {b.id: 0 for b in books}
    layout = {b.id: b.pages for b in books}
    current = books[0].id
    for day in range(days):
        day_start = start_epoch - start_epoch % DAY + day * DAY
        hours = sorted(rng.uniform(6, 23.9) for _ in range(rng.randint(*sittings_per_day)))
        for hour in hours:
            if rng.random() < 0.15:
                current = rng.choice(books).id
            clock = int(day_start + hour * 3600)
            pages_this_sitting = rng.randint(3, 60)
            if rng.random() < 0.05:
                # A font change: a new layout with another page count.
                old = layout[current]
                layout[current] = max(20, int(old * rng.choice([0.7, 0.85, 1.2, 1.4])))
                progress[current] = progress[current] * layout[current] // old
            for _ in range(pages_this_sitting):
                total = layout[current]
                if progress[current] >= total:
                    # Finished: start the next book; sometimes it is this one again (a re-read).
                    progress[current] = 0
                    current = rng.choice(books).id
                    total = layout[current]
                if rng.random() < 0.04 and progress[current] > 2:
                    progress[current] -= 2  # back-paging
                progress[current] += 1
                stay = int(rng.lognormvariate(3.3, 0.6))
                if stay >= 5:  # KOReader drops stays shorter than its minimum
                    rows.append((current, progress[current], clock, min(stay, max_seconds_per_page), total))
                clock += stay + 1
                if rng.random() < 0.03:
                    clock += rng.choice([rng.randint(120, 1500), rng.randint(1900, 5400)])
    last_open = {}
    for id_book, _page, start, duration, _total in rows:
        last_open[id_book] = max(last_open.get(id_book, 0), start + duration)
    for book in books:
        book.last_open = last_open.get(book.id, start_epoch)
    return _unique(rows)


def _unique(rows: list[PageRow]) -> list[PageRow]:
    seen = set()
    unique = []
    for row in rows:
        key = row[:3]
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def hostile_rows(books: Sequence[Book], now: int) -> list[PageRow]:
    """Rows that a real file can hold and the ETL must skip, one per reason."""
    known = books[0].id
    future = int(time.time()) + 40 * DAY
    return [
        (None, 3, now - 5000, 30, 100),          # NULL id_book (an old sync bug)
        (99999, 3, now - 5000, 30, 100),         # orphan: no such book
        (known, 4, 0, 30, 100),                  # start_time 1970
        (known, 5, future, 30, 100),             # start_time in the future
        (known, 6, now - 6000, -5, 100),         # negative duration
        (known, 7, now - 7000, 99999, 100),      # absurd duration
        (known, 0, now - 8000, 30, 100),         # page 0
    ]


def generate(
    path,
    books: int = 12,
    days: int = 90,
    seed: int = 1,
    version: int = CURRENT_VERSION,
    wal: bool = False,
    hostile: bool = False,
    start_epoch: int = 1_600_000_000,
    sittings_per_day: tuple[int, int] = (0, 4),
) -> Path:
    """Write a realistic invented statistics file and return its path."""
    rng = random.Random(seed)
    book_rows = make_books(books, rng)
    page_rows = simulate_reading(book_rows, days, rng, start_epoch=start_epoch, sittings_per_day=sittings_per_day)
    if hostile:
        page_rows += hostile_rows(book_rows, start_epoch + days * DAY)
    return write_statistics_file(path, book_rows, page_rows, version=version, wal=wal)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write an invented KOReader statistics.sqlite3.")
    parser.add_argument("path")
    parser.add_argument("--books", type=int, default=12)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hostile", action="store_true", help="add rows the ETL must skip")
    parser.add_argument("--start-epoch", type=int, default=1_600_000_000)
    args = parser.parse_args(argv)
    generate(args.path, books=args.books, days=args.days, seed=args.seed, hostile=args.hostile,
             start_epoch=args.start_epoch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
