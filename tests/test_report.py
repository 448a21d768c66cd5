"""The reading report (bookhelper/report.py): exact figures, read-only, self-contained, seen by a real browser."""

import base64
import datetime
import json
import os
import random
import re
import select
import shutil
import stat
import subprocess
import tempfile
import time
import uuid
import zoneinfo
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from conftest import query
from psycopg2 import sql
from warehouse import warehouse_state

from benchmarks.latency_proxy import LatencyProxy, upstream_address
from bookhelper import report
from samples.audible import AudibleTitle, ListeningEvent, write_audible_export
from samples.calibre import CalibreBook, write_calibre_library
from samples.kindle import KindleTitle, ReadingInterval, write_kindle_export
from samples.statistics import TITLES, Book, make_books, simulate_reading, write_statistics_file

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
HOSTILE_TITLE = 'Midnight </script><script>alert("x")</script> & <Friends>'


def utc(*args):
    return int(datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp())


# Rows whose local day is not their UTC day, around both of 2026's clock changes in Berlin, and a
# sitting across local midnight.
NIGHT_ROWS = [
    (90, 1, utc(2026, 3, 28, 23, 10), 600, 300),   # 00:10 CET, 29 March (28 March in UTC)
    (90, 2, utc(2026, 3, 29, 0, 50), 600, 300),    # 01:50 CET; then the clocks jump from 02:00 to 03:00
    (90, 3, utc(2026, 3, 29, 1, 5), 600, 300),     # 03:05 CEST
    (90, 4, utc(2026, 10, 24, 22, 40), 600, 300),  # 00:40 CEST, 25 October (24 October in UTC)
    (90, 5, utc(2026, 10, 25, 0, 30), 600, 300),   # 02:30 CEST, the first time
    (90, 6, utc(2026, 10, 25, 1, 30), 600, 300),   # 02:30 CET, the second time
    (90, 7, utc(2026, 6, 10, 21, 50), 600, 300),   # 23:50 CEST, 10 June ...
    (90, 8, utc(2026, 6, 10, 22, 1), 300, 300),    # ... 00:01 CEST, 11 June: the same session
]


@pytest.fixture
def berlin_history(tmp_path, etl):
    """Eight months of reading in Berlin loaded into this test's warehouse; returns the page rows."""
    rng = random.Random(13)
    books = make_books(12, rng)
    rows = simulate_reading(books, 250, rng, start_epoch=utc(2026, 3, 1))
    books.append(Book(90, HOSTILE_TITLE, "Nyx\nEos", 300, "d" * 32))
    rows += NIGHT_ROWS
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", books, rows)
    result = etl(stats, ETL_TIMEZONE="Europe/Berlin")
    assert result.returncode == 0, result.stderr
    return rows


def local_days(rows):
    """Reading seconds per Berlin calendar day, from the page rows, by Python's own zone rules."""
    days = Counter()
    for _book, _page, start, duration, _total in rows:
        days[datetime.datetime.fromtimestamp(start, BERLIN).date().isoformat()] += duration
    return dict(days)


def fetch(url):
    conn = psycopg2.connect(url)
    try:
        return report.fetch_report_data(conn)
    finally:
        conn.close()


def write(url, path):
    conn = psycopg2.connect(url)
    try:
        return report.write_report(conn, path)
    finally:
        conn.close()


def embedded_data(page: str) -> dict:
    """The page's JSON, with its books (columns and rows) as one dict a book, as a tool would read it."""
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    data = json.loads(found.group(1))
    books = data["books"]
    assert set(books) == {"columns", "rows"}
    data["books"] = [dict(zip(books["columns"], row)) for row in books["rows"]]
    return data


# --------------------------------------------------------------------------------------
# The figures
# --------------------------------------------------------------------------------------

def test_the_figures_equal_the_warehouse_across_clock_changes_and_midnight(berlin_history, database_url):
    data = fetch(database_url)

    days = local_days(berlin_history)
    assert data["state"] == "ok" and data["timezone"] == "Europe/Berlin"
    assert data["reading_seconds_by_day"] == days
    assert days["2026-03-29"] >= 1800 and days["2026-10-25"] >= 1800  # the nights of the clock changes
    assert days["2026-06-11"] >= 300  # the sitting across midnight counts on both days
    book_total = query(database_url, "SELECT sum(reading_seconds)::bigint FROM book_reading")[0][0]
    assert sum(days.values()) == book_total == sum(r[3] for r in berlin_history)
    assert sum(b["reading_seconds"] for b in data["books"]) == book_total

    sessions, books, pages = query(
        database_url, "SELECT count(*), count(DISTINCT book_id), sum(pages_read)::bigint FROM reading_sessions")[0]
    assert data["totals"] == {
        "reading_seconds": book_total, "books": books, "sessions": sessions, "pages_read": pages,
        "days_read": len(days), "first_day": min(days), "last_day": max(days),
    }

    stored = query(database_url, """
        SELECT b.book_id, b.title, b.authors, b.series, b.sessions, b.reading_seconds, b.first_read_at,
               b.last_read_at, b.reads, coalesce((SELECT sum(pages_read) FROM reading_sessions s
                                                  WHERE s.book_id = b.book_id), 0)
        FROM book_reading b ORDER BY b.reading_seconds DESC, b.title, b.book_id""")
    shown = [(b["book_id"], b["title"], b["authors"], b["series"], b["sessions"], b["reading_seconds"],
              datetime.datetime.fromisoformat(b["first_read_at"]), datetime.datetime.fromisoformat(b["last_read_at"]),
              b["reads"], b["pages_read"]) for b in data["books"]]
    assert shown == stored
    first_read = datetime.datetime.fromisoformat(data["books"][0]["first_read_at"])
    assert first_read.utcoffset() == first_read.astimezone(BERLIN).utcoffset()  # written on the reader's clock

    session_rows = query(database_url, "SELECT book_id, start_time AT TIME ZONE 'UTC', duration_seconds, pages_read "
                                   "FROM reading_sessions")
    grid = [[0] * 24 for _ in range(7)]
    by_year = {}
    for book_id, start, seconds, pages_read in session_rows:
        local = start.astimezone(BERLIN)
        grid[local.isoweekday() - 1][local.hour] += seconds
        year = by_year.setdefault(local.year, {"sessions": 0, "books": set(), "pages_read": 0})
        year["sessions"] += 1
        year["books"].add(book_id)
        year["pages_read"] += pages_read
    assert data["weekday_hour_seconds"] == grid
    assert data["years"] == [
        {"year": 2026, "reading_seconds": book_total, "days_read": len(days), "first_day": min(days),
         "last_day": max(days), "sessions": by_year[2026]["sessions"], "books": len(by_year[2026]["books"]),
         "pages_read": by_year[2026]["pages_read"]},
    ]
    assert data["authors"] == [
        {"name": name, "books": books, "reading_seconds": seconds} for name, books, seconds in query(
            database_url, "SELECT name, books, reading_seconds FROM author_reading WHERE reading_seconds > 0 "
                          "ORDER BY reading_seconds DESC, name LIMIT 10")
    ]
    assert data["streaks"]["longest"] == longest_run(days)
    finished = query(database_url, "SELECT extract(year FROM finished_on)::int, count(DISTINCT book_id)::int "
                                   "FROM finished_books GROUP BY 1 ORDER BY 1 DESC")
    assert data["finished_by_year"] == [{"year": year, "books": books} for year, books in finished]


# Every source of the job: a KOReader book that is also a Kindle book (through Calibre) and an audiobook listened
# alongside it (a tandem read), a Kindle-only book of 2025 and an audiobook finished in December 2025.
DAY = 86400
TANDEM_START = utc(2026, 1, 1, 18)


def listening(day, millis, start, end, name, asin, length_ms):
    return ListeningEvent(day, day, millis, start, end, name, asin, book_length_ms=length_ms)


@pytest.fixture
def every_source(tmp_path, database_url):
    from test_exports import run_exports

    koreader_book = Book(1, "The Lantern Keeper", "Calla Whitcombe", 300, "0" * 31 + "1", None, "en", TANDEM_START)
    page_rows = [(1, page, TANDEM_START + (page - 1) * 3 * DAY + 3600, 600, 300) for page in range(1, 11)]
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", [koreader_book], page_rows)
    library = write_calibre_library(tmp_path / "library", [CalibreBook(
        1, "The Lantern Keeper", ["Calla Whitcombe"], identifiers={"amazon": "b0testknd1"},
        cwa_checksums=[("EPUB", "0" * 31 + "1")])])
    kindle_export = write_kindle_export(tmp_path / "kindle", [
        ReadingInterval(TANDEM_START + 5 * DAY, TANDEM_START + 5 * DAY + 1200, "B0TESTKND1", millis=1_200_000),
        ReadingInterval(utc(2025, 11, 20, 20, 30), utc(2025, 11, 20, 21, 45), "B0TESTKND2", millis=4_500_000),
        ReadingInterval(utc(2025, 12, 31, 21, 50), utc(2025, 12, 31, 22, 20), "B0TESTKND2", millis=1_800_000),
    ], [KindleTitle("B0TESTKND1", "The Lantern Keeper (Harbor Lights Book 1)", ("Whitcombe, Calla ",)),
        KindleTitle("B0TESTKND2", "Tidewater", ("Moss, Ada",))])
    audible_export = write_audible_export(tmp_path / "audible", {"Account Holder": [
        listening(f"2026-01-{n:02d}", 3_600_000, (n - 2) * 3_600_000, (n - 1) * 3_600_000,
                  "The Lantern Keeper: Harbor Lights, Book 1 (Unabridged)", "B0TESTAUD9", 36_000_000)
        for n in range(2, 12)] + [
        listening("2025-12-30", 5_400_000, 0, 5_400_000, "Quiet Hours (Unabridged)", "B0TESTAUD1", 7_200_000),
        listening("2025-12-31", 1_800_000, 5_400_000, 7_200_000, "Quiet Hours (Unabridged)", "B0TESTAUD1",
                  7_200_000),
    ]}, [AudibleTitle("B0TESTAUD9", "The Lantern Keeper", "Harbor Lights, Book 1", ("Calla Whitcombe",),
                      ("Ann Lee",), 600)])

    result = run_exports(tmp_path, database_url, "--stats-db", stats, "--calibre-library", library.metadata_db.parent,
                         "--kindle-export", kindle_export, "--audible-export", audible_export,
                         ETL_TIMEZONE="Europe/Berlin")
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT data_source, time_precision, count(*) FROM reading_sessions "
                               "GROUP BY 1, 2 ORDER BY 1") == [
        ("audible", "day", 12), ("kindle", "second", 3), ("koreader", "second", 10)]


FORMATS = ("ebook_seconds", "audiobook_seconds")
SOURCES = ("koreader_seconds", "kindle_seconds", "audible_seconds")


def nonzero(rows, key, columns):
    """{year or month: Counter of the columns' non-zero seconds}"""
    return {row[key]: Counter({c: row[c] for c in columns if row[c]}) for row in rows}


def test_every_source_counts_by_format_and_source_and_only_timed_sessions_fill_the_week(every_source,
                                                                                           database_url, tmp_path):
    data = fetch(database_url)

    # the totals and years hold every source's sessions
    sessions, books, seconds = query(database_url, "SELECT count(*)::int, count(DISTINCT book_id)::int, "
                                                   "sum(duration_seconds)::int FROM reading_sessions")[0]
    assert (data["totals"]["sessions"], data["totals"]["books"], data["totals"]["reading_seconds"]) == (
        sessions, books, seconds) == (25, 3, 6000 + 1200 + 4500 + 1800 + 36000 + 7200)
    pages = query(database_url, "SELECT sum(pages_read)::int FROM reading_sessions")[0][0]
    assert data["totals"]["pages_read"] == pages
    assert sum(year["reading_seconds"] for year in data["years"]) == seconds

    # Hours by source and format, per year and month, as the sessions and the days place them: Kindle's and
    # KOReader's on the Berlin day they started (no sitting here crosses midnight), Audible's on its day.
    placed = query(database_url, """
        SELECT coalesce(a.day, ((s.start_time AT TIME ZONE 'UTC') AT TIME ZONE 'Europe/Berlin')::date) AS day,
               s.data_source, s.media_type, s.duration_seconds
        FROM reading_sessions s LEFT JOIN bookhelper.audible_days a
          ON s.data_source = 'audible' AND (a.book_id, a.start_time, a.device) = (s.book_id, s.start_time, s.device)""")
    years, months = {}, {}
    for day, source, media_type, duration in placed:
        for table, key in ((years, day.year), (months, f"{day:%Y-%m}")):
            row = table.setdefault(key, Counter())
            row[f"{source}_seconds"] += duration
            row[f"{media_type}_seconds"] += duration
    assert years == {
        2026: Counter(koreader_seconds=6000, kindle_seconds=1200, audible_seconds=36000, ebook_seconds=7200,
                      audiobook_seconds=36000),
        2025: Counter(kindle_seconds=6300, audible_seconds=7200, ebook_seconds=6300, audiobook_seconds=7200)}

    def only(table, columns):
        return {key: Counter({c: row[c] for c in columns if row[c]}) for key, row in table.items()}

    assert [row["year"] for row in data["by_format_year"]] == [row["year"] for row in data["by_source_year"]] == [
        2026, 2025]
    assert [row["month"] for row in data["by_format_month"]] == ["2025-11", "2025-12", "2026-01"]
    assert nonzero(data["by_format_year"], "year", FORMATS) == only(years, FORMATS)
    assert nonzero(data["by_source_year"], "year", SOURCES) == only(years, SOURCES)
    assert nonzero(data["by_format_month"], "month", FORMATS) == only(months, FORMATS)
    assert nonzero(data["by_source_month"], "month", SOURCES) == only(months, SOURCES)
    # the sums of reading_sessions, by source and by format
    for name, total in query(database_url, "SELECT data_source, sum(duration_seconds)::int FROM reading_sessions "
                                           "GROUP BY 1"):
        assert sum(row[f"{name}_seconds"] for row in data["by_source_year"]) == total
        assert sum(row[f"{name}_seconds"] for row in data["by_source_month"]) == total
    for name, total in query(database_url, "SELECT media_type, sum(duration_seconds)::int FROM reading_sessions "
                                           "GROUP BY 1"):
        assert sum(row[f"{name}_seconds"] for row in data["by_format_year"]) == total
        assert sum(row[f"{name}_seconds"] for row in data["by_format_month"]) == total
    # and the days: the formats are reading_days' columns, and each year's sources add up to its hours
    assert nonzero(data["by_format_year"], "year", FORMATS) == {
        year: Counter({c: v for c, v in zip(FORMATS, row) if v}) for year, *row in query(
            database_url, "SELECT extract(year FROM day)::int, sum(ebook_seconds)::int, sum(audiobook_seconds)::int "
                          "FROM bookhelper.reading_days GROUP BY 1")}
    assert {y["year"]: y["reading_seconds"] for y in data["years"]} == {
        row["year"]: sum(row[c] for c in SOURCES) for row in data["by_source_year"]}

    # The week holds the timed sessions, each in its Berlin hour; the listening days (local midnights) are not in it.
    grid = [[0] * 24 for _ in range(7)]
    for start, duration in query(database_url, "SELECT start_time AT TIME ZONE 'UTC', duration_seconds "
                                               "FROM reading_sessions WHERE time_precision = 'second'"):
        local = start.astimezone(BERLIN)
        grid[local.isoweekday() - 1][local.hour] += duration
    assert data["weekday_hour_seconds"] == grid
    assert sum(map(sum, grid)) == 6000 + 1200 + 6300 and data["weekday_hour_untimed_seconds"] == 36000 + 7200
    assert all(row[0] == 0 for row in grid)  # nothing was read in a midnight hour: the listening days are not there

    # Finished books by format: the two audiobooks listened to their end, each in its year; KOReader's reached none.
    assert data["finished_by_year"] == [{"year": 2026, "books": 1}, {"year": 2025, "books": 1}]
    assert data["finished_by_year_format"] == [
        {"year": 2026, "ebook": 0, "audiobook": 1, "ebook_and_audiobook": 0, "status_only": 0},
        {"year": 2025, "ebook": 0, "audiobook": 1, "ebook_and_audiobook": 0, "status_only": 0}]
    assert query(database_url, "SELECT formats, count(*)::int FROM finished_books GROUP BY 1") == [("audiobook", 2)]

    # The tandem read: the KOReader read and the audiobook's listening, one read of one book.
    (tandem_id, tandem_book, tandem_sessions), = query(
        database_url, "SELECT read_instance_id::text, book_id, session_count::int FROM tandem_reading_sessions")
    assert data["tandem_reads"] == [{
        "read_instance_id": tandem_id, "book_id": tandem_book, "title": "The Lantern Keeper",
        "first_day": "2026-01-01", "last_day": "2026-01-28", "formats": "audiobook, ebook", "sessions": tandem_sessions,
        "ebook_seconds": 6000, "audiobook_seconds": 36000}]
    assert tandem_sessions == 20

    books = {book["title"]: book for book in data["books"]}
    assert books["The Lantern Keeper"]["formats"] == "audiobook, ebook"
    assert books["The Lantern Keeper"]["ebook_seconds"] == 6000 + 1200
    assert books["Quiet Hours"]["formats"] == "audiobook" and books["Quiet Hours"]["pages_read"] == 0

    # The page says all of it, and its JSON is the same data.
    path = tmp_path / "report.html"
    write(database_url, path)
    page = path.read_text()
    assert page_problems(page) == []
    shown = embedded_data(page)
    keys = ("by_format_year", "by_source_year", "by_format_month", "by_source_month", "finished_by_year_format",
            "tandem_reads", "weekday_hour_untimed_seconds")
    assert {key: shown[key] for key in keys} == {key: data[key] for key in keys}
    assert shown["format"] == report.REPORT_FORMAT == 2
    assert '<h2 id="formats">Formats and sources</h2>' in page
    # 2026: 2.0 h ebook, 10.0 h audiobook; 1.7 h KOReader, 0.3 h Kindle, 10.0 h Audible; 12.0 h
    assert ('<tr><th scope="row">2026</th><td class="n">2.0</td><td class="n">10.0</td><td class="n">1.7</td>'
            '<td class="n">0.3</td><td class="n">10.0</td><td class="n">12.0</td></tr>') in page
    assert ('<tr><th scope="row">2025</th><td class="n">1.8</td><td class="n">2.0</td><td class="n muted">–</td>'
            '<td class="n">1.8</td><td class="n">2.0</td><td class="n">3.8</td></tr>') in page
    assert "Not in this grid: 12.0 h of Audible listening" in page
    assert '<h2 id="tandem">Tandem reads <small>(1)</small></h2>' in page
    assert "<td>The Lantern Keeper</td><td>1 Jan – 28 Jan 2026</td><td>audiobook, ebook</td>" in page
    assert "4 h ebooks, 12 h audiobooks" in page


def test_a_warehouse_of_koreader_alone_says_so_instead_of_a_formats_table(berlin_history, database_url):
    data = fetch(database_url)

    assert data["by_source_year"] == [{"year": 2026, "koreader_seconds": data["years"][0]["reading_seconds"],
                                       "kindle_seconds": 0, "audible_seconds": 0}]
    assert data["weekday_hour_untimed_seconds"] == 0 and data["tandem_reads"] == []
    page = report.render_report(data, datetime.datetime(2026, 11, 24, tzinfo=datetime.timezone.utc))
    assert "All reading so far is ebooks from KOReader." in page
    assert "Not in this grid" not in page and 'id="tandem"' not in page


def longest_run(days):
    """The longest run of consecutive days (the latest of equals), as the report gives it."""
    ordered = sorted(datetime.date.fromisoformat(day) for day in days)
    best, start = None, ordered[0]
    for previous, day in zip(ordered, ordered[1:] + [None]):
        if day is None or (day - previous).days != 1:
            run = {"first_day": start.isoformat(), "last_day": previous.isoformat(),
                   "days": (previous - start).days + 1}
            if best is None or run["days"] >= best["days"]:
                best = run
            start = day
    return best


def test_the_current_streak_ends_today_or_yesterday_on_the_readers_clock(tmp_path, etl, database_url):
    today = datetime.datetime.now(BERLIN).date()
    noon = [datetime.datetime.combine(today - datetime.timedelta(days=back), datetime.time(9), BERLIN)
            for back in (1, 2, 3, 10, 11, 12, 13, 14)]  # yesterday and two days before; five days a week earlier
    rows = [(1, page, int(moment.timestamp()), 300, 100) for page, moment in enumerate(noon, 1)]
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 100, "e" * 32)], rows)
    assert etl(stats, ETL_TIMEZONE="Europe/Berlin").returncode == 0

    data = fetch(database_url)

    assert data["today"] == today.isoformat()
    assert data["streaks"]["current"] == {
        "first_day": (today - datetime.timedelta(days=3)).isoformat(),
        "last_day": (today - datetime.timedelta(days=1)).isoformat(), "days": 3}
    assert data["streaks"]["longest"] == {
        "first_day": (today - datetime.timedelta(days=14)).isoformat(),
        "last_day": (today - datetime.timedelta(days=10)).isoformat(), "days": 5}


def test_sidecar_and_calibre_columns_show_in_the_book_table(berlin_history, database_url, tmp_path):
    # What the sidecar and Calibre loads put there, for one book.
    query(database_url, """
        INSERT INTO tags (name) VALUES ('sf'), ('classic');
        INSERT INTO book_tags SELECT b.book_id, t.tag_id, 'calibre' FROM books b, tags t WHERE b.title = 'Middlemarch';
        INSERT INTO book_editions (book_id, publisher_specific, calibre_id)
        SELECT b.book_id, 'NYRB Classics', 1 FROM books b WHERE b.title = 'Middlemarch';""")
    path = tmp_path / "columns.html"

    write(database_url, path)

    page = path.read_text()
    data = embedded_data(page)
    assert re.search(r"<th>Status</th><th>Rating</th><th>Highlights</th><th>Publisher</th><th>Tags</th></tr>", page)
    assert "<td>NYRB Classics<td>classic, sf<" in page
    middlemarch = [b for b in data["books"] if b["title"] == "Middlemarch"]
    assert [(b["publisher"], b["tags"]) for b in middlemarch] == [("NYRB Classics", ["classic", "sf"])]
    finished = query(database_url, "SELECT extract(year FROM finished_on)::int, count(DISTINCT book_id)::int "
                                   "FROM finished_books GROUP BY 1 ORDER BY 1 DESC")
    assert finished and data["finished_by_year"] == [{"year": year, "books": books} for year, books in finished]
    assert '<th class="n">Finished</th>' in page and "Books finished per year" in page
    assert page_problems(page) == []


# --------------------------------------------------------------------------------------
# Reading only, in two round trips
# --------------------------------------------------------------------------------------

def table_rows(url):
    tables = query(url, "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ('public', 'bookhelper')")
    return {(schema, name): query(url, sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(schema), sql.Identifier(name)))[0][0] for schema, name in tables}


def test_the_report_only_reads_and_works_for_a_role_that_may_only_read(berlin_history, database_url, tmp_path):
    before = warehouse_state(database_url), table_rows(database_url)
    role = f"report_reader_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    grants = [sql.SQL("CREATE ROLE {} LOGIN").format(ident)] + [
        statement.format(sql.Identifier(schema), ident) for schema in ("public", "bookhelper")
        for statement in (sql.SQL("GRANT USAGE ON SCHEMA {} TO {}"),
                          sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}"))]
    for statement in grants:
        query(database_url, statement)
    try:
        conn = psycopg2.connect(f"{database_url} user={role} options='-c default_transaction_read_only=on'")
        try:
            summary = report.write_report(conn, tmp_path / "report.html")
            assert conn.autocommit is False  # left as it was, and idle
            assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        finally:
            conn.close()
    finally:
        query(database_url, sql.SQL("DROP OWNED BY {}").format(ident))
        query(database_url, sql.SQL("DROP ROLE {}").format(ident))

    assert summary["state"] == "ok" and summary["books"] == 13
    assert (warehouse_state(database_url), table_rows(database_url)) == before


def report_round_trips(url):
    """(state, round trips) of fetch_report_data on an open connection, counted by a loopback proxy."""
    _family, address = upstream_address(url)
    if isinstance(address, tuple) and address[0] == "localhost":
        address = ("127.0.0.1", address[1])
    proxy = LatencyProxy(address, delay=0, max_seconds=120).start()
    params = psycopg2.extensions.parse_dsn(url)
    try:
        conn = psycopg2.connect(host="127.0.0.1", port=proxy.port, dbname=params["dbname"],
                                user=params.get("user", "postgres"), password=params.get("password"))
        try:
            proxy.reset()
            state = report.fetch_report_data(conn)["state"]
            return state, proxy.reset()
        finally:
            conn.close()
    finally:
        proxy.stop()


def test_the_report_reads_in_two_round_trips_however_large_the_history(berlin_history, database_url):
    # The catalog probe, then the data in one transaction (connecting takes one to three more).
    assert report_round_trips(database_url) == ("ok", 2)


@pytest.mark.empty_database
def test_a_database_without_the_warehouse_takes_one_round_trip(database_url):
    assert report_round_trips(database_url) == ("no warehouse", 1)


def test_the_report_reads_in_a_read_only_transaction(berlin_history, database_url):
    # A view that writes when it is read: in a read-only transaction the server refuses the write.
    query(database_url, "CREATE TABLE public.book_reads_logged (book_id integer)")
    query(database_url, """
        CREATE FUNCTION log_read(id integer) RETURNS integer LANGUAGE sql VOLATILE
        AS 'INSERT INTO public.book_reads_logged VALUES (id) RETURNING id'""")
    query(database_url, "ALTER VIEW bookhelper.book_reading RENAME TO book_reading_koreader")
    query(database_url, "CREATE VIEW bookhelper.book_reading AS SELECT k.*, log_read(k.book_id) AS logged "
                        "FROM bookhelper.book_reading_koreader k")

    with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
        fetch(database_url)

    assert query(database_url, "SELECT count(*) FROM book_reads_logged") == [(0,)]


# --------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------

VOID_ELEMENTS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "srcset", "action", "formaction", "poster", "data", "background"}
REMOTE_MARKERS = ("http:", "https:", "//")
# End tags that HTML lets a page leave out: a cell ends where the next cell or row starts, a row where the
# next row starts, and both where their table section ends.
IMPLIED_BY_START = {"td": {"td", "th"}, "th": {"td", "th"}, "tr": {"td", "th", "tr"}}
IMPLIED_BY_END = {"tr": {"td", "th"}, "thead": {"td", "th", "tr"}, "tbody": {"td", "th", "tr"},
                  "table": {"td", "th", "tr"}}


class PageCheck(HTMLParser):
    """Structural checks of a page and of everything in it that could make a request."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.problems, self.open, self.elements, self.ids = [], [], Counter(), Counter()
        self.doctype = False
        self.charset = self.viewport = False

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        self._element(tag, attrs)
        if tag in IMPLIED_BY_START:
            self._close_implied(IMPLIED_BY_START[tag])
        if tag not in VOID_ELEMENTS:
            self.open.append(tag)

    def handle_startendtag(self, tag, attrs):  # SVG's self-closing elements, <line/>
        self._element(tag, attrs)

    def handle_endtag(self, tag):
        if tag in IMPLIED_BY_END:
            self._close_implied(IMPLIED_BY_END[tag])
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.problems.append(f"</{tag}> closes <{self.open[-1] if self.open else 'nothing'}>")

    def _close_implied(self, tags):
        while self.open and self.open[-1] in tags:
            self.open.pop()

    def handle_data(self, data):
        if self.open and self.open[-1] == "style":
            self._css(data)

    def _element(self, tag, attrs):
        self.elements["svg " + tag if "svg" in self.open else tag] += 1  # an SVG <title> titles a mark
        attributes = dict(attrs)
        for name, value in attrs:
            value = value or ""
            if name in URL_ATTRIBUTES and (any(m in value.lower() for m in REMOTE_MARKERS) or
                                           not value.startswith("#")):
                self.problems.append(f"<{tag} {name}={value!r}> loads something")
            if name == "style":
                self._css(value)
            if name == "id":
                self.ids[value] += 1
        if tag == "meta":
            self.charset |= (attributes.get("charset") or "").lower() == "utf-8"
            self.viewport |= attributes.get("name") == "viewport" and "width=device-width" in attributes["content"]
        if tag == "script" and attributes.get("type") != "application/json":
            self.problems.append("a script that runs")
        if tag in ("link", "iframe", "object", "embed", "img", "base"):
            self.problems.append(f"a <{tag}> element")

    def _css(self, text):
        for found in re.findall(r"url\(([^)]*)\)|@import", text):
            self.problems.append(f"CSS loads something: url({found})")

    def finish(self):
        self.close()
        problems = list(self.problems)
        problems += [f"<{tag}> never closed" for tag in self.open]
        problems += [f"{n} <{tag}> elements" for tag in ("html", "head", "body", "title", "main")
                     if (n := self.elements[tag]) != 1]
        problems += [f"id {name!r} used {n} times" for name, n in self.ids.items() if n > 1]
        if not self.doctype:
            problems.append("no <!DOCTYPE html>")
        if not self.charset:
            problems.append('no <meta charset="utf-8">')
        if not self.viewport:
            problems.append("no viewport <meta>")
        return problems


def page_problems(page: str) -> list:
    check = PageCheck()
    check.feed(page)
    return check.finish()


def test_the_page_is_valid_self_contained_and_keeps_hostile_text_as_text(berlin_history, database_url, tmp_path):
    path = tmp_path / "report.html"

    summary = write(database_url, path)

    page = path.read_text(encoding="utf-8")
    assert page_problems(page) == []
    assert page.count("<script") == 1 and page.count("</script>") == 1  # the title did not break out
    assert html_escaped(HOSTILE_TITLE) in page
    data = embedded_data(page)
    assert HOSTILE_TITLE in [book["title"] for book in data["books"]]
    assert data == {**fetch(database_url), "generated_at": data["generated_at"]}
    assert summary == {"path": str(path), "state": "ok", "books": 13, "days": len(data["reading_seconds_by_day"]),
                       "bytes": path.stat().st_size}


def html_escaped(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


@pytest.mark.parametrize(("change", "problem"), [
    ('<p class="sub">', '<img src="https://example.org/cover.png"><p class="sub">'),
    ("<style>", "<style>body{background:url(//example.org/paper.png)}"),
    ('<h1>Reading report</h1>', '<h1>Reading report</h1><a href="other.html">more</a>'),
    ("<main>", '<main><script src="chart.js"></script>'),
    ("</h1>", "</h2>"),
    ('<meta charset="utf-8">', ""),
])
def test_the_page_check_finds_what_would_break_the_page(change, problem):
    page = report.render_report(report.no_warehouse_data(), datetime.datetime(2026, 11, 24, 2, 0))
    assert page_problems(page) == []
    assert change in page
    assert page_problems(page.replace(change, problem, 1)) != []


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.empty_database
def test_an_empty_warehouse_gives_a_valid_page_that_says_so(tmp_path, etl, database_url, tables):
    if tables:  # a load of a file that holds books but no page rows yet
        stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 100, "e" * 32)], [])
        assert etl(stats).returncode == 0
    path = tmp_path / "report.html"

    summary = write(database_url, path)

    page = path.read_text()
    assert page_problems(page) == []
    expected = "holds no reading yet" if tables else "no bookhelper-etl tables yet"
    assert expected in page and summary["state"] == ("empty" if tables else "no warehouse")
    data = embedded_data(page)
    assert data["totals"]["reading_seconds"] == 0 and data["reading_seconds_by_day"] == {}
    assert data["books"] == ([] if not tables else [{
        "book_id": data["books"][0]["book_id"], "title": "Stoner", "authors": "John Williams", "series": None,
        "sessions": 0, "reading_seconds": 0, "first_read_at": None, "last_read_at": None, "reads": 0,
        "status": None, "rating": None, "highlights": 0, "publisher": None, "tags": None, "pages_read": 0,
        "ebook_seconds": 0, "formats": None}])


def test_the_report_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path, database_url):
    site = tmp_path / "site"
    site.mkdir()
    target = site / "report.html"
    target.write_text("yesterday's report")
    target.chmod(0o600)
    old_inode = target.stat().st_ino

    summary = write(database_url, target)

    assert target.stat().st_ino != old_inode  # renamed over the old one, never rewritten in place
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # a web server may read it
    assert target.read_bytes().endswith(b"</html>\n") and summary["bytes"] == target.stat().st_size
    assert sorted(p.name for p in site.iterdir()) == ["report.html"]
    # A write that fails leaves what was there and no temporary file behind (here: a directory in the way).
    blocked = site / "blocked.html"
    blocked.mkdir()
    with pytest.raises(IsADirectoryError):
        write(database_url, blocked)
    assert sorted(p.name for p in site.iterdir()) == ["blocked.html", "report.html"]
    assert list(blocked.iterdir()) == []


# --------------------------------------------------------------------------------------
# Twenty years, without a database
# --------------------------------------------------------------------------------------

def twenty_years(books=900, seed=5):
    """Report data as fetch_report_data returns it: twenty years of reading every day, 900 books."""
    rng = random.Random(seed)
    today = datetime.date(2026, 11, 24)
    first = today - datetime.timedelta(days=365 * 20)
    days = {(first + datetime.timedelta(days=n)).isoformat(): rng.randint(300, 3 * 3600)
            for n in range((today - first).days + 1)}
    rows = []
    for book_id in range(1, books + 1):
        seconds = rng.randint(3600, 90 * 3600)
        started = first + datetime.timedelta(days=rng.randint(0, 365 * 20 - 60))
        rows.append({
            "book_id": book_id, "title": f"{TITLES[book_id % len(TITLES)]} ({book_id}. Auflage)",
            "authors": "Terry Pratchett; Neil Gaiman", "series": f"Cycle #{book_id % 7}" if book_id % 3 == 0 else None,
            "sessions": rng.randint(5, 300), "reading_seconds": seconds,
            "first_read_at": f"{started}T20:11:05+01:00",
            "last_read_at": f"{started + datetime.timedelta(days=50)}T21:03:09+02:00",
            "reads": rng.randint(1, 3), "pages_read": rng.randint(100, 4000),
            # every column the sidecars and Calibre add, filled
            "status": "complete", "rating": 4, "highlights": rng.randint(0, 200),
            "publisher": "Penguin Random House Classics", "tags": ["Science Fiction", "Classics"],
        })
    rows.sort(key=lambda book: -book["reading_seconds"])
    years = []
    for year in range(today.year, first.year - 1, -1):
        of_year = {day: s for day, s in days.items() if day.startswith(str(year))}
        years.append({"year": year, "reading_seconds": sum(of_year.values()), "days_read": len(of_year),
                      "first_day": min(of_year), "last_day": max(of_year), "sessions": 2400, "books": 45,
                      "pages_read": 52000})
    streak = {"first_day": first.isoformat(), "last_day": today.isoformat(), "days": len(days)}
    return {
        "format": report.REPORT_FORMAT, "state": "ok", "timezone": "Europe/Berlin", "today": today.isoformat(),
        "devices": [{"name": "boox-palma-2", "timezone": "Europe/Berlin"}],
        "totals": {"reading_seconds": sum(days.values()), "books": books, "sessions": 48000, "pages_read": 1040000,
                   "days_read": len(days), "first_day": first.isoformat(), "last_day": today.isoformat()},
        "years": years, "streaks": {"current": streak, "longest": streak}, "reading_seconds_by_day": days,
        "weekday_hour_seconds": [[rng.randint(0, 90000) for _ in range(24)] for _ in range(7)], "books": rows,
        "authors": [{"name": f"Author {n}", "books": 40, "reading_seconds": 100000 - n} for n in range(10)],
        "finished_by_year": [{"year": year, "books": 30} for year in range(today.year, first.year - 1, -1)],
        # every source and format in every month, a finish of each kind every year and 60 tandem reads
        "weekday_hour_untimed_seconds": 3_000_000,
        "by_format_year": [{"year": y["year"], "ebook_seconds": y["reading_seconds"] * 2 // 3,
                            "audiobook_seconds": y["reading_seconds"] - y["reading_seconds"] * 2 // 3} for y in years],
        "by_source_year": [{"year": y["year"], "koreader_seconds": y["reading_seconds"] // 3,
                            "kindle_seconds": y["reading_seconds"] * 2 // 3 - y["reading_seconds"] // 3,
                            "audible_seconds": y["reading_seconds"] - y["reading_seconds"] * 2 // 3} for y in years],
        "by_format_month": [{"month": f"{year}-{month:02d}", "ebook_seconds": 100_000, "audiobook_seconds": 50_000}
                            for year in range(first.year, today.year + 1) for month in range(1, 13)],
        "by_source_month": [{"month": f"{year}-{month:02d}", "koreader_seconds": 50_000, "kindle_seconds": 50_000,
                             "audible_seconds": 50_000}
                            for year in range(first.year, today.year + 1) for month in range(1, 13)],
        "finished_by_year_format": [{"year": year, "ebook": 20, "audiobook": 6, "ebook_and_audiobook": 3,
                                     "status_only": 1} for year in range(today.year, first.year - 1, -1)],
        "tandem_reads": [{"read_instance_id": str(uuid.UUID(int=n)), "book_id": n, "title": rows[n]["title"],
                          "first_day": "2025-03-01", "last_day": "2025-04-11", "formats": "audiobook, ebook",
                          "sessions": 40, "ebook_seconds": 30_000, "audiobook_seconds": 40_000} for n in range(60)],
    }


def test_twenty_years_of_daily_reading_and_900_books_make_a_page_under_1_mb():
    data = twenty_years()

    page = report.render_report(data, datetime.datetime(2026, 11, 24, 23, 30, tzinfo=datetime.timezone.utc))

    assert len(page.encode("utf-8")) < 1_000_000
    assert page_problems(page) == []
    assert embedded_data(page) == {**data, "generated_at": "2026-11-24T23:30:00+00:00"}
    assert page.count('<table class="heat cal"') == 21  # one calendar per year, most recent first
    assert page.index("Reading minutes per day in 2026") < page.index("Reading minutes per day in 2006")
    assert page.count("<tr><td>") == 900 + 50  # every book, and the 50 latest tandem reads
    assert "The 10 earlier ones are in the page's data." in page
    assert "generated 25 Nov 2026, 00:30" in page  # on the reader's clock


# --------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


class Browser:
    """Headless Chromium driven through the DevTools protocol on a pipe (``--remote-debugging-pipe``)."""

    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="bookhelper-chromium-")
        commands, self._commands = os.pipe()
        self._replies, replies = os.pipe()
        # Chromium reads commands from fd 3 and answers on fd 4 (bash: dash takes one-digit fds only).
        self.process = subprocess.Popen(
            ["bash", "-c", 'exec "$@" 3<&"$COMMANDS" 4>&"$REPLIES"', "sh", binary, "--headless",
             "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-default-apps", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile}", "about:blank"],
            env={**os.environ, "COMMANDS": str(commands), "REPLIES": str(replies)}, pass_fds=(commands, replies),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(commands)
        os.close(replies)
        self._buffer, self._last_id, self.events = b"", 0, []

    def send(self, method, params=None, session=None, timeout=20):
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def visit(self, path, width=1280, height=2000, scheme="light"):
        """Open ``path`` in a fresh tab: what it requested, what went wrong, a screenshot and a few facts."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}, session=session)
        self.send("Emulation.setEmulatedMedia",
                  {"features": [{"name": "prefers-color-scheme", "value": scheme}]}, session=session)
        self.send("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        deadline = time.monotonic() + 20
        while not any(e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session for e in self.events):
            self.events.append(self._receive(deadline))
        facts = self.send("Runtime.evaluate", {"returnByValue": True, "expression": """({
            background: getComputedStyle(document.body).backgroundColor,
            pageWidth: document.documentElement.scrollWidth,
            scripts: document.scripts.length,
            readingSeconds: JSON.parse(document.getElementById('report-data').textContent).totals.reading_seconds,
        })"""}, session=session)["result"]["value"]
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"])
        self.send("Target.closeTarget", {"targetId": target})
        events = [e for e in self.events if e.get("sessionId") == session]
        requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
        errors = [e["params"] for e in events if
                  (e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] in ("error", "warning"))
                  or e["method"] in ("Runtime.exceptionThrown", "Network.loadingFailed")
                  or (e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "warning"))]
        return {"requests": requests, "errors": errors, "png": png, **facts}

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, TimeoutError, EOFError, RuntimeError):
            self.process.kill()
        self.process.wait(timeout=10)
        os.close(self._commands)
        os.close(self._replies)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium for the report's browser test (.ci/run installs it)")
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    started = Browser(CHROMIUM)
    yield started
    started.close()


def brightness(css_color):
    red, green, blue = (int(n) for n in re.findall(r"\d+", css_color)[:3])
    return (red + green + blue) / 3


def test_a_real_browser_renders_the_report_without_errors_or_requests(berlin_history, database_url, tmp_path, browser):
    path = tmp_path / "report.html"
    write(database_url, path)
    total = embedded_data(path.read_text())["totals"]["reading_seconds"]

    views = {"light": browser.visit(path), "dark": browser.visit(path, scheme="dark"),
             "phone": browser.visit(path, width=390, height=1600)}

    for name, view in views.items():
        (tmp_path / f"report-{name}.png").write_bytes(view["png"])
        assert view["requests"] == [path.resolve().as_uri()], name
        assert view["errors"] == [], name
        assert view["png"].startswith(b"\x89PNG") and len(view["png"]) > 20_000, name
        assert view["scripts"] == 1 and view["readingSeconds"] == total, name
    assert brightness(views["light"]["background"]) > 200 > 60 > brightness(views["dark"]["background"])
    assert views["phone"]["pageWidth"] <= 390  # wide tables scroll inside the page, the page does not


def test_the_browser_check_sees_requests_and_refusals(tmp_path, browser):
    page = report.render_report(report.no_warehouse_data(), datetime.datetime(2026, 11, 24, 2, 0))
    external = tmp_path / "external.html"
    external.write_text('<!DOCTYPE html><title>x</title><img src="https://example.invalid/cover.png">'
                        '<script type="application/json" id="report-data">{"totals":{}}</script>')
    refused = tmp_path / "refused.html"
    refused.write_text(page.replace("<main>", '<main><img src="https://example.invalid/cover.png">'))

    loads, blocked = browser.visit(external), browser.visit(refused)

    assert "https://example.invalid/cover.png" in loads["requests"]
    assert "https://example.invalid/cover.png" in blocked["requests"]
    assert blocked["errors"] != []  # the page's own policy refused the image, and the browser says so


def test_a_warehouse_of_an_older_release_gives_a_page_that_says_the_next_load_upgrades_it():
    data = {**report.no_warehouse_data(), "state": "old warehouse"}

    page = report.render_report(data, datetime.datetime(2026, 11, 24, tzinfo=datetime.timezone.utc))

    assert page_problems(page) == []
    assert "made by an older release of bookhelper-etl: the next load upgrades it" in page
