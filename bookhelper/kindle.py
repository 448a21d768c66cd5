"""Source: the Kindle part of Amazon's data export (``../shared/kindle-export-format.md``): reading sessions
from ``Kindle.Devices.ReadingSession.csv``, the only file of reading time (the others describe the same
reading), titles and authors from the library index, then from the other files that name a book.

A store book's intervals go to the warehouse book that holds its ASIN (Calibre's ``amazon`` identifiers,
``books.asin``, then ``mobi-asin``), else to a book of its own titled from the export (else by the Calibre
book that holds the ASIN, ``calibre_asins``, else by the ASIN). A personal document is a book of its own,
keyed by its document id, never matched by ASIN. Samples are not the book: they are skipped and counted.
The export is current state: each run loads what it says.
"""

import bisect
import calendar
import datetime
import io
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from zoneinfo import ZoneInfo

from bookhelper.core import (
    DEVICE_LENGTH,
    Book,
    RunContext,
    Setting,
    SourceUnusable,
    component_logger,
    copy_text,
    fit_text,
    naive_utc,
    repeatable,
    state_digest,
)
from bookhelper.exports import (
    Export,
    LazyExport,
    configured_path,
    open_export,
    read_header,
    read_json,
    read_rows,
    report_problems,
    require_columns,
    unavailable,
)
from bookhelper.matching import AsinHolder, asin_key, asin_rule, match_asins, match_title_author, titled_books
from bookhelper.schema import apply_export_sessions, book_keys_json, report_clashes, titled_books_json
from bookhelper.sessions import SAME_FINISH_DAYS, exact_seconds, gap_groups, read_instance_id

SESSION_FILE = "Kindle.Devices.ReadingSession.csv"
SESSION_COLUMNS = ("start_timestamp", "end_timestamp", "ASIN", "device_family", "device_serial_number",
                   "content_type", "total_reading_millis", "number_of_page_flips")
TITLE_FILE = "Kindle.UnifiedLibraryIndex.CustomerRelationshipIndex.csv"
AUTHOR_FILE = "Kindle.UnifiedLibraryIndex.CustomerAuthorNameRelationship.csv"
DOCUMENT_FILE = "Kindle.KindleDocs.DocumentMetadata.csv"
COMPLETED_FILE = "Kindle.UserUniqueTitlesCompleted.csv"
COMPLETED_KEY = re.compile(r"([A-Z0-9]{10})_(\d{4}-\d\d-\d\d)_([A-Z]+)")
# Where else the export names a store book, in the fact sheet's lookup order after the library index: (file,
# ASIN column, title column, the column that must say it is an ebook, and what it says); they name no authors.
ELSEWHERE_TITLE_FILES = (
    ("whispersync.csv", "ASIN", "Product Name", "ContentType", "EBOK"),
    (COMPLETED_FILE, "asin_date_and_content_type", "product_name", None, None),
    ("Kindle.reading-insights-sessions_with_adjustments.csv", "ASIN", "product_name", None, None),
    ("Kindle.KindleContentUpdate.ContentUpdates.csv", "ASIN", "Product Name", None, None),
)
OWNERSHIP_FILE = re.compile(r"Digital\.Content\.Ownership\.(\d+)\.json")
CONTENT_KINDS = {"E-Book": "book", "Personal Document": "document", "E-Book Sample": "sample"}
DOCUMENT_ID = re.compile(r"[0-9A-F]{32}")
TIMESTAMP = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,6})?Z")
EARLIEST_START = 1167609600  # 2007-01-01: the first Kindle; an earlier time is a broken clock
LONGEST_INTERVAL_MS = 24 * 3600 * 1000
SERIES_ASIN = re.compile(r"[\s\u00a0]+B[0-9A-Z]{9}$")
COPY_NULL = "\\N"
APP_DEVICE = "Kindle app"  # the phone and tablet apps leave device_family empty
SAME_FINISH = datetime.timedelta(days=SAME_FINISH_DAYS)


@dataclass(frozen=True)
class KindleInterval:
    """One row of ReadingSession: an interval of reading with exact UTC times."""

    content_id: str  # a store ASIN, or a personal document's id
    kind: str  # "book" or "document"
    start: int
    end: int
    millis: int
    serial: str
    device: str
    page_flips: Optional[int]


@dataclass(frozen=True)
class KindleExport:
    """What an export says: its intervals (each reported once), what it names each content id, and a digest."""

    intervals: tuple[KindleInterval, ...]
    titles: dict  # content id -> (title, authors as "First Last")
    fingerprint: str
    problems: tuple[tuple[str, int], ...] = ()  # rows skipped, by reason
    completions: dict = field(default_factory=dict)  # store ASIN -> the days Amazon says it was finished


def parse_timestamp(text: str) -> Optional[int]:
    """Epoch seconds of ``YYYY-MM-DDTHH:MM:SS[.fff]Z``, else None."""
    found = TIMESTAMP.fullmatch(text.strip())
    if not found:
        return None
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return calendar.timegm((year, month, day, hour, minute, second))


def kindle_interval(row: dict, now: int) -> tuple[Optional[KindleInterval], Optional[str]]:
    """One ReadingSession row as an interval, or the reason it is skipped."""
    kind = CONTENT_KINDS.get(row["content_type"].strip())
    if kind is None:
        return None, "unknown content type"
    if kind == "sample":
        return None, "a sample, not the book"
    if unavailable(row["start_timestamp"]):
        return None, "start Not Available"
    content_id = row["ASIN"].strip().upper()
    if not (asin_key(content_id) if kind == "book" else DOCUMENT_ID.fullmatch(content_id)):
        return None, "not an ASIN or document id"
    start, end = parse_timestamp(row["start_timestamp"]), parse_timestamp(row["end_timestamp"])
    if start is None or end is None:
        return None, "not a time stamp"
    if not EARLIEST_START <= start <= now:
        return None, "start before 2007 or in the future"
    millis_text = row["total_reading_millis"].strip()
    if not millis_text.isdigit() or int(millis_text) == 0:
        return None, "empty or negative duration"
    if int(millis_text) > LONGEST_INTERVAL_MS:
        return None, "longer than a day"
    serial = row["device_serial_number"].strip()
    if len(serial) > 100:
        return None, "not a device serial"
    flips = row["number_of_page_flips"].strip()
    device = fit_text(row["device_family"].strip() or APP_DEVICE, DEVICE_LENGTH)
    return KindleInterval(content_id, kind, start, max(end, start), int(millis_text), serial, device,
                          int(flips) if flips.isdigit() and len(flips) < 9 else None), None


def transform_intervals(rows: Iterable[dict], now: int, problems: Counter) -> tuple[KindleInterval, ...]:
    """The export's intervals, each once: a row re-sent with another software version is the same interval
    (key: content id, start, device serial); of two such rows the longer one counts, whatever their order."""
    chosen: dict[tuple, KindleInterval] = {}
    for row in rows:
        interval, reason = kindle_interval(row, now)
        if interval is None:
            problems[reason] += 1
            continue
        key = (interval.content_id, interval.start, interval.serial)
        other = chosen.get(key)
        if other is not None:
            problems["reported twice (counted once)"] += 1
            interval = max(interval, other, key=lambda i: (i.millis, i.end, i.device, i.page_flips or 0))
        chosen[key] = interval
    return tuple(sorted(chosen.values(), key=lambda i: (i.content_id, i.start, i.serial)))


def display_author(name: str) -> str:
    """Amazon's ``Last, First`` as ``First Last``; other forms as written, trimmed."""
    name = " ".join(name.split())
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        if first and last:
            return f"{first} {last}"
    return name


def extract_titles(export: Export, problems: Counter) -> dict:
    """content id -> (title, authors) from the library files, then from the other files that name a book
    (elsewhere_titles); a missing file names nothing."""
    authors: dict[str, list[str]] = {}
    for entry in export.find(AUTHOR_FILE):
        for row in read_rows(export, entry, ("ASIN", "Author Name"), problems):
            asin, name = asin_key(row["ASIN"]), row["Author Name"]
            if asin and not unavailable(name) and display_author(name) not in authors.get(asin, []):
                authors.setdefault(asin, []).append(display_author(name))
    titles: dict[str, tuple[str, tuple[str, ...]]] = {}
    for entry in export.find(TITLE_FILE):
        for row in read_rows(export, entry, ("Product Name", "ASIN", "Resource Type"), problems):
            asin, name = asin_key(row["ASIN"]), row["Product Name"].strip()
            if asin and row["Resource Type"].strip() == "ITEM" and not unavailable(name):
                titles.setdefault(asin, (name, tuple(authors.get(asin, ()))))
    for asin, name in elsewhere_titles(export, problems):
        titles.setdefault(asin, (name, tuple(authors.get(asin, ()))))
    for entry in export.find(DOCUMENT_FILE):
        for row in read_rows(export, entry, ("DocumentId", "Title"), problems):
            document_id, name = row["DocumentId"].strip().upper(), row["Title"].strip()
            if DOCUMENT_ID.fullmatch(document_id) and not unavailable(name):
                titles.setdefault(document_id, (name, ()))
    return titles


def ownership_files(export: Export) -> list[str]:
    """The ownership JSON files, by their number."""
    return sorted(export.find_named(OWNERSHIP_FILE),
                  key=lambda entry: int(OWNERSHIP_FILE.fullmatch(Path(entry).name).group(1)))


def elsewhere_titles(export: Export, problems: Counter) -> Iterator[tuple[str, str]]:
    """(ASIN, title) of each ebook the export's other files name, in the fact sheet's lookup order: the files of
    ELSEWHERE_TITLE_FILES (one without those columns is ignored and counted), then the ownership JSON files
    (``resource.ASIN``, ``"Product Name"``)."""
    for name, asin_column, title_column, kind_column, ebook in ELSEWHERE_TITLE_FILES:
        columns = [column for column in (asin_column, title_column, kind_column) if column]
        for entry in export.find(name):
            if not set(columns) <= set(read_header(export, entry)):
                problems[f"{name} without its columns (ignored)"] += 1
                continue
            for row in read_rows(export, entry, columns, problems):
                asin, title = asin_key(row[asin_column].split("_")[0]), row[title_column].strip()
                if asin and not unavailable(title) and (kind_column is None or row[kind_column].strip() == ebook):
                    yield asin, title
    for entry in ownership_files(export):
        value = read_json(export, entry, problems)
        for item in value if isinstance(value, list) else [value]:
            resource = item.get("resource") if isinstance(item, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == "KindleEBook":
                asin, title = resource.get("ASIN"), resource.get("Product Name")
                if isinstance(asin, str) and isinstance(title, str) and asin_key(asin) and not unavailable(title):
                    yield asin_key(asin), title.strip()


def kindle_files(path: Path) -> tuple[Export, list[str], list[str]]:
    """The export, its session files and every file it reads. SourceMissing (66) without the path,
    SourceUnusable (65) without the session file or its columns."""
    export = open_export(path, "--kindle-export or KINDLE_EXPORT")
    entries = export.find(SESSION_FILE)
    if not entries:
        raise SourceUnusable(f"{path}: holds no {SESSION_FILE}; is it the Kindle part of Amazon's export?")
    for entry in entries:
        require_columns(export, entry, SESSION_COLUMNS)
    names = (TITLE_FILE, AUTHOR_FILE, DOCUMENT_FILE, *(name for name, *_columns in ELSEWHERE_TITLE_FILES))
    library = [entry for name in names for entry in export.find(name)] + ownership_files(export)
    return export, entries, entries + library


def extract_kindle_export(path: Path, now: int) -> KindleExport:
    """Read an export in place. SourceMissing (66) without the path, SourceUnusable (65) without the
    session file or its columns."""
    export, entries, read = kindle_files(path)
    problems: Counter = Counter()
    rows = (row for entry in entries for row in read_rows(export, entry, SESSION_COLUMNS, problems))
    intervals = transform_intervals(rows, now, problems)
    titles = extract_titles(export, problems)
    completions = extract_completions(export, now, problems)
    if export.unsafe:
        problems["zip entries with unsafe names (ignored)"] += export.unsafe
    return KindleExport(intervals, titles, export.digest(read), tuple(sorted(problems.items())), completions)


def extract_completions(export: Export, now: int, problems: Counter) -> dict:
    """store ASIN -> the sorted days of its completion records (``<ASIN>_<YYYY-MM-DD>_AUTOMATIC`` or
    ``_MANUAL``); a key of another shape, or a day before 2007 or after today, is skipped and counted."""
    days: dict[str, set[datetime.date]] = {}
    latest = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).date() + datetime.timedelta(days=1)
    for entry in export.find(COMPLETED_FILE):
        if "asin_date_and_content_type" not in read_header(export, entry):
            continue  # counted by elsewhere_titles
        for row in read_rows(export, entry, ("asin_date_and_content_type",), problems):
            found = COMPLETED_KEY.fullmatch(row["asin_date_and_content_type"].strip().upper())
            try:
                day = datetime.date.fromisoformat(found.group(2)) if found else None
            except ValueError:
                day = None
            if day is None or not datetime.date(2007, 1, 1) <= day <= latest:
                problems["completion record without an ASIN and a day"] += 1
                continue
            days.setdefault(found.group(1), set()).add(day)
    return {asin: tuple(sorted(found)) for asin, found in sorted(days.items())}


@dataclass(frozen=True)
class KindleSession:
    """A session of one book from its intervals, by the project's session rule."""

    start: int
    end: int
    millis: int  # the union of its intervals (overlapping ones count once)
    device: str
    page_flips: Optional[int]


def kindle_sessions(intervals: Sequence[KindleInterval], gap_seconds: int) -> list[KindleSession]:
    """One book's intervals grouped by the session rule (gap_groups); an interval spans its start to its start
    plus its reading millis (Amazon's measure; the end time stamp is cut to seconds)."""
    ordered = sorted(intervals, key=lambda i: (i.start, i.serial, i.content_id))
    spans = [(i.start * 1000, i.start * 1000 + i.millis) for i in ordered]
    sessions = []
    for group in gap_groups(spans, gap_seconds * 1000):
        covered, reach = 0, None
        for span_start, span_end in spans[group.start:group.stop]:
            begin = span_start if reach is None else max(span_start, reach)
            covered += max(0, span_end - begin)
            reach = span_end if reach is None else max(reach, span_end)
        flips = [i.page_flips for i in ordered[group.start:group.stop] if i.page_flips is not None]
        sessions.append(KindleSession(ordered[group.start].start, -(-reach // 1000), covered,
                                      ordered[group.start].device, sum(flips) if flips else None))
    return sessions


NAME = "kindle"
STANDS_ALONE = True  # a run with only the export loads it
SYNC_NAME = "kindle"  # its row in the reader's sync_status
SETTINGS = (
    Setting("KINDLE_EXPORT", None, "Amazon's Kindle data export (.zip or its folder), optional",
            option="--kindle-export", metavar="PATH",
            option_help="Amazon's Kindle data export (.zip or its unzipped folder), read in place for the reading "
                        "sessions of Kindle.Devices.ReadingSession.csv"),
)
ZONE_CHANGED_SQL = ""  # the export's times are UTC


@dataclass(frozen=True)
class KindleCounts:
    """What a run did with the export (None: unchanged since the last run, nothing sent)."""

    intervals: Optional[int] = None
    sessions: Optional[int] = None
    books_matched: Optional[int] = None
    books_own: Optional[int] = None
    sessions_inserted: int = 0
    sessions_updated: int = 0


def configure(values: dict[str, Optional[str]]) -> Optional[Path]:
    """The export's path, when one is set."""
    return configured_path(values["KINDLE_EXPORT"])


def extract(path: Path, _workdir: Path) -> LazyExport:
    """The export, checked and digested in place (nothing copied, nothing extracted); parsed when loaded."""
    export, _entries, read = kindle_files(path)
    now = int(time.time())
    return LazyExport(path, export.digest(read), lambda: parse(path, now))


def parse(path: Path, now: int) -> KindleExport:
    """The export's content, with what was read and skipped in the log."""
    export = extract_kindle_export(path, now)
    component_logger("EXTRACT").info("read %d Kindle reading intervals and %d titles from %s",
                                     len(export.intervals), len(export.titles), path)
    report_problems("Kindle", export.problems)
    return export


def book_isbns(_export: LazyExport, _books: Sequence[Book]) -> dict[str, set[str]]:
    """The export names no ISBNs."""
    return {}


KINDLE_STATE_SQL = """
SELECT (SELECT value FROM schema_meta WHERE key = 'kindle_fingerprint'),
       coalesce((SELECT json_agg(json_build_array(h.book_id, h.scheme, h.value, h.ours)
                                 ORDER BY h.book_id, h.scheme, h.value)
                 FROM (SELECT i.book_id, i.scheme, i.value, true AS ours FROM book_identifiers i
                       WHERE i.source = 'calibre' AND (i.scheme LIKE 'amazon%%' OR i.scheme = 'mobi-asin')
                       UNION
                       SELECT b.book_id, 'books_asin', b.asin, k.book_id IS NOT NULL FROM books b
                       LEFT JOIN book_keys k USING (book_id)
                       WHERE b.asin IS NOT NULL AND (k.book_key IS NULL OR k.book_key NOT LIKE 'kindle:%%')) AS h),
                '[]')::text,
       """ + titled_books_json("^(kindle|audible):") + """,
       """ + book_keys_json("^(kindle|audible):") + """,
       coalesce((SELECT json_agg(json_build_array(asin, rule, calibre_id, title, authors)
                                 ORDER BY asin, rule, calibre_id) FROM calibre_asins), '[]')::text;
"""

KINDLE_SQL = """
DELETE FROM kindle_intervals;
CREATE TEMP TABLE incoming_sessions ON COMMIT DROP AS
SELECT coalesce(s.book_id, k.book_id) AS book_id, s.start_time, s.end_time, s.duration_seconds, s.pages_read,
       s.device, s.read_number, s.read_instance_id, 'second' AS time_precision, s.completed_on
FROM jsonb_to_recordset(%(sessions)s::jsonb) AS s(
    book_id integer, book_key text, start_time timestamp, end_time timestamp, duration_seconds integer,
    pages_read integer, device text, read_number integer, read_instance_id uuid, completed_on date)
LEFT JOIN book_keys k ON k.book_key = s.book_key;
DELETE FROM kindle_finishes;
-- a session another source's row holds stays out of reading_sessions (apply_export_sessions), and so its finish
INSERT INTO kindle_finishes (book_id, start_time, device, completed_on)
SELECT f.book_id, f.start_time, f.device, f.completed_on FROM incoming_sessions f
WHERE f.completed_on IS NOT NULL AND NOT EXISTS (
    SELECT 1 FROM reading_sessions s WHERE (s.book_id, s.start_time, s.device) = (f.book_id, f.start_time, f.device)
      AND s.data_source <> 'kindle');
DELETE FROM kindle_marks;
INSERT INTO kindle_marks (book_id, completed_on)
SELECT coalesce(m.book_id, k.book_id), m.completed_on
FROM jsonb_to_recordset(%(marks)s::jsonb) AS m(book_id integer, book_key text, completed_on date)
LEFT JOIN book_keys k ON k.book_key = m.book_key;
INSERT INTO schema_meta (key, value) VALUES ('kindle_fingerprint', %(fingerprint)s), ('kindle_timezone', %(timezone)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""


def asin_holders(rows: Sequence) -> tuple[list[AsinHolder], dict[int, bool]]:
    """The warehouse books that hold an ASIN, and whether each is one of the job's books."""
    holders, ours = [], {}
    for book_id, scheme, value, is_ours in rows:
        rule = "books_asin" if scheme == "books_asin" else asin_rule(scheme)
        if rule:
            holders.append(AsinHolder(book_id, rule, value))
            ours[book_id] = ours.get(book_id, False) or is_ours
    return holders, ours


def calibre_names(rows: Sequence) -> dict:
    """ASIN -> (title, authors) of the Calibre book that holds it (bookhelper.calibre_asins rows), by the rules
    that place an ASIN on a warehouse book: the first rule under which exactly one library book holds it (an
    ASIN several books hold under every rule names nothing). A book without a title names nothing."""
    holders = [AsinHolder(calibre_id, rule, asin) for asin, rule, calibre_id, _title, _authors in rows]
    books = {calibre_id: (title, tuple(authors)) for _asin, _rule, calibre_id, title, authors in rows}
    return {asin: books[calibre_id]
            for asin, (calibre_id, _rule) in match_asins(sorted({row[0] for row in rows}), holders).items()
            if books[calibre_id][0]}


def book_names(export_titles: dict, calibre: dict) -> dict:
    """content id -> (title, authors): the export's, else Calibre's; the export's other files name no authors,
    so a title from them takes the authors of the Calibre book that holds the ASIN."""
    names = dict(calibre)
    for content_id, (title, authors) in export_titles.items():
        names[content_id] = (title, authors or calibre.get(content_id, (title, ()))[1])
    return names


def own_book(content_id: str, names: dict, last_read: int) -> Book:
    """The book of its own that a content id no warehouse book holds lands as: titled by the export, else by
    the Calibre book that holds its ASIN, else by its id (until a later export or Calibre knows better)."""
    title, authors = names.get(content_id, (content_id, ()))
    return Book(f"kindle:{content_id}", title, authors, None, None, None, None, last_read)


@dataclass(frozen=True)
class KindleReads:
    """One book's reads by its completion records: the read number of each session, the sessions that finish
    a read (index -> the day of its first record), and the finishes known only by records (their first days)."""

    numbers: list
    finishes: dict
    marks: list


def kindle_reads(session_days: Sequence[datetime.date], completed: Sequence[datetime.date]) -> KindleReads:
    """The reads of one book's sessions (their local days, in time order) by Amazon's completion records (sorted
    days), the export having no positions. A record finishes the read of the latest session on or before its day
    (of the first session when that is on the next day: the record is dated in a zone a day off). A record with
    no session since the last finish, or at most a day after that finish's first record, marks that finish again
    (which then ends with the latest session on or before this record's day). One more than a day before every
    session is a finish of its own, known only by the record (read elsewhere, or before the export's reading
    began), and records at most a day after its first are that finish. A finish followed by a later one began a
    re-read: the sessions after it are the next read. After the last finish, reading continues that read
    (nothing shows it began again), as an ebook's does until a session starts near the beginning."""
    finishes: dict[int, datetime.date] = {}
    last, marks = -1, []
    for day in completed:
        index = bisect.bisect_right(session_days, day) - 1
        if index < 0:
            index = bisect.bisect_right(session_days, day + SAME_FINISH) - 1
        if index < 0:
            if not marks or day - marks[-1] > SAME_FINISH:
                marks.append(day)
        elif last < 0 or (index > last and day - finishes[last] > SAME_FINISH):
            finishes[index] = day
            last = index
        elif index > last:
            finishes[index] = finishes.pop(last)
            last = index
    numbers, read = [], 1
    for index in range(len(session_days)):
        numbers.append(read)
        if index in finishes and index < last:
            read += 1
    return KindleReads(numbers, finishes, marks)


def session_payload(export: KindleExport, placed: dict, keys: dict, gap_seconds: int,
                    timezone: str) -> tuple[list[dict], list[dict]]:
    """Each book's sessions, with exact seconds (the book's millis, rounded once), its reads (ids from the
    book's key: ``keys`` maps the warehouse's book ids, as text, to their keys) and the sessions that finish
    one (their local days, in ``timezone``, against the completion days of the book's ASINs); and the finishes
    known only by completion records (``kindle_reads``), of books read or not."""
    by_book: dict[tuple, list[KindleInterval]] = {}
    for interval in export.intervals:
        by_book.setdefault(placed[interval.content_id], []).append(interval)
    contents: dict[tuple, set[str]] = {}
    for content_id, place in placed.items():
        contents.setdefault(place, set()).add(content_id)
    zone = ZoneInfo(timezone)
    payload, marks = [], []
    for place in sorted(contents, key=str):
        sessions = kindle_sessions(by_book.get(place, []), gap_seconds)
        book_id, book_key = place
        completed = sorted({day for content_id in contents[place] for day in export.completions.get(content_id, ())})
        reads = kindle_reads([datetime.datetime.fromtimestamp(s.start, zone).date() for s in sessions], completed)
        marks.extend({"book_id": book_id, "book_key": book_key, "completed_on": str(day)} for day in reads.marks)
        for index, (session, seconds, read) in enumerate(zip(sessions, exact_seconds([s.millis for s in sessions]),
                                                             reads.numbers)):
            payload.append({
                "book_id": book_id, "book_key": book_key, "start_time": naive_utc(session.start),
                "end_time": naive_utc(session.end), "duration_seconds": seconds, "pages_read": session.page_flips,
                "device": session.device, "read_number": read,
                "read_instance_id": str(read_instance_id(f"{book_key or keys[str(book_id)]}/{NAME}", read)),
                "completed_on": str(reads.finishes[index]) if index in reads.finishes else None})
    return payload, marks


def place_books(export: KindleExport, names: dict, holder_rows: Sequence, book_rows: Sequence) -> tuple:
    """Where each content id the export read or marked finished lands: (placed, own, adopted), ``placed``
    mapping it to (book_id, None) on a book of the job's or (None, book_key) on a book of its own; ``own``
    those books, ``adopted`` the reader's rows some of them take (book_key -> (book_id, rule))."""
    holders, ours = asin_holders(holder_rows)
    last_seen: dict[str, int] = {}
    for interval in export.intervals:
        last_seen[interval.content_id] = max(last_seen.get(interval.content_id, 0), interval.end)
    for asin, days in export.completions.items():
        last_seen.setdefault(asin, calendar.timegm(days[-1].timetuple()))
    content_ids = sorted(last_seen)
    matches = match_asins([c for c in content_ids if asin_key(c)], holders)
    # a store book no ASIN places: the one warehouse book with its title and first author
    untitled = [(c, names[c][0], (names[c][1] or (None,))[0]) for c in content_ids
                if asin_key(c) and c not in matches and c in names]
    for content_id, book_id in match_title_author(untitled, titled_books(book_rows)).items():
        matches[content_id] = (book_id, "title_author")
        ours[book_id] = True
    placed, own, adopted = {}, [], {}
    for content_id in content_ids:
        match = matches.get(content_id)
        if match and ours.get(match[0]):
            placed[content_id] = (match[0], None)
            continue
        book = own_book(content_id, names, last_seen[content_id])
        own.append(book)
        if match:
            adopted[book.book_key] = match
        placed[content_id] = (None, book.book_key)
    return placed, own, adopted


def load(cursor, run: RunContext, snapshot: LazyExport) -> KindleCounts:
    """Place each content id on its warehouse book and replace the export's intervals, sessions and finishes;
    one round trip when neither the export nor the books holding ASINs changed."""
    cursor.execute(KINDLE_STATE_SQL)
    stored, *state = cursor.fetchone()
    holder_rows, book_rows, keys, calibre_rows = (json.loads(part) for part in state)
    fingerprint = state_digest(snapshot.fingerprint, holder_rows, book_rows, keys, calibre_rows,
                               run.config.gap_seconds, run.timezone)
    if fingerprint == stored:
        component_logger("LOAD").info("the Kindle export and the books holding ASINs are unchanged since the last run")
        return KindleCounts()
    export = snapshot.content
    placed, own, adopted = place_books(export, book_names(export.titles, calibre_names(calibre_rows)), holder_rows,
                                       book_rows)
    if own:
        run.ensure_books(cursor, own, adopted, NAME, SESSION_FILE)
    payload, marks = session_payload(export, placed, keys, run.config.gap_seconds, run.timezone)
    cursor.execute(repeatable(KINDLE_SQL + apply_export_sessions(NAME, "ebook", SESSION_FILE)),
                   {"sessions": json.dumps(payload), "marks": json.dumps(marks), "fingerprint": fingerprint,
                    "timezone": run.timezone})
    counts = dict(cursor.fetchall())
    report_clashes("Kindle", counts)
    # the intervals as the export says them (KINDLE_SQL emptied the table)
    cursor.copy_expert("COPY kindle_intervals (content_id, start_time, serial, end_time, millis, page_flips, kind,"
                       " device) FROM STDIN", io.StringIO("".join(
                           f"{i.content_id}\t{naive_utc(i.start)}\t{copy_text(i.serial)}\t{naive_utc(i.end)}\t"
                           f"{i.millis}\t{COPY_NULL if i.page_flips is None else i.page_flips}\t{i.kind}\t"
                           f"{copy_text(i.device)}\n" for i in export.intervals)))
    read = {interval.content_id for interval in export.intervals}
    known = sum(1 for content_id in read if placed[content_id][0] is not None or placed[content_id][1] in adopted)
    component_logger("LOAD").info(
        "Kindle: %d intervals in %d sessions of %d books (%d on books the warehouse knew by ASIN, %d of their "
        "own); sessions %d inserted, %d updated, %d removed; %d finishes known only by completion records (%d "
        "books the export has no reading of)", len(export.intervals), len(payload), len(read), known,
        len(read) - known, counts.get("inserted", 0), counts.get("updated", 0), counts.get("removed", 0), len(marks),
        len(placed) - len(read))
    return KindleCounts(len(export.intervals), len(payload), known, len(read) - known, counts.get("inserted", 0),
                        counts.get("updated", 0))


def sync_records(counts: KindleCounts) -> tuple[int, int, int]:
    """The reader's sync_status counts of the run: intervals read, sessions inserted and updated."""
    return counts.intervals or 0, counts.sessions_inserted, counts.sessions_updated


def summary(_counts: KindleCounts) -> list[str]:
    """Kindle's line is logged as it loads."""
    return []
