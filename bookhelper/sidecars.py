"""Source: KOReader's sidecar files (``*.sdr/metadata.*.lua``): status, rating, review and highlights.

See ../shared/koreader-sidecar-format.md. Keyed by the book's md5, as the statistics file is."""

import dataclasses
import datetime
import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bookhelper.core import (
    LAST_VALID_EPOCH,
    MAX_INTEGER,
    Book,
    RunContext,
    Setting,
    SourceSkipped,
    clean_optional,
    clean_text,
    component_logger,
    first_line,
    int_in_range,
    iso_date,
    make_book_key,
    normalise_md5,
    split_authors,
)
from bookhelper.luadata import LuaDataError, parse_lua_data
from bookhelper.matching import parse_identifier


@dataclass(frozen=True)
class SidecarFile:
    """One book's sidecar as read from the folder: where, its content digest, mtime and parsed data."""

    path: str  # relative to the sidecar folder
    content_hash: str
    modified_at: float
    data: dict


def find_sidecars(root: Path) -> tuple[list[SidecarFile], Counter]:
    """Every readable sidecar below ``root`` (``*.sdr/metadata.*.lua``), falling back to its ``.old``
    backup when the main file is missing, empty or broken. Only reads; skipped files are counted."""
    sidecar_log = component_logger("EXTRACT")
    primaries = {path for path in root.rglob("metadata.*.lua") if path.parent.name.endswith(".sdr")}
    primaries |= {path.with_suffix("") for path in root.rglob("metadata.*.lua.old")
                  if path.parent.name.endswith(".sdr")}
    found, skipped = [], Counter()
    for primary in sorted(primaries):
        sidecar, problem = None, None
        for candidate in (primary, Path(f"{primary}.old")):
            try:
                content = candidate.read_bytes()
                data = parse_lua_data(content)
            except FileNotFoundError:
                continue
            except (OSError, LuaDataError) as exc:
                problem = problem or f"{candidate}: {exc}"
                continue
            if isinstance(data, dict) and data:
                sidecar = SidecarFile(str(primary.relative_to(root)), hashlib.sha1(content).hexdigest(),
                                      candidate.stat().st_mtime, data)
                break
            problem = problem or f"{candidate}: holds no table"
        if sidecar is None:
            skipped["does not parse"] += 1
            sidecar_log.warning("skipped the sidecar %s", problem or primary)
            continue
        if problem:
            skipped["read from the .old backup"] += 1
            sidecar_log.warning("skipped the sidecar %s; read its .old backup instead", problem)
        found.append(sidecar)
    return found, skipped


SIDECAR_DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# KOReader's legacy bookmarks put an automatic text where the reader wrote no note.
LEGACY_AUTO_TEXT = re.compile(r"Page \S+ .* @ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.S)


@dataclass(frozen=True)
class Highlight:
    """A highlight, a note (a highlight with the reader's note) or a page bookmark, as KOReader tells them apart."""

    kind: str
    text: Optional[str]
    note: Optional[str]
    chapter: Optional[str]
    page: Optional[int]
    pageref: Optional[str]
    pos0: Optional[str]
    pos1: Optional[str]
    color: Optional[str]
    drawer: Optional[str]
    created_local: Optional[str]
    updated_local: Optional[str]


@dataclass(frozen=True)
class SidecarBook:
    """What one sidecar says about its book: identity, the reader's status and rating, and highlights."""

    book: Book
    paths: tuple[str, ...]  # every file of the book, sorted
    content_hashes: tuple[str, ...]
    source_path: str  # the file all of this comes from: the most recently modified
    status: str
    status_modified: Optional[str]
    rating: Optional[int]
    review: Optional[str]
    percent_finished: Optional[float]
    doc_pages: Optional[int]
    last_opened_at: float
    identifiers: tuple[tuple[str, str], ...]
    highlights: tuple[Highlight, ...]


def exact_text(value) -> Optional[str]:
    """The reader's text exactly, spaces and all; PostgreSQL text cannot hold NUL, which becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else None


def lua_values(table) -> list:
    """The values of a Lua list in key order, tolerating gaps (a list KOReader wrote is keyed 1..n)."""
    if not isinstance(table, dict):
        return []
    return [table[key] for key in sorted(key for key in table if isinstance(key, int))]


def local_datetime(value) -> Optional[str]:
    """A sidecar's ``YYYY-MM-DD HH:MM:SS``, when it is one."""
    if not (isinstance(value, str) and SIDECAR_DATETIME.fullmatch(value)):
        return None
    try:
        datetime.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return value


def lua_key_order(key) -> tuple:
    """Lua's order of a table's keys: numbers, then strings (a PDF position mixes both)."""
    return (0, key, "") if isinstance(key, (int, float)) else (1, 0, str(key))


def plain_data(value):
    """Lua data as JSON holds it: keys as text in Lua's order, text exact (PostgreSQL's jsonb holds no NUL)."""
    if isinstance(value, dict):
        return {exact_text(str(key)): plain_data(value[key]) for key in sorted(value, key=lua_key_order)}
    return exact_text(value) if isinstance(value, str) else value


def position_text(value) -> Optional[str]:
    """An xpointer as it is; a PDF position (a page number or a table) as JSON."""
    if isinstance(value, str):
        return exact_text(value)
    if value is None or isinstance(value, bool):
        return None
    return json.dumps(plain_data(value))


def page_number(value) -> Optional[int]:
    return int_in_range(value, 0, MAX_INTEGER)


def annotation_highlight(item: dict) -> Highlight:
    """One item of the current ``annotations`` list: no drawer means a page bookmark."""
    note = exact_text(item.get("note")) or None
    kind = "bookmark" if not item.get("drawer") else "note" if note else "highlight"
    return Highlight(
        kind, exact_text(item.get("text")), note, exact_text(item.get("chapter")),
        page_number(item.get("pageno")) if "pageno" in item else page_number(item.get("page")),
        exact_text(item.get("pageref")) if isinstance(item.get("pageref"), str) else None,
        position_text(item.get("pos0") if "pos0" in item else item.get("page")), position_text(item.get("pos1")),
        exact_text(item.get("color")), exact_text(item.get("drawer")), local_datetime(item.get("datetime")),
        local_datetime(item.get("datetime_updated")),
    )


def legacy_note(bookmark: Optional[dict], quote: Optional[str]) -> Optional[str]:
    """The reader's note in a legacy bookmark (its ``text``), unless KOReader filled it in itself."""
    text = exact_text((bookmark or {}).get("text"))
    if not text or not text.strip() or text == quote or LEGACY_AUTO_TEXT.fullmatch(text):
        return None
    return text


def text_field(table: dict, name: str) -> Optional[str]:
    """A field that must be text (a datetime), or None whatever else it holds."""
    value = table.get(name)
    return value if isinstance(value, str) else None


def legacy_highlights(data: dict) -> list[Highlight]:
    """Files without ``annotations``: ``highlight`` (page -> items) joined to ``bookmarks`` by datetime,
    where a bookmark's ``notes`` is the quote and its ``text`` the note; the rest are page bookmarks."""
    bookmarks = [mark for mark in lua_values(data.get("bookmarks")) if isinstance(mark, dict)]
    by_time = {when: mark for mark in bookmarks for when in (text_field(mark, "datetime"),) if when}
    highlights, joined = [], set()
    pages = data.get("highlight") if isinstance(data.get("highlight"), dict) else {}
    for page in sorted(pages, key=lambda key: (not isinstance(key, int), str(key))):
        for item in (entry for entry in lua_values(pages[page]) if isinstance(entry, dict)):
            when = text_field(item, "datetime")
            joined.add(when)
            quote = exact_text(item.get("text"))
            note = legacy_note(by_time.get(when), quote)
            highlights.append(Highlight(
                "note" if note else "highlight", quote, note, exact_text(item.get("chapter")),
                page_number(page), None, position_text(item.get("pos0")), position_text(item.get("pos1")),
                exact_text(item.get("color")), exact_text(item.get("drawer")), local_datetime(when), None,
            ))
    for mark in bookmarks:
        if text_field(mark, "datetime") in joined or mark.get("highlighted"):
            continue
        highlights.append(Highlight(
            "bookmark", exact_text(mark.get("notes")), legacy_note(mark, exact_text(mark.get("notes"))),
            exact_text(mark.get("chapter")), page_number(mark.get("page")), None, position_text(mark.get("pos0")),
            None, None, None, local_datetime(mark.get("datetime")), None,
        ))
    return highlights


def transform_sidecar(sidecar: SidecarFile) -> Optional[SidecarBook]:
    """A sidecar as the warehouse stores it, or None when it names no usable md5 (it matches no book)."""
    data = sidecar.data
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
    file_hash = normalise_md5(data.get("partial_md5_checksum") or stats.get("md5"))
    if file_hash is None:
        return None
    props = data.get("doc_props") if isinstance(data.get("doc_props"), dict) else {}
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    title = clean_text(props.get("title") if isinstance(props.get("title"), str) else stats.get("title"))
    authors = split_authors(props.get("authors") if isinstance(props.get("authors"), str) else stats.get("authors"))
    book = Book(make_book_key(file_hash, title, authors), title, authors, file_hash,
                clean_optional(props.get("series")) if isinstance(props.get("series"), str) else None,
                clean_optional(props.get("language")) if isinstance(props.get("language"), str) else None,
                int_in_range(data.get("doc_pages"), 1, MAX_INTEGER),
                # the newest file's metadata wins, as the statistics' last opened book's does
                int_in_range(int(sidecar.modified_at), 1, LAST_VALID_EPOCH))
    identifiers = props.get("identifiers") if isinstance(props.get("identifiers"), str) else ""
    schemes = tuple(sorted({(exact_text(scheme), exact_text(value)) for scheme, value in
                            map(parse_identifier, identifiers.splitlines()) if scheme and value}))
    annotations = data.get("annotations")
    highlights = ([annotation_highlight(item) for item in lua_values(annotations) if isinstance(item, dict)]
                  if isinstance(annotations, dict) else legacy_highlights(data))
    status = summary.get("status")
    percent = data.get("percent_finished")
    return SidecarBook(
        book=book, paths=(sidecar.path,), content_hashes=(sidecar.content_hash,), source_path=sidecar.path,
        status=exact_text(status) if isinstance(status, str) and status else "reading",
        status_modified=iso_date(summary.get("modified")),
        rating=int_in_range(summary.get("rating"), 1, 5), review=exact_text(summary.get("note")) or None,
        percent_finished=float(percent) if isinstance(percent, (int, float)) and not isinstance(percent, bool)
        and 0 <= percent <= 1 else None,
        doc_pages=book.page_count, last_opened_at=sidecar.modified_at, identifiers=schemes,
        highlights=tuple(highlights),
    )


def transform_sidecars(sidecars: Iterable[SidecarFile]) -> tuple[dict[str, SidecarBook], Counter]:
    """One sidecar per book: of several (storage modes, or devices' folders) the most recently modified
    wins, as in KOReader; every file of the book stays in its fingerprint. Also counts the skipped ones."""
    by_key: dict[str, list[tuple[SidecarFile, SidecarBook]]] = {}
    skipped: Counter = Counter()
    for sidecar in sidecars:
        book = transform_sidecar(sidecar)
        if book is None:
            skipped["no usable md5"] += 1
            continue
        by_key.setdefault(book.book.book_key, []).append((sidecar, book))
    chosen = {}
    for key, candidates in by_key.items():
        candidates.sort(key=lambda pair: (pair[0].modified_at, pair[0].path))
        files = sorted(candidates, key=lambda pair: pair[0].path)
        chosen[key] = dataclasses.replace(
            candidates[-1][1], paths=tuple(f.path for f, _b in files),
            content_hashes=tuple(f.content_hash for f, _b in files))
    return chosen, skipped


SIDECAR_PRINTS_SQL = """
SELECT k.book_key, f.sidecar_path, f.content_hash
FROM sidecar_files f JOIN book_keys k USING (book_id) WHERE f.device_id = %(device_id)s
"""


# When a device's zone or clock changes (configured tonight or not): its highlights' local times are placed
# again, as its page views are.
ZONE_CHANGED_SQL = """
UPDATE highlights SET created_at = created_local AT TIME ZONE %(timezone)s,
                      updated_at = updated_local AT TIME ZONE %(timezone)s
WHERE device_id = %(device_id)s;
"""

# The changed sidecars of this device: what each says of its book, its highlights (replaced whole: one
# the reader deleted disappears), and the fingerprints of its files. Its books are in book_keys first.
SIDECARS_SQL = """
CREATE TEMP TABLE incoming_sidecars ON COMMIT DROP AS
SELECT s.*, b.book_id
FROM jsonb_to_recordset(%(sidecars)s::jsonb) AS s(
    book_key text, paths text[], hashes text[], source_path text, status text, status_modified date,
    rating smallint, review text, percent_finished double precision, doc_pages integer,
    last_opened_at double precision, identifiers text[], highlights jsonb)
JOIN book_keys b USING (book_key);
INSERT INTO book_sidecars AS t (device_id, book_id, sidecar_path, status, status_modified, rating, review,
                                percent_finished, doc_pages, last_opened_at, identifiers)
SELECT %(device_id)s, book_id, source_path, status, status_modified, rating, review, percent_finished, doc_pages,
       to_timestamp(last_opened_at), identifiers
FROM incoming_sidecars
ON CONFLICT (device_id, book_id) DO UPDATE
SET sidecar_path = EXCLUDED.sidecar_path, status = EXCLUDED.status, status_modified = EXCLUDED.status_modified,
    rating = EXCLUDED.rating, review = EXCLUDED.review, percent_finished = EXCLUDED.percent_finished,
    doc_pages = EXCLUDED.doc_pages, last_opened_at = EXCLUDED.last_opened_at, identifiers = EXCLUDED.identifiers,
    loaded_at = now();
DELETE FROM highlights h USING incoming_sidecars i WHERE h.device_id = %(device_id)s AND h.book_id = i.book_id;
INSERT INTO highlights (device_id, book_id, position, kind, text, note, chapter, page, pageref, pos0, pos1, color,
                        drawer, created_local, updated_local, created_at, updated_at)
SELECT %(device_id)s, i.book_id, h.position, h.kind, h.text, h.note, h.chapter, h.page, h.pageref, h.pos0, h.pos1,
       h.color, h.drawer, h.created_local, h.updated_local, h.created_local AT TIME ZONE %(timezone)s,
       h.updated_local AT TIME ZONE %(timezone)s
FROM incoming_sidecars i
CROSS JOIN LATERAL jsonb_to_recordset(i.highlights) AS h(
    position integer, kind text, text text, note text, chapter text, page integer, pageref text, pos0 text,
    pos1 text, color text, drawer text, created_local timestamp, updated_local timestamp);
DELETE FROM sidecar_files f USING incoming_sidecars i
WHERE f.device_id = %(device_id)s AND f.book_id = i.book_id AND f.sidecar_path <> ALL (i.paths);
INSERT INTO sidecar_files AS f (device_id, sidecar_path, content_hash, book_id)
SELECT %(device_id)s, p.path, p.hash, i.book_id
FROM incoming_sidecars i CROSS JOIN LATERAL unnest(i.paths, i.hashes) AS p(path, hash)
ON CONFLICT (device_id, sidecar_path) DO UPDATE
SET content_hash = EXCLUDED.content_hash, book_id = EXCLUDED.book_id, loaded_at = now();
SELECT count(*), coalesce(sum(jsonb_array_length(highlights)), 0) FROM incoming_sidecars;
"""


def changed_sidecars(cursor, device_id: int, sidecars: dict[str, SidecarBook]) -> list[SidecarBook]:
    """The sidecars whose files differ from this device's last load (one round trip)."""
    cursor.execute(SIDECAR_PRINTS_SQL, {"device_id": device_id})
    stored: dict[str, set[tuple[str, str]]] = {}
    for book_key, path, digest in cursor.fetchall():
        stored.setdefault(book_key, set()).add((path, digest))
    # A book's files changed when one changed, appeared or went (a deleted newer copy: the older one speaks).
    changed = [sidecar for key, sidecar in sidecars.items()
               if stored.get(key) != set(zip(sidecar.paths, sidecar.content_hashes))]
    component_logger("LOAD").info("%d of %d sidecars changed since this device's last load", len(changed),
                                  len(sidecars))
    return changed


def sidecar_payload(sidecars: Sequence[SidecarBook]) -> str:
    """The changed sidecars as JSON for SIDECARS_SQL."""
    return json.dumps([
        {"book_key": s.book.book_key, "paths": list(s.paths), "hashes": list(s.content_hashes),
         "source_path": s.source_path, "status": s.status,
         "status_modified": s.status_modified, "rating": s.rating, "review": s.review,
         "percent_finished": s.percent_finished, "doc_pages": s.doc_pages, "last_opened_at": s.last_opened_at,
         "identifiers": [f"{scheme}:{value}" for scheme, value in s.identifiers],
         "highlights": [dict(dataclasses.asdict(h), position=n) for n, h in enumerate(s.highlights, 1)]}
        for s in sidecars
    ])


def extract_sidecars(folder: Path) -> dict[str, SidecarBook]:
    """Read and transform the sidecars of ``folder``; a file that does not parse is a warning, never a failure."""
    sidecar_files, skipped = find_sidecars(folder)
    sidecars, unmatched = transform_sidecars(sidecar_files)
    skipped.update(unmatched)
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items()))
    component_logger("EXTRACT").info(
        "read %d sidecars of %d books in %s%s", len(sidecar_files), len(sidecars), folder,
        f"; skipped {sum(skipped.values())} ({reasons})" if skipped else "",
    )
    return sidecars


# The source's interface (see bookhelper/__init__.py) ------------------------------------------------------

NAME = "sidecars"
STANDS_ALONE = False  # its files are a KOReader device's: they come with its statistics file
SYNC_NAME = None  # no row of its own in the reader's sync_status (it brings no reading)
SETTINGS = (
    Setting("KOREADER_SIDECAR_DIR", None, "folder holding KOReader's sidecars (*.sdr/metadata.*.lua), optional",
            option="--sidecar-dir", metavar="DIR",
            option_help="folder of KOReader's sidecar files, read for status, ratings and highlights"),
)


@dataclass(frozen=True)
class SidecarCounts:
    """What a run loaded of the sidecars."""

    sidecars: int = 0
    highlights: int = 0


def configure(values: dict[str, Optional[str]]) -> Optional[Path]:
    """The sidecar folder, when one is set."""
    folder = values["KOREADER_SIDECAR_DIR"]
    return Path(folder).expanduser() if folder else None


def extract(folder: Path, _workdir: Path) -> dict[str, SidecarBook]:
    """The folder's sidecars by book key (read in place: each file is read once, whole). A folder that is
    missing tonight (a device or a share not mounted) is skipped: what the warehouse holds of it stays."""
    if not folder.is_dir():
        raise SourceSkipped(f"sidecars skipped: the folder {folder} does not exist or is not a folder (not mounted? "
                            "check --sidecar-dir or KOREADER_SIDECAR_DIR)")
    try:
        return extract_sidecars(folder)
    except OSError as exc:
        raise SourceSkipped(f"sidecars skipped: the folder {folder} cannot be read ({first_line(exc)})") from None


def book_isbns(sidecars: dict[str, SidecarBook], books: Sequence[Book]) -> dict[str, set[str]]:
    """The ISBNs the sidecars give the books (for finding the reader's existing row of a new book)."""
    isbns = {}
    for book in books:
        sidecar = sidecars.get(book.book_key)
        found = {value for scheme, value in (sidecar.identifiers if sidecar else ()) if scheme == "isbn"}
        if found:
            isbns[book.book_key] = found
    return isbns


def load(cursor, run: RunContext, sidecars: dict[str, SidecarBook]) -> SidecarCounts:
    """Land the changed sidecars of this device: one round trip when none changed, else two (three with
    books no statistics file reported, finished on paper, say: they land as books)."""
    changed = changed_sidecars(cursor, run.device_id, sidecars)
    if not changed:
        return SidecarCounts()
    run.ensure_books(cursor, [sidecar.book for sidecar in changed])
    cursor.execute(SIDECARS_SQL, {"sidecars": sidecar_payload(changed), "device_id": run.device_id,
                                  "timezone": run.timezone})
    return SidecarCounts(*cursor.fetchone())


def summary(counts: SidecarCounts) -> list[str]:
    """The run summary's line."""
    if not counts.sidecars:
        return []
    return [f"sidecars: {counts.sidecars} books' status and {counts.highlights} highlights, notes and bookmarks"]
