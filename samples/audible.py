"""Synthetic Audible parts of an Amazon data export, for the tests and the demo.

Every file it writes has the layout of the Audible export fact sheet (``audible-export-format.md``):
``Audible.Listening/<profile>/Listening.csv`` per listener profile (BOM, LF, every field quoted, the
header too, newest first, a final newline) or, with ``old_layout``, the older single
``Audible.Listening/Audible.Listening.csv`` with its CamelCase header and ``DD-Mon-YYYY`` dates;
``Library.csv`` of the library service (a bare header of 45 columns, every data field quoted, names joined
by a bare comma); and with ``distractors`` ``FileDescriptions.csv`` (CRLF), ``Audible.Library.csv``,
``Audible.PurchaseHistory.csv`` and a settings file whose BOM is doubled.

The listening comes from :func:`generate_audible_history` or from hand-made :class:`ListeningEvent` rows:
day-only dates in the profile's IANA zone, many events per book and day, many under a minute, the
multipart echo (an event written again as ``<name> Part 1``, ``Part 2``, ... right after it), previews and
catalog samples, events past midnight, skip-backs, re-listens, titles with a real ``: Part 3``, all-digit
ASINs and one of nine digits and ``X``. All values are invented.

The settings file's name and columns and the ``FileDescriptions.csv`` columns are invented (the sheet
does not give them); the 24 ``Audible.PurchaseHistory.csv`` columns follow a public parser's fixture and
end as the sheet says. A parser must not depend on any of them.

Run it from the repository root to write an export folder (or a zip with ``--zip``)::

    python3 -m samples.audible OUT [--zip] [--events 5000] [--years 5] [--seed 1]
"""

import argparse
import hashlib
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from samples.kindle import BOM, NA, csv_bytes, write_tree

DAY = 86400
END_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: generated histories end on the day before (no clock is read)
PROFILE_DISPLAY_NAME = "Robin"  # Library.csv's profile_name: never the Audible.Listening/<profile>/ folder name

LISTENING_COLUMNS = (
    "Start Date", "End Date", "Event Duration Milliseconds", "Start Position Milliseconds",
    "End Position Milliseconds", "Product Name", "ASIN", "Book Length Milliseconds", "Delivery Type",
    "Narration Speed", "Bookmark", "Audio Type", "Asin Owned", "Listening Mode", "Store", "App Version",
    "Local Timezone",
)
LISTENING_HEADER = ",".join(f'"{name}"' for name in LISTENING_COLUMNS)
OLD_LISTENING_COLUMNS = (
    "DeviceType", "StartDate", "EndDate", "EventDuration", "StartPosition", "EndPosition", "Title", "Asin",
    "BookLength", "DeliveryType", "NarrationSpeed", "Bookmark", "AudioType", "AsinOwned", "ListeningMode",
    "Store", "AppVersion", "LocalTimezone",
)
LIBRARY_HEADER = (
    "title_in_english,length_in_minutes,subtitle_in_danish,subtitle_in_portuguese,subtitle_in_german,"
    "title_in_spanish,subtitle_in_french,available_in_library,subtitle_in_italian,is_adult_product,"
    "has_next_title_in_series,title_acquisition_id,language,title,profile_name,content_type,title_in_portuguese,"
    "media_type,audible_collections,subtitle_in_spanish,ASIN,title_in_italian,ebook_read_along_support,publisher,"
    "title_in_french,title_in_german,content_delivery_type,last_title_in_series_release_date,title_in_danish,"
    "audiobook_narrator,subtitle_in_english,last_updated,marketplace,is_finished,product_name,acquisition_method,"
    "whispersync_for_voice_support,format_type,plan_tier,subtitle,ownership_type,purchase_date,ownership,authors,"
    "book_series_info"
)
LIBRARY_COLUMNS = tuple(LIBRARY_HEADER.split(","))
OLD_LIBRARY_COLUMNS = (
    "Date Added", "Product Name", "ASIN", "Downloaded", "Deleted", "Delete By", "Date Deleted", "Public",
    "Streamed", "Preorder", "Downloads", "Date First Downloaded", "Order Number", "Origin Type",
)
PURCHASE_HISTORY_COLUMNS = (
    "Order Place Date", "Order Fulfill Date", "Order Settle Date", "Order ID", "Status", "Type", "Preorder Desc",
    "Sale Type Desc", "Royalty Sale Type", "Regular Price", "Units", "Discount", "Consumed Credit",
    "Price Paid Member", "Tax Rate", "Tax", "Partner Revenue", "Net Sales", "Net Price", "Currency",
    "Product Name", "ASIN", "Action", "Whispersync",
)
SETTINGS_COLUMNS = ("Setting Name", "Setting Value", "Last Updated")  # invented
FILE_DESCRIPTIONS_HEADER = "File Name,Description"  # invented

LISTENING_PATH = "Audible.Listening/{profile}/Listening.csv"
OLD_LISTENING_PATH = "Audible.Listening/Audible.Listening.csv"
LIBRARY_PATH = "Audible.AudibleLibraryItemFactoryService/datasets/Library/Library.csv"
OLD_LIBRARY_PATH = "Audible.Library/Audible.Library.csv"
PURCHASE_HISTORY_PATH = "Audible.PurchaseHistory/Audible.PurchaseHistory.csv"
SETTINGS_PATH = "Audible.ListeningSettings/Audible.ListeningSettings.csv"  # the doubled BOM; name invented
FILE_DESCRIPTIONS_PATH = "FileDescriptions.csv"

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ISO_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class ListeningEvent:
    """A row of ``Listening.csv``. Dates are local calendar days (``YYYY-MM-DD``) in ``timezone``.

    ``duration_ms`` and ``book_length_ms`` may be strings (``""``, ``"Not Available"``, ``"-5"``) for
    hostile tests; they are written as given. ``echo_parts`` writes that many more rows right after this
    one, named ``<product_name> Part 1`` ... ``Part n`` and identical in every other column.
    """

    start_date: str
    end_date: str
    duration_ms: Union[int, str]
    start_position_ms: int
    end_position_ms: int
    product_name: str
    asin: str
    book_length_ms: Union[int, str] = 36_000_000
    narration_speed: str = "1.00"
    audio_type: str = "FullTitle"  # "Preview", "CatalogSample"
    timezone: str = "Europe/Berlin"
    delivery_type: str = "Download"
    listening_mode: str = "Offline"
    app_version: str = "3.99.0"
    echo_parts: int = 0


@dataclass(frozen=True)
class AudibleTitle:
    """A row of ``Library.csv``. ``authors`` and ``narrators`` are joined with a bare comma;
    ``length_minutes=None`` writes ``Not Available``. ``series`` is ``(series ASIN, series title)``, written
    as ``asin:<ASIN>,title:<title>``; ``whispersync_for_voice`` sets both the ws4v and read-along columns."""

    asin: str
    title: str
    subtitle: Optional[str] = None
    authors: tuple = ()
    narrators: tuple = ()
    length_minutes: Optional[int] = 600
    content_delivery_type: str = "SinglePartBook"
    is_finished: bool = False
    series: Optional[tuple] = None
    whispersync_for_voice: bool = True


# --- rows of each file -----------------------------------------------------------------------


def _event_rows(event: ListeningEvent) -> list:
    row = [event.start_date, event.end_date, str(event.duration_ms), str(event.start_position_ms),
           str(event.end_position_ms), event.product_name, event.asin, str(event.book_length_ms),
           event.delivery_type, event.narration_speed, "0", event.audio_type, "No", event.listening_mode,
           "Audible", event.app_version, event.timezone]
    rows = [row]
    for part in range(1, event.echo_parts + 1):
        echo = list(row)
        echo[5] = f"{event.product_name} Part {part}"
        rows.append(echo)
    return rows


def old_date(day: str) -> str:
    """``2026-01-08`` as the older single file writes it, ``08-Jan-2026`` (anything else unchanged)."""
    match = _ISO_DAY.match(day)
    if not match:
        return day
    year, month, date = match.groups()
    return f"{date}-{MONTHS[int(month) - 1]}-{year}"


def _old_event_rows(event: ListeningEvent) -> list:
    # LISTENING_COLUMNS order -> OLD_LISTENING_COLUMNS order: DeviceType first, dates rewritten, AsinOwned false.
    return [["Android", old_date(row[0]), old_date(row[1]), *row[2:12], "false", *row[13:]]
            for row in _event_rows(event)]


def _newest_first(events: Iterable[ListeningEvent]) -> list:
    return sorted(events, key=lambda event: event.start_date, reverse=True)  # stable: a day keeps its order


def _quoted_line(fields: Sequence[str]) -> str:
    return ",".join('"' + field.replace('"', '""') + '"' for field in fields) + "\n"


def _token(text: str, length: int = 8) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:length]


def _stamp(text: str) -> int:
    return 1_420_070_400 + int(_token(text, 7), 16) % (10 * 365 * DAY)


def _iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _day(epoch: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _library_row(title: AudibleTitle) -> list:
    values = dict.fromkeys(LIBRARY_COLUMNS, NA)
    support = "Yes" if title.whispersync_for_voice else "No"
    subtitle = title.subtitle or NA
    bought = _stamp(title.asin)
    token = _token(title.asin, 32)
    values.update({
        "title_in_english": title.title, "title": title.title, "product_name": title.title,
        "subtitle": subtitle, "subtitle_in_english": subtitle,
        "length_in_minutes": NA if title.length_minutes is None else str(title.length_minutes),
        "available_in_library": "Yes", "is_adult_product": "No",
        "has_next_title_in_series": "Yes" if title.series else "No",
        "title_acquisition_id": f"{token[:8]}-{token[8:12]}-{token[12:16]}-{token[16:20]}-{token[20:]}",
        "language": "english", "profile_name": PROFILE_DISPLAY_NAME, "content_type": "Product",
        "media_type": "audiobook", "audible_collections": "PURCHASE", "ASIN": title.asin,
        "ebook_read_along_support": support, "whispersync_for_voice_support": support,
        "publisher": "Invented Audio Press", "content_delivery_type": title.content_delivery_type,
        "audiobook_narrator": ",".join(title.narrators), "authors": ",".join(title.authors),
        "last_updated": _iso(bought + 90 * DAY), "purchase_date": _iso(bought), "marketplace": "www.audible.de",
        "is_finished": "Yes" if title.is_finished else "No", "acquisition_method": "Purchase",
        "format_type": "unabridged", "ownership_type": "Owned", "ownership": "Active",
        "book_series_info": f"asin:{title.series[0]},title:{title.series[1]}" if title.series else NA,
    })
    return [values[column] for column in LIBRARY_COLUMNS]


def _old_library_row(title: AudibleTitle) -> list:
    added = _day(_stamp(title.asin))
    return [added, title.title, title.asin, "Yes", "No", NA, NA, "No", "No", "No", "1", added,
            f"D01-{int(_token(title.asin, 6), 16) % 10_000_000:07d}-0000000", "Purchase"]


def _purchase_row(title: AudibleTitle) -> list:
    placed = _day(_stamp(title.asin))
    return [placed, placed, placed, f"D01-{int(_token(title.asin, 6), 16) % 10_000_000:07d}-0000000",
            "Completed", "CREDIT", "NON-PRE-ORDER", "AL", "AL", "24.95", "1", "-24.95", "1.00", "0.00", "0.0700",
            "0.00", "0.000000", "0.000000", "0.00", "EUR", title.title, title.asin, "Website",
            "Yes" if title.whispersync_for_voice else "No"]


def _file_bytes(profiles: Mapping[str, Sequence[ListeningEvent]], library: Sequence[AudibleTitle],
                old_layout: bool, distractors: bool) -> dict:
    files = {}
    if old_layout:
        if len(profiles) > 1:
            raise ValueError("the older single-file layout holds one profile only")
        events = next(iter(profiles.values()), ())
        rows = (row for event in _newest_first(events) for row in _old_event_rows(event))
        files[OLD_LISTENING_PATH] = csv_bytes(OLD_LISTENING_COLUMNS, rows, quote_all=True)
    else:
        for profile, events in profiles.items():
            if not profile or "/" in profile:
                raise ValueError(f"a profile folder name cannot be {profile!r}")
            rows = (row for event in _newest_first(events) for row in _event_rows(event))
            files[LISTENING_PATH.format(profile=profile)] = csv_bytes(LISTENING_COLUMNS, rows, quote_all=True)
    files[LIBRARY_PATH] = (BOM + LIBRARY_HEADER + "\n"
                           + "".join(_quoted_line(_library_row(title)) for title in library)).encode("utf-8")
    if distractors:
        files[OLD_LIBRARY_PATH] = csv_bytes(OLD_LIBRARY_COLUMNS, map(_old_library_row, library), quote_all=True)
        files[PURCHASE_HISTORY_PATH] = csv_bytes(PURCHASE_HISTORY_COLUMNS, map(_purchase_row, library),
                                                 quote_all=True)
        files[SETTINGS_PATH] = csv_bytes(SETTINGS_COLUMNS, [["narration_speed", "1.00", "2024-03-01"],
                                                            ["sleep_timer_minutes", "30", "2024-03-01"]],
                                         quote_all=True, boms=2)
        descriptions = [[path.rsplit("/", 1)[-1], f"Invented description of {path.rsplit('/', 1)[-1]}."]
                        for path in files]
        files = {FILE_DESCRIPTIONS_PATH: csv_bytes(FILE_DESCRIPTIONS_HEADER, descriptions, crlf=True), **files}
    return files


def write_audible_export(target: Union[str, Path], profiles: Mapping[str, Sequence[ListeningEvent]],
                         library: Iterable[AudibleTitle] = (), *, as_zip: bool = False, old_layout: bool = False,
                         distractors: bool = True) -> Path:
    """Write the Audible part of an export at ``target`` (a folder, or with ``as_zip`` a zip of the same
    files with no wrapper folder) and return ``target``.

    ``profiles`` maps a profile folder name (``"Account Holder"``) to its events, written to
    ``Audible.Listening/<profile>/Listening.csv``: BOM, LF, every field quoted (header too), newest day
    first (a day keeps the given order), each event followed by its echo rows. ``old_layout`` writes the
    single ``Audible.Listening/Audible.Listening.csv`` with the CamelCase header instead (one profile only,
    else ValueError). ``library`` goes to ``Library.csv`` (bare header, data fields quoted). ``distractors``
    adds ``FileDescriptions.csv`` (CRLF), ``Audible.Library.csv``, a settings CSV with a doubled BOM and
    ``Audible.PurchaseHistory.csv``.
    """
    files = _file_bytes(profiles, list(library), old_layout, distractors)
    return write_tree(target, files, as_zip=as_zip)


# --- an invented listening history -----------------------------------------------------------

WORDS = ("Quiet Hours", "Salt Road", "The Lantern Keeper", "Atlas of Small Things", "A Harbor of Bells",
         "The Copper Orchard", "Wintermoor", "The Last Ferry", "Glass Meridian", "The Borrowed Almanac",
         "Night Weavers", "The Drowned Observatory", "Paper Engines", "The Amber Embassy", "Hollow Tide",
         "The Northern Clockmaker", "Silver Cartographer", "The Folded Garden", "Iron Lighthouse", "Ember Archive")
SUBTITLES = ("A Novel", "Harbor Lights, Book 2", "Stories from the Coast", "The Meridian Cycle, Book 1",
             "A Memoir in Pieces", "Saltmarsh Mysteries, Book 3")
AUDIBLE_FIRST = ("Ann", "Bo", "Calla", "Dorian", "Esme", "Fenwick", "Greer", "Hollis", "Imre", "Juno", "Kestrel")
AUDIBLE_LAST = ("Lee", "Park", "Whitcombe", "Abernathy-Cole", "Strand", "Maravilla", "Ostrander", "Penhallow")
SPEEDS = ("0.60", "0.80", "1.00", "1.00", "1.00", "1.10", "1.20", "1.25", "1.50")
APP_VERSIONS = ("3.61.0", "3.72.1", "3.8", "3.90.2", "3.98.1", "3.99", "3.99.0")
TIMEZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney")
ECHO_SHARE = 0.325  # events of echoing books: 911 of 2,798 measured, which wrote 2,236 echo rows of 5,034


@dataclass(frozen=True)
class _Book:
    asin: str
    names: tuple  # the Product Name as written; the first is the usual one
    title: str
    subtitle: Optional[str]
    length_ms: int
    alt_length_ms: Optional[int]
    speed: str
    echo_parts: int  # 0: no echo
    multipart: bool
    in_library: bool
    authors: tuple
    narrators: tuple


def _asins(rng: random.Random, count: int) -> list:
    """``B0...`` ASINs, about 15 % all digits, and (from 8 on) one of nine digits and ``X``."""
    used: set = set()
    asins = []
    for n in range(count):
        while True:
            if n == 7:
                asin = "".join(rng.choice("0123456789") for _ in range(9)) + "X"
            elif n % 7 == 2:
                asin = "".join(rng.choice("0123456789") for _ in range(10))
            else:
                asin = "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
            if asin not in used:
                used.add(asin)
                asins.append(asin)
                break
    return asins


def _people(rng: random.Random, count: int) -> tuple:
    return tuple(f"{rng.choice(AUDIBLE_FIRST)} {rng.choice(AUDIBLE_LAST)}" for _ in range(count))


def _books(rng: random.Random, books: int, extra: int) -> list:
    """``books`` listened to in full, then ``extra`` that are only in the library or only previewed."""
    total = books + extra
    asins = _asins(rng, total)
    result = []
    for n in range(total):
        base = WORDS[n % len(WORDS)] + (f" {n // len(WORDS) + 1}" if n >= len(WORDS) else "")
        subtitle = SUBTITLES[n % len(SUBTITLES)] if n % 5 in (1, 3) else None
        if n == 2:
            base, subtitle = "Atlas of Small Things: Part 3", None  # a real "Part" in a title: not an echo
        name = f"{base}: {subtitle}" if subtitle else base
        written = name if n % 10 == 9 else f"{name} (Unabridged)"
        echo = n < books and n % 10 in (1, 4, 7)  # ~30 % of the full-title books echo
        # 1 in 3 ASINs also appears under another name; an echoing book's names keep " (Unabridged)".
        other = f"{base} (Unabridged)" if echo else base
        names = (written, other) if n % 3 == 1 and other != written else (written,)
        length = 3_900_000 if n == 2 else rng.randint(8, 30) * 3_600_000 + rng.randint(0, 3_599_999)
        result.append(_Book(
            asin=asins[n], names=names, title=base, subtitle=subtitle, length_ms=length,
            alt_length_ms=length + rng.randint(1_000, 90_000) if n % 6 == 5 else None,
            speed=rng.choice(SPEEDS), echo_parts=(2 if n % 20 < 11 else 3) if echo else 0,
            multipart=echo or n % 10 == 5, in_library=not (n < books and n % 10 in (4, 8)),
            authors=_people(rng, 2 if n % 13 == 6 else 1), narrators=_people(rng, 2 if n % 3 == 0 else 1),
        ))
    return result


def _duration_ms(rng: random.Random) -> int:
    draw = rng.random()
    if draw < 0.06:
        return rng.randint(3, 999)
    if draw < 0.48:
        return rng.randint(1_000, 59_999)
    if draw < 0.97:
        return min(7_200_000, max(60_000, int(rng.lognormvariate(14.0, 0.9))))
    return rng.randint(7_200_000, 12_960_000)


def _simulate(rng: random.Random, books: Sequence[_Book], previews: Sequence[_Book], events: int, years: int,
              zone: str, queue: list, finished: set) -> list:
    """Events of one profile, newest first. Adds the ASINs listened to the end to ``finished``."""
    span_days = max(1, years * 365)
    active = max(1, min(int(span_days * 0.8), events // 3))
    first_day = END_EPOCH - span_days * DAY
    days = sorted(rng.sample(range(span_days), active))
    weights = [rng.lognormvariate(0, 0.8) for _ in days]
    counts = dict.fromkeys(days, 1)
    for day in rng.choices(days, weights, k=max(0, events - active)):
        counts[day] += 1
    echo_books = [b for b in books if b.echo_parts]
    plain_books = [b for b in books if not b.echo_parts]
    position = {b.asin: 0 for b in books}
    tally = {"echo": 0, "all": 0}

    def next_book(current: Optional[_Book]) -> _Book:
        if queue:
            return queue.pop(0)
        want_echo = echo_books and (not plain_books or tally["echo"] < ECHO_SHARE * max(1, tally["all"]))
        group = echo_books if want_echo else plain_books
        choices = [b for b in group if b is not current] or group
        return rng.choice(choices)

    current = next_book(None)
    out = []
    written = 0
    for index, day in enumerate(days):
        if written >= events:
            break
        start_day = _day(first_day + day * DAY)
        next_day = _day(first_day + (day + 1) * DAY)
        version = APP_VERSIONS[min(len(APP_VERSIONS) - 1, index * len(APP_VERSIONS) // len(days))]
        delivery = rng.choice(("Download", "Streaming"))
        mode = "Offline" if delivery == "Download" and rng.random() < 0.7 else "Online"
        if rng.random() < 0.3:
            current = next_book(current)
        today = min(counts[day], events - written)
        for n in range(today):
            written += 1
            end_day = next_day if n == today - 1 and rng.random() < 0.04 else start_day  # past midnight
            draw = rng.random() if previews else 1.0
            if draw < 0.014:
                preview = rng.choice(previews)
                audio = "CatalogSample" if draw < 0.002 else "Preview"
                duration = rng.randint(20_000, 300_000)
                out.append(ListeningEvent(start_day, end_day, duration, 0, duration, preview.names[0], preview.asin,
                                          preview.length_ms, "1.00", audio, zone, "Streaming", "Online", version))
                continue
            if rng.random() < 0.03:
                current = next_book(current)
            book = current
            start = position[book.asin]
            if start >= book.length_ms:  # finished: listen again from the start, or move on
                if rng.random() < 0.5:
                    start = 0
                else:
                    current = book = next_book(book)
                    start = position[book.asin] if position[book.asin] < book.length_ms else 0
            if rng.random() < 0.012 and start > 60_000:
                duration = rng.randint(1_000, 8_000)
                end = start - rng.randint(5_000, 60_000)  # skipped back
            else:
                duration = _duration_ms(rng)
                end = start + int(duration * float(book.speed) * rng.uniform(0.88, 1.0))
                if end >= book.length_ms:
                    end = book.length_ms + (rng.randint(1, 3_000) if rng.random() < 0.1 else 0)
                    finished.add(book.asin)
            position[book.asin] = end
            tally["all"] += 1
            tally["echo"] += bool(book.echo_parts)
            name = book.names[1] if len(book.names) > 1 and rng.random() < 0.05 else book.names[0]
            length = book.alt_length_ms if book.alt_length_ms and rng.random() < 0.1 else book.length_ms
            out.append(ListeningEvent(start_day, end_day, duration, start, end, name, book.asin, length, book.speed,
                                      "FullTitle", zone, delivery, mode, version, book.echo_parts))
    out.reverse()
    return out


def generate_audible_history(seed: int, events: int, years: int = 5, books: int = 40,
                             profiles: Sequence[str] = ("Account Holder",)) -> tuple:
    """``(profiles dict, library)`` of an invented listening history ending 2025-12-31.

    ``events`` is the number of :class:`ListeningEvent` (echo rows come on top), shared out over the
    ``profiles`` (the first listens most; each profile has its own zone). Listening happens on most days
    (when ``events`` allows), many events per book and day, many under 60 s; about 30 % of the full-title
    books are multipart and echoed by 2 or 3 rows, so that about 44 % of the rows written are echoes; one
    more multipart book shows no echo. About 1.4 % of the events are previews or catalog samples, mostly of
    ASINs without a full-title row. Some events end on the next day, some skip back (end < start
    position), books are listened to again from the start after finishing, a few ASINs (echoing ones too)
    are absent from ``library``; some ASINs are all digits, one is nine digits and ``X``, and
    ``Atlas of Small Things: Part 3`` is a real title, not an echo. The library also holds books never
    listened to. ``books`` is the number of books listened to in full (at least 1).
    """
    if not profiles:
        raise ValueError("at least one profile")
    rng = random.Random(seed)
    books = max(1, books)
    catalog = _books(rng, books, max(4, books // 2))
    listened, others = catalog[:books], catalog[books:]
    previews = others[: max(2, len(others) // 2)] + listened[-1:]
    least = 1 if events >= len(profiles) else 0
    shares = [max(least, int(events * weight)) for weight in _shares(len(profiles))]
    shares[0] = events - sum(shares[1:])
    history = {}
    finished: set = set()
    for n, profile in enumerate(profiles):
        queue = listened[2:3] + listened[7:8] if n == 0 else []  # the ": Part 3" title, the nine-digits-and-X ASIN
        history[profile] = _simulate(rng, listened, previews, shares[n], years, TIMEZONES[n % len(TIMEZONES)],
                                     queue, finished) if shares[n] else []
    preview_only = {b.asin for b in previews[:-1]}
    library = [AudibleTitle(
        asin=b.asin, title=b.title, subtitle=b.subtitle, authors=b.authors, narrators=b.narrators,
        length_minutes=None if n == 3 else b.length_ms // 60_000,
        content_delivery_type="MultiPartBook" if b.multipart else "SinglePartBook", is_finished=b.asin in finished,
        series=("B0" + _token("series:" + b.subtitle).upper()[:8], b.subtitle.split(",")[0])
        if b.subtitle and "Book" in b.subtitle else None,
        whispersync_for_voice=n % 4 != 1,
    ) for n, b in enumerate(catalog) if b.in_library and b.asin not in preview_only]
    return history, library


def _shares(count: int) -> list:
    weights = [1.0] + [0.25] * (count - 1)
    return [w / sum(weights) for w in weights]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Audible part of an invented Amazon data export.")
    parser.add_argument("out", help="the export folder, or with --zip the zip file to write")
    parser.add_argument("--zip", action="store_true", help="write a zip instead of a folder")
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--books", type=int, default=40)
    parser.add_argument("--profile", action="append", dest="profiles", metavar="NAME",
                        help='a listener profile folder (repeat for several; default "Account Holder")')
    parser.add_argument("--old-layout", action="store_true", help="the older single Audible.Listening.csv")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-distractors", action="store_true", help="only the listening and library files")
    args = parser.parse_args(argv)
    profiles = tuple(args.profiles or ("Account Holder",))
    if args.old_layout and len(profiles) > 1:
        parser.error("--old-layout holds one profile only")
    history, library = generate_audible_history(args.seed, args.events, years=args.years, books=args.books,
                                                profiles=profiles)
    path = write_audible_export(args.out, history, library, as_zip=args.zip, old_layout=args.old_layout,
                                distractors=not args.no_distractors)
    rows = sum(1 + e.echo_parts for events in history.values() for e in events)
    print(f"{path}: {sum(map(len, history.values()))} listening events ({rows} rows) in {len(history)} "
          f"profile(s), {len(library)} library titles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
