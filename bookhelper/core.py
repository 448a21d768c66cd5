"""What every source and the run share: exit codes and errors, settings, logging, the Book, text
cleaned and fitted to the reader's columns, and safe snapshots of SQLite files."""

import dataclasses
import datetime
import hashlib
import json
import logging
import re
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_BAD_SOURCE = 65
EXIT_NO_SOURCE = 66
EXIT_INTERNAL = 70
EXIT_TEMPORARY = 75
EXIT_CONFIG = 78
EXIT_STALE = 79
EXIT_PARTIAL = 80
EXIT_TERMINATED = 143


class EtlError(Exception):
    """A failure with a one-line message for people and a documented exit code."""

    exit_code = EXIT_INTERNAL


class UsageError(EtlError):
    exit_code = EXIT_USAGE


class SourceUnusable(EtlError):
    exit_code = EXIT_BAD_SOURCE


class SourceMissing(EtlError):
    exit_code = EXIT_NO_SOURCE


class DatabaseUnavailable(EtlError):
    exit_code = EXIT_TEMPORARY


class ConfigError(EtlError):
    exit_code = EXIT_CONFIG


class Terminated(EtlError):
    """SIGTERM: systemd's stop or TimeoutStartSec. The run rolls back and cleans up."""

    exit_code = EXIT_TERMINATED


def component_logger(component: str) -> logging.Logger:
    """The logger of one component (ETL, EXTRACT, TRANSFORM, LOAD, DB, REPORT)."""
    return logging.getLogger(f"bookhelper.{component}")


@dataclass(frozen=True)
class Setting:
    """One setting: its environment name, default and meaning (the .env.example documents each), and for a
    source's setting its command-line option."""

    env: str
    default: Optional[str]
    help: str
    option: Optional[str] = None  # e.g. "--calibre-library"
    metavar: str = "PATH"
    option_help: str = ""


class SourceSkipped(Exception):
    """An optional input that cannot be read tonight: a warning and a note in the run record, and the rest
    of the night loads; what the warehouse holds of it stays as it was."""


@dataclass(frozen=True)
class RunContext:
    """What a source's load step may use of the run: the configuration, the device, the run's clock, and
    the run's one way to land books keyed as KOReader keys them (its identity rules), in the run's
    transaction."""

    config: object
    device_id: Optional[int]  # None: no statistics file tonight
    timezone: str
    now: int
    # (cursor, books, adopted=None, source="koreader", stats_source=...): those no statistics file reports land
    # as books; ``adopted`` gives some the reader's row (book_key -> (book_id, rule)); source names the rows made
    ensure_books: Callable


MAX_INTEGER = 2**31 - 1  # PostgreSQL's integer
LAST_VALID_EPOCH = 4102444800  # 2100-01-01: a fixed bound, so that a book's metadata never depends on the run date


SQLITE_COMPANIONS = ("-wal", "-journal")  # the write-ahead log; a rollback journal


def _file_state(path: Path) -> Optional[tuple[int, int]]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


def copy_snapshot(source: Path, workdir: Path, attempts: int = 3, name: str = "statistics.sqlite3") -> Path:
    """Copy an SQLite database with its -wal and -journal into ``workdir``, retrying while Syncthing (or Calibre)
    changes them. A writer caught mid-transaction leaves a hot journal: copied along, SQLite rolls the copy back
    to the last commit when it opens it, so a write that is then rolled back is never read.

    Only reads the source: nothing is created beside it (SQLite itself would add a -shm) and no
    timestamp changes.
    """
    companions = [(Path(f"{source}{suffix}"), Path(f"{workdir / name}{suffix}")) for suffix in SQLITE_COMPANIONS]
    target = workdir / name

    def states() -> tuple:
        return (_file_state(source),) + tuple(_file_state(original) for original, _copy in companions)

    for attempt in range(attempts):
        before = states()
        try:
            shutil.copyfile(source, target)
            for (original, copy), state in zip(companions, before[1:]):
                if state is not None:
                    shutil.copyfile(original, copy)
                else:
                    copy.unlink(missing_ok=True)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise SourceMissing(f"{source}: disappeared while it was copied; try again") from None
            continue
        except OSError as exc:
            raise SourceMissing(f"{source}: cannot be copied ({exc.strerror})") from None
        if states() == before:
            return target
        time.sleep(0.5 * (attempt + 1))
    component_logger("EXTRACT").warning("%s kept changing while it was copied; using the last copy", source)
    return target


EMPTY_FILE_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
MD5_PATTERN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Book:
    """A book as the warehouse knows it, identified by ``book_key`` across runs and devices."""

    book_key: str
    title: Optional[str]
    authors: tuple[str, ...]
    file_hash: Optional[str]
    series: Optional[str]
    language: Optional[str]
    page_count: Optional[int]
    last_open: Optional[int]
    notes: Optional[int] = None
    highlights: Optional[int] = None

    def metadata_hash(self) -> str:
        """A digest of what the warehouse stores about the book, to notice edits cheaply."""
        fields = dataclasses.astuple(self)
        return hashlib.sha1(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def clean_text(value) -> Optional[str]:
    """Text as stored in PostgreSQL: trimmed, without NUL characters (PostgreSQL refuses them)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip(" \t\r\n\x00").replace("\x00", "")
    return text or None


def clean_optional(value) -> Optional[str]:
    """KOReader writes 'N/A' for a missing series or language."""
    text = clean_text(value)
    return None if text == "N/A" else text


def split_authors(value) -> tuple[str, ...]:
    """KOReader joins several authors with newlines. Never split on commas."""
    text = clean_text(value)
    if text is None:
        return ()
    names = (clean_text(name) for name in text.split("\n"))
    return tuple(name for name in names if name and name != "N/A")


def normalise_md5(value) -> Optional[str]:
    """The file hash, or None when it is missing, malformed or the md5 of an empty file."""
    text = (clean_text(value) or "").lower()
    if not MD5_PATTERN.fullmatch(text) or text == EMPTY_FILE_MD5:
        return None
    return text


def make_book_key(file_hash: Optional[str], title: Optional[str], authors: Sequence[str]) -> Optional[str]:
    """``md5:<hash>``, or a digest of title and authors when there is no usable hash."""
    if file_hash:
        return f"md5:{file_hash}"
    if title:
        digest = hashlib.sha1("\x1f".join((title,) + tuple(authors)).encode()).hexdigest()
        return f"title:{digest}"
    return None


def int_in_range(value, low: int, high: int) -> Optional[int]:
    """An integer within [low, high], else None (a bad book field is dropped, never fatal)."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


# Fitting values to the reader's columns (../shared/reader-warehouse-schema.md): VARCHAR lengths raise
# errors rather than truncate, CHAR(2) takes only an ISO 639-1 code, NUMERIC(5,2) stops at 999.99. The full
# text stays in the job's own tables; a cut value is counted and logged.
TITLE_LENGTH = NAME_LENGTH = 255  # books.title, author, series_name, publisher_name; authors.author_name
DEVICE_LENGTH = 50  # reading_sessions.device
EDITION_FORMAT_LENGTH = 50
EDITION_LANGUAGE_LENGTH = 10
UNTITLED = "(untitled)"  # books.title is NOT NULL; KOReader may know a book only by its md5
STATS_SOURCE = "statistics.sqlite3"  # device_stats_source, as the reader's mapping documents it
SERIES_NUMBER_LIMIT = 999.99
SERIES_WITH_NUMBER = re.compile(r"(.*?)\s*#\s*([0-9]{1,9}(?:\.[0-9]{1,9})?)\s*")


# ISO 639-2 (bibliographic and terminology) codes and English names of the languages KOReader users read
# in most, to their ISO 639-1 code; two-letter codes pass as they are.
LANGUAGE_CODES = {
    "ara": "ar", "arabic": "ar", "bul": "bg", "bulgarian": "bg", "cat": "ca", "catalan": "ca", "ces": "cs",
    "cze": "cs", "czech": "cs", "chi": "zh", "zho": "zh", "chinese": "zh", "dan": "da", "danish": "da",
    "deu": "de", "ger": "de", "german": "de", "deutsch": "de", "dut": "nl", "nld": "nl", "dutch": "nl",
    "ell": "el", "gre": "el", "greek": "el", "eng": "en", "english": "en", "epo": "eo", "esperanto": "eo",
    "est": "et", "estonian": "et", "fin": "fi", "finnish": "fi", "fra": "fr", "fre": "fr", "french": "fr",
    "francais": "fr", "français": "fr", "heb": "he", "hebrew": "he", "hin": "hi", "hindi": "hi", "hrv": "hr",
    "croatian": "hr", "hun": "hu", "hungarian": "hu", "ind": "id", "indonesian": "id", "ita": "it",
    "italian": "it", "italiano": "it", "jpn": "ja", "japanese": "ja", "kor": "ko", "korean": "ko", "lat": "la",
    "latin": "la", "lav": "lv", "latvian": "lv", "lit": "lt", "lithuanian": "lt", "nor": "no", "norwegian": "no",
    "nob": "nb", "nno": "nn", "per": "fa", "fas": "fa", "persian": "fa", "pol": "pl", "polish": "pl",
    "por": "pt", "portuguese": "pt", "ron": "ro", "rum": "ro", "romanian": "ro", "rus": "ru", "russian": "ru",
    "slk": "sk", "slo": "sk", "slovak": "sk", "slv": "sl", "slovenian": "sl", "spa": "es", "spanish": "es",
    "español": "es", "srp": "sr", "serbian": "sr", "swe": "sv", "swedish": "sv", "tha": "th", "thai": "th",
    "tur": "tr", "turkish": "tr", "ukr": "uk", "ukrainian": "uk", "vie": "vi", "vietnamese": "vi",
}


def fit_text(value: Optional[str], length: int, cut: Optional[Counter] = None, field: str = "") -> Optional[str]:
    """``value`` within ``length`` characters (as VARCHAR counts them); a cut is counted in ``cut``."""
    if value is None or len(value) <= length:
        return value
    if cut is not None:
        cut[field] += 1
    return value[:length]


def iso_language(value: Optional[str]) -> Optional[str]:
    """KOReader's language ('en', 'en-US', 'eng', 'zh_CN', 'English') as ISO 639-1, or None."""
    if not value:
        return None
    code = re.split(r"[-_ ]", value.strip().lower(), maxsplit=1)[0]
    if len(code) == 2 and code.isascii() and code.isalpha():
        return code
    return LANGUAGE_CODES.get(code)


def split_series(series: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """KOReader's 'Name #2.5' as (name, number as NUMERIC(5,2) text); a number the column cannot hold is None."""
    if not series:
        return None, None
    found = SERIES_WITH_NUMBER.fullmatch(series)
    if not found:
        return series, None
    number = round(float(found.group(2)) + 1e-9, 2)  # NUMERIC rounds halves away from zero
    return found.group(1) or None, f"{number:.2f}" if number <= SERIES_NUMBER_LIMIT else None


# Sidecars: what the reader thought of a book. Local times are the device's wall time.
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\d")


def iso_date(value) -> Optional[str]:
    """A sidecar's ``YYYY-MM-DD``, when it is a real date."""
    if not (isinstance(value, str) and ISO_DATE.fullmatch(value)):
        return None
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return None
    return value


TEMP_TABLE = re.compile(r"CREATE TEMP TABLE (\w+)")


def repeatable(statements: str) -> str:
    """``statements`` made safe to run twice in one transaction: the temporary tables they create (dropped
    at commit) are dropped first."""
    tables = TEMP_TABLE.findall(statements)
    return f"DROP TABLE IF EXISTS {', '.join(tables)};\n" + statements if tables else statements


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def copy_text(value: str) -> str:
    """A value in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def naive_utc(epoch: int) -> str:
    """An epoch as the reader's TIMESTAMP columns hold it: UTC, without an offset (one would be dropped)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(tzinfo=None).isoformat(" ")


def state_digest(*parts) -> str:
    """A digest of what a source's load depends on, to tell an unchanged night in one query."""
    return hashlib.sha1(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()
