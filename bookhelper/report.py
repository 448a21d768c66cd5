"""A self-contained HTML reading report, built from the bookhelper-etl warehouse alone.

``write_report(conn, path)`` reads the warehouse in one read-only transaction (two round
trips, however large the history), renders one HTML file that needs nothing else (styles
inline, charts as inline SVG and tables, no script, no request to any host or file) and
replaces ``path`` with it atomically. The figures behind the page are embedded as JSON in
``<script type="application/json" id="report-data">``, for tools and tests.

``fetch_report_data(conn)`` and ``render_report(data, generated_at)`` are the two halves:
the first only reads, the second is pure.
"""

import datetime
import html
import json
import math
import os
import tempfile
import zoneinfo
from pathlib import Path
from typing import Optional

from bookhelper.schema import OUR_SOURCES, RELATIONS

# The layout of the embedded JSON; raise it when a key changes meaning or disappears.
# 2: totals, years, books and the weekday x hour grid count every source of the job (KOReader, Kindle, Audible),
# and the grid leaves out sessions without a time of day (Audible's listening days); new keys by_format_year,
# by_source_year, by_format_month, by_source_month, weekday_hour_untimed_seconds, finished_by_year_format,
# tandem_reads, and the books' formats and ebook_seconds.
REPORT_FORMAT = 2

# --------------------------------------------------------------------------------------
# Reading the warehouse: two round trips
# --------------------------------------------------------------------------------------

# A statement cannot name a view that may be missing, so the first round trip asks the catalog
# which exist (it reads nothing else).
REQUIRED_RELATIONS = tuple(RELATIONS[name] for name in (
    "devices", "reading_sessions", "book_reading", "reading_days", "reading_streaks", "author_reading"))
CATALOG_SQL = "SELECT " + " AND ".join(f"to_regclass('{name}') IS NOT NULL" for name in REQUIRED_RELATIONS) + (
    f", to_regclass('{RELATIONS['finished_books']}') IS NOT NULL"
    # the exports' tables came with schema version 4, as did the columns the report reads beside them
    f", to_regclass('{RELATIONS['audible_days']}') IS NOT NULL")

# The second is the report's one transaction: the statements of one query string run as one
# implicit transaction, made read-only by its first statement. The report's zone is the zone of
# the devices that read most; TimeZone is set to it for this transaction only, so current_date
# is the reader's today and the JSON's timestamps carry the reader's offset.
REPORT_DATA_SQL = """
SET TRANSACTION READ ONLY;
SELECT set_config('TimeZone', coalesce((
    SELECT d.timezone FROM bookhelper.devices d
    LEFT JOIN public.reading_sessions s ON s.device = d.name AND s.data_source = 'koreader'
    GROUP BY d.timezone ORDER BY coalesce(sum(s.duration_seconds), 0) DESC, max(d.last_seen_at) DESC LIMIT 1
), (SELECT value FROM bookhelper.schema_meta WHERE key = 'kindle_timezone'), (
    SELECT timezone FROM bookhelper.audible_days GROUP BY timezone ORDER BY sum(duration_seconds) DESC LIMIT 1
), 'UTC'), true);
WITH day_totals AS MATERIALIZED (
    SELECT day, reading_seconds::bigint AS seconds, ebook_seconds::bigint AS ebook_seconds,
           audiobook_seconds::bigint AS audiobook_seconds
    FROM bookhelper.reading_days
),
local_sessions AS MATERIALIZED (
    -- Each of the job's sessions on its reader's clock, as reading_days places it (start_time is naive UTC):
    -- KOReader's in its device's zone, Kindle's in the zone of the run that loaded them, Audible's on its
    -- listening day (local midnight: the export gives no time of day, and untimed marks it).
    SELECT book_id, duration_seconds, pages_read, media_type, data_source, read_instance_id, is_parallel_read,
           untimed,
           coalesce(listening_day::timestamp, (start_time AT TIME ZONE 'UTC') AT TIME ZONE zone) AS local_start,
           coalesce(listening_day::timestamp, (end_time AT TIME ZONE 'UTC') AT TIME ZONE zone) AS local_end
    FROM (SELECT s.book_id, s.duration_seconds, s.pages_read, s.media_type, s.data_source, s.read_instance_id,
                 coalesce(s.is_parallel_read, false) AS is_parallel_read, s.start_time, s.end_time,
                 coalesce(s.time_precision = 'day', false) AS untimed, a.day AS listening_day,
                 coalesce(d.timezone, CASE WHEN s.data_source = 'kindle' THEN (
                     SELECT value FROM bookhelper.schema_meta WHERE key = 'kindle_timezone') END,
                     current_setting('TimeZone')) AS zone
          FROM public.reading_sessions s
          LEFT JOIN bookhelper.devices d ON d.name = s.device AND s.data_source = 'koreader'
          LEFT JOIN bookhelper.audible_days a ON s.data_source = 'audible'
           AND (a.book_id, a.start_time, a.device) = (s.book_id, s.start_time, s.device)
          WHERE s.data_source IN """ + OUR_SOURCES + """) AS sessions
),
-- Kindle's and Audible's seconds per local day, placed as reading_days places them; KOReader's are the rest
-- of each day's reading_seconds, so that a month's or a year's sources add up to its hours.
export_days AS (
    SELECT local_start::date AS day, sum(duration_seconds) FILTER (WHERE data_source = 'kindle') AS kindle,
           sum(duration_seconds) FILTER (WHERE data_source = 'audible') AS audible
    FROM local_sessions WHERE data_source <> 'koreader' GROUP BY 1
),
month_parts AS (
    SELECT to_char(t.day, 'YYYY-MM') AS month, sum(t.ebook_seconds) AS ebook, sum(t.audiobook_seconds) AS audiobook,
           sum(t.seconds - coalesce(x.kindle, 0) - coalesce(x.audible, 0)) AS koreader,
           coalesce(sum(x.kindle), 0) AS kindle, coalesce(sum(x.audible), 0) AS audible
    FROM day_totals t LEFT JOIN export_days x USING (day) GROUP BY 1
),
year_parts AS (
    SELECT left(month, 4)::integer AS year, sum(ebook) AS ebook, sum(audiobook) AS audiobook,
           sum(koreader) AS koreader, sum(kindle) AS kindle, sum(audible) AS audible
    FROM month_parts GROUP BY 1
),
tandem AS (
    SELECT read_instance_id, book_id, min(local_start)::date AS first_day, max(local_end)::date AS last_day,
           string_agg(DISTINCT media_type, ', ' ORDER BY media_type) AS formats, count(*) AS sessions,
           coalesce(sum(duration_seconds) FILTER (WHERE media_type = 'ebook'), 0) AS ebook_seconds,
           coalesce(sum(duration_seconds) FILTER (WHERE media_type = 'audiobook'), 0) AS audiobook_seconds
    FROM local_sessions WHERE is_parallel_read GROUP BY read_instance_id, book_id
),
streaks AS (
    SELECT first_day, last_day, days FROM bookhelper.reading_streaks
),
day_years AS (
    SELECT extract(year FROM day)::integer AS year, sum(seconds) AS reading_seconds, count(*) AS days_read,
           min(day) AS first_day, max(day) AS last_day
    FROM day_totals GROUP BY 1
),
session_years AS (
    SELECT extract(year FROM local_start)::integer AS year, count(*) AS sessions,
           count(DISTINCT book_id) AS books, sum(pages_read) AS pages_read
    FROM local_sessions GROUP BY 1
),
weekday_hours AS (
    -- only sessions with a time of day: a listening day has none, and none is made up for it
    SELECT extract(isodow FROM local_start)::integer AS weekday, extract(hour FROM local_start)::integer AS hour,
           sum(duration_seconds) AS seconds
    FROM local_sessions WHERE NOT untimed GROUP BY 1, 2
),
book_pages AS (
    SELECT book_id, sum(pages_read) AS pages_read,
           coalesce(sum(duration_seconds) FILTER (WHERE media_type = 'ebook'), 0) AS ebook_seconds,
           string_agg(DISTINCT media_type, ', ' ORDER BY media_type) AS formats
    FROM local_sessions GROUP BY book_id
)
SELECT json_build_object(
    'timezone', current_setting('TimeZone'),
    'today', current_date,
    'devices', (SELECT coalesce(json_agg(json_build_object('name', name, 'timezone', timezone) ORDER BY name), '[]')
                FROM bookhelper.devices),
    'totals', json_build_object(
        'reading_seconds', (SELECT coalesce(sum(duration_seconds), 0) FROM local_sessions),
        'books', (SELECT count(DISTINCT book_id) FROM local_sessions),
        'sessions', (SELECT count(*) FROM local_sessions),
        'pages_read', (SELECT coalesce(sum(pages_read), 0) FROM local_sessions),
        'days_read', (SELECT count(*) FROM day_totals),
        'first_day', (SELECT min(day) FROM day_totals),
        'last_day', (SELECT max(day) FROM day_totals)),
    'years', (SELECT coalesce(json_agg(json_build_object(
                  'year', year, 'reading_seconds', coalesce(d.reading_seconds, 0),
                  'days_read', coalesce(d.days_read, 0), 'first_day', d.first_day, 'last_day', d.last_day,
                  'sessions', coalesce(s.sessions, 0), 'books', coalesce(s.books, 0),
                  'pages_read', coalesce(s.pages_read, 0)) ORDER BY year DESC), '[]')
              FROM day_years d FULL JOIN session_years s USING (year)),
    'streaks', json_build_object(
        'current', (SELECT row_to_json(s) FROM streaks s WHERE s.last_day >= current_date - 1),
        'longest', (SELECT row_to_json(s) FROM streaks s ORDER BY days DESC, last_day DESC LIMIT 1)),
    'reading_seconds_by_day', (SELECT coalesce(json_object_agg(day, seconds ORDER BY day), '{}') FROM day_totals),
    'weekday_hour_seconds', (
        SELECT json_agg(hours ORDER BY weekday) FROM (
            SELECT w.weekday, json_agg(coalesce(wh.seconds, 0) ORDER BY h.hour) AS hours
            FROM generate_series(1, 7) AS w(weekday) CROSS JOIN generate_series(0, 23) AS h(hour)
            LEFT JOIN weekday_hours wh ON wh.weekday = w.weekday AND wh.hour = h.hour
            GROUP BY w.weekday) AS grid),
    'weekday_hour_untimed_seconds', (SELECT coalesce(sum(duration_seconds), 0) FROM local_sessions WHERE untimed),
    'by_format_year', (SELECT coalesce(json_agg(json_build_object(
                           'year', year, 'ebook_seconds', ebook, 'audiobook_seconds', audiobook) ORDER BY year DESC),
                           '[]') FROM year_parts),
    'by_source_year', (SELECT coalesce(json_agg(json_build_object(
                           'year', year, 'koreader_seconds', koreader, 'kindle_seconds', kindle,
                           'audible_seconds', audible) ORDER BY year DESC), '[]') FROM year_parts),
    'by_format_month', (SELECT coalesce(json_agg(json_build_object(
                            'month', month, 'ebook_seconds', ebook, 'audiobook_seconds', audiobook) ORDER BY month),
                            '[]') FROM month_parts),
    'by_source_month', (SELECT coalesce(json_agg(json_build_object(
                            'month', month, 'koreader_seconds', koreader, 'kindle_seconds', kindle,
                            'audible_seconds', audible) ORDER BY month), '[]') FROM month_parts),
    'tandem_reads', (SELECT coalesce(json_agg(json_build_object(
                         'read_instance_id', t.read_instance_id, 'book_id', t.book_id, 'title', b.title,
                         'first_day', t.first_day, 'last_day', t.last_day, 'formats', t.formats,
                         'sessions', t.sessions, 'ebook_seconds', t.ebook_seconds,
                         'audiobook_seconds', t.audiobook_seconds)
                         ORDER BY t.first_day DESC, b.title, t.read_instance_id), '[]')
                     FROM tandem t JOIN public.books b USING (book_id)),
    'books', (SELECT coalesce(json_agg(row_to_json(b) ORDER BY b.reading_seconds DESC, b.title, b.book_id), '[]')
              FROM (SELECT bs.*, coalesce(p.pages_read, 0) AS pages_read, coalesce(p.ebook_seconds, 0) AS ebook_seconds,
                           p.formats
                    FROM bookhelper.book_reading bs LEFT JOIN book_pages p USING (book_id)) AS b),
    'authors', (SELECT coalesce(json_agg(json_build_object('name', name, 'books', books,
                                                           'reading_seconds', reading_seconds)
                                         ORDER BY reading_seconds DESC, name), '[]')
                FROM (SELECT name, books, reading_seconds FROM bookhelper.author_reading WHERE reading_seconds > 0
                      ORDER BY reading_seconds DESC, name LIMIT 10) AS top),
    'finished_by_year', {finished_by_year},
    'finished_by_year_format', {finished_by_year_format}
)
"""

# Only when the warehouse has a finished_books view (from KOReader's sidecar files).
FINISHED_BY_YEAR_SQL = """(
        SELECT coalesce(json_agg(json_build_object('year', year, 'books', books) ORDER BY year DESC), '[]')
        FROM (SELECT extract(year FROM finished_on)::integer AS year, count(DISTINCT book_id) AS books
              FROM bookhelper.finished_books WHERE finished_on IS NOT NULL GROUP BY 1) AS finished)"""

# The same finishes by the formats of the read that reached the end (finished_books.formats); a finish that only
# a sidecar's "complete" status records has none.
FINISHED_BY_YEAR_FORMAT_SQL = """(
        SELECT coalesce(json_agg(row_to_json(finished) ORDER BY year DESC), '[]')
        FROM (SELECT extract(year FROM finished_on)::integer AS year,
                     count(DISTINCT book_id) FILTER (WHERE formats = 'ebook') AS ebook,
                     count(DISTINCT book_id) FILTER (WHERE formats = 'audiobook') AS audiobook,
                     count(DISTINCT book_id) FILTER (WHERE formats = 'audiobook, ebook') AS ebook_and_audiobook,
                     count(DISTINCT book_id) FILTER (WHERE formats IS NULL) AS status_only
              FROM bookhelper.finished_books WHERE finished_on IS NOT NULL GROUP BY 1) AS finished)"""


# book_stats columns left out of the page's JSON, to keep twenty years under 1 MB: an internal
# hash, a rounding of reading_seconds, and what the report does not show.
REDUNDANT_BOOK_COLUMNS = ("file_hash", "reading_hours", "page_count", "language", "devices")


def no_warehouse_data() -> dict:
    """The report data of a database without the warehouse's tables (no load has completed)."""
    return {
        "format": REPORT_FORMAT, "state": "no warehouse", "timezone": None, "today": None, "devices": [],
        "totals": {"reading_seconds": 0, "books": 0, "sessions": 0, "pages_read": 0, "days_read": 0,
                   "first_day": None, "last_day": None},
        "years": [], "streaks": {"current": None, "longest": None}, "reading_seconds_by_day": {},
        "weekday_hour_seconds": [[0] * 24 for _ in range(7)], "weekday_hour_untimed_seconds": 0,
        "by_format_year": [], "by_source_year": [], "by_format_month": [], "by_source_month": [],
        "tandem_reads": [], "books": [], "authors": [], "finished_by_year": None, "finished_by_year_format": None,
    }


def fetch_report_data(conn) -> dict:
    """Read everything the report shows: a catalog probe, then one read-only transaction.

    ``conn`` is an open psycopg2 connection, in autocommit mode or idle; it is left as it was.
    Two round trips however large the history (one when the warehouse has no tables yet).
    Returns plain data (the JSON embedded in the page): per-day reading seconds in each
    device's zone, totals, years, streaks, a weekday x hour grid, every ``book_stats`` row
    (with whatever columns the view has, less a few the page does not need) plus
    ``pages_read``, the top authors, and finished books per year when the warehouse knows
    them (else ``None``). ``state`` is ``"ok"``, ``"empty"`` (no reading yet) or
    ``"no warehouse"`` (no tables yet).
    """
    was_autocommit = conn.autocommit
    conn.autocommit = True  # each query string is then one implicit transaction, with no BEGIN or COMMIT to send
    try:
        with conn.cursor() as cursor:
            cursor.execute(CATALOG_SQL)
            has_warehouse, has_finished_books, is_current = cursor.fetchone()
            if not has_warehouse or not is_current:
                # a warehouse of a release before 3.1.0: its next load upgrades it
                return {**no_warehouse_data(), "state": "no warehouse" if not has_warehouse else "old warehouse"}
            cursor.execute(REPORT_DATA_SQL.replace(
                "{finished_by_year}", FINISHED_BY_YEAR_SQL if has_finished_books else "NULL").replace(
                "{finished_by_year_format}", FINISHED_BY_YEAR_FORMAT_SQL if has_finished_books else "NULL"))
            data = {"format": REPORT_FORMAT, **cursor.fetchone()[0]}
    finally:
        conn.autocommit = was_autocommit
    data["books"] = [{k: v for k, v in book.items() if k not in REDUNDANT_BOOK_COLUMNS} for book in data["books"]]
    data["state"] = "ok" if data["totals"]["sessions"] else "empty"
    return data


# --------------------------------------------------------------------------------------
# Rendering: one HTML page, no I/O
# --------------------------------------------------------------------------------------

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Columns that book_stats gains when sidecar and Calibre data land; shown only when present.
OPTIONAL_BOOK_COLUMNS = (
    ("status", "Status"), ("rating", "Rating"), ("highlights", "Highlights"), ("publisher", "Publisher"),
    ("tags", "Tags"),
)

STYLE = """
:root{color-scheme:light dark;--bg:#f8f7f4;--card:#fff;--fg:#1f2328;--muted:#5f6873;--line:#e3e1dc;
--accent:#0e7c66;--h0:#e9e7e1;--h1:#b9e2d3;--h2:#6cc2a6;--h3:#2a9a7d;--h4:#0d5a48;--on-h4:#fff}
@media (prefers-color-scheme:dark){:root{--bg:#111315;--card:#191c1f;--fg:#e6e5e2;--muted:#9aa3ac;
--line:#2b2f34;--accent:#4fc9a6;--h0:#24282d;--h1:#154538;--h2:#1c6f59;--h3:#2ba382;--h4:#7ee3c4;--on-h4:#0b1713}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1040px;margin:0 auto;padding:28px 16px 48px}
h1{font-size:1.9rem;line-height:1.2;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:1.2rem;margin:40px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:1rem;margin:22px 0 6px}
small,.muted{color:var(--muted);font-weight:normal}
p{margin:6px 0}
nav{display:flex;flex-wrap:wrap;gap:2px 16px;margin:0 0 20px;font-size:.9rem}
nav a{color:var(--accent);text-decoration:none;white-space:nowrap}
.sub{margin:0 0 10px;color:var(--muted)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(128px,1fr));gap:10px;margin:0}
.cards div{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 12px}
.cards dt{color:var(--muted);font-size:.78rem}
.cards dd{margin:2px 0 0;font-size:1.35rem;font-weight:650;font-variant-numeric:tabular-nums;line-height:1.3}
.cards dd span{font-size:.8rem;font-weight:600}.cards dd small{display:block;font-size:.72rem;font-weight:normal}
svg{display:block;font-size:11px}
svg text{fill:var(--muted)}
.chart{display:flex;margin:8px 0 12px}.chart svg{flex:1;min-width:0}
.axis{position:relative;flex:none;width:44px;font-size:11px;color:var(--muted)}
.axis span{position:absolute;right:6px;transform:translateY(-50%);white-space:nowrap}
.bar{fill:var(--accent)}.grid{stroke:var(--line)}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;align-items:center;font-size:.8rem;color:var(--muted);margin:6px 0 0}
.legend i{display:inline-block;width:11px;height:11px;border-radius:2px;vertical-align:-1px;margin-right:5px}
.k0{background:var(--h0)}.k1{background:var(--h1)}.k2{background:var(--h2)}.k3{background:var(--h3)}
.k4{background:var(--h4)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:.8rem;color:var(--muted);font-weight:600;white-space:nowrap}
tbody th{font-size:inherit;color:inherit}
.n{text-align:right;white-space:nowrap}
.heat{border-collapse:separate;border-spacing:3px;width:auto;font-size:.68rem;line-height:1}
.heat th{padding:0 3px 2px 0;border:0;font-weight:normal;font-size:inherit;text-align:left;color:var(--muted)}
.heat tbody th{line-height:0;vertical-align:middle}
.heat td{width:var(--cell);height:var(--cell);padding:0;border:0;border-radius:2px;background:var(--h0)}
.heat .x{background:none}.heat .h1{background:var(--h1)}.heat .h2{background:var(--h2)}
.heat .h3{background:var(--h3)}.heat .h4{background:var(--h4)}
.cal{--cell:min(15px,calc((100vw - 110px) / 56))}
.week{--cell:min(36px,calc((100vw - 120px) / 25));width:100%;max-width:980px}.week td{height:22px}
.months td{text-align:right;padding:4px 6px}
.months .m1{background:var(--h1)}.months .m2{background:var(--h2)}.months .m3{background:var(--h3);color:#fff}
.months .m4{background:var(--h4);color:var(--on-h4)}.months td:last-child{font-weight:600}
.parts{width:auto;min-width:min(100%,560px)}.parts td:last-child{font-weight:600}
.books td:nth-child(n+3):nth-child(-n+6),.books th:nth-child(n+3):nth-child(-n+6){text-align:right}
.books td:nth-child(n+3):nth-child(-n+8){white-space:nowrap}.books td:first-child{min-width:12em}
.top{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:0 36px}
.top td{border:0;padding:4px 6px}
.meter{width:38%;min-width:70px}
.meter span{display:block;height:10px;border-radius:5px;background:var(--accent);margin-top:6px}
.empty{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:24px;font-size:1.1rem}
footer{margin-top:40px;font-size:.85rem;color:var(--muted)}
footer li{margin:3px 0}
@media (max-width:600px){main{padding:18px 10px 32px}h1{font-size:1.5rem}.cards dd{font-size:1.15rem}
th,td{padding:4px 5px}.wide,.minor{display:none}.heat{border-spacing:1px;font-size:.6rem}
.cal{--cell:calc((100vw - 100px) / 54)}.week{--cell:auto}.week td{height:16px}}
"""

# Nothing on the page may load from anywhere: the browser enforces what the tests check.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def esc(value) -> str:
    """Text or attribute content, escaped."""
    return html.escape(str(value), quote=True)


def count(value: int) -> str:
    return f"{value:,}"


def hours(seconds: float, decimals: int = 1) -> str:
    return f"{seconds / 3600:,.{decimals}f}"


def duration(seconds: float) -> str:
    """'45 min' or '3 h 05 min': how long, for people."""
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60:,} h {minutes % 60:02d} min"


def long_date(day: str) -> str:
    """'2026-03-29' as '29 Mar 2026'."""
    parsed = datetime.date.fromisoformat(day)
    return f"{parsed.day} {MONTHS[parsed.month - 1]} {parsed.year}"


def date_span(first: str, last: str) -> str:
    """'18 Oct – 6 Nov 2025', or with both years when they differ; one date when they are equal."""
    if first == last:
        return long_date(first)
    if first[:4] == last[:4]:
        return f"{long_date(first)[:-5]} – {long_date(last)}"
    return f"{long_date(first)} – {long_date(last)}"


def plural(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def json_for_script(data: dict) -> str:
    """The page's data as JSON that cannot end its <script> element early (<, > and & become \\u
    escapes). Books go as ``{"columns": [...], "rows": [[...], ...]}``: named once, not once a book,
    which keeps twenty years of 900 books with every column under 1 MB."""
    books = data.get("books") or []
    columns = list(dict.fromkeys(key for book in books for key in book))
    data = {**data, "books": {"columns": columns, "rows": [[book.get(key) for key in columns] for book in books]}}
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def heat_cuts(values: list, unit: int = 1) -> list:
    """Three cut points splitting the non-zero values into four groups of about equal size.

    The cuts are whole multiples of ``unit`` (60 for minutes), so the legend says exactly what each
    colour holds.
    """
    ordered = sorted(v for v in values if v > 0)
    if not ordered:
        return [0, 0, 0]
    return [max(unit, round(ordered[len(ordered) * q // 4] / unit) * unit) for q in (1, 2, 3)]


def level(value: float, cuts: list) -> int:
    """0 for nothing, then 1 to 4."""
    if value <= 0:
        return 0
    return 1 + sum(value > cut for cut in cuts)


def legend(cuts: list, describe) -> str:
    """A legend that says in words what each colour means."""
    ranges = [f"up to {describe(cuts[0])}", f"to {describe(cuts[1])}", f"to {describe(cuts[2])}",
              f"over {describe(cuts[2])}"]
    items = ['<span><i class="k0"></i>none</span>'] + [
        f'<span><i class="k{n}"></i>{esc(text)}</span>' for n, text in enumerate(ranges, 1)
    ]
    return f'<p class="legend">{"".join(items)}</p>'


# --- the calendar heatmap --------------------------------------------------------------

def calendar_table(year: int, seconds_by_day: dict, cuts: list, last_day: datetime.date) -> str:
    """One year as weekdays (rows, Monday first) x weeks (columns), each day titled with its minutes.

    A table, as GitHub draws its calendar: a cell with a title costs half the bytes of an SVG mark,
    and twenty years of daily reading must fit in well under 1 MB.
    """
    first = datetime.date(year, 1, 1)
    start = first - datetime.timedelta(days=first.weekday())
    weeks = (datetime.date(year, 12, 31) - start).days // 7 + 1
    # A week is labelled with the month of its Monday; the first week, whatever its Monday, is January's.
    column_months = [1] + [(start + datetime.timedelta(days=7 * week)).month for week in range(1, weeks)]
    month_row = "".join(f'<th colspan="{column_months.count(m)}">{MONTHS[m - 1]}</th>' for m in range(1, 13))
    # The end tags of cells and rows are left out, as HTML allows: they are a tenth of twenty years' calendars.
    rows = []
    for weekday in range(7):
        cells = [f"<tr><th>{WEEKDAYS[weekday] if weekday % 2 == 0 else ''}"]
        for week in range(weeks):
            day = start + datetime.timedelta(days=week * 7 + weekday)
            if day.year != year or day > last_day:
                cells.append('<td class="x">')
                continue
            seconds = seconds_by_day.get(day.isoformat(), 0)
            minutes = round(seconds / 60)
            label = f"{day.day} {MONTHS[day.month - 1]}: " + (
                f"{minutes} min" if minutes else "under 1 min" if seconds else "none")
            heat = level(seconds, cuts)
            cells.append(f'<td class="h{heat}" title="{label}">' if heat else f'<td title="{label}">')
        rows.append("".join(cells))
    return (f'<div class="scroll"><table class="heat cal" aria-label="Reading minutes per day in {year}">'
            f'<thead><tr><th></th>{month_row}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def calendars_section(data: dict) -> str:
    seconds_by_day = data["reading_seconds_by_day"]
    cuts = heat_cuts(list(seconds_by_day.values()), unit=60)
    # Days after today stay blank; a clock that ran ahead may have put reading there, so show it.
    last_day = max(datetime.date.fromisoformat(data["today"]), datetime.date.fromisoformat(data["totals"]["last_day"]))
    parts = ['<h2 id="days">Reading days</h2>']
    for year in data["years"]:
        if year["days_read"]:
            parts.append(f'<h3>{year["year"]} <small>{hours(year["reading_seconds"])} h on '
                         f'{plural(year["days_read"], "day")}</small></h3>'
                         f'{calendar_table(year["year"], seconds_by_day, cuts, last_day)}')
    parts.append(legend(cuts, lambda s: f"{s // 60} min"))
    return "".join(parts)


# --- bar charts ------------------------------------------------------------------------

def tick_step(largest: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) that divides 0..largest into at most five parts."""
    step = 10 ** math.floor(math.log10(largest / 5)) if largest > 0 else 1
    for factor in (1, 2, 5):
        if largest <= 5 * step * factor:
            return step * factor
    return step * 10


def bar_chart(bars: list, unit: str, aria: str, height: int = 200) -> str:
    """Vertical bars, each titled: ``bars`` is a list of (axis label, hidden on a phone?, title, value).

    No viewBox: bars are placed in percent of the width and text is in CSS pixels, so the chart
    fills a desktop or a phone and its labels stay legible on both. The value axis is HTML beside it.
    """
    top, bottom = 8, 22
    largest = max((value for *_, value in bars), default=0)
    step_value = tick_step(largest)
    ticks = max(1, math.ceil(largest / step_value))
    plot_height = height - top - bottom
    share = 100 / max(len(bars), 1)
    axis, lines, parts = [], [], []
    for tick in range(ticks + 1):
        y = top + plot_height - plot_height * tick / ticks
        axis.append(f'<span style="top:{y:.0f}px">{tick * step_value:g}{unit}</span>')
        lines.append(f'<line class="grid" x1="0" x2="100%" y1="{y:.1f}" y2="{y:.1f}"/>')
    for i, (label, minor, title, value) in enumerate(bars):
        bar_height = plot_height * value / (ticks * step_value)
        parts.append(f'<rect class="bar" x="{(i + 0.12) * share:.3f}%" y="{top + plot_height - bar_height:.1f}" '
                     f'width="{0.76 * share:.3f}%" height="{bar_height:.1f}" rx="1.5">'
                     f'<title>{esc(title)}</title></rect>')
        if label:
            # Labels at the ends are aligned inwards, so that the chart's edge does not cut them.
            anchor, x = ("start", i) if i == 0 else ("end", i + 1) if i == len(bars) - 1 else ("middle", i + 0.5)
            hidden_on_a_phone = ' class="minor"' if minor else ""
            parts.append(f'<text{hidden_on_a_phone} x="{x * share:.3f}%" y="{height - 6}" text-anchor="{anchor}">'
                         f"{esc(label)}</text>")
    return (f'<div class="chart"><div class="axis" aria-hidden="true">{"".join(axis)}</div>'
            f'<svg width="100%" height="{height}" style="max-width:{len(bars) * 64}px" role="img" '
            f'aria-label="{esc(aria)}">{"".join(lines + parts)}'
            "</svg></div>")


def monthly_seconds(seconds_by_day: dict) -> dict:
    """Reading seconds per (year, month), every month from the first one read to the last."""
    months: dict = {}
    for day, seconds in seconds_by_day.items():
        key = (int(day[:4]), int(day[5:7]))
        months[key] = months.get(key, 0) + seconds
    if not months:
        return {}
    (year, month), last = min(months), max(months)
    filled = {}
    while (year, month) <= last:
        filled[(year, month)] = months.get((year, month), 0)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return filled


def month_axis_label(year: int, month: int, months: int) -> tuple:
    """(label, hidden on a phone?): months for a short history, quarters for a medium one, else years."""
    if months <= 18:
        return MONTHS[month - 1], month % 2 == 0
    if months <= 48:
        return (f"{MONTHS[month - 1]} {year % 100:02d}" if month % 3 == 1 else ""), month != 1
    if month != 1:
        return "", False
    years = months / 12
    every, every_on_a_phone = (1 if years <= 24 else 2 if years <= 48 else 5), max(1, math.ceil(years / 5))
    return (str(year) if year % every == 0 else ""), year % every_on_a_phone != 0


def months_section(seconds_by_day: dict) -> str:
    months = monthly_seconds(seconds_by_day)
    bars = [(*month_axis_label(year, month, len(months)), f"{MONTHS[month - 1]} {year}: {hours(seconds)} h",
             seconds / 3600) for (year, month), seconds in months.items()]
    cuts = heat_cuts(list(months.values()))
    rows = []
    for year in sorted({y for y, _ in months}, reverse=True):
        cells = []
        for month in range(1, 13):
            seconds = months.get((year, month))
            heat = level(seconds or 0, cuts)
            cells.append("<td></td>" if seconds is None else f'<td class="m{heat}">{hours(seconds)}</td>' if heat
                         else '<td class="muted">0</td>')
        total = sum(s for (y, _), s in months.items() if y == year)
        rows.append(f'<tr><th scope="row">{year}</th>{"".join(cells)}<td>{hours(total)}</td></tr>')
    head = "".join(f'<th class="n">{m}</th>' for m in MONTHS)
    return (f'<h2 id="months">Hours per month</h2>{bar_chart(bars, " h", "Hours of reading per month")}'
            f'<div class="scroll"><table class="months"><thead><tr><th>Year</th>{head}'
            f'<th class="n">Year</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


# --- weekday x hour --------------------------------------------------------------------

def weekday_hour_section(data: dict) -> str:
    untimed = data.get("weekday_hour_untimed_seconds") or 0
    note = (f'<p class="muted">Not in this grid: {hours(untimed)} h of Audible listening, whose export gives the day '
            "but no time of day (they count in every other figure).</p>" if untimed else "")
    return f'<h2 id="week">Weekday and hour</h2>{weekday_hour_table(data["weekday_hour_seconds"])}{note}'


def weekday_hour_table(grid: list) -> str:
    """When in the week the reader reads: weekdays (rows, Monday first) x hours, each cell titled."""
    cuts = heat_cuts([seconds for row in grid for seconds in row], unit=360)
    hours_row = "".join(f'<th colspan="3">{hour:02d}</th>' for hour in range(0, 24, 3))
    rows = []
    for weekday, row in zip(WEEKDAYS, grid):
        cells = "".join(f'<td class="h{level(seconds, cuts)}" title="{weekday} {hour:02d}–{hour + 1:02d} h: '
                        f'{hours(seconds)} h"></td>' for hour, seconds in enumerate(row))
        rows.append(f"<tr><th>{weekday}</th>{cells}</tr>")
    return (f'<table class="heat week" aria-label="Hours of reading by weekday and hour of the day"><thead><tr>'
            f'<th></th>{hours_row}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + legend(cuts, lambda s: f"{hours(s)} h"))


# --- tables ----------------------------------------------------------------------------

def cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def top_table(rows: list, caption: str) -> str:
    """A ranked list with a bar per row: (name, detail, seconds)."""
    most = max((seconds for _, _, seconds in rows), default=0) or 1
    body = "".join(
        f'<tr><td class="n muted">{rank}</td><td>{esc(name)}<br><small>{esc(detail)}</small></td>'
        f'<td class="meter"><span style="width:{100 * seconds / most:.1f}%"></span></td>'
        f'<td class="n">{hours(seconds)} h</td></tr>'
        for rank, (name, detail, seconds) in enumerate(rows, 1)
    )
    return f"<div><h3>{esc(caption)}</h3><table>{body}</table></div>"


def top_section(data: dict) -> str:
    books = [(b["title"] or "(untitled)", b["authors"] or "", b["reading_seconds"])
             for b in data["books"][:10] if b["reading_seconds"]]
    authors = [(a["name"], plural(a["books"], "book"), a["reading_seconds"]) for a in data["authors"]]
    return (f'<h2 id="top">Most read</h2><div class="top">{top_table(books, "Books")}'
            f'{top_table(authors, "Authors")}</div>')


def books_table(books: list) -> str:
    """Every book, most read first, with the sidecar and Calibre columns that the warehouse has."""
    extra = [(key, label) for key, label in OPTIONAL_BOOK_COLUMNS if any(key in book for book in books)]
    if any(book.get("formats") not in (None, "ebook") for book in books):
        extra.insert(0, ("formats", "Format"))
    head = ("<th>Title</th><th>Authors</th><th>Hours</th><th>Sessions</th><th>Reads</th><th>Pages/h</th>"
            "<th>First read</th><th>Last read</th>" + "".join(f"<th>{esc(label)}</th>" for _, label in extra))
    rows = []
    for book in books:
        seconds = book["reading_seconds"]
        paged = book.get("ebook_seconds", seconds)  # pages per hour of ebook reading: audiobooks have no pages
        pace = f"{book['pages_read'] * 3600 / paged:.0f}" if paged and book["pages_read"] else ""
        series = f'<br><small>{esc(book["series"])}</small>' if book.get("series") else ""
        # Timestamps carry the reader's offset, so their first ten characters are the local date. The end
        # tags of cells and rows are left out, as HTML allows: they would be a quarter of the table.
        rows.append(
            f'<tr><td>{esc(book["title"] or "(untitled)")}{series}<td>{esc(book["authors"] or "")}'
            f'<td>{hours(seconds)}<td>{count(book["sessions"])}<td>{book["reads"]}<td>{pace}'
            f'<td>{(book["first_read_at"] or "")[:10]}<td>{(book["last_read_at"] or "")[:10]}'
            + "".join(f"<td>{esc(cell_text(book.get(key)))}" for key, _ in extra)
        )
    return (f'<h2 id="books">Every book <small>({count(len(books))})</small></h2><div class="scroll">'
            f'<table class="books"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def years_section(years: list, finished: Optional[dict]) -> str:
    finished_head = '<th class="n">Finished</th>' if finished is not None else ""
    rows = []
    for year in years:
        finished_cell = f'<td class="n">{finished.get(year["year"], 0)}</td>' if finished is not None else ""
        span = date_span(year["first_day"], year["last_day"]) if year["first_day"] else ""
        rows.append(
            f'<tr><th scope="row">{year["year"]}</th><td class="n">{hours(year["reading_seconds"])}</td>'
            f'<td class="n">{count(year["days_read"])}</td><td class="n">{count(year["books"])}</td>'
            f'<td class="n">{count(year["sessions"])}</td><td class="n">{count(year["pages_read"])}</td>'
            f'{finished_cell}<td class="wide">{span}</td></tr>'
        )
    return ('<h2 id="years">Years</h2><div class="scroll"><table><thead><tr><th>Year</th><th class="n">Hours</th>'
            '<th class="n">Days read</th><th class="n">Books</th><th class="n">Sessions</th><th class="n">Pages</th>'
            f'{finished_head}<th class="wide">From – to</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div>')


def finished_section(finished: Optional[dict], by_format: Optional[list] = None) -> str:
    if not finished:
        return ('<h2 id="finished">Finished books</h2><p class="muted">Finished books per year appear here once '
                "KOReader's sidecar files are loaded into the warehouse, or a read reaches a book's end.</p>")
    bars = [(str(year), year % max(1, math.ceil(len(finished) / 8)) != 0, f"{year}: {plural(books, 'book')} finished",
             books) for year, books in sorted(finished.items())]
    return (f'<h2 id="finished">Finished books</h2>{bar_chart(bars, "", "Books finished per year", height=170)}'
            f'{finished_formats_table(by_format or [])}')


# --- formats and sources ---------------------------------------------------------------

FORMAT_COLUMNS = (("ebook_seconds", "Ebook"), ("audiobook_seconds", "Audiobook"))
SOURCE_COLUMNS = (("koreader_seconds", "KOReader"), ("kindle_seconds", "Kindle"), ("audible_seconds", "Audible"))
RECENT_MONTHS = 12


def merged_rows(formats: list, sources: list, key: str) -> list:
    """The format and source rows of each year (or month) as one dict, in the order of ``formats``."""
    by_key = {row[key]: dict(row) for row in formats}
    for row in sources:
        by_key.setdefault(row[key], {key: row[key]}).update(row)
    return list(by_key.values())


def parts_table(rows: list, key: str, label, columns: list, caption: str) -> str:
    """Hours per row (a year or a month) in each format and source column, and the row's total."""
    groups = [group for group in (FORMAT_COLUMNS, SOURCE_COLUMNS) if any(c in columns for c, _ in group)]
    head = "".join(f'<th class="n">{name}</th>' for group in groups for column, name in group if column in columns)
    body = []
    for row in rows:
        cells = "".join(f'<td class="n">{hours(row.get(column, 0))}</td>' if row.get(column) else
                        '<td class="n muted">–</td>' for group in groups for column, _ in group if column in columns)
        total = sum(row.get(column, 0) for column, _ in groups[0])
        body.append(f'<tr><th scope="row">{esc(label(row[key]))}</th>{cells}<td class="n">{hours(total)}</td></tr>')
    return (f'<div class="scroll"><table class="parts" aria-label="{esc(caption)}"><thead><tr><th></th>{head}'
            f'<th class="n">Hours</th></tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def month_label(month: str) -> str:
    return f"{MONTHS[int(month[5:7]) - 1]} {month[:4]}"


def formats_section(data: dict) -> str:
    """Hours by format (ebook, audiobook) and by source (KOReader, Kindle, Audible) per year, and per month for
    the last months read; only the columns that hold any reading."""
    years = merged_rows(data.get("by_format_year") or [], data.get("by_source_year") or [], "year")
    months = merged_rows(data.get("by_format_month") or [], data.get("by_source_month") or [], "month")
    columns = [column for column, _ in FORMAT_COLUMNS + SOURCE_COLUMNS if any(row.get(column) for row in years)]
    present = [name for column, name in FORMAT_COLUMNS + SOURCE_COLUMNS if column in columns]
    heading = '<h2 id="formats">Formats and sources</h2>'
    if len(columns) <= 2:  # one format from one source: the tables would only repeat the hours
        return heading + (f'<p class="muted">All reading so far is {present[0].lower()}s from {present[1]}.</p>'
                          if len(present) == 2 else "")
    recent = months[-RECENT_MONTHS:][::-1]
    return (heading + parts_table(years, "year", str, columns, "Hours by format and source per year")
            + f'<h3>By month <small>(the last {plural(len(recent), "month")})</small></h3>'
            + parts_table(recent, "month", month_label, columns, "Hours by format and source per month")
            + '<p class="muted">Hours of each local day, as in the calendars; the sources add up to the formats.</p>')


FINISHED_FORMATS = (("ebook", "Ebook"), ("audiobook", "Audiobook"), ("ebook_and_audiobook", "Both"),
                    ("status_only", "Marked finished"))


def finished_formats_table(rows: list) -> str:
    """Finished books per year by the formats of the read that reached the end."""
    columns = [(key, name) for key, name in FINISHED_FORMATS if any(row.get(key) for row in rows)]
    if not columns:
        return ""
    head = "".join(f'<th class="n">{name}</th>' for _, name in columns)
    body = "".join(f'<tr><th scope="row">{row["year"]}</th>'
                   + "".join(f'<td class="n">{row.get(key) or 0}</td>' for key, _ in columns) + "</tr>" for row in rows)
    return (f'<div class="scroll"><table class="parts" aria-label="Finished books per year by format"><thead><tr>'
            f'<th>Year</th>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            '<p class="muted">By the formats of the read that reached the end'
            + (' ("Both": a tandem read)' if any(key == "ebook_and_audiobook" for key, _ in columns) else "") + "."
            + (" Marked finished: KOReader's status or Amazon's completion record says so, and no read reached "
               "the end."
               if any(key == "status_only" for key, _ in columns) else "") + "</p>")


TANDEM_ROWS = 50


def tandem_section(data: dict) -> str:
    """Tandem reads (an audiobook listened alongside its ebook, one read): most recent first."""
    reads = data.get("tandem_reads") or []
    if not reads:
        return ""
    body = "".join(
        f'<tr><td>{esc(read["title"] or "(untitled)")}</td><td>{date_span(read["first_day"], read["last_day"])}</td>'
        f'<td>{esc(read["formats"])}</td><td class="n">{hours(read["ebook_seconds"])}</td>'
        f'<td class="n">{hours(read["audiobook_seconds"])}</td><td class="n">{count(read["sessions"])}</td></tr>'
        for read in reads[:TANDEM_ROWS])
    more = (f'<p class="muted">The {count(len(reads) - TANDEM_ROWS)} earlier ones are in the page\'s data.</p>'
            if len(reads) > TANDEM_ROWS else "")
    return (f'<h2 id="tandem">Tandem reads <small>({count(len(reads))})</small></h2>'
            '<p class="sub">An audiobook listened to alongside its ebook: one read of the book.</p>'
            '<div class="scroll"><table><thead><tr><th>Book</th><th>From – to</th><th>Formats</th>'
            '<th class="n">Ebook h</th><th class="n">Audiobook h</th><th class="n">Sessions</th></tr></thead>'
            f"<tbody>{body}</tbody></table></div>{more}")


# --- the page --------------------------------------------------------------------------

def totals_cards(data: dict) -> str:
    totals, streaks = data["totals"], data["streaks"]
    seconds, sessions, days_read = totals["reading_seconds"], totals["sessions"], totals["days_read"]
    span = (datetime.date.fromisoformat(totals["last_day"]) - datetime.date.fromisoformat(totals["first_day"])).days + 1

    def streak(run: Optional[dict], none: str) -> tuple:
        if not run:
            return "0", "days", none
        return count(run["days"]), "day" if run["days"] == 1 else "days", date_span(run["first_day"], run["last_day"])

    listened = sum(row["audiobook_seconds"] for row in data.get("by_format_year") or [])
    # pages come from ebooks only: their pace is over the hours of ebook reading
    paged = seconds - listened
    reading_detail = (f"{hours(seconds - listened, 0)} h ebooks, {hours(listened, 0)} h audiobooks" if listened
                      else f"{duration(seconds / max(days_read, 1))} a reading day")
    cards = [
        ("Reading time", hours(seconds, 0), "h", reading_detail),
        ("Books", count(totals["books"]), "", f"{hours(seconds / max(totals['books'], 1))} h each"),
        ("Sessions", count(sessions), "", f"{duration(seconds / max(sessions, 1))} each"),
        ("Pages", count(totals["pages_read"]), "", f"{totals['pages_read'] * 3600 / max(paged, 1):.0f} an hour"),
        ("Days read", count(days_read), "", f"{100 * days_read / span:.0f}% of {plural(span, 'day')}"),
        ("Current streak", *streak(streaks["current"], "none today or yesterday")),
        ("Longest streak", *streak(streaks["longest"], "")),
    ]
    items = "".join(
        f"<div><dt>{name}</dt><dd>{value}{' <span>' + unit + '</span>' if unit else ''}<small>{esc(detail)}</small>"
        "</dd></div>" for name, value, unit, detail in cards
    )
    return f'<dl class="cards">{items}</dl>'


def zone_note(data: dict) -> str:
    zones = {device["timezone"] for device in data["devices"]}
    if len(zones) <= 1:
        return f"local days in {data['timezone']}"
    devices = ", ".join(f"{device['name']} in {device['timezone']}" for device in data["devices"])
    return f"local days in each device's zone ({devices}); today is {data['timezone']}'s"


FOOTNOTES = (
    "Reading time is every source's own: KOReader's seconds spent on each page, summed (pauses are not "
    "counted); Kindle's reading intervals; Audible's listening time of each day.",
    "Days are local calendar days in the device's time zone, daylight saving time included; "
    "a sitting across midnight counts on both days. Kindle's are in the zone of the load that read the export, "
    "Audible's are the days its export gives.",
    "The weekday and hour chart puts each session's whole time in the hour it started; Audible's listening days "
    "have no time of day and are not in it.",
    "Pages are the distinct pages of each session, summed. A read starts again when a session opens in the "
    "first 10% of a book after one reached 90%.",
    "The current streak ends today or yesterday. Years count sessions, books and pages by the day a session "
    "started, and reading time by the day it happened.",
)


def report_body(data: dict) -> str:
    finished = data.get("finished_by_year")
    finished_by_year = {row["year"]: row["books"] for row in finished} if finished is not None else None
    tandem = tandem_section(data)
    tandem_link = '<a href="#tandem">Tandem</a>' if tandem else ""
    return "".join((
        '<nav><a href="#years">Years</a><a href="#days">Days</a><a href="#months">Months</a>'
        '<a href="#formats">Formats</a><a href="#week">Week</a><a href="#top">Most read</a>'
        f'<a href="#finished">Finished</a>{tandem_link}'
        '<a href="#books">Every book</a></nav>',
        totals_cards(data),
        years_section(data["years"], finished_by_year),
        calendars_section(data),
        months_section(data["reading_seconds_by_day"]),
        formats_section(data),
        weekday_hour_section(data),
        top_section(data),
        finished_section(finished_by_year, data.get("finished_by_year_format")),
        tandem,
        books_table(data["books"]),
        f'<footer><ul>{"".join(f"<li>{esc(note)}</li>" for note in FOOTNOTES)}</ul></footer>',
    ))


def in_zone(moment: datetime.datetime, zone: Optional[str]) -> datetime.datetime:
    """``moment`` on the reader's clock, when Python knows the zone."""
    try:
        return moment.astimezone(zoneinfo.ZoneInfo(zone)) if zone else moment
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return moment


def render_report(data: dict, generated_at: datetime.datetime) -> str:
    """The whole HTML page for ``data`` (from ``fetch_report_data``), stamped ``generated_at``. Pure."""
    stamp = in_zone(generated_at, data["timezone"])
    generated = f"generated {stamp.day} {MONTHS[stamp.month - 1]} {stamp.year}, {stamp:%H:%M}"
    payload = {**data, "generated_at": generated_at.isoformat(timespec="seconds")}
    if data["state"] == "ok":
        totals = data["totals"]
        subtitle = f"{date_span(totals['first_day'], totals['last_day'])} · {zone_note(data)} · {generated}"
        body = report_body(data)
    else:
        subtitle = generated
        message = {"no warehouse": "The warehouse has no bookhelper-etl tables yet: no load has completed.",
                   "old warehouse": "The warehouse was made by an older release of bookhelper-etl: the next load "
                                    "upgrades it."}.get(data["state"], "The warehouse holds no reading yet.")
        body = (f'<p class="empty">{esc(message)} Load a KOReader statistics file with '
                "<code>extract_koreader_stats.py</code>, then write the report again.</p>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>Reading report</title><style>{STYLE}</style></head><body><main>"
        f'<h1>Reading report</h1><p class="sub">{esc(subtitle)}</p>{body}</main>'
        f'<script type="application/json" id="report-data">{json_for_script(payload)}</script>'
        "</body></html>\n"
    )


# --------------------------------------------------------------------------------------
# Writing the file
# --------------------------------------------------------------------------------------

def write_report(conn, path: Path) -> dict:
    """Fetch, render and atomically replace ``path`` (mode 0644). Returns a summary for the log.

    The page goes to a temporary file beside ``path``, is flushed to disk and renamed over it,
    so a web server or a Syncthing folder never sees half a report.
    """
    path = Path(path)
    data = fetch_report_data(conn)
    page = render_report(data, datetime.datetime.now(datetime.timezone.utc)).encode("utf-8")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(page)
            os.fchmod(stream.fileno(), 0o644)  # mkstemp makes it 0600; a web server must read it
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)
    return {"path": str(path), "state": data["state"], "books": len(data["books"]),
            "days": len(data["reading_seconds_by_day"]), "bytes": len(page)}
