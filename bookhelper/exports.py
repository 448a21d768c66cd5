"""Amazon's data exports, read in place: a ``.zip`` as Amazon delivers it, or its unzipped folder.

Nothing is extracted and nothing is written beside the export. A dataset is found by its file name anywhere
in the tree (Amazon's folder names vary between requests), then checked by its header. Shared by the
Kindle and Audible sources; it knows nothing of either.
"""

import csv
import functools
import hashlib
import io
import itertools
import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from bookhelper.core import SourceMissing, SourceUnusable, component_logger, first_line

BOM = "\ufeff"
MAX_FIELD = 1 << 24  # a field of 16 MiB is read (and then skipped as too long) rather than failing the file
NOT_AVAILABLE = frozenset({"", "not available", "not applicable", "unknown", "empty"})


def unavailable(value: Optional[str]) -> bool:
    """Amazon's spellings of a missing value (``Not Available``, ``NOT AVAILABLE``, ``Not Applicable``, ...)."""
    return value is None or value.strip().lower() in NOT_AVAILABLE


def safe_entry(name: str) -> bool:
    """A zip entry the reader may look at: a relative path without ``..`` parts (never extracted anyway)."""
    path = PurePosixPath(name.replace("\\", "/"))
    return not path.is_absolute() and ".." not in path.parts and not name.endswith("/")


@dataclass(frozen=True)
class Export:
    """An export's files by name: a zip's entries or a folder's files, with a digest of the ones read."""

    path: Path
    entries: dict  # file name -> [entry names or paths], in a stable order
    unsafe: int  # zip entries skipped for their names (absolute, ``..``)

    def find(self, name: str) -> list[str]:
        """Every file of that name, anywhere in the tree."""
        return self.entries.get(name, [])

    def find_named(self, pattern: "re.Pattern[str]") -> list[str]:
        """Every file whose name matches ``pattern``, in the order of their names."""
        return [entry for name in sorted(self.entries) if pattern.fullmatch(name) for entry in self.entries[name]]

    def open_bytes(self, entry: str) -> io.BufferedIOBase:
        """One file's bytes."""
        if self.path.is_dir():
            return open(entry, "rb")  # noqa: SIM115 - the caller closes it
        archive = zipfile.ZipFile(self.path)
        handle = archive.open(entry)
        handle.archive = archive  # kept open as long as the entry is read
        return handle

    def digest(self, entries: Sequence[str]) -> str:
        """A digest of the files' bytes, for "unchanged since the last run"."""
        digest = hashlib.sha1()
        for entry in entries:
            digest.update(entry.encode("utf-8", "replace") + b"\0")
            with self.open_bytes(entry) as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def configured_path(value: Optional[str]) -> Optional[Path]:
    """An export setting's path, when one is set."""
    return Path(value).expanduser() if value else None


def open_export(path: Path, setting: str) -> Export:
    """The export at ``path``, a zip or a folder. SourceMissing (66) when there is none, SourceUnusable (65)
    when it is neither."""
    if not path.exists():
        raise SourceMissing(f"{path}: no such file or folder (check {setting})")
    entries: dict[str, list[str]] = {}
    unsafe = 0
    if path.is_dir():
        for folder, _dirs, files in os.walk(path):
            for name in files:
                entries.setdefault(name, []).append(os.path.join(folder, name))
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise SourceUnusable(f"{path}: not a zip or folder of Amazon's export ({first_line(exc)}); "
                                 f"check {setting}") from None
        for name in names:
            if not safe_entry(name):
                unsafe += not name.endswith("/")
                continue
            entries.setdefault(PurePosixPath(name.replace("\\", "/")).name, []).append(name)
    return Export(path, {name: sorted(found) for name, found in entries.items()}, unsafe)


def text_lines(raw: io.BufferedIOBase) -> Iterator[str]:
    """A file's lines as text, for the csv module: invalid UTF-8 replaced, the leading BOM stripped however
    often Amazon wrote it (before the header's first quote, where csv would keep it)."""
    lines = iter(io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=""))
    first = next(lines, None)
    if first is None:
        return iter(())
    return itertools.chain([first.lstrip(BOM)], lines)


def read_header(export: Export, entry: str) -> list[str]:
    """A CSV file's column names, to tell its layout."""
    with export.open_bytes(entry) as raw:
        header = next(csv.reader(text_lines(raw)), [])
    return [name.strip() for name in header]


def read_rows(export: Export, entry: str, required: Sequence[str], problems: Counter) -> Iterator[dict]:
    """A CSV file's rows as dicts of its header's names, streamed: the BOM stripped (Amazon writes it twice in
    places), invalid UTF-8 replaced (and counted), quoted fields with newlines kept. SourceUnusable (65)
    naming the file and the columns when its header lacks one of ``required``."""
    limit = csv.field_size_limit()
    csv.field_size_limit(MAX_FIELD)
    try:
        with export.open_bytes(entry) as raw:
            rows = csv.reader(text_lines(raw))
            header = next(rows, None)
            if header is None:
                raise SourceUnusable(f"{export.path}: {entry_label(export, entry)} is empty; request the export again")
            header = [name.strip() for name in header]
            missing = [name for name in required if name not in header]
            if missing:
                raise SourceUnusable(f"{export.path}: {entry_label(export, entry)} has no column "
                                     f"{', '.join(missing)}; is it Amazon's export?")
            width = len(header)
            for fields in rows:
                if not fields:
                    continue
                if len(fields) != width:
                    problems["row with a wrong number of fields"] += 1
                    continue
                if any("\ufffd" in field for field in fields):
                    problems["invalid UTF-8 replaced"] += 1
                yield dict(zip(header, fields))
    except csv.Error as exc:
        raise SourceUnusable(f"{export.path}: {entry_label(export, entry)} is not readable CSV "
                             f"({first_line(exc)})") from None
    finally:
        csv.field_size_limit(limit)


def read_json(export: Export, entry: str, problems: Counter) -> object:
    """A JSON file's value, or None (counted) when it is larger than MAX_FIELD or not JSON in UTF-8."""
    with export.open_bytes(entry) as raw:
        content = raw.read(MAX_FIELD + 1)
    try:
        if len(content) <= MAX_FIELD:
            return json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        pass
    problems["JSON file unreadable or too large (ignored)"] += 1
    return None


def entry_folder(export: Export, entry: str) -> str:
    """The name of the folder that holds a file of the export ("" at its top)."""
    if export.path.is_dir():
        parent = Path(entry).parent
        return "" if parent == export.path else parent.name
    return PurePosixPath(entry.replace("\\", "/")).parent.name


def entry_label(export: Export, entry: str) -> str:
    """A file's name within the export, for messages."""
    if export.path.is_dir():
        return os.path.relpath(entry, export.path)
    return entry


def require_columns(export: Export, entry: str, required: Sequence[str]) -> None:
    """SourceUnusable (65) naming the file and the columns when its header lacks one of ``required``."""
    missing = [name for name in required if name not in read_header(export, entry)]
    if missing:
        raise SourceUnusable(f"{export.path}: {entry_label(export, entry)} has no column {', '.join(missing)}; "
                             "is it Amazon's export?")


@dataclass(frozen=True)
class LazyExport:
    """An export as a run holds it: the digest of the files it reads, taken at extract time (their bytes: a
    fraction of a second), and what they say, parsed only when a load needs it, so that an unchanged export
    costs a night one query and no parsing."""

    path: Path
    fingerprint: str
    parse: Callable[[], object]

    @functools.cached_property
    def content(self):
        """What the export says (the source's parsed snapshot)."""
        return self.parse()


def report_problems(source: str, problems: Sequence[tuple[str, int]]) -> None:
    """One WARNING with the rows a source skipped (or counted once), by reason."""
    if problems:
        component_logger("TRANSFORM").warning(
            "%s: skipped %d rows (%s)", source, sum(n for reason, n in problems if "counted once" not in reason),
            ", ".join(f"{reason}: {n}" for reason, n in problems))
