"""Source: a Calibre library (``metadata.db``, as Calibre-Web-Automated keeps it), read from a snapshot:
publishers, tags, series, languages, ratings, identifiers and editions of the warehouse's books, and the ASINs
of every book of the library (``calibre_asins``), which name the Kindle books no warehouse book holds."""

import dataclasses
import hashlib
import json
import math
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bookhelper.core import (
    EDITION_FORMAT_LENGTH,
    EDITION_LANGUAGE_LENGTH,
    ISO_DATE,
    NAME_LENGTH,
    Book,
    RunContext,
    Setting,
    SourceMissing,
    SourceSkipped,
    clean_text,
    component_logger,
    copy_snapshot,
    first_line,
    fit_text,
    int_in_range,
    iso_date,
    normalise_md5,
)
from bookhelper.matching import (
    MATCH_RULES,
    WarehouseBook,
    asin_key,
    asin_rule,
    isbn_columns,
    match_calibre_books,
)
from bookhelper.schema import same_name

CALIBRE_UNKNOWN_DATE = "0101-01-01"  # calibre's "undefined date"
# Offsets of KOReader's partial md5: 1 KiB samples at 1024 << 2i for i = -1..10 (i = -1 wraps to 0).
PARTIAL_MD5_OFFSETS = (0,) + tuple(1024 << (2 * i) for i in range(11))


@dataclass(frozen=True)
class CalibreBook:
    """One book of the library, with what the warehouse keeps of it."""

    calibre_id: int
    uuid: Optional[str]
    title: str
    authors: tuple[str, ...]
    publisher: Optional[str]
    published_on: Optional[str]
    series: Optional[str]
    series_index: Optional[float]
    languages: tuple[str, ...]
    rating: Optional[int]  # stars, 1-5
    tags: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]
    formats: tuple[tuple[str, str], ...]  # (format, file path relative to the library)
    ko_md5: Optional[str]
    ko_status: Optional[str]


@dataclass(frozen=True)
class CalibreLibrary:
    """A library as read at one moment: its books, CWA's checksums, and a digest of it all."""

    books: dict[int, CalibreBook]
    cwa_checksums: tuple[tuple[int, str], ...]  # (calibre id, KOReader md5)
    fingerprint: str
    root: Optional[Path] = None  # the library folder: its format files are hashed for matching
    problems: tuple[tuple[str, int], ...] = ()  # values skipped or cleaned, by reason


def koreader_partial_md5(path: Path) -> Optional[str]:
    """KOReader's partial md5 of a file (its statistics' book.md5), or None when it cannot be read."""
    digest = hashlib.md5()
    try:
        with path.open("rb") as handle:
            for offset in PARTIAL_MD5_OFFSETS:
                handle.seek(offset)
                sample = handle.read(1024)
                if not sample:
                    break
                digest.update(sample)
    except OSError:
        return None
    return digest.hexdigest()


CALIBRE_QUERIES = {
    "authors": "SELECT l.book, a.name FROM books_authors_link l JOIN authors a ON a.id = l.author"
               " ORDER BY l.book, l.id",
    "publishers": "SELECT l.book, p.name FROM books_publishers_link l JOIN publishers p ON p.id = l.publisher",
    "series": "SELECT l.book, s.name FROM books_series_link l JOIN series s ON s.id = l.series",
    "tags": "SELECT l.book, t.name FROM books_tags_link l JOIN tags t ON t.id = l.tag ORDER BY l.book, t.name",
    "identifiers": "SELECT book, lower(type), val FROM identifiers ORDER BY book, type",
    "languages": "SELECT l.book, g.lang_code FROM books_languages_link l JOIN languages g ON g.id = l.lang_code"
                 " ORDER BY l.book, l.item_order, l.id",
    "ratings": "SELECT l.book, r.rating FROM books_ratings_link l JOIN ratings r ON r.id = l.rating",
    "formats": "SELECT book, format, name FROM data ORDER BY book, format",
}


def custom_column_values(conn: sqlite3.Connection, label: str) -> dict[int, object]:
    """calibre id -> value of the custom column ``#label`` (the KOReader plugin's), when the library has it."""
    row = conn.execute("SELECT id, normalized FROM custom_columns WHERE label = ? AND mark_for_delete = 0",
                       (label,)).fetchone()
    if row is None:
        return {}
    number, normalized = row
    query = (f"SELECT l.book, v.value FROM books_custom_column_{number}_link l JOIN custom_column_{number} v"
             f" ON v.id = l.value" if normalized else f"SELECT book, value FROM custom_column_{number}")
    return dict(conn.execute(query).fetchall())


# Longer is no identifier, and would not fit the warehouse's index (about 2,700 bytes).
IDENTIFIER_LENGTH = 500


def text_decoder(problems: Counter):
    """SQLite's text as Python text, one bad value never costing the library: invalid UTF-8 is replaced
    (U+FFFD) and NUL characters, which PostgreSQL refuses, removed; each counted."""
    def decode(raw: bytes) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems["invalid UTF-8, replaced"] += 1
            text = raw.decode("utf-8", "replace")
        if "\x00" in text:
            problems["NUL removed"] += 1
            text = text.replace("\x00", "")
        return text
    return decode


def extract_calibre_library(library: Path, workdir: Path) -> CalibreLibrary:
    """Read the library's metadata from a checked snapshot; only tables, so no calibre function is needed."""
    conn = sqlite3.connect(copy_snapshot(library / "metadata.db", workdir, name="calibre-metadata.db"))
    problems: Counter = Counter()
    conn.text_factory = text_decoder(problems)
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        parts = {name: conn.execute(query).fetchall() for name, query in CALIBRE_QUERIES.items()}
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        cwa = conn.execute("SELECT book, lower(checksum) FROM book_format_checksums ORDER BY book, checksum"
                           ).fetchall() if "book_format_checksums" in tables else []
        ko_md5, ko_status = custom_column_values(conn, "ko_md5"), custom_column_values(conn, "ko_status")
        rows = conn.execute("SELECT id, uuid, title, pubdate, series_index, path, last_modified FROM books"
                            " ORDER BY id").fetchall()
    finally:
        conn.close()
    calibre = transform_calibre_library(rows, parts, cwa, ko_md5, ko_status, problems)
    # The format files are part of what the library says (their md5 matches books): a file that appears,
    # goes or changes makes the library changed, though metadata.db is not.
    files = json.dumps(format_file_states(library, calibre)).encode()
    return dataclasses.replace(calibre, root=library,
                               fingerprint=hashlib.sha1(calibre.fingerprint.encode() + files).hexdigest())


def format_file_states(library: Path, calibre: CalibreLibrary) -> list:
    """(path, size, modification time) of every format file of the library, None for a missing one."""
    states = []
    for book in calibre.books.values():
        for _format, path in book.formats:
            try:
                info = (library / path).stat()
            except (OSError, ValueError):
                states.append((path, None))
                continue
            states.append((path, info.st_size, info.st_mtime_ns))
    return states


def calibre_identifiers(pairs: Sequence[tuple], problems: Counter) -> tuple[tuple[str, str], ...]:
    """A book's (scheme, value) identifiers; an empty or overlong one is skipped and counted."""
    found = []
    for scheme, value in pairs:
        scheme, value = clean_text(scheme), clean_text(value)
        if not scheme or not value:
            problems["empty identifier"] += 1
        elif len(scheme) + len(value) > IDENTIFIER_LENGTH:
            problems["identifier too long"] += 1
        else:
            found.append((scheme.lower(), value))
    return tuple(found)


def calibre_formats(book_path, pairs: Sequence[tuple]) -> tuple[tuple[str, str], ...]:
    """A book's (format, file path relative to the library): ``<books.path>/<data.name>.<format>``."""
    formats = []
    for fmt, name in pairs:
        fmt = clean_text(fmt)
        if fmt:
            formats.append((fmt, f"{clean_text(book_path)}/{clean_text(name)}.{fmt.lower()}"))
    return tuple(formats)


def calibre_texts(values: Sequence) -> tuple[str, ...]:
    """Text values (tags, languages) as stored text; empty ones dropped."""
    return tuple(text for text in map(clean_text, values) if text)


def transform_calibre_library(rows: list, parts: dict, cwa: list, ko_md5: dict, ko_status: dict,
                              problems: Optional[Counter] = None) -> CalibreLibrary:
    """The library's books as the warehouse keeps them, a digest of everything read, and the values that
    were skipped or cleaned. Any value may be of any SQLite storage class."""
    problems = Counter() if problems is None else problems
    grouped: dict[str, dict[int, list]] = {name: {} for name in parts}
    for name, part_rows in parts.items():
        for book, *values in part_rows:
            grouped[name].setdefault(book, []).append(values[0] if len(values) == 1 else tuple(values))
    books = {}
    for calibre_id, uuid_text, title, pubdate, series_index, path, _modified in rows:
        ratings = grouped["ratings"].get(calibre_id, [])
        stars = int_in_range(ratings[0], 1, 10) if ratings else None
        books[calibre_id] = CalibreBook(
            calibre_id=calibre_id, uuid=clean_text(uuid_text), title=clean_text(title) or "",
            # calibre stores a comma inside one name as "|"
            authors=tuple((clean_text(name) or "").replace("|", ",")
                          for name in grouped["authors"].get(calibre_id, [])),
            publisher=next(iter(calibre_texts(grouped["publishers"].get(calibre_id, []))), None),
            published_on=calibre_date(pubdate),
            series=next(iter(calibre_texts(grouped["series"].get(calibre_id, []))), None),
            series_index=float(series_index) if isinstance(series_index, (int, float)) and math.isfinite(series_index)
            and grouped["series"].get(calibre_id) else None,
            languages=calibre_texts(grouped["languages"].get(calibre_id, [])),
            rating=(stars + 1) // 2 if stars else None,
            tags=calibre_texts(grouped["tags"].get(calibre_id, [])),
            identifiers=calibre_identifiers(grouped["identifiers"].get(calibre_id, []), problems),
            formats=calibre_formats(path, grouped["formats"].get(calibre_id, [])),
            ko_md5=normalise_md5(ko_md5.get(calibre_id)), ko_status=clean_text(ko_status.get(calibre_id)),
        )
    fingerprint = hashlib.sha1(json.dumps([rows, parts, cwa, sorted(ko_md5.items()), sorted(
        (k, str(v)) for k, v in ko_status.items())], default=str).encode()).hexdigest()
    return CalibreLibrary(books, tuple((book, normalise_md5(md5)) for book, md5 in cwa if normalise_md5(md5)),
                          fingerprint, problems=tuple(sorted(problems.items())))


def calibre_date(value) -> Optional[str]:
    """A calibre date (UTC text) as YYYY-MM-DD; None for calibre's undefined date or anything else."""
    text = value if isinstance(value, str) else ""
    if not ISO_DATE.match(text) or text.startswith(CALIBRE_UNKNOWN_DATE):
        return None
    return iso_date(text[:10])


# Every book of the job as the Calibre matcher needs it, the manual overrides, and the last library fingerprint.
CALIBRE_BOOKS_SQL = """
SELECT k.book_id, coalesce(k.title, b.title),
       coalesce((SELECT array_agg(a.name ORDER BY ba.position)
                 FROM book_authors ba JOIN author_names a USING (author_id) WHERE ba.book_id = k.book_id), '{}'),
       b.file_hash,
       coalesce((SELECT array_agg(DISTINCT i ORDER BY i) FROM book_sidecars s, unnest(s.identifiers) AS i
                 WHERE s.book_id = k.book_id), '{}'),
       o.book_id IS NOT NULL, o.calibre_id,
       (SELECT value FROM schema_meta WHERE key = 'calibre_fingerprint')
FROM book_keys k JOIN books b USING (book_id) LEFT JOIN calibre_match_overrides o USING (book_id)
-- a book of an export's own is not matched: the exports place their books through Calibre's identifiers
WHERE k.book_key !~ '^(kindle|audible):'
ORDER BY k.book_id
"""


# The library's metadata of the matched books, as current state: what Calibre no longer says goes;
# rows that did not change are left alone. The reader's shared columns (ISBN, publisher) are filled only
# while empty or still holding what the job wrote (shared_values), and Calibre's editions are the
# reader's book_editions rows with a calibre_id.
CALIBRE_SQL = """
CREATE TEMP TABLE incoming_calibre ON COMMIT DROP AS
SELECT c.* FROM jsonb_to_recordset(%(calibre)s::jsonb) AS c(
    book_id integer, calibre_id integer, calibre_uuid text, match_rule text, title text, publisher text,
    publisher_name text, published_on date, series text, series_index double precision, languages text[],
    language text, rating smallint, status text, tags text[], identifiers text[], formats text[], isbn text,
    isbn_13 text, isbn_10 text, isbn_specific text)
WHERE EXISTS (SELECT 1 FROM book_keys k WHERE k.book_id = c.book_id);

DELETE FROM book_calibre t WHERE NOT EXISTS (SELECT 1 FROM incoming_calibre c WHERE c.book_id = t.book_id);
INSERT INTO book_calibre AS t (book_id, calibre_id, calibre_uuid, match_rule, title, series, series_index, languages,
                               rating, status, published_on, publisher, isbn)
SELECT book_id, calibre_id, calibre_uuid, match_rule, title, series, series_index, languages, rating, status,
       published_on, publisher, isbn
FROM incoming_calibre
ON CONFLICT (book_id) DO UPDATE
SET calibre_id = EXCLUDED.calibre_id, calibre_uuid = EXCLUDED.calibre_uuid, match_rule = EXCLUDED.match_rule,
    title = EXCLUDED.title, series = EXCLUDED.series, series_index = EXCLUDED.series_index,
    languages = EXCLUDED.languages, rating = EXCLUDED.rating, status = EXCLUDED.status,
    published_on = EXCLUDED.published_on, publisher = EXCLUDED.publisher, isbn = EXCLUDED.isbn
WHERE (t.calibre_id, t.calibre_uuid, t.match_rule, t.title, t.series, t.series_index, t.languages, t.rating,
       t.status, t.published_on, t.publisher, t.isbn)
      IS DISTINCT FROM (EXCLUDED.calibre_id, EXCLUDED.calibre_uuid, EXCLUDED.match_rule, EXCLUDED.title,
                        EXCLUDED.series, EXCLUDED.series_index, EXCLUDED.languages, EXCLUDED.rating,
                        EXCLUDED.status, EXCLUDED.published_on, EXCLUDED.publisher, EXCLUDED.isbn);

WITH created AS (
    INSERT INTO publishers (publisher_name)
    SELECT DISTINCT publisher_name FROM incoming_calibre WHERE publisher_name IS NOT NULL
    ON CONFLICT (publisher_name) DO NOTHING
    RETURNING publisher_id
)
INSERT INTO created_publishers SELECT publisher_id FROM created;
CREATE TEMP TABLE shared_writes ON COMMIT DROP AS
SELECT k.book_id, c.isbn_13, c.isbn_10, p.publisher_id, c.publisher_name,
       b.isbn_13 IS NULL OR b.isbn_13 = v.isbn_13 AS own_isbn_13,
       b.isbn_10 IS NULL OR b.isbn_10 = v.isbn_10 AS own_isbn_10,
       b.publisher_id IS NULL OR b.publisher_id = v.publisher_id AS own_publisher_id,
       b.publisher_name IS NULL OR b.publisher_name = v.publisher_name AS own_publisher_name
FROM book_keys k JOIN books b USING (book_id)
LEFT JOIN incoming_calibre c USING (book_id)
LEFT JOIN publishers p ON p.publisher_name = c.publisher_name
LEFT JOIN shared_values v USING (book_id);
UPDATE books b
SET isbn_13 = CASE WHEN w.own_isbn_13 THEN w.isbn_13 ELSE b.isbn_13 END,
    isbn_10 = CASE WHEN w.own_isbn_10 THEN w.isbn_10 ELSE b.isbn_10 END,
    publisher_id = CASE WHEN w.own_publisher_id THEN w.publisher_id ELSE b.publisher_id END,
    publisher_name = CASE WHEN w.own_publisher_name THEN w.publisher_name ELSE b.publisher_name END
FROM shared_writes w
WHERE b.book_id = w.book_id
  AND (CASE WHEN w.own_isbn_13 THEN w.isbn_13 ELSE b.isbn_13 END,
       CASE WHEN w.own_isbn_10 THEN w.isbn_10 ELSE b.isbn_10 END,
       CASE WHEN w.own_publisher_id THEN w.publisher_id ELSE b.publisher_id END,
       CASE WHEN w.own_publisher_name THEN w.publisher_name ELSE b.publisher_name END)
      IS DISTINCT FROM (b.isbn_13, b.isbn_10, b.publisher_id, b.publisher_name);
DELETE FROM shared_values;
INSERT INTO shared_values (book_id, isbn_13, isbn_10, publisher_id, publisher_name)
SELECT book_id, CASE WHEN own_isbn_13 THEN isbn_13 END, CASE WHEN own_isbn_10 THEN isbn_10 END,
       CASE WHEN own_publisher_id THEN publisher_id END, CASE WHEN own_publisher_name THEN publisher_name END
FROM shared_writes
WHERE (own_isbn_13 AND isbn_13 IS NOT NULL) OR (own_isbn_10 AND isbn_10 IS NOT NULL)
   OR (own_publisher_id AND publisher_id IS NOT NULL) OR (own_publisher_name AND publisher_name IS NOT NULL);

CREATE TEMP TABLE incoming_editions ON COMMIT DROP AS
SELECT c.book_id, f.format AS edition_format, c.isbn_specific, c.publisher_name AS publisher_specific,
       c.published_on AS release_date, extract(year FROM c.published_on)::integer AS publication_year,
       c.language, c.calibre_id, c.calibre_uuid
FROM incoming_calibre c
CROSS JOIN LATERAL unnest(CASE WHEN cardinality(c.formats) > 0 THEN c.formats ELSE ARRAY[NULL] END) AS f(format);
DELETE FROM book_editions e
WHERE e.calibre_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM incoming_editions i
                  WHERE (i.book_id, i.edition_format, i.isbn_specific, i.publisher_specific, i.release_date,
                         i.publication_year, i.language, i.calibre_id, i.calibre_uuid)
                        IS NOT DISTINCT FROM (e.book_id, e.edition_format, e.isbn_specific, e.publisher_specific,
                                              e.release_date, e.publication_year, e.language, e.calibre_id,
                                              e.calibre_uuid));
INSERT INTO book_editions (book_id, edition_format, isbn_specific, publisher_specific, release_date,
                           publication_year, language, calibre_id, calibre_uuid)
SELECT i.book_id, i.edition_format, i.isbn_specific, i.publisher_specific, i.release_date, i.publication_year,
       i.language, i.calibre_id, i.calibre_uuid
FROM incoming_editions i
WHERE NOT EXISTS (SELECT 1 FROM book_editions e
                  WHERE e.calibre_id IS NOT NULL
                    AND (i.book_id, i.edition_format, i.isbn_specific, i.publisher_specific, i.release_date,
                         i.publication_year, i.language, i.calibre_id, i.calibre_uuid)
                        IS NOT DISTINCT FROM (e.book_id, e.edition_format, e.isbn_specific, e.publisher_specific,
                                              e.release_date, e.publication_year, e.language, e.calibre_id,
                                              e.calibre_uuid));
DELETE FROM publishers p USING created_publishers c
WHERE c.publisher_id = p.publisher_id AND NOT EXISTS (SELECT 1 FROM books b WHERE b.publisher_id = p.publisher_id);

INSERT INTO tags (name)
SELECT DISTINCT t.name FROM incoming_calibre c CROSS JOIN LATERAL unnest(c.tags) AS t(name)
WHERE NOT EXISTS (SELECT 1 FROM tags g WHERE """ + same_name("g.name", "t.name") + """);
CREATE TEMP TABLE incoming_tags ON COMMIT DROP AS
SELECT DISTINCT c.book_id, g.tag_id
FROM incoming_calibre c CROSS JOIN LATERAL unnest(c.tags) AS t(name)
JOIN tags g ON """ + same_name("g.name", "t.name") + """;
DELETE FROM book_tags b
WHERE b.source = 'calibre'
  AND NOT EXISTS (SELECT 1 FROM incoming_tags i WHERE i.book_id = b.book_id AND i.tag_id = b.tag_id);
INSERT INTO book_tags (book_id, tag_id, source) SELECT book_id, tag_id, 'calibre' FROM incoming_tags
ON CONFLICT DO NOTHING;
DELETE FROM tags g WHERE NOT EXISTS (SELECT 1 FROM book_tags b WHERE b.tag_id = g.tag_id);

CREATE TEMP TABLE incoming_identifiers ON COMMIT DROP AS
SELECT DISTINCT c.book_id, split_part(i.text, ':', 1) AS scheme, substr(i.text, strpos(i.text, ':') + 1) AS value
FROM incoming_calibre c CROSS JOIN LATERAL unnest(c.identifiers) AS i(text);
DELETE FROM book_identifiers b
WHERE b.source = 'calibre'
  AND NOT EXISTS (SELECT 1 FROM incoming_identifiers i
                  WHERE (i.book_id, i.scheme, i.value) = (b.book_id, b.scheme, b.value));
INSERT INTO book_identifiers (book_id, source, scheme, value)
SELECT book_id, 'calibre', scheme, value FROM incoming_identifiers ON CONFLICT DO NOTHING;

DELETE FROM calibre_asins;
INSERT INTO calibre_asins (asin, rule, calibre_id, title, authors)
SELECT asin, rule, calibre_id, title, authors FROM jsonb_to_recordset(%(asins)s::jsonb) AS a(
    asin text, rule text, calibre_id integer, title text, authors text[])
ON CONFLICT DO NOTHING;

INSERT INTO schema_meta (key, value) VALUES ('calibre_fingerprint', %(fingerprint)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
SELECT count(*), count(*) FILTER (WHERE match_rule = 'manual') FROM incoming_calibre;
"""


def calibre_payload(books: dict[int, WarehouseBook], overrides: dict[int, Optional[int]],
                    matches: dict[int, tuple[int, str]], library: CalibreLibrary) -> list[dict]:
    """The matched books with their Calibre metadata; a reader's override (calibre_match_overrides) wins,
    and an override with no Calibre id keeps the book unmatched."""
    chosen = {book_id: match for book_id, match in matches.items() if book_id not in overrides}
    chosen.update({book_id: (calibre_id, "manual") for book_id, calibre_id in overrides.items()
                   if calibre_id in library.books and book_id in books})
    payload = []
    for book_id, (calibre_id, rule) in sorted(chosen.items()):
        calibre = library.books[calibre_id]
        isbns = [value for scheme, value in calibre.identifiers if scheme == "isbn"]
        isbn_13, isbn_10 = isbn_columns(isbns[0]) if isbns else (None, None)
        payload.append({
            "book_id": book_id, "calibre_id": calibre_id, "calibre_uuid": calibre.uuid, "match_rule": rule,
            "title": calibre.title, "publisher": calibre.publisher, "published_on": calibre.published_on,
            "series": calibre.series, "series_index": calibre.series_index, "languages": list(calibre.languages),
            "rating": calibre.rating, "status": calibre.ko_status, "tags": list(calibre.tags),
            "identifiers": [f"{scheme}:{value}" for scheme, value in calibre.identifiers],
            "formats": sorted({fit_text(fmt, EDITION_FORMAT_LENGTH) for fmt, _path in calibre.formats}),
            "isbn": isbns[0] if isbns else None, "isbn_13": isbn_13, "isbn_10": isbn_10,
            "isbn_specific": isbn_13 or isbn_10, "publisher_name": fit_text(calibre.publisher, NAME_LENGTH),
            "language": fit_text(calibre.languages[0], EDITION_LANGUAGE_LENGTH) if calibre.languages else None,
        })
    return payload


def library_asins(library: CalibreLibrary) -> list[dict]:
    """Every ASIN the library's books hold (``amazon``/``amazon_<store>``, an ASIN-shaped ``mobi-asin``), with
    the book's title and authors: what names an export's book that no warehouse book holds."""
    return [{"asin": asin, "rule": rule, "calibre_id": book.calibre_id, "title": book.title,
             "authors": list(book.authors)}
            for book in library.books.values() for scheme, value in book.identifiers
            for rule, asin in [(asin_rule(scheme), asin_key(value))] if rule and asin]


def load_calibre(cursor, library: CalibreLibrary) -> Optional[int]:
    """Match every warehouse book to the library and land what it says; nothing when neither the library
    nor the warehouse's books changed since the last run (one round trip), else two more. Returns how many
    books it matched, None when unchanged."""
    cursor.execute(CALIBRE_BOOKS_SQL)
    rows = cursor.fetchall()
    stored = rows[0][7] if rows else None
    fingerprint = hashlib.sha1(
        (library.fingerprint + json.dumps([row[:7] for row in rows], default=str)).encode()).hexdigest()
    if fingerprint == stored:
        component_logger("LOAD").info("the Calibre library and the books are unchanged since the last run")
        return None
    books = {row[0]: WarehouseBook(row[0], row[1], tuple(row[2]), row[3], tuple(row[4])) for row in rows}
    overrides = {row[0]: row[6] for row in rows if row[5]}
    file_md5s: dict[int, set[str]] = {}
    for book in library.books.values():
        for _format, path in book.formats:
            md5 = koreader_partial_md5(library.root / path)
            if md5:
                file_md5s.setdefault(book.calibre_id, set()).add(md5)
    matches = match_calibre_books(books.values(), library, file_md5s)
    cursor.execute(CALIBRE_SQL, {"calibre": json.dumps(calibre_payload(books, overrides, matches, library)),
                                 "asins": json.dumps(library_asins(library)), "fingerprint": fingerprint})
    matched, manual = cursor.fetchone()
    by_rule = Counter(rule for _id, rule in matches.values())
    component_logger("LOAD").info(
        "Calibre: %d of %d books matched (%s%s), %d unmatched or ambiguous", matched, len(books),
        ", ".join(f"{rule}: {by_rule[rule]}" for rule in MATCH_RULES if by_rule[rule]) or "none",
        f", manual: {manual}" if manual else "", len(books) - matched,
    )
    return matched


# The source's interface (see bookhelper/__init__.py) ------------------------------------------------------

NAME = "calibre"
STANDS_ALONE = True  # it matches the warehouse's books, whatever brought them
SYNC_NAME = None  # no row of its own in the reader's sync_status (it brings no reading)
SETTINGS = (
    Setting("CALIBRE_LIBRARY", None, "Calibre library folder (with metadata.db), optional",
            option="--calibre-library", metavar="DIR",
            option_help="Calibre library folder (holding metadata.db), read for publishers, tags, series and ISBNs"),
)


ZONE_CHANGED_SQL = ""  # the library holds no device's local times


@dataclass(frozen=True)
class CalibreCounts:
    """What a run did with the library: how many warehouse books it matched (None: unchanged, not matched)."""

    matched: Optional[int] = None


def configure(values: dict[str, Optional[str]]) -> Optional[Path]:
    """The library folder, when one is set."""
    library = values["CALIBRE_LIBRARY"]
    return Path(library).expanduser() if library else None


def extract(library: Path, workdir: Path) -> CalibreLibrary:
    """The library, read from a checked snapshot of its metadata.db. A library that is missing tonight (a NAS
    not mounted) or cannot be read is skipped: what the warehouse holds of it stays."""
    if not (library / "metadata.db").is_file():
        raise SourceSkipped(f"Calibre library skipped: {library} holds no metadata.db (not mounted? check "
                            "--calibre-library or CALIBRE_LIBRARY)")
    try:
        calibre = extract_calibre_library(library, workdir)
    except (sqlite3.Error, OSError, SourceMissing) as exc:
        raise SourceSkipped(f"Calibre library skipped: {library}/metadata.db cannot be read ({first_line(exc)})"
                            ) from None
    component_logger("EXTRACT").info("read %d books of the Calibre library %s", len(calibre.books), library)
    if calibre.problems:
        component_logger("TRANSFORM").warning(
            "Calibre: skipped or cleaned %d values (%s)", sum(n for _reason, n in calibre.problems),
            ", ".join(f"{reason}: {n}" for reason, n in calibre.problems))
    return calibre


def book_isbns(library: CalibreLibrary, books: Sequence[Book]) -> dict[str, set[str]]:
    """The ISBNs of the library's books that match ``books`` without reading the library's files."""
    isbns: dict[str, set[str]] = {}
    candidates = [WarehouseBook(n, b.title, b.authors, b.file_hash, ()) for n, b in enumerate(books)]
    for n, (calibre_id, _rule) in match_calibre_books(candidates, library, {}).items():
        found = {value for scheme, value in library.books[calibre_id].identifiers if scheme == "isbn"}
        if found:
            isbns.setdefault(books[n].book_key, set()).update(found)
    return isbns


def load(cursor, _run: RunContext, library: CalibreLibrary) -> CalibreCounts:
    """Match every warehouse book to the library (after the books of the night are in) and land it."""
    return CalibreCounts(load_calibre(cursor, library))


def summary(_counts: CalibreCounts) -> list[str]:
    """Calibre's line is logged as it matches (load_calibre)."""
    return []
