"""Source: the Audible part of Amazon's data export (``../shared/audible-export-format.md``): listening from
``Listening.csv`` (one per listener profile; the older single ``Audible.Listening.csv`` too), titles, authors,
narrators and lengths from ``Library.csv``.

The export gives dates, not times: listening lands as one day row per book, profile and local day (the
file's ``Local Timezone``) with the day's exact seconds, ``time_precision = 'day'``; no time of day is made
up. Only full titles count, and each multipart echo once. An audiobook goes to its ebook (the same title and
first author, a unique candidate, or the reader's override), else to a book of its own. Progress comes from
the positions: a day that reaches the end finishes a read, a later start from the beginning is a re-read.
"""

import calendar
import datetime
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bookhelper.core import (
    DEVICE_LENGTH,
    Book,
    RunContext,
    Setting,
    SourceUnusable,
    component_logger,
    fit_text,
    int_in_range,
    repeatable,
    state_digest,
)
from bookhelper.exports import (
    Export,
    LazyExport,
    configured_path,
    entry_folder,
    open_export,
    read_header,
    read_rows,
    report_problems,
    require_columns,
    unavailable,
)
from bookhelper.matching import asin_key, audiobook_title, match_title_author, titled_books
from bookhelper.schema import apply_export_sessions, book_keys_json, report_clashes, titled_books_json
from bookhelper.sessions import Session, exact_seconds, number_reads, reaches_end, read_instance_id

LISTENING_FILES = ("Listening.csv", "Audible.Listening.csv")
LIBRARY_FILE = "Library.csv"
# Listening.csv's columns by what they hold: today's names, and the older single file's CamelCase ones.
LISTENING_LAYOUTS = {
    "current": {"start_date": "Start Date", "duration": "Event Duration Milliseconds",
                "start_position": "Start Position Milliseconds", "end_position": "End Position Milliseconds",
                "name": "Product Name", "asin": "ASIN", "length": "Book Length Milliseconds",
                "audio_type": "Audio Type", "timezone": "Local Timezone"},
    "older": {"start_date": "StartDate", "duration": "EventDuration", "start_position": "StartPosition",
              "end_position": "EndPosition", "name": "Title", "asin": "Asin", "length": "BookLength",
              "audio_type": "AudioType", "timezone": "LocalTimezone"},
}
FULL_TITLE = "FullTitle"
SAMPLE_TYPES = ("Preview", "CatalogSample")
ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}")
EARLIEST_DAY = datetime.date(1995, 1, 1)  # Audible's first year
LONGEST_EVENT_MS = 24 * 3600 * 1000
LONGEST_BOOK_MS = 1000 * 3600 * 1000  # a length beyond a thousand hours is not one
DEVICE = "Audible"


@dataclass(frozen=True)
class ListeningDay:
    """A profile's full-title listening of one audiobook on one local day: its exact milliseconds, the lowest
    start and highest end positions, the book's length as the day's events give it."""

    profile: str
    asin: str
    day: datetime.date
    timezone: str
    millis: int
    events: int
    first_position: Optional[int]
    last_position: Optional[int]
    length: Optional[int]


@dataclass(frozen=True)
class AudibleTitle:
    """What the library says of an audiobook (title and names as Audible writes them, length in seconds)."""

    title: str
    authors: tuple[str, ...]
    narrators: tuple[str, ...]
    length_seconds: Optional[int]


@dataclass(frozen=True)
class AudibleExport:
    """What an export says: the listening days, the audiobooks' metadata and names, and a digest."""

    days: tuple[ListeningDay, ...]
    titles: dict  # ASIN -> AudibleTitle (the library's, else the listening file's name)
    fingerprint: str
    problems: tuple[tuple[str, int], ...] = ()


def parse_day(text: str) -> Optional[datetime.date]:
    """``YYYY-MM-DD`` (today's file) or ``DD-Mon-YYYY`` (the older one), else None."""
    for pattern in ("%Y-%m-%d", "%d-%b-%Y"):
        try:
            return datetime.datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    return None


def whole(text: str, low: int, high: int) -> Optional[int]:
    """A whole number of milliseconds within bounds, else None."""
    text = text.strip()
    return int_in_range(int(text), low, high) if text.isdigit() and len(text) < 16 else None


def listening_event(row: dict, columns: dict, today: datetime.date) -> tuple[Optional[tuple], Optional[str]]:
    """A full-title event as (asin, day, zone, millis, start position, end position, length), or why not."""
    audio_type = row[columns["audio_type"]].strip()
    if audio_type in SAMPLE_TYPES:
        return None, "a preview or sample"
    if audio_type not in (FULL_TITLE, ""):
        return None, "unknown audio type"
    asin = asin_key(row[columns["asin"]])
    if asin is None:
        return None, "not an ASIN"
    day = parse_day(row[columns["start_date"]])
    if day is None:
        return None, "not a date"
    if not EARLIEST_DAY <= day <= today:
        return None, "a date before 1995 or in the future"
    zone = row[columns["timezone"]].strip()
    if not ZONE_NAME.fullmatch(zone) or len(zone) > 64:
        return None, "not a time zone name"
    duration_text = row[columns["duration"]].strip()
    if unavailable(duration_text) or duration_text.lstrip("-").strip("0") == "" or duration_text.startswith("-"):
        return None, "empty or negative duration"
    millis = whole(duration_text, 1, LONGEST_EVENT_MS)
    if millis is None:
        return None, "not a duration of at most a day"
    return (asin, day, zone, millis, whole(row[columns["start_position"]], 0, LONGEST_BOOK_MS),
            whole(row[columns["end_position"]], 0, LONGEST_BOOK_MS),
            whole(row[columns["length"]], 1, LONGEST_BOOK_MS)), None


def lowest(*values: Optional[int]) -> Optional[int]:
    """The lowest of the known values (None when none is)."""
    return min((v for v in values if v is not None), default=None)


def highest(*values: Optional[int]) -> Optional[int]:
    """The highest of the known values (None when none is)."""
    return max((v for v in values if v is not None), default=None)


def transform_listening(rows: Iterable[tuple[str, dict]], columns: dict, today: datetime.date,
                        problems: Counter) -> tuple[tuple[ListeningDay, ...], dict]:
    """(profile, row) pairs as listening days, each multipart echo once (the same event under the base name
    and ``… Part n``: equal in every column but the name), and each ASIN's most frequent name."""
    events: dict[tuple, tuple[str, dict]] = {}
    for profile, row in rows:
        key = (profile, tuple(value for column, value in row.items() if column != columns["name"]))
        kept = events.get(key)
        name = row[columns["name"]].strip()
        if kept is not None:
            problems["a multipart echo (counted once)"] += 1
            if (len(kept[0]), kept[0]) <= (len(name), name):
                continue
        events[key] = (name, row)
    days: dict[tuple, list] = {}
    names: dict[str, Counter] = {}
    for (profile, _values), (name, row) in events.items():
        event, reason = listening_event(row, columns, today)
        if event is None:
            problems[reason] += 1
            continue
        asin, day, zone, millis, first, last, length = event
        entry = days.setdefault((profile, asin, day), [zone, 0, 0, None, None, None])
        entry[1] += millis
        entry[2] += 1
        entry[3], entry[4], entry[5] = lowest(entry[3], first), highest(entry[4], last), highest(entry[5], length)
        entry[0] = min(entry[0], zone)
        if name and not unavailable(name):
            names.setdefault(asin, Counter())[name] += 1
    listening = tuple(ListeningDay(profile, asin, day, *values)
                      for (profile, asin, day), values in sorted(days.items()))
    return listening, {asin: min(counts, key=lambda n: (-counts[n], len(n), n)) for asin, counts in names.items()}


def split_names(text: str) -> tuple[str, ...]:
    """Audible's names joined by a bare comma."""
    return () if unavailable(text) else tuple(name.strip() for name in text.split(",") if name.strip())


def extract_library(export: Export, problems: Counter) -> dict:
    """ASIN -> AudibleTitle from Library.csv (none when the export has no library file)."""
    titles = {}
    for entry in export.find(LIBRARY_FILE):
        for row in read_rows(export, entry, ("ASIN", "title", "authors"), problems):
            asin, title = asin_key(row["ASIN"]), row["title"].strip()
            if asin and not unavailable(title):
                minutes = whole(row.get("length_in_minutes", ""), 1, 60000)
                titles.setdefault(asin, AudibleTitle(title, split_names(row["authors"]),
                                                     split_names(row.get("audiobook_narrator", "")),
                                                     minutes * 60 if minutes else None))
    return titles


def listening_layout(header: Sequence[str]) -> str:
    """Which Listening.csv layout a header is: ``current``, or ``older`` (the single CamelCase file)."""
    return "older" if "StartDate" in header else "current"


def audible_files(path: Path) -> tuple[Export, list[str], list[str]]:
    """The export, its listening files and every file it reads. SourceMissing (66) without the path,
    SourceUnusable (65) without a listening file."""
    export = open_export(path, "--audible-export or AUDIBLE_EXPORT")
    entries = [entry for name in LISTENING_FILES for entry in export.find(name)]
    if not entries:
        raise SourceUnusable(f"{path}: holds no Audible.Listening/<profile>/Listening.csv (nor the older "
                             "Audible.Listening.csv); is it the Audible part of Amazon's export?")
    return export, entries, entries + export.find(LIBRARY_FILE)


def extract_audible_export(path: Path, today: datetime.date) -> AudibleExport:
    """Read an export in place. SourceMissing (66) without the path, SourceUnusable (65) without a listening
    file or its columns."""
    export, entries, read = audible_files(path)
    problems: Counter = Counter()
    pairs = []
    layouts = set()
    for entry in entries:
        layout = listening_layout(read_header(export, entry))
        layouts.add(layout)
        profile = entry_folder(export, entry)
        profile = "" if profile == "Audible.Listening" else profile
        pairs.extend((profile, row) for row in read_rows(export, entry, tuple(LISTENING_LAYOUTS[layout].values()),
                                                         problems))
    if len(layouts) > 1:
        raise SourceUnusable(f"{path}: mixes the current and the older Listening.csv layouts; use one export")
    days, names = transform_listening(pairs, LISTENING_LAYOUTS[layouts.pop()], today, problems)
    library = extract_library(export, problems)
    titles = {asin: library.get(asin) or AudibleTitle(audiobook_title(name), (), (), None)
              for asin, name in names.items()}
    if export.unsafe:
        problems["zip entries with unsafe names (ignored)"] += export.unsafe
    return AudibleExport(days, titles, export.digest(read), tuple(sorted(problems.items())))


def profile_device(profile: str) -> str:
    """reading_sessions.device of a profile's listening: ``Audible``, or ``Audible (<profile>)`` when the export
    names one other than the account holder's."""
    return fit_text(DEVICE if profile in ("", "Account Holder") else f"{DEVICE} ({profile})", DEVICE_LENGTH)


def day_payload(export: AudibleExport, placed: dict, keys: dict) -> list[dict]:
    """Day rows per book, profile and day, with exact seconds (each book's millis rounded once), whether the
    day reaches the end, and its read by the finish rule (per profile; its id from the book's key: ``keys``
    maps the warehouse's book ids, as text, to their keys)."""
    merged: dict[tuple, list] = {}
    for day in export.days:
        book_id, book_key = placed[day.asin]
        entry = merged.setdefault((book_key or keys[str(book_id)], book_id, book_key, day.profile, day.day),
                                  [day.timezone, 0, 0, None, None, None, []])
        entry[1] += day.millis
        entry[2] += day.events
        entry[3], entry[4] = lowest(entry[3], day.first_position), highest(entry[4], day.last_position)
        entry[5] = highest(entry[5], day.length)
        entry[6].append(day.asin)
    payload = []
    by_book: dict[str, list] = {}
    for key, values in sorted(merged.items(), key=lambda item: (item[0][0], item[0][4], item[0][3])):
        by_book.setdefault(key[0], []).append((key, values))
    for place, rows in by_book.items():
        seconds = exact_seconds([values[1] for _key, values in rows])
        reads = {}
        for profile in {key[3] for key, _values in rows}:
            mine = [(key, values) for key, values in rows if key[3] == profile]
            positions = [Session(0, 0, 0, 0, values[3] or 0, values[4] or 0, values[5] or 0) for _key, values in mine]
            for (key, _values), position, read in zip(mine, positions, number_reads(positions)):
                reads[key] = (read, reaches_end(position))
        for ((_place, book_id, book_key, profile, day), values), day_seconds in zip(rows, seconds):
            read, end = reads[(_place, book_id, book_key, profile, day)]
            payload.append({
                "book_id": book_id, "book_key": book_key, "profile": profile, "day": day.isoformat(),
                "asins": sorted(set(values[6])), "timezone": values[0], "device": profile_device(profile),
                "listening_ms": values[1], "duration_seconds": day_seconds, "events": values[2],
                "first_position_ms": values[3], "last_position_ms": values[4], "book_length_ms": values[5],
                "reaches_end": end, "read_number": read,
                "read_instance_id": str(read_instance_id(f"{place}/{NAME}/{profile}", read))})
    return payload


NAME = "audible"
STANDS_ALONE = True  # a run with only the export loads it
SYNC_NAME = "audible"  # its row in the reader's sync_status
SETTINGS = (
    Setting("AUDIBLE_EXPORT", None, "Amazon's Audible data export (.zip or its folder), optional",
            option="--audible-export", metavar="PATH",
            option_help="Amazon's Audible data export (.zip or its unzipped folder), read in place for the listening "
                        "days of Listening.csv"),
)
ZONE_CHANGED_SQL = ""  # the export states its own zone


@dataclass(frozen=True)
class AudibleCounts:
    """What a run did with the export (None: unchanged since the last run, nothing sent)."""

    days: Optional[int] = None
    books_matched: Optional[int] = None
    books_own: Optional[int] = None
    days_inserted: int = 0
    days_updated: int = 0


def configure(values: dict[str, Optional[str]]) -> Optional[Path]:
    """The export's path, when one is set."""
    return configured_path(values["AUDIBLE_EXPORT"])


def extract(path: Path, _workdir: Path) -> LazyExport:
    """The export, checked and digested in place (nothing copied, nothing extracted); parsed when loaded."""
    export, entries, read = audible_files(path)
    for entry in entries:
        require_columns(export, entry, LISTENING_LAYOUTS[listening_layout(read_header(export, entry))].values())
    # tomorrow: a listening day of a zone ahead of this machine's may already have begun
    today = datetime.date.today() + datetime.timedelta(days=1)
    return LazyExport(path, export.digest(read), lambda: parse(path, today))


def parse(path: Path, today: datetime.date) -> AudibleExport:
    """The export's content, with what was read and skipped in the log."""
    export = extract_audible_export(path, today)
    component_logger("EXTRACT").info("read %d Audible listening days of %d audiobooks from %s", len(export.days),
                                     len({d.asin for d in export.days}), path)
    report_problems("Audible", export.problems)
    return export


def book_isbns(_export: LazyExport, _books: Sequence[Book]) -> dict[str, set[str]]:
    """The export names no ISBNs."""
    return {}


AUDIBLE_STATE_SQL = """
SELECT (SELECT value FROM schema_meta WHERE key = 'audible_fingerprint'),
       """ + titled_books_json("^audible:") + """,
       coalesce((SELECT json_agg(json_build_array(asin, book_id) ORDER BY asin) FROM export_match_overrides
                 WHERE source = 'audible'), '[]')::text,
       """ + book_keys_json("^audible:") + """;
"""

AUDIBLE_SQL = """
CREATE TEMP TABLE incoming_days ON COMMIT DROP AS
SELECT coalesce(d.book_id, k.book_id) AS book_id, d.profile, d.day, d.asins, d.timezone, d.device, d.listening_ms,
       d.duration_seconds, d.events, d.first_position_ms, d.last_position_ms, d.book_length_ms, d.reaches_end,
       d.read_number, d.read_instance_id
FROM jsonb_to_recordset(%(days)s::jsonb) AS d(
    book_id integer, book_key text, profile text, day date, asins text[], timezone text, device text,
    listening_ms bigint, duration_seconds integer, events integer, first_position_ms bigint, last_position_ms bigint,
    book_length_ms bigint, reaches_end boolean, read_number integer, read_instance_id uuid)
LEFT JOIN book_keys k ON k.book_key = d.book_key;
DELETE FROM audible_days;
-- A zone PostgreSQL does not know cannot place the day: skipped (and counted).
INSERT INTO audible_days (book_id, profile, day, asins, timezone, device, start_time, end_time, listening_ms,
                          duration_seconds, events, first_position_ms, last_position_ms, book_length_ms, reaches_end,
                          read_number, read_instance_id)
SELECT d.book_id, d.profile, d.day, d.asins, d.timezone, d.device,
       (d.day::timestamp AT TIME ZONE d.timezone) AT TIME ZONE 'UTC',
       ((d.day + 1)::timestamp AT TIME ZONE d.timezone) AT TIME ZONE 'UTC', d.listening_ms, d.duration_seconds,
       d.events, d.first_position_ms, d.last_position_ms, d.book_length_ms, d.reaches_end, d.read_number,
       d.read_instance_id
FROM incoming_days d
WHERE d.timezone IN (SELECT name FROM pg_timezone_names) AND (d.day::timestamp AT TIME ZONE d.timezone) <= now();
CREATE TEMP TABLE incoming_sessions ON COMMIT DROP AS
SELECT book_id, start_time, end_time, duration_seconds, NULL::integer AS pages_read, device, read_number,
       read_instance_id, 'day' AS time_precision
FROM audible_days;

CREATE TEMP TABLE incoming_audiobooks ON COMMIT DROP AS
SELECT coalesce(a.book_id, k.book_id) AS book_id, a.asins, a.title, a.narrators, a.length_seconds, a.matched_by
FROM jsonb_to_recordset(%(audiobooks)s::jsonb) AS a(
    book_id integer, book_key text, asins text[], title text, narrators text[], length_seconds integer,
    matched_by text)
LEFT JOIN book_keys k ON k.book_key = a.book_key;
-- books.audio_seconds from the length where it is empty or still holds what the job wrote.
CREATE TEMP TABLE audio_writes ON COMMIT DROP AS
SELECT b.book_id, i.length_seconds, b.audio_seconds IS NULL OR b.audio_seconds = w.written_audio_seconds AS own
FROM books b LEFT JOIN incoming_audiobooks i USING (book_id) LEFT JOIN audible_books w USING (book_id)
WHERE i.book_id IS NOT NULL OR w.book_id IS NOT NULL;
UPDATE books b SET audio_seconds = a.length_seconds FROM audio_writes a
WHERE a.book_id = b.book_id AND a.own AND b.audio_seconds IS DISTINCT FROM a.length_seconds;
DELETE FROM audible_books;
INSERT INTO audible_books (book_id, asins, title, narrators, length_seconds, matched_by, written_audio_seconds)
SELECT i.book_id, i.asins, i.title, i.narrators, i.length_seconds, i.matched_by,
       CASE WHEN a.own THEN i.length_seconds END
FROM incoming_audiobooks i JOIN audio_writes a USING (book_id);
INSERT INTO schema_meta (key, value) VALUES ('audible_fingerprint', %(fingerprint)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""


def own_book(asin: str, export: AudibleExport, last_day: datetime.date) -> Book:
    """The book of its own an audiobook with no ebook lands as."""
    title = export.titles.get(asin)
    last_open = calendar.timegm(last_day.timetuple())
    return Book(f"audible:{asin}", audiobook_title(title.title) if title else asin, title.authors if title else (),
                None, None, None, None, last_open)


def place_audiobooks(export: AudibleExport, ebook_rows: Sequence, override_rows: Sequence) -> tuple[dict, dict]:
    """ASIN -> (book_id, None) of its ebook, or (None, own book key); and the rule of each."""
    asins = sorted({day.asin for day in export.days})
    ebooks = titled_books(ebook_rows)
    candidates = [(asin, export.titles[asin].title, (export.titles[asin].authors or (None,))[0])
                  for asin in asins if asin in export.titles]
    matches = {asin: (book_id, "title_author") for asin, book_id in match_title_author(candidates, ebooks).items()}
    known = {row[0] for row in ebook_rows}
    for asin, book_id in override_rows:
        if asin in asins:
            matches[asin] = (book_id, "manual") if book_id in known else (None, "manual")
    placed, rules = {}, {}
    for asin in asins:
        book_id, rule = matches.get(asin, (None, "own"))
        placed[asin] = (book_id, None) if book_id is not None else (None, f"audible:{asin}")
        rules[asin] = rule if book_id is not None else "own"
    return placed, rules


def load(cursor, run: RunContext, snapshot: LazyExport) -> AudibleCounts:
    """Place each audiobook on its ebook or a book of its own and replace the export's listening days and
    sessions; one round trip when neither the export nor the warehouse's books changed."""
    cursor.execute(AUDIBLE_STATE_SQL)
    stored, ebook_rows, override_rows, key_rows = cursor.fetchone()
    ebook_rows, override_rows, keys = json.loads(ebook_rows), json.loads(override_rows), json.loads(key_rows)
    fingerprint = state_digest(snapshot.fingerprint, ebook_rows, override_rows, keys)
    if fingerprint == stored:
        component_logger("LOAD").info("the Audible export and the books are unchanged since the last run")
        return AudibleCounts()
    export = snapshot.content
    placed, rules = place_audiobooks(export, ebook_rows, override_rows)
    last_day = {}
    for day in export.days:
        last_day[day.asin] = max(last_day.get(day.asin, day.day), day.day)
    own = [own_book(asin, export, last_day[asin]) for asin, (book_id, _key) in placed.items() if book_id is None]
    if own:
        run.ensure_books(cursor, own, {}, NAME, LISTENING_FILES[0])
    audiobooks: dict[tuple, dict] = {}
    for asin, (book_id, book_key) in sorted(placed.items()):
        title = export.titles.get(asin)
        entry = audiobooks.setdefault((book_id, book_key), {
            "book_id": book_id, "book_key": book_key, "asins": [], "title": title.title if title else None,
            "narrators": list(title.narrators) if title else [], "length_seconds": None, "matched_by": rules[asin]})
        entry["asins"].append(asin)
        if title and title.length_seconds:
            entry["length_seconds"] = max(entry["length_seconds"] or 0, title.length_seconds)
    days = day_payload(export, placed, keys)
    cursor.execute(repeatable(AUDIBLE_SQL + apply_export_sessions(NAME, "audiobook", LISTENING_FILES[0])),
                   {"days": json.dumps(days), "audiobooks": json.dumps(list(audiobooks.values())),
                    "fingerprint": fingerprint})
    counts = dict(cursor.fetchall())
    report_clashes("Audible", counts)
    matched = sum(1 for book_id, _key in placed.values() if book_id is not None)
    component_logger("LOAD").info(
        "Audible: %d listening days of %d audiobooks (%d with their ebook, %d of their own); day rows %d inserted, "
        "%d updated, %d removed", len(days), len(placed), matched, len(placed) - matched, counts.get("inserted", 0),
        counts.get("updated", 0), counts.get("removed", 0))
    return AudibleCounts(len(days), matched, len(placed) - matched, counts.get("inserted", 0), counts.get("updated", 0))


def sync_records(counts: AudibleCounts) -> tuple[int, int, int]:
    """The reader's sync_status counts of the run: listening days read, day rows inserted and updated."""
    return counts.days or 0, counts.days_inserted, counts.days_updated


def summary(_counts: AudibleCounts) -> list[str]:
    """Audible's line is logged as it loads."""
    return []
