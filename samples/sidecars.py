"""Synthetic KOReader sidecar files (``metadata.<ext>.lua``) for the tests.

Every file it writes is byte for byte what KOReader's ``dump.lua`` writes under LuaJIT:
the ``-- path`` comment line (``-- we can read Lua syntax here!`` in old files), ``return {``,
one ``[key] = value,`` per line indented by 4 spaces, LuaJIT's ``%q`` strings and ``%.14g``
numbers. It writes them for the books of a statistics file, in the three storage modes
(``doc`` beside the book, ``dir`` under ``docsettings/``, ``hash`` under ``hashdocsettings/``),
in the layouts of five KOReader eras (current ``annotations``; the legacy ``highlight`` and
``bookmarks`` tables; keys in hash order; no trailing comma), with hostile text, ``.old``
backups, stale copies in another storage mode and, on request, files KOReader refuses or that
hold Lua code.

Each written file comes back as a :class:`SidecarFile` whose ``expected`` is the Python value
the file parses to (``None`` when it must be refused), so tests compare whole values.

Run it from the repository root to fill a folder that stands for a Kobo's storage::

    python3 -m samples.sidecars OUTDIR --stats-db sample.sqlite3 [--broken]
"""

import argparse
import functools
import math
import os
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from samples.statistics import Book, make_books

KOBO_BOOKS_DIR = "/mnt/onboard/Books"
KOBO_DATA_DIR = "/mnt/onboard/.adds/koreader"
MODES = ("doc", "dir", "hash")
# Layouts, newest first. current: since v2024.07, `annotations`, identifiers. migrated: a current file
# that still holds the legacy keys (nothing deletes them). v2023: v2023.10-v2024.03, the path header,
# sorted keys, empty doc_props left out, legacy `highlight` and `bookmarks`. v2021: v2020.11-v2023.02,
# the old header, hash order, "" values, stats.md5. v2019: up to v2020.10, also no comma after the last entry.
ERAS = ("current", "migrated", "v2023", "v2021", "v2019")
OLD_HEADER = "we can read Lua syntax here!"  # the first line's comment before v2023.10; since then the path
INDENT = b"    "
DAY = 86400

# A Lua value as the generator holds it: dict (a table; lists are dicts keyed 1..n), str, or bytes
# for text that is not valid UTF-8, int, float (inf and nan included) or bool.
LuaValue = Union[dict, str, bytes, int, float, bool]

HOSTILE_TEXTS = (
    'She said "no" and left.',
    "C:\\Users\\reader\\notes.txt\\",
    "first line\nsecond line\n",
    "col1\tcol2\t1984",
    "NUL\x00here and \x001 before a digit",
    "DEL\x7f and \x01\x02\x1f controls",
    "CR\r\nLF and a lone CR\r",
    "emoji 📚🦉 and a ZWJ 👩‍💻",
    "CJK 夏目漱石「こころ」",
    "  leading and trailing spaces  ",
    "-- not a comment",
    "]] not the end [[ nor ]==] this",
    "\\n and \\9 stay literal",
    "",
    b"invalid UTF-8 \xff\xfe and a cut \xc3",
)
# Lines of Lua code that a data parser must refuse (each is valid Lua, so Lua itself accepts the file).
LUA_CODE_LINES = {
    "function_call": '["injected"] = tonumber("0.5"),',
    "os_execute": '["injected"] = os.execute("touch /tmp/sidecar-was-run"),',
    "concatenation": '["injected"] = "a" .. "b",',
}
BROKEN_KINDS = ("truncated", "unescaped_newline", "negative_inf", "empty", *LUA_CODE_LINES)


class NotLoadable(Exception):
    """Lua cannot load the dump of this value: it holds ``-inf``, which KOReader writes bare."""


@dataclass
class SidecarBook:
    """A book as its sidecars know it. ``ext`` is the book file's extension, case kept: ``fb2.zip``."""

    md5: str
    title: str
    authors: str
    ext: str = "epub"
    pages: int = 300
    directory: str = KOBO_BOOKS_DIR

    @property
    def path(self) -> str:
        """The book's path on the device."""
        return f"{self.directory}/{self.title.replace('/', '_')}.{self.ext}"


@dataclass
class SidecarFile:
    """One written file and what a parser must make of it."""

    path: Path  # where it was written, under the output folder
    device_path: str  # where it is on the device (what the header line names)
    book: SidecarBook
    mode: str  # doc | dir | hash
    era: str
    kind: str  # sidecar, backup, stale, not_a_sidecar, or one of BROKEN_KINDS
    data: dict  # the table dumped into the file (before any breakage)
    expected: Optional[dict]  # the parsed value; None when the file must be refused
    koreader_reads: bool  # the one file KOReader would load for this book
    mtime: int


# --- dump.lua under LuaJIT -------------------------------------------------------------------


def lua_quote(text: Union[str, bytes]) -> bytes:
    """LuaJIT's ``%q``: escape ``"``, ``\\``, newline (as backslash-newline), other controls as ``\\ddd``."""
    raw = text.encode() if isinstance(text, str) else text
    out = bytearray(b'"')
    for i, byte in enumerate(raw):
        if byte in b'"\\':
            out += b"\\" + bytes([byte])
        elif byte == 0x0A:
            out += b"\\\n"
        elif byte < 0x20 or byte == 0x7F:
            # Padded to 3 digits only when a digit follows, else "\0" + "1" would read back as "\01".
            out += (b"\\%03d" if raw[i + 1 : i + 2].isdigit() else b"\\%d") % byte
        else:
            out.append(byte)
    return bytes(out + b'"')


def lua_number_text(number: Union[int, float]) -> bytes:
    """``tostring(number)`` in LuaJIT: ``%.14g``, and bare ``inf``, ``-inf``, ``nan``."""
    if math.isnan(number):
        return b"nan"  # LuaJIT drops NaN's sign
    if math.isinf(number):
        return b"inf" if number > 0 else b"-inf"
    return b"%.14g" % number


def _lua_tostring(value: LuaValue) -> bytes:
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, (int, float)):
        return lua_number_text(value)
    return value.encode() if isinstance(value, str) else value


def _lua_order(a: LuaValue, b: LuaValue) -> int:
    """koreader-base's ``orderedPairs``: numbers by value, anything else by ``tostring`` (bytewise)."""
    both_numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    left, right = (a, b) if both_numbers else (_lua_tostring(a), _lua_tostring(b))
    return (left > right) - (left < right)


def dump_lua(value: LuaValue, hash_order: Optional[random.Random] = None, trailing_comma: bool = True,
             level: int = 0) -> bytes:
    """Serialize ``value`` as ``dump.lua`` does.

    Keys are sorted as since v2023.03, or shuffled by ``hash_order`` to stand for the hash order
    of older files. ``trailing_comma=False`` is the layout up to v2020.10 (no comma after the last entry).
    A table mixing number and string keys can compare in a cycle (32 < 100 < "1E100" < 32); KOReader's
    order then depends on LuaJIT's quicksort, and this one may differ.
    """
    if isinstance(value, dict):
        if not value:
            return b"{}"
        keys = list(value)
        if hash_order:
            hash_order.shuffle(keys)
        else:
            keys.sort(key=functools.cmp_to_key(_lua_order))
        lines = [
            INDENT * (level + 1) + b"[" + dump_lua(key) + b"] = "
            + dump_lua(value[key], hash_order, trailing_comma, level + 1)
            for key in keys
        ]
        return b"{\n" + b",\n".join(lines) + (b"," if trailing_comma else b"") + b"\n" + INDENT * level + b"}"
    if isinstance(value, (str, bytes)):
        return lua_quote(value)
    return _lua_tostring(value)


def sidecar_text(data: dict, header: str, hash_order: Optional[random.Random] = None,
                 trailing_comma: bool = True) -> bytes:
    """A whole sidecar as ``util.writeToFile`` writes it: ``-- header``, ``return``, the table, a newline."""
    return b"-- " + header.encode() + b"\nreturn " + dump_lua(data, hash_order, trailing_comma) + b"\n"


# --- what Lua loads back ---------------------------------------------------------------------


def lua_number_value(number: Union[int, float]) -> Union[int, float]:
    """The number Lua reads back from its ``%.14g`` text: int when integral (except -0), else float."""
    value = float(b"%.14g" % number)
    return int(value) if value.is_integer() and (value or math.copysign(1.0, value) > 0) else value


def loaded_value(value: LuaValue, decode: bool = True) -> LuaValue:
    """The value that loading the dump of ``value`` gives: what the parser must return.

    Numbers pass through ``%.14g``; entries whose value is ``inf`` or ``nan`` vanish (Lua reads those
    bare words as unset globals, i.e. nil); ``-inf`` raises :class:`NotLoadable`. With ``decode``
    strings become str, invalid UTF-8 replaced; without it they stay as written, for re-dumping.
    """
    if isinstance(value, dict):
        return {
            loaded_value(key, decode): loaded_value(item, decode)
            for key, item in value.items()
            if not (isinstance(item, float) and (math.isnan(item) or item == math.inf))
        }
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if value == -math.inf:
            raise NotLoadable("-inf is arithmetic on an unset global")
        return lua_number_value(value)
    if decode and isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def lua_array(items: Sequence[LuaValue]) -> dict:
    """A Lua list: a table keyed 1..n."""
    return {i: item for i, item in enumerate(items, start=1)}


# --- where sidecars live ---------------------------------------------------------------------


def sidecar_path(book: SidecarBook, mode: str, data_dir: str = KOBO_DATA_DIR) -> str:
    """The sidecar's path on the device: the ``.sdr`` folder drops the last extension, the file keeps it."""
    stem, last_ext = book.path.rsplit(".", 1)
    name = f"metadata.{last_ext}.lua"
    if mode == "doc":
        return f"{stem}.sdr/{name}"
    if mode == "dir":
        return f"{data_dir}/docsettings{stem}.sdr/{name}"
    if mode == "hash":
        return f"{data_dir}/hashdocsettings/{book.md5[:2]}/{book.md5}.sdr/{name}"
    raise ValueError(f"unknown storage mode {mode!r}")


# --- what a sidecar holds --------------------------------------------------------------------

EXTENSIONS = ("epub", "pdf", "fb2.zip", "EPUB", "epub", "cbz")
CHAPTERS = ("Prologue", "I. The Letter", "II. Winter", "Chapter 3", "Epilogue")
COLORS = ("yellow", "red", "orange", "green", "olive", "cyan", "blue", "purple", "gray", "#ff8800")
DRAWERS = ("lighten", "underscore", "strikeout", "invert")
STATUSES = (None, "reading", "complete", "abandoned", "tbr")  # None: no summary; "tbr": unknown, means reading


@dataclass
class Mark:
    """A highlight, a note (a highlight with a note) or a page bookmark, before an era lays it out."""

    page: int
    datetime: str
    chapter: str
    quote: Optional[str]  # None for a page bookmark
    note: Optional[Union[str, bytes]]
    drawer: str
    color: str
    xpointers: tuple  # (page, pos0, pos1) as an EPUB stores them


def _clock(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def reading_marks(book: SidecarBook, rng: random.Random, hostile: bool, start: int) -> list:
    """2 to 5 marks in reading order: the first drawn is a page bookmark, every other highlight has a note."""
    marks = []
    for n in range(rng.randint(2, 5)):
        page = rng.randint(1, book.pages)
        fragment = f"/body/DocFragment[{page // 10 + 1}]/body/p[{page % 10 + 1}]/text()"
        text = HOSTILE_TEXTS[(n + page) % len(HOSTILE_TEXTS)] if hostile else f"Passage {n} of {book.title}."
        quote = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
        bookmark = n == 0
        marks.append(Mark(
            page=page, datetime=_clock(start + n * 3600 + page), chapter=CHAPTERS[page % len(CHAPTERS)],
            quote=None if bookmark else quote, note=text if n % 2 and not bookmark else None,
            drawer=DRAWERS[n % len(DRAWERS)], color=COLORS[(page + n) % len(COLORS)],
            xpointers=(f"{fragment}.0", f"{fragment}.{page}", f"{fragment}.{page + 40}"),
        ))
    return sorted(marks, key=lambda mark: mark.page)


def _positions(book: SidecarBook, mark: Mark) -> dict:
    if book.ext.lower() == "pdf":
        def point(x):
            return {"page": mark.page, "rotation": 0, "x": x, "y": 211.5, "zoom": 1.3333333333333}
        return {"page": mark.page, "pos0": point(72.25), "pos1": point(301),
                "pboxes": lua_array([{"h": 14, "w": 228.75, "x": 72.25, "y": 211.5}])}
    return dict(zip(("page", "pos0", "pos1"), mark.xpointers))


def _annotations(book: SidecarBook, marks: Sequence[Mark]) -> dict:
    items = []
    for mark in marks:
        item = {"chapter": mark.chapter, "datetime": mark.datetime, "pageno": mark.page}
        if mark.quote is None:  # a page bookmark: no drawer, no positions of a selection
            item.update(page=_positions(book, mark)["page"], text=f"in {mark.chapter}")
        else:
            item.update(_positions(book, mark), color=mark.color, drawer=mark.drawer, text=mark.quote)
        if mark.note is not None:
            item.update(note=mark.note, datetime_updated=mark.datetime[:-2] + "59")
        items.append(item)
    return lua_array(items)


def _legacy_highlights(book: SidecarBook, marks: Sequence[Mark]) -> dict:
    """``highlight`` (page -> list) and ``bookmarks`` (last position first), where ``notes`` is the quote."""
    highlight: dict = {}
    bookmarks = []
    for n, mark in enumerate(marks):
        positions = _positions(book, mark)
        if mark.quote is None:
            bookmarks.append({"datetime": mark.datetime, "notes": f"in {mark.chapter}", "page": positions["page"]})
            continue
        page_items = highlight.setdefault(mark.page, {})
        page_items[len(page_items) + 1] = dict(
            positions, chapter=mark.chapter, datetime=mark.datetime, drawer=mark.drawer, text=mark.quote)
        bookmark = dict(positions, chapter=mark.chapter, datetime=mark.datetime, highlighted=True, notes=mark.quote)
        auto_texts = (None, "", mark.quote, f"Page {mark.page} {mark.quote} @ {mark.datetime}")
        text = mark.note if mark.note is not None else auto_texts[n % len(auto_texts)]
        if text is not None:
            bookmark["text"] = text
        bookmarks.append(bookmark)
    return {"highlight": highlight, "bookmarks": lua_array(bookmarks[::-1])}


def sidecar_data(book: SidecarBook, era: str, rng: random.Random, marks: Sequence[Mark], hostile: bool = True,
                 percent: Optional[float] = None, start: int = 1_700_000_000) -> dict:
    """The table a sidecar of ``era`` holds for ``book``: doc_props, stats, summary, position, highlights.

    ``start`` (epoch seconds) dates the summary; ``percent`` defaults to a random reading position.
    """
    percent = rng.uniform(0.01, 1) if percent is None else percent
    new = era in ("current", "migrated", "v2023")
    props = {"title": book.title, "authors": book.authors, "language": rng.choice(("en", "en-US", "English")),
             "series": "" if book.md5[0] < "8" else "Cycle", "series_index": 13 if book.md5[0] >= "8" else "",
             "description": HOSTILE_TEXTS[0] if hostile else "<p>A book.</p>", "keywords": "Fiction\nClassics"}
    if era in ("current", "migrated"):
        props["identifiers"] = f"uuid:{book.md5[:8]}-b145-459f-b118-{book.md5[-12:]}\nisbn:9781324035442\ncalibre:188"
    if new:  # since v2023.10 empty values are left out
        props = {key: value for key, value in props.items() if value != ""}
    highlights = sum(mark.quote is not None and mark.note is None for mark in marks)
    notes = sum(mark.note is not None for mark in marks)
    stats = {"title": book.title, "authors": book.authors, "language": props.get("language", ""),
             "series": "Cycle #13" if book.md5[0] >= "8" else "N/A", "pages": book.pages,
             "highlights": highlights, "notes": notes}
    stats.update({"performance_in_pages": {}} if new else {"md5": book.md5})
    data = {
        "partial_md5_checksum": book.md5, "doc_pages": book.pages, "percent_finished": percent,
        "doc_props": props, "stats": stats, "copt_font_size": 22, "highlight_drawer": "lighten",
        "copt_h_page_margins": lua_array([15, 15]), "inverse_reading_order": False, "font_family_fonts": {},
    }
    if book.ext.lower() == "pdf":
        data["last_page"] = max(1, round(percent * book.pages))
    else:
        data["last_xpointer"] = f"/body/DocFragment[{round(percent * 40) + 1}]/body/p[3]/text().17"
    if new:
        data["doc_path"] = book.path
    status = STATUSES[int(book.md5[:4], 16) % len(STATUSES)]
    if status:
        summary = {"status": status, "modified": time.strftime("%Y-%m-%d", time.gmtime(start))}
        if status == "complete":
            summary.update(rating=int(book.md5[4], 16) % 5 + 1, note=HOSTILE_TEXTS[2] if hostile else "Loved it.")
        data["summary"] = summary
    if era in ("current", "migrated"):
        data["annotations"] = _annotations(book, marks)
    if era != "current":
        data.update(_legacy_highlights(book, marks))
    if era == "migrated":  # the other engine's backup, which readers must ignore too
        data["annotations_paging"] = lua_array([])
    if hostile:
        data["hostile_plugin"] = {
            **{text: n for n, text in enumerate(HOSTILE_TEXTS)},
            "numbers": {"big": 1e15, "tiny": 5e-06, "negative_zero": -0.0, "third": 1 / 3, "two_pow_53": 2**53,
                        "negative": -42, "long_int": 123456789012345678,
                        "infinity": math.inf, "not_a_number": math.nan},  # these two vanish when loaded
            "nested": {1: {1: {1: {1: {1: {}}}}}},
            "mixed_keys": {1: "one", 2: "two", "name": "x", 2.5: "between"},
        }
    return data


# --- writing a device's worth of files -------------------------------------------------------


def as_sidecar_books(books: Sequence[Union[Book, SidecarBook, tuple]]) -> list:
    """Books from samples.statistics, SidecarBooks, or (md5, title, authors, ext) tuples."""
    result = []
    for n, book in enumerate(books):
        if isinstance(book, SidecarBook):
            result.append(book)
        elif isinstance(book, Book):
            if book.md5:  # a book without md5 has no sidecar to join
                result.append(SidecarBook(book.md5, book.title or f"book-{book.id}", book.authors or "",
                                          EXTENSIONS[n % len(EXTENSIONS)], book.pages))
        else:
            result.append(SidecarBook(*book))
    return result


def books_from_statistics(stats_db) -> list:
    """The books of a KOReader statistics file, as SidecarBooks (md5, title, authors, pages)."""
    conn = sqlite3.connect(f"file:{stats_db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, title, authors, pages, md5 FROM book ORDER BY id").fetchall()
    finally:
        conn.close()
    return as_sidecar_books([Book(id=i, title=t, authors=a, pages=p or 300, md5=m) for i, t, a, p, m in rows])


def _broken_text(kind: str, valid: bytes, header: str) -> bytes:
    if kind == "truncated":  # a crash mid-write: cut inside the top table
        return valid[: len(valid) // 2]
    if kind == "unescaped_newline":  # a line break that lost its backslash (doc_props.keywords always has one)
        return valid.replace(b"\\\n", b"\n", 1)
    if kind == "empty":
        return b""
    prefix = b"-- " + header.encode() + b"\nreturn {\n"
    return prefix + INDENT + LUA_CODE_LINES[kind].encode() + b"\n" + valid[len(prefix):]


def write_sidecars(root, books: Sequence, seed: int = 1, hostile: bool = True, backups: bool = True,
                   broken: bool = False, data_dir: str = KOBO_DATA_DIR) -> list:
    """Write sidecars for ``books`` under ``root`` (a folder standing for the device's ``/``).

    Book n is stored in mode ``MODES[n % 3]`` in the layout of ``ERAS[n % 5]``, with an older stale
    copy in the next storage mode for books 2, 7, ... and a ``custom_metadata.lua`` beside book 0's
    sidecar. With ``backups``, books 1, 3, 5, ... get an older valid ``.old``. With ``broken``, book
    n < 7 gets a newer file of ``BROKEN_KINDS[n]`` in the third storage mode (KOReader tries it first,
    fails and falls back), which needs at least 7 books; with ``backups`` too, the primary of books
    3, 7, ... is truncated, so KOReader reads the ``.old``.
    Returns every file written, with the value it parses to.
    """
    root = Path(root)
    books = as_sidecar_books(books)
    if broken and len(books) < len(BROKEN_KINDS):
        raise ValueError(f"broken files need at least {len(BROKEN_KINDS)} books")
    rng = random.Random(seed)
    files = []

    def write(device_path, book, mode, era, kind, text, data, koreader_reads, mtime):
        path = root / device_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
        os.utime(path, (mtime, mtime))
        expected = loaded_value(data) if kind in ("sidecar", "backup", "stale", "not_a_sidecar") else None
        files.append(SidecarFile(path, device_path, book, mode, era, kind, data, expected, koreader_reads, mtime))

    def render(book, mode, era, data):
        new = era in ("current", "migrated", "v2023")
        header = sidecar_path(book, mode, data_dir) if new else OLD_HEADER
        return header, sidecar_text(data, header, None if new else rng, era != "v2019")

    for n, book in enumerate(books):
        mode, era = MODES[n % len(MODES)], ERAS[n % len(ERAS)]
        primary = sidecar_path(book, mode, data_dir)
        start = 1_700_000_000 + n * DAY
        marks = reading_marks(book, rng, hostile, start)
        data = sidecar_data(book, era, rng, marks, hostile, start=start)
        older = sidecar_data(book, era, rng, marks[:-1], hostile, data["percent_finished"] / 2, start)
        header, text = render(book, mode, era, data)
        truncated_primary = broken and backups and n % 4 == 3
        if truncated_primary:
            write(primary, book, mode, era, "truncated", _broken_text("truncated", text, header), data, False, start)
        else:
            write(primary, book, mode, era, "sidecar", text, data, True, start)
        if backups and n % 2:  # the backup keeps the primary's header: KOReader renames the file
            write(primary + ".old", book, mode, era, "backup", render(book, mode, era, older)[1], older,
                  truncated_primary, start - DAY)
        if n % 5 == 2:
            stale_mode = MODES[(n + 1) % len(MODES)]
            write(sidecar_path(book, stale_mode, data_dir), book, stale_mode, era, "stale",
                  render(book, stale_mode, era, older)[1], older, False, start - 2 * DAY)
        if n == 0:
            custom = {"doc_props": {"title": f"{book.title} (edited)"}, "custom_props": {"authors": book.authors}}
            custom_path = primary.rsplit("/", 1)[0] + "/custom_metadata.lua"
            write(custom_path, book, mode, era, "not_a_sidecar", sidecar_text(custom, custom_path), custom, False,
                  start)
        if broken and n < len(BROKEN_KINDS):
            kind, broken_mode = BROKEN_KINDS[n], MODES[(n + 2) % len(MODES)]
            broken_data = dict(data, percent_finished=-math.inf) if kind == "negative_inf" else data
            header, text = render(book, broken_mode, era, broken_data)
            if kind != "negative_inf":  # that one is a whole file as KOReader writes it
                text = _broken_text(kind, text, header)
            write(sidecar_path(book, broken_mode, data_dir), book, broken_mode, era, kind, text, broken_data, False,
                  start + 3600)
    return files


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write invented KOReader sidecar files under OUTDIR.")
    parser.add_argument("outdir", help="a folder standing for the device's root")
    parser.add_argument("--stats-db", help="take the books from this statistics file (else invent --books)")
    parser.add_argument("--books", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-hostile", action="store_true", help="plain text only")
    parser.add_argument("--no-backups", action="store_true", help="no .old files")
    parser.add_argument("--broken", action="store_true", help="add files that KOReader refuses")
    args = parser.parse_args(argv)
    books = books_from_statistics(args.stats_db) if args.stats_db else make_books(args.books, random.Random(args.seed))
    if args.broken and len(books) < len(BROKEN_KINDS):
        parser.error(f"--broken needs at least {len(BROKEN_KINDS)} books with an md5")
    files = write_sidecars(args.outdir, books, seed=args.seed, hostile=not args.no_hostile,
                           backups=not args.no_backups, broken=args.broken)
    for file in files:
        print(f"{file.kind:17} {file.mode:4} {file.era:8} {file.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
