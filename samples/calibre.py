"""Synthetic Calibre libraries, as Calibre-Web-Automated (CWA) keeps them, for the tests.

A library here is a ``metadata.db`` with calibre's schema (its tables, indexes, triggers and
views for ``PRAGMA user_version`` 25, 26 or 27), custom columns of every datatype, CWA's
``book_format_checksums`` table, and one folder per book holding format files whose bytes
are deterministic, so KOReader's partial md5 of every file is known. ``build_scenario``
adds a KOReader side: a device folder with copies of some books (byte-identical or
re-exported with embedded metadata) and their sidecars, and a statistics file whose md5s
match Calibre books through each matching rule, ambiguously, or not at all, together with
the expected match of every statistics book. All data is invented.

Run it from the repository root to write a demo library, device folder and statistics file::

    python3 -m samples.calibre OUTDIR
"""

import argparse
import hashlib
import io
import json
import random
import re
import sqlite3
import unicodedata
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

from samples.statistics import Book, simulate_reading, write_statistics_file

SCHEMA_VERSIONS = (25, 26, 27)
CURRENT_SCHEMA_VERSION = 27
UNKNOWN_PUBDATE = "0101-01-01 00:00:00+00:00"  # calibre's "undefined date"
EMPTY_FILE_MD5 = "d41d8cd98f00b204e9800998ecf8427e"  # every empty file's partial md5: identifies nothing
CALIBRE_APPLICATION_ID = 0x63616C69  # "cali", set from user_version 27 on

# ---------------------------------------------------------------------------------------
# Schema.
#
# The DDL below is written here from the documented structure of calibre's library
# database: kovidgoyal/calibre, resources/metadata_sqlite.sql as it stood at user_version
# 25 (d3949bdecf), 26 (aabd29c571) and 27 (d992305e8e), and create_custom_column in
# src/calibre/db/backend.py (ea9ccaf487). calibre is GPLv3; its file is not copied. The
# table, column, index, trigger and view names, types, collations, defaults, constraints
# and trigger bodies are calibre's, so a library built here behaves like a real one: the
# triggers call calibre's SQL functions title_sort() and uuid4(), the views call
# sortconcat(), concat(), books_list_filter() and title_sort().
# ---------------------------------------------------------------------------------------

_LINK = "link TEXT NOT NULL DEFAULT ''"


def _books_table(version: int) -> str:
    # calibre 9 (user_version 27) dropped the long-unused isbn, lccn and flags columns.
    legacy = version < 27
    return (
        "CREATE TABLE books ( id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " title TEXT NOT NULL DEFAULT 'Unknown' COLLATE NOCASE,"
        " sort TEXT COLLATE NOCASE,"
        " timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
        " pubdate TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
        " series_index REAL NOT NULL DEFAULT 1.0,"
        " author_sort TEXT COLLATE NOCASE,"
        + (" isbn TEXT DEFAULT '' COLLATE NOCASE, lccn TEXT DEFAULT '' COLLATE NOCASE," if legacy else "")
        + " path TEXT NOT NULL DEFAULT '',"
        + (" flags INTEGER NOT NULL DEFAULT 1," if legacy else "")
        + " uuid TEXT, has_cover BOOL DEFAULT 0,"
        " last_modified TIMESTAMP NOT NULL DEFAULT '2000-01-01 00:00:00+00:00');\n"
    )


def _link_table(table: str, column: str, unique: str) -> str:
    return (
        f"CREATE TABLE {table} ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL,"
        f" {column} INTEGER NOT NULL, UNIQUE({unique}));\n"
    )


def _tables(version: int) -> str:
    # user_version 26 gave every category table a link column (authors had one already).
    link = f" {_LINK}," if version >= 26 else ""
    fts = ("USING fts5(searchable_text, content = 'annotations', content_rowid = 'id',"
           " tokenize = '{}unicode61 remove_diacritics 2')")
    return (
        f"CREATE TABLE authors ( id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE,"
        f" sort TEXT COLLATE NOCASE, {_LINK}, UNIQUE(name));\n"
        + _books_table(version)
        + _link_table("books_authors_link", "author", "book, author")
        + "CREATE TABLE books_languages_link ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL,"
        " lang_code INTEGER NOT NULL, item_order INTEGER NOT NULL DEFAULT 0, UNIQUE(book, lang_code));\n"
        "CREATE TABLE books_plugin_data(id INTEGER PRIMARY KEY, book INTEGER NOT NULL, name TEXT NOT NULL,"
        " val TEXT NOT NULL, UNIQUE(book,name));\n"
        + _link_table("books_publishers_link", "publisher", "book")
        + _link_table("books_ratings_link", "rating", "book, rating")
        + _link_table("books_series_link", "series", "book")
        + _link_table("books_tags_link", "tag", "book, tag")
        + "CREATE TABLE comments ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL,"
        " text TEXT NOT NULL COLLATE NOCASE, UNIQUE(book));\n"
        "CREATE TABLE conversion_options ( id INTEGER PRIMARY KEY, format TEXT NOT NULL COLLATE NOCASE,"
        " book INTEGER, data BLOB NOT NULL, UNIQUE(format,book));\n"
        "CREATE TABLE custom_columns ( id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL,"
        " name TEXT NOT NULL, datatype TEXT NOT NULL, mark_for_delete BOOL DEFAULT 0 NOT NULL,"
        " editable BOOL DEFAULT 1 NOT NULL, display TEXT DEFAULT '{}' NOT NULL,"
        " is_multiple BOOL DEFAULT 0 NOT NULL, normalized BOOL NOT NULL, UNIQUE(label));\n"
        "CREATE TABLE data ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL, format TEXT NOT NULL COLLATE NOCASE,"
        " uncompressed_size INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE(book, format));\n"
        "CREATE TABLE feeds ( id INTEGER PRIMARY KEY, title TEXT NOT NULL, script TEXT NOT NULL, UNIQUE(title));\n"
        "CREATE TABLE identifiers ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL,"
        " type TEXT NOT NULL DEFAULT 'isbn' COLLATE NOCASE, val TEXT NOT NULL COLLATE NOCASE,"
        " UNIQUE(book, type));\n"
        f"CREATE TABLE languages ( id INTEGER PRIMARY KEY, lang_code TEXT NOT NULL COLLATE NOCASE,{link}"
        " UNIQUE(lang_code));\n"
        "CREATE TABLE library_id ( id INTEGER PRIMARY KEY, uuid TEXT NOT NULL, UNIQUE(uuid));\n"
        "CREATE TABLE metadata_dirtied(id INTEGER PRIMARY KEY, book INTEGER NOT NULL, UNIQUE(book));\n"
        "CREATE TABLE annotations_dirtied(id INTEGER PRIMARY KEY, book INTEGER NOT NULL, UNIQUE(book));\n"
        "CREATE TABLE preferences(id INTEGER PRIMARY KEY, key TEXT NOT NULL, val TEXT NOT NULL, UNIQUE(key));\n"
        f"CREATE TABLE publishers ( id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE,"
        f" sort TEXT COLLATE NOCASE,{link} UNIQUE(name));\n"
        f"CREATE TABLE ratings ( id INTEGER PRIMARY KEY, rating INTEGER CHECK(rating > -1 AND rating < 11),{link}"
        " UNIQUE (rating));\n"
        f"CREATE TABLE series ( id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE,"
        f" sort TEXT COLLATE NOCASE,{link} UNIQUE (name));\n"
        f"CREATE TABLE tags ( id INTEGER PRIMARY KEY, name TEXT NOT NULL COLLATE NOCASE,{link} UNIQUE (name));\n"
        "CREATE TABLE last_read_positions ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL,"
        " format TEXT NOT NULL COLLATE NOCASE, user TEXT NOT NULL, device TEXT NOT NULL, cfi TEXT NOT NULL,"
        " epoch REAL NOT NULL, pos_frac REAL NOT NULL DEFAULT 0, UNIQUE(user, device, book, format));\n"
        "CREATE TABLE annotations ( id INTEGER PRIMARY KEY, book INTEGER NOT NULL,"
        " format TEXT NOT NULL COLLATE NOCASE, user_type TEXT NOT NULL, user TEXT NOT NULL,"
        " timestamp REAL NOT NULL, annot_id TEXT NOT NULL, annot_type TEXT NOT NULL, annot_data TEXT NOT NULL,"
        " searchable_text TEXT NOT NULL DEFAULT '',"
        " UNIQUE(book, user_type, user, format, annot_type, annot_id));\n"
        f"CREATE VIRTUAL TABLE annotations_fts {fts.format('')};\n"
        f"CREATE VIRTUAL TABLE annotations_fts_stemmed {fts.format('porter ')};\n"
    )


_INDEXES = (
    ("authors_idx", "books (author_sort COLLATE NOCASE)"),
    ("books_authors_link_aidx", "books_authors_link (author)"),
    ("books_authors_link_bidx", "books_authors_link (book)"),
    ("books_idx", "books (sort COLLATE NOCASE)"),
    ("books_languages_link_aidx", "books_languages_link (lang_code)"),
    ("books_languages_link_bidx", "books_languages_link (book)"),
    ("books_publishers_link_aidx", "books_publishers_link (publisher)"),
    ("books_publishers_link_bidx", "books_publishers_link (book)"),
    ("books_ratings_link_aidx", "books_ratings_link (rating)"),
    ("books_ratings_link_bidx", "books_ratings_link (book)"),
    ("books_series_link_aidx", "books_series_link (series)"),
    ("books_series_link_bidx", "books_series_link (book)"),
    ("books_tags_link_aidx", "books_tags_link (tag)"),
    ("books_tags_link_bidx", "books_tags_link (book)"),
    ("comments_idx", "comments (book)"),
    ("conversion_options_idx_a", "conversion_options (format COLLATE NOCASE)"),
    ("conversion_options_idx_b", "conversion_options (book)"),
    ("custom_columns_idx", "custom_columns (label)"),
    ("data_idx", "data (book)"),
    ("lrp_idx", "last_read_positions (book)"),
    ("annot_idx", "annotations (book)"),
    ("formats_idx", "data (format)"),
    ("languages_idx", "languages (lang_code COLLATE NOCASE)"),
    ("publishers_idx", "publishers (name COLLATE NOCASE)"),
    ("series_idx", "series (name COLLATE NOCASE)"),
    ("tags_idx", "tags (name COLLATE NOCASE)"),
)

# Tables whose rows books_delete_trg removes with their book, in calibre's order.
_BOOK_CHILD_TABLES = (
    "books_authors_link", "books_publishers_link", "books_ratings_link", "books_series_link",
    "books_tags_link", "books_languages_link", "data", "last_read_positions", "annotations", "comments",
    "conversion_options", "books_plugin_data", "identifiers",
)
# (category table, link table, link column, message of the delete guard)
_CATEGORIES = (
    ("authors", "books_authors_link", "author", "authors is still referenced"),
    ("languages", "books_languages_link", "lang_code", "language is still referenced"),
    ("publishers", "books_publishers_link", "publisher", "publishers is still referenced"),
    ("series", "books_series_link", "series", "series is still referenced"),
    ("tags", "books_tags_link", "tag", "tags is still referenced"),
)
_RATINGS_LINK = ("ratings", "books_ratings_link", "rating")


def _raise_if(condition: str, message: str) -> str:
    return f"WHEN {condition} THEN RAISE(ABORT, 'Foreign key violation: {message}')"


def _guard_trigger(name: str, event: str, *cases: str) -> str:
    return f"CREATE TRIGGER {name} {event} BEGIN SELECT CASE {' '.join(cases)} END; END;\n"


def _book_exists_case() -> str:
    return _raise_if("(SELECT id from books WHERE id=NEW.book) IS NULL", "book not in books")


def _parent_exists_case(parent: str, column: str, label: str) -> str:
    return _raise_if(f"(SELECT id from {parent} WHERE id=NEW.{column}) IS NULL", f"{label} not in {parent}")


def _triggers(version: int) -> str:
    script = (
        "CREATE TRIGGER books_delete_trg AFTER DELETE ON books BEGIN "
        + " ".join(f"DELETE FROM {table} WHERE book=OLD.id;" for table in _BOOK_CHILD_TABLES)
        + " END;\n"
        "CREATE TRIGGER books_insert_trg AFTER INSERT ON books BEGIN"
        " UPDATE books SET sort=title_sort(NEW.title),uuid=uuid4() WHERE id=NEW.id; END;\n"
        "CREATE TRIGGER books_update_trg AFTER UPDATE ON books BEGIN"
        " UPDATE books SET sort=title_sort(NEW.title) WHERE id=NEW.id AND OLD.title <> NEW.title; END;\n"
        "CREATE TRIGGER series_insert_trg AFTER INSERT ON series BEGIN"
        " UPDATE series SET sort=title_sort(NEW.name) WHERE id=NEW.id; END;\n"
        "CREATE TRIGGER series_update_trg AFTER UPDATE ON series BEGIN"
        " UPDATE series SET sort=title_sort(NEW.name) WHERE id=NEW.id; END;\n"
    )
    for short, table in (("comments", "comments"), ("data", "data"), ("lrp", "last_read_positions"),
                         ("annot", "annotations")):
        script += _guard_trigger(f"fkc_{short}_insert", f"BEFORE INSERT ON {table}", _book_exists_case())
        script += _guard_trigger(f"fkc_{short}_update", f"BEFORE UPDATE OF book ON {table}", _book_exists_case())
    for category, link_table, column, message in _CATEGORIES:
        script += _guard_trigger(
            f"fkc_delete_on_{category}", f"BEFORE DELETE ON {category}",
            _raise_if(f"(SELECT COUNT(id) FROM {link_table} WHERE {column}=OLD.id) > 0", message),
        )
    for category, link_table, column, *_ in (*_CATEGORIES, _RATINGS_LINK):
        parent_case = _parent_exists_case(category, column, column)
        # calibre's name for the languages insert guard is historical.
        insert_name = "fkc_delete_on_languages_link" if category == "languages" else f"fkc_insert_{link_table}"
        script += _guard_trigger(insert_name, f"BEFORE INSERT ON {link_table}", _book_exists_case(), parent_case)
        script += _guard_trigger(f"fkc_update_{link_table}_a", f"BEFORE UPDATE OF book ON {link_table}",
                                 _book_exists_case())
        script += _guard_trigger(f"fkc_update_{link_table}_b", f"BEFORE UPDATE OF {column} ON {link_table}",
                                 parent_case)
    for event, statements in (
        ("INSERT", ["INSERT INTO {fts}(rowid, searchable_text) VALUES (NEW.id, NEW.searchable_text);"]),
        ("DELETE", ["INSERT INTO {fts}({fts}, rowid, searchable_text) VALUES('delete', OLD.id, OLD.searchable_text);"]),
        ("UPDATE", ["INSERT INTO {fts}({fts}, rowid, searchable_text) VALUES('delete', OLD.id, OLD.searchable_text);",
                    "INSERT INTO {fts}(rowid, searchable_text) VALUES (NEW.id, NEW.searchable_text);"]),
    ):
        body = " ".join(s.format(fts=fts) for fts in ("annotations_fts", "annotations_fts_stemmed") for s in statements)
        script += f"CREATE TRIGGER annotations_fts_{event.lower()}_trg AFTER {event} ON annotations BEGIN {body} END;\n"
    if version >= 27:
        script += (
            "CREATE TRIGGER books_pages_link_create_trigger AFTER INSERT ON books FOR EACH ROW BEGIN"
            " INSERT INTO books_pages_link(book) VALUES(NEW.id); END;\n"
        )
    return script


def _tag_browser_views(category: str, link_table: str, column: str, value: str, sort: str) -> str:
    rating_from = f"FROM {link_table} AS tl, books_ratings_link AS bl, ratings"
    rating_where = (f"WHERE tl.{column}={category}.id AND bl.book=tl.book AND"
                    " ratings.id = bl.rating AND ratings.rating <> 0")
    return (
        f"CREATE VIEW tag_browser_{category} AS SELECT id, {value},"
        f" (SELECT COUNT(id) FROM {link_table} WHERE {column}={category}.id) count,"
        f" (SELECT AVG(ratings.rating) {rating_from} {rating_where}) avg_rating,"
        f" {sort} AS sort FROM {category};\n"
        f"CREATE VIEW tag_browser_filtered_{category} AS SELECT id, {value},"
        f" (SELECT COUNT({link_table}.id) FROM {link_table} WHERE {column}={category}.id AND"
        f" books_list_filter(book)) count,"
        f" (SELECT AVG(ratings.rating) {rating_from} {rating_where} AND books_list_filter(bl.book)) avg_rating,"
        f" {sort} AS sort FROM {category};\n"
    )


def _views(version: int) -> str:
    legacy = version < 27
    script = (
        "CREATE VIEW meta AS SELECT id, title,"
        " (SELECT sortconcat(bal.id, name) FROM books_authors_link AS bal JOIN authors ON(author = authors.id)"
        " WHERE book = books.id) authors,"
        " (SELECT name FROM publishers WHERE publishers.id IN"
        " (SELECT publisher from books_publishers_link WHERE book=books.id)) publisher,"
        " (SELECT rating FROM ratings WHERE ratings.id IN"
        " (SELECT rating from books_ratings_link WHERE book=books.id)) rating,"
        " timestamp, (SELECT MAX(uncompressed_size) FROM data WHERE book=books.id) size,"
        " (SELECT concat(name) FROM tags WHERE tags.id IN (SELECT tag from books_tags_link WHERE book=books.id)) tags,"
        " (SELECT text FROM comments WHERE book=books.id) comments,"
        " (SELECT name FROM series WHERE series.id IN (SELECT series FROM books_series_link WHERE book=books.id))"
        " series, series_index, sort, author_sort,"
        " (SELECT concat(format) FROM data WHERE data.book=books.id) formats,"
        + (" isbn, path, lccn, pubdate, flags, uuid" if legacy else " path, pubdate, uuid")
        + " FROM books;\n"
    )
    for category, link_table, column, value, sort in (
        ("authors", "books_authors_link", "author", "name", "sort"),
        ("publishers", "books_publishers_link", "publisher", "name", "name"),
        ("ratings", "books_ratings_link", "rating", "rating", "rating"),
        ("series", "books_series_link", "series", "name", "(title_sort(name))"),
        ("tags", "books_tags_link", "tag", "name", "name"),
    ):
        script += _tag_browser_views(category, link_table, column, value, sort)
    return script


def schema_script(version: int = CURRENT_SCHEMA_VERSION) -> str:
    """The DDL of a new calibre library at ``user_version`` 25, 26 or 27, ending with its pragmas."""
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unsupported calibre schema version {version}")
    script = _tables(version)
    if version >= 27:
        script += (
            "CREATE TABLE books_pages_link ( book INTEGER PRIMARY KEY, pages INTEGER DEFAULT 0 NOT NULL,"
            " algorithm INTEGER DEFAULT 0 NOT NULL, format TEXT DEFAULT '' NOT NULL COLLATE NOCASE,"
            " format_size INTEGER DEFAULT 0 NOT NULL, timestamp TIMESTAMP DEFAULT CURRENT_TIMESTAMP,"
            " needs_scan INTEGER NOT NULL DEFAULT 0 CHECK(needs_scan IN (0, 1)),"
            " FOREIGN KEY (book) REFERENCES books(id) ON DELETE CASCADE);\n"
            "CREATE INDEX books_pages_link_pidx ON books_pages_link (needs_scan);\n"
        )
    script += "".join(f"CREATE INDEX {name} ON {target};\n" for name, target in _INDEXES)
    script += _views(version) + _triggers(version)
    if version >= 27:
        script += f"PRAGMA application_id = {CALIBRE_APPLICATION_ID};\n"
    return script + f"PRAGMA user_version = {version};\n"


# CWA >= 4.0 (cps/progress_syncing/models.py, ensure_checksum_table): the KOReader partial md5 of
# every library file and of every copy CWA served, old ones included.
CWA_CHECKSUM_TABLE = """
CREATE TABLE book_format_checksums (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    book INTEGER NOT NULL,
    format TEXT NOT NULL COLLATE NOCASE,
    checksum TEXT NOT NULL,
    version TEXT NOT NULL DEFAULT 'koreader',
    created TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (book) REFERENCES books(id) ON DELETE CASCADE
);
CREATE INDEX idx_checksum ON book_format_checksums(checksum);
CREATE INDEX idx_checksum_version ON book_format_checksums(checksum, version);
CREATE INDEX idx_book_format ON book_format_checksums(book, format);
CREATE INDEX idx_created ON book_format_checksums(created);
"""

# ---------------------------------------------------------------------------------------
# Custom columns, as calibre's create_custom_column makes them.
# ---------------------------------------------------------------------------------------

# Datatypes stored in custom_column_N(id, value) + books_custom_column_N_link(book, value[, extra]);
# the others in custom_column_N(book, value). A composite column's table stays empty.
NORMALIZED_DATATYPES = ("text", "series", "enumeration", "rating")
_SQL_TYPES = {
    "rating": "INT", "int": "INT", "text": "TEXT", "comments": "TEXT", "series": "TEXT", "composite": "TEXT",
    "enumeration": "TEXT", "float": "REAL", "datetime": "timestamp", "bool": "BOOL",
}


@dataclass
class CustomColumn:
    """A row of ``custom_columns``: looked up in calibre as ``#label``."""

    label: str
    name: str
    datatype: str
    is_multiple: bool = False
    display: dict = field(default_factory=dict)

    @property
    def normalized(self) -> bool:
        """Whether calibre stores the values in a table of their own, linked to books."""
        return self.datatype in NORMALIZED_DATATYPES


def custom_column_script(number: int, column: CustomColumn, version: int) -> str:
    """The DDL calibre runs when it creates custom column ``number``."""
    table, link_table = f"custom_column_{number}", f"books_custom_column_{number}_link"
    sql_type = _SQL_TYPES[column.datatype]
    collate = " COLLATE NOCASE" if sql_type == "TEXT" else ""
    book_case = _book_exists_case()
    if not column.normalized:
        return (
            f"CREATE TABLE {table}( id INTEGER PRIMARY KEY AUTOINCREMENT, book INTEGER,"
            f" value {sql_type} NOT NULL{collate}, UNIQUE(book));\n"
            f"CREATE INDEX {table}_idx ON {table} (book);\n"
            + _guard_trigger(f"fkc_insert_{table}", f"BEFORE INSERT ON {table}", book_case)
            + _guard_trigger(f"fkc_update_{table}", f"BEFORE UPDATE OF book ON {table}", book_case)
        )
    value_case = _raise_if(f"(SELECT id from {table} WHERE id=NEW.value) IS NULL", f"value not in {table}")
    link = f" {_LINK}," if version >= 26 else ""
    extra = " extra REAL," if column.datatype == "series" else ""
    avg_rating = (
        f"(SELECT AVG(r.rating) FROM {link_table}, books_ratings_link as bl, ratings as r"
        f" WHERE {link_table}.value={table}.id and bl.book={link_table}.book and r.id = bl.rating and r.rating <> 0"
    )
    return (
        f"CREATE TABLE {table}( id INTEGER PRIMARY KEY AUTOINCREMENT, value {sql_type} NOT NULL{collate},{link}"
        " UNIQUE(value));\n"
        f"CREATE INDEX {table}_idx ON {table} (value{collate});\n"
        f"CREATE TABLE {link_table}( id INTEGER PRIMARY KEY AUTOINCREMENT, book INTEGER NOT NULL,"
        f" value INTEGER NOT NULL,{extra} UNIQUE(book, value));\n"
        f"CREATE INDEX {link_table}_aidx ON {link_table} (value);\n"
        f"CREATE INDEX {link_table}_bidx ON {link_table} (book);\n"
        + _guard_trigger(f"fkc_update_{link_table}_a", f"BEFORE UPDATE OF book ON {link_table}", book_case)
        # "OF author" is calibre's own slip: this guard never fires. Kept to match real libraries.
        + _guard_trigger(f"fkc_update_{link_table}_b", f"BEFORE UPDATE OF author ON {link_table}", value_case)
        + _guard_trigger(f"fkc_insert_{link_table}", f"BEFORE INSERT ON {link_table}", book_case, value_case)
        + f"CREATE TRIGGER fkc_delete_{link_table} AFTER DELETE ON {table} BEGIN"
        f" DELETE FROM {link_table} WHERE value=OLD.id; END;\n"
        f"CREATE VIEW tag_browser_{table} AS SELECT id, value,"
        f" (SELECT COUNT(id) FROM {link_table} WHERE value={table}.id) count,"
        f" {avg_rating}) avg_rating, value AS sort FROM {table};\n"
        f"CREATE VIEW tag_browser_filtered_{table} AS SELECT id, value,"
        f" (SELECT COUNT({link_table}.id) FROM {link_table} WHERE value={table}.id AND books_list_filter(book)) count,"
        f" {avg_rating} AND books_list_filter(bl.book)) avg_rating, value AS sort FROM {table};\n"
    )


# ---------------------------------------------------------------------------------------
# calibre's SQL functions, as far as the triggers need them.
# ---------------------------------------------------------------------------------------

_LEADING_ARTICLE = re.compile(r"^(A|The|An)\s+", re.IGNORECASE)


def calibre_title_sort(title: str) -> str:
    """calibre's default English title sort: a leading article moves to the end ("Hobbit, The")."""
    title = title.strip()
    match = _LEADING_ARTICLE.match(title)
    if match:
        title = f"{title[match.end():]}, {match.group(1)}"
    return title.strip()


def register_calibre_functions(conn: sqlite3.Connection, seed: int = 0) -> None:
    """Register ``title_sort`` and ``uuid4``, the functions calibre's triggers call.

    Without them any INSERT into ``books`` or ``series`` and any UPDATE of either fails with
    "no such function". ``uuid4`` draws from a seeded generator so that libraries are
    reproducible. Reading tables needs neither.
    """
    rng = random.Random(seed)
    conn.create_function("title_sort", 1, calibre_title_sort, deterministic=True)
    conn.create_function("uuid4", 0, lambda: str(uuid.UUID(int=rng.getrandbits(128), version=4)))


def calibre_author_sort(name: str) -> str:
    """calibre's default author sort for a display name: "Ursula K. Le Guin" -> "Guin, Ursula K. Le"."""
    tokens = name.split()
    if "," in name or len(tokens) < 2:
        return name
    return f"{tokens[-1]}, {' '.join(tokens[:-1])}"


def ascii_filename(text: str) -> str:
    """Roughly calibre's ascii_filename: ASCII only, reserved characters replaced by ``_``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", ascii_text).strip()


def calibre_book_path(book_id: int, title: str, first_author: str) -> str:
    """``<author>/<title> (<id>)``, each part cut to 96 characters, as calibre builds it on Linux."""
    author = ascii_filename(first_author)[:96].rstrip(" .") or "Unknown"
    return f"{author}/{ascii_filename(title)[:96].rstrip() or 'Unknown'} ({book_id})"


def calibre_file_name(title: str, first_author: str) -> str:
    """``<title> - <author>``, each part cut to 42 characters, as calibre names format files on Linux."""
    return f"{ascii_filename(title)[:42].rstrip() or 'Unknown'} - {ascii_filename(first_author)[:42]}".rstrip(".")


def koreader_partial_md5(content: bytes) -> str:
    """KOReader's partial md5 (frontend/util.lua ``partialMD5``) of a file's bytes.

    md5 over 1 KiB samples at offsets 0 and 1024 * 4**i (i = 0..10), stopping at the first
    offset at or past the end of the file.
    """
    digest = hashlib.md5()
    for offset in [0] + [1024 << (2 * i) for i in range(11)]:
        sample = content[offset:offset + 1024]
        if not sample:
            break
        digest.update(sample)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Format files with deterministic bytes.
# ---------------------------------------------------------------------------------------

_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def _filler(seed: str, size: int) -> bytes:
    return random.Random(seed).randbytes(max(size, 0))


def epub_bytes(title: str, authors: Sequence[str], identifiers: Sequence[tuple[str, str]], size: int,
               filler_seed: str) -> bytes:
    """A small valid EPUB of about ``size`` bytes whose OPF holds this metadata.

    Entries are stored uncompressed with fixed times, so the bytes depend on the arguments
    only (not on zlib). Two calls that differ in metadata alone give different early bytes,
    like a calibre export with "embed metadata" on.
    """
    creators = "".join(f"<dc:creator opf:role=\"aut\">{_xml(a)}</dc:creator>" for a in authors)
    ids = "".join(
        f"<dc:identifier opf:scheme=\"{_xml(scheme)}\">{_xml(value)}</dc:identifier>" for scheme, value in identifiers
    )
    opf = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<package xmlns="http://www.idpf.org/2007/opf" version="2.0" unique-identifier="id">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:opf="http://www.idpf.org/2007/opf">'
        f"<dc:title>{_xml(title)}</dc:title>{creators}{ids}<dc:language>en</dc:language></metadata>"
        '<manifest><item id="text" href="text.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="plate" href="plate.jpg" media-type="image/jpeg"/></manifest>'
        '<spine><itemref idref="text"/></spine></package>'
    )
    container = (
        '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
        '<rootfiles><rootfile full-path="content.opf" media-type="application/oebps-package+xml"/></rootfiles>'
        "</container>"
    )
    text = f'<html xmlns="http://www.w3.org/1999/xhtml"><body><h1>{_xml(title)}</h1></body></html>'
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in (
            ("mimetype", b"application/epub+zip"),
            ("META-INF/container.xml", container.encode()),
            ("content.opf", opf.encode()),
            ("text.xhtml", text.encode()),
            ("plate.jpg", _filler(filler_seed, size - 1500)),
        ):
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            archive.writestr(info, data)
    return buffer.getvalue()


def pdf_bytes(title: str, size: int, filler_seed: str) -> bytes:
    """A PDF-like file of ``size`` bytes: header, info dictionary, seeded filler, trailer."""
    head = f"%PDF-1.7\n1 0 obj << /Title ({title}) >> endobj\n".encode("latin-1", "replace")
    tail = b"\n%%EOF\n"
    return head + _filler(filler_seed, size - len(head) - len(tail)) + tail


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# ---------------------------------------------------------------------------------------
# The library.
# ---------------------------------------------------------------------------------------


@dataclass
class CalibreFormat:
    """One format of a book: a ``data`` row and its file."""

    format: str  # upper case, as calibre stores it: "EPUB"
    content: bytes
    name: Optional[str] = None  # data.name; None: calibre's "<title> - <author>"
    recorded_size: Optional[int] = None  # data.uncompressed_size; None: the true size (real ones go stale)


@dataclass
class CalibreBook:
    """A book as calibre stores it. Author names are display names ("Rooksby, Rikky" is one name)."""

    id: int
    title: str
    authors: list
    formats: list = field(default_factory=list)
    author_sorts: Optional[list] = None  # None: calibre's default sort of each name
    uuid: Optional[str] = None  # None: whatever the insert trigger's uuid4() gives
    path: Optional[str] = None  # None: calibre's "<author>/<title> (<id>)"
    timestamp: str = "2023-05-22 09:25:57.211107+00:00"
    pubdate: str = UNKNOWN_PUBDATE
    last_modified: str = "2024-01-02 03:04:05.123456+00:00"
    series: Optional[tuple] = None  # (name, index)
    publisher: Optional[str] = None
    tags: list = field(default_factory=list)
    identifiers: dict = field(default_factory=dict)  # type (lower case) -> value
    languages: list = field(default_factory=list)  # ISO 639-2 codes, in order
    rating: Optional[int] = None  # 0..10
    comments: Optional[str] = None  # HTML
    has_cover: bool = False
    custom: dict = field(default_factory=dict)  # label -> value; series: (name, index); multiple: list
    cwa_checksums: list = field(default_factory=list)  # (format, KOReader md5) rows of book_format_checksums

    def stored_path(self) -> str:
        """``books.path``: the given one, or calibre's default."""
        return self.path or calibre_book_path(self.id, self.title, self.authors[0])

    def file_name(self, fmt: CalibreFormat) -> str:
        """``data.name`` of a format: the given one, or calibre's default."""
        return fmt.name or calibre_file_name(self.title, self.authors[0])


class CalibreLibrary(NamedTuple):
    """Where a written library lives: ``metadata.db`` and the folder that holds the book folders."""

    metadata_db: Path
    books_dir: Path

    def format_path(self, book_path: str, name: str, fmt: str) -> Path:
        """``<books dir>/<books.path>/<data.name>.<lower(data.format)>``, as calibre resolves it."""
        return self.books_dir / book_path / f"{name}.{fmt.lower()}"


_open_writers: list[sqlite3.Connection] = []


def close_wal_writers() -> None:
    """Close connections kept open by ``write_calibre_library(wal=True, checkpoint=False)``."""
    while _open_writers:
        _open_writers.pop().close()


def write_calibre_library(
    directory,
    books: Sequence[CalibreBook],
    *,
    custom_columns: Sequence[CustomColumn] = (),
    user_version: int = CURRENT_SCHEMA_VERSION,
    wal: bool = False,
    checkpoint: bool = True,
    split_books_dir=None,
    cwa: bool = True,
    library_uuid: str = "8f1d5c4e-2b7a-4c1e-9d3f-6a5b4c3d2e1f",
    seed: int = 1,
) -> CalibreLibrary:
    """Write a calibre library: ``metadata.db`` in ``directory`` and a folder per book.

    ``split_books_dir`` puts the book folders there instead (CWA's split library).
    ``wal=True`` leaves the database in WAL mode, as CWA does; with ``checkpoint=False`` the
    writer stays open and the rows stay in ``metadata.db-wal`` until ``close_wal_writers()``.
    ``cwa=False`` leaves out CWA's ``book_format_checksums`` table, as in a plain calibre library.
    An existing ``metadata.db`` is replaced.
    """
    directory = Path(directory)
    books_dir = Path(split_books_dir) if split_books_dir is not None else directory
    directory.mkdir(parents=True, exist_ok=True)
    books_dir.mkdir(parents=True, exist_ok=True)
    db_path = directory / "metadata.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(db_path)
    register_calibre_functions(conn, seed)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.executescript(schema_script(user_version))
    if cwa:
        conn.executescript(CWA_CHECKSUM_TABLE)
    conn.execute("INSERT INTO library_id (uuid) VALUES (?)", (library_uuid,))
    columns = _create_custom_columns(conn, custom_columns, user_version)
    library = CalibreLibrary(db_path, books_dir)
    for book in sorted(books, key=lambda b: b.id):
        _insert_book(conn, book, columns, cwa)
        _write_book_files(library, book, seed)
    if user_version >= 27:
        # The pages row's timestamp defaults to the clock: pin it so that the file is reproducible.
        conn.execute("UPDATE books_pages_link SET timestamp ="
                     " (SELECT timestamp FROM books WHERE books.id = books_pages_link.book)")
    conn.commit()
    if wal and not checkpoint:
        _open_writers.append(conn)
    else:
        conn.close()
    return library


def _create_custom_columns(conn, custom_columns, version) -> dict:
    numbered = {}
    for number, column in enumerate(custom_columns, start=1):
        conn.execute(
            "INSERT INTO custom_columns (id, label, name, datatype, is_multiple, editable, display, normalized)"
            " VALUES (?,?,?,?,?,1,?,?)",
            (number, column.label, column.name, column.datatype, column.is_multiple, json.dumps(column.display),
             column.normalized),
        )
        conn.executescript(custom_column_script(number, column, version))
        numbered[column.label] = (number, column)
    return numbered


def _get_or_insert(conn, table: str, column: str, value, extra: Optional[dict] = None) -> int:
    row = conn.execute(f"SELECT id FROM {table} WHERE {column} = ?", (value,)).fetchone()
    if row:
        return row[0]
    names = [column, *(extra or {})]
    values = [value, *(extra or {}).values()]
    placeholders = ",".join("?" * len(values))
    return conn.execute(f"INSERT INTO {table} ({','.join(names)}) VALUES ({placeholders})", values).lastrowid


def _insert_book(conn, book: CalibreBook, columns: dict, cwa: bool) -> None:
    sorts = book.author_sorts or [calibre_author_sort(a) for a in book.authors]
    series_index = book.series[1] if book.series else 1.0
    conn.execute(
        "INSERT INTO books (id, title, timestamp, pubdate, series_index, author_sort, path, has_cover,"
        " last_modified) VALUES (?,?,?,?,?,?,?,?,?)",
        (book.id, book.title, book.timestamp, book.pubdate, series_index, " & ".join(sorts), book.stored_path(),
         book.has_cover, book.last_modified),
    )
    if book.uuid:
        conn.execute("UPDATE books SET uuid = ? WHERE id = ?", (book.uuid, book.id))
    for name, sort in zip(book.authors, sorts):
        # calibre keeps "," for its own list syntax: a comma inside one name is stored as "|".
        author_id = _get_or_insert(conn, "authors", "name", name.replace(",", "|"), {"sort": sort})
        conn.execute("INSERT INTO books_authors_link (book, author) VALUES (?,?)", (book.id, author_id))
    if book.publisher:
        publisher_id = _get_or_insert(conn, "publishers", "name", book.publisher)
        conn.execute("INSERT INTO books_publishers_link (book, publisher) VALUES (?,?)", (book.id, publisher_id))
    if book.series:
        series_id = _get_or_insert(conn, "series", "name", book.series[0])
        conn.execute("INSERT INTO books_series_link (book, series) VALUES (?,?)", (book.id, series_id))
    for tag in book.tags:
        conn.execute("INSERT INTO books_tags_link (book, tag) VALUES (?,?)",
                     (book.id, _get_or_insert(conn, "tags", "name", tag)))
    for order, code in enumerate(book.languages):
        conn.execute("INSERT INTO books_languages_link (book, lang_code, item_order) VALUES (?,?,?)",
                     (book.id, _get_or_insert(conn, "languages", "lang_code", code), order))
    if book.rating is not None:
        conn.execute("INSERT INTO books_ratings_link (book, rating) VALUES (?,?)",
                     (book.id, _get_or_insert(conn, "ratings", "rating", book.rating)))
    conn.executemany("INSERT INTO identifiers (book, type, val) VALUES (?,?,?)",
                     [(book.id, kind, value) for kind, value in book.identifiers.items()])
    if book.comments is not None:
        conn.execute("INSERT INTO comments (book, text) VALUES (?,?)", (book.id, book.comments))
    for fmt in book.formats:
        size = len(fmt.content) if fmt.recorded_size is None else fmt.recorded_size
        conn.execute("INSERT INTO data (book, format, uncompressed_size, name) VALUES (?,?,?,?)",
                     (book.id, fmt.format, size, book.file_name(fmt)))
    for label, value in book.custom.items():
        number, column = columns[label]
        _insert_custom_value(conn, book.id, number, column, value)
    if book.cwa_checksums and not cwa:
        raise ValueError(f"book {book.id} has CWA checksums but the library has no book_format_checksums table")
    for position, (fmt, checksum) in enumerate(book.cwa_checksums):
        conn.execute(
            "INSERT INTO book_format_checksums (book, format, checksum, version, created) VALUES (?,?,?,?,?)",
            (book.id, fmt, checksum, "koreader", f"2025-{position % 12 + 1:02d}-15 10:00:00.000000+00:00"),
        )


def _insert_custom_value(conn, book_id: int, number: int, column: CustomColumn, value: Any) -> None:
    table, link_table = f"custom_column_{number}", f"books_custom_column_{number}_link"
    if column.datatype == "composite":
        raise ValueError(f"#{column.label} is a composite column: calibre stores nothing for it")
    if not column.normalized:
        conn.execute(f"INSERT INTO {table} (book, value) VALUES (?,?)", (book_id, value))
        return
    if column.datatype == "series":
        name, index = value
        value_id = _get_or_insert(conn, table, "value", name)
        conn.execute(f"INSERT INTO {link_table} (book, value, extra) VALUES (?,?,?)", (book_id, value_id, index))
        return
    for item in value if column.is_multiple else [value]:
        value_id = _get_or_insert(conn, table, "value", item)
        conn.execute(f"INSERT INTO {link_table} (book, value) VALUES (?,?)", (book_id, value_id))


def _write_book_files(library: CalibreLibrary, book: CalibreBook, seed: int) -> None:
    folder = library.books_dir / book.stored_path()
    folder.mkdir(parents=True, exist_ok=True)
    for fmt in book.formats:
        library.format_path(book.stored_path(), book.file_name(fmt), fmt.format).write_bytes(fmt.content)
    if book.has_cover:
        (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + _filler(f"cover-{seed}-{book.id}", 600) + b"\xff\xd9")


# ---------------------------------------------------------------------------------------
# The scenario: a library, a device and a statistics file, with the expected matches.
# ---------------------------------------------------------------------------------------

RULES = ("cwa_checksum", "ko_md5_column", "file_md5", "identifier", "title_author")


class ExpectedMatch(NamedTuple):
    """The Calibre book a statistics book should be matched to, and the rule that finds it."""

    calibre_id: int
    rule: str


# The columns the KOReader calibre plugin suggests (#ko_*) and one of every other datatype.
SCENARIO_COLUMNS = (
    CustomColumn("ko_md5", "KOReader MD5", "text"),
    CustomColumn("ko_status", "KOReader Book Status", "text"),
    CustomColumn("ko_progfloat", "KOReader Precise Progress", "float"),
    CustomColumn("ko_progint", "KOReader Progress", "int"),
    CustomColumn("ko_statusbool", "KOReader Book Status Y/N", "bool"),
    CustomColumn("ko_start", "Date KOReader Started", "datetime"),
    CustomColumn("ko_finish", "Date KOReader Finished", "datetime"),
    CustomColumn("ko_rating", "KOReader Rating", "rating"),
    CustomColumn("ko_review", "KOReader Review", "comments", display={"interpret_as": "long-text"}),
    CustomColumn("genre", "Genre", "text", is_multiple=True),
    CustomColumn("reading_order", "Reading Order", "series"),
    CustomColumn("shelf", "Shelf", "enumeration", display={"enum_values": ["Owned", "Borrowed", "Wishlist"]}),
    CustomColumn("formats", "Formats", "composite", display={"composite_template": "{formats}"}),
)


@dataclass
class DeviceCopy:
    """A file on the reader and what KOReader knows of it (statistics row and sidecar)."""

    stat_id: int
    title: str
    authors: str  # KOReader's form: names joined by newlines, or "N/A"
    content: bytes
    extension: str
    identifiers: str = ""  # the sidecar's doc_props.identifiers: "scheme:value" lines
    series: str = "N/A"


@dataclass
class Scenario:
    """A library, a device folder and a statistics file, and the match expected for each statistics book."""

    library: CalibreLibrary
    statistics_path: Path
    device_dir: Path
    calibre_books: list
    stat_books: list  # samples.statistics.Book rows of the statistics file
    sidecar_identifiers: dict  # statistics book id -> doc_props.identifiers (only books that have some)
    device_files: dict  # statistics book id -> its file on the device
    expected: dict  # statistics book id -> ExpectedMatch or None


def _export(book: CalibreBook, size: int, filler_seed: str) -> bytes:
    """What calibre/CWA serve with "embed metadata" on: the current metadata, calibre's ids included."""
    identifiers = [("calibre", str(book.id)), ("uuid", book.uuid or "")]
    identifiers += [(kind.upper() if kind == "isbn" else kind, value) for kind, value in book.identifiers.items()]
    return epub_bytes(book.title, book.authors, identifiers, size, filler_seed)


def _scenario_content(seed: int):
    """The Calibre books, the device copies and the expected match of each copy."""
    rng = random.Random(seed)

    def new_uuid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def original(title, authors, size, tag, identifiers=()) -> bytes:
        return epub_bytes(title, authors, list(identifiers), size, f"{seed}-{tag}")

    books: list[CalibreBook] = []
    copies: list[DeviceCopy] = []
    expected: dict = {}

    def add_copy(copy: DeviceCopy, match: Optional[tuple]) -> None:
        copies.append(copy)
        expected[copy.stat_id] = ExpectedMatch(*match) if match else None

    # 1 cwa_checksum: an old CWA export (embed metadata on) whose md5 CWA kept.
    left_hand = CalibreBook(
        1, "The Left Hand of Darkness", ["Ursula K. Le Guin"], uuid=new_uuid(), publisher="Ace Books",
        series=("Hainish Cycle", 4.0), tags=["Science Fiction", "Classics"], identifiers={"isbn": "9780441478125"},
        languages=["eng"], rating=10, pubdate="1969-03-01 00:00:00+00:00", has_cover=True,
        comments="<p>Genly Ai on Gethen.</p>",
        custom={"ko_status": "complete", "ko_progfloat": 1.0, "ko_progint": 100, "ko_statusbool": True,
                "ko_start": "2024-02-01 20:00:00+00:00", "ko_finish": "2024-02-20 21:30:00+00:00", "ko_rating": 8,
                "ko_review": "Ice and politics.", "genre": ["Science Fiction", "Classics"],
                "reading_order": ("Reading List", 3.5), "shelf": "Owned"},
    )
    left_hand.formats = [CalibreFormat("EPUB", original(left_hand.title, left_hand.authors, 40_000, "lhod"))]
    old_export = _export(left_hand, 40_500, f"{seed}-lhod-export-2024")
    new_export = _export(left_hand, 40_700, f"{seed}-lhod-export-2025")
    left_hand.cwa_checksums = [("EPUB", koreader_partial_md5(content))
                               for content in (left_hand.formats[0].content, old_export, new_export)]
    books.append(left_hand)
    add_copy(DeviceCopy(1, left_hand.title, "Ursula K. Le Guin", old_export, "epub"), (1, "cwa_checksum"))

    # 2 ko_md5_column: the KOReader calibre plugin wrote the device copy's md5 into #ko_md5.
    middlemarch = CalibreBook(2, "Middlemarch", ["George Eliot"], uuid=new_uuid(), languages=["eng"], rating=7,
                              pubdate="1871-12-01 00:00:00+00:00", publisher="Penguin Classics")
    middlemarch.formats = [CalibreFormat("EPUB", original(middlemarch.title, middlemarch.authors, 30_000, "mm"))]
    middlemarch_export = _export(middlemarch, 30_200, f"{seed}-mm-export")
    middlemarch.custom = {"ko_md5": koreader_partial_md5(middlemarch_export), "ko_status": "reading",
                          "ko_progfloat": 0.45, "ko_progint": 45, "ko_statusbool": False}
    books.append(middlemarch)
    add_copy(DeviceCopy(2, "Middlemarch", "George Eliot", middlemarch_export, "epub"), (2, "ko_md5_column"))

    # 3 file_md5: a byte-identical copy of the library's second format (a 1.1 MB PDF: samples up to 1 MiB).
    piranesi = CalibreBook(3, "Piranesi", ["Susanna Clarke"], uuid=new_uuid(), languages=["eng"],
                           identifiers={"isbn": "9781635575637", "goodreads": "50202953"}, rating=9)
    piranesi.formats = [CalibreFormat("EPUB", original(piranesi.title, piranesi.authors, 20_000, "pir")),
                        CalibreFormat("PDF", pdf_bytes(piranesi.title, 1_100_000, f"{seed}-pir-pdf"))]
    books.append(piranesi)
    add_copy(DeviceCopy(3, "Piranesi", "Susanna Clarke", piranesi.formats[1].content, "pdf"), (3, "file_md5"))

    # 4 file_md5 (a Syncthing copy of the book folder); data.uncompressed_size is stale.
    hail_mary = CalibreBook(4, "Project Hail Mary", ["Andy Weir"], uuid=new_uuid(), languages=["eng"],
                            tags=["Science Fiction"], pubdate="2021-05-04 00:00:00+00:00")
    hail_mary_file = original(hail_mary.title, hail_mary.authors, 70_000, "phm")
    hail_mary.formats = [CalibreFormat("EPUB", hail_mary_file, recorded_size=len(hail_mary_file) - 1231)]
    books.append(hail_mary)
    add_copy(DeviceCopy(4, "Project Hail Mary", "Andy Weir", hail_mary_file, "epub"), (4, "file_md5"))

    # 5 identifier (uuid): an export whose statistics row lacks authors, so title+authors cannot decide.
    fire = CalibreBook(5, "A Fire Upon the Deep", ["Vernor Vinge"], uuid=new_uuid(), languages=["eng"],
                       series=("Zones of Thought", 1.0))
    fire.formats = [CalibreFormat("EPUB", original(fire.title, fire.authors, 25_000, "fire"))]
    books.append(fire)
    add_copy(DeviceCopy(5, "A Fire Upon the Deep", "N/A", _export(fire, 25_300, f"{seed}-fire-export"), "epub",
                        identifiers=f"calibre:5\nuuid:{fire.uuid}"), (5, "identifier"))

    # 6, 7 two editions of Stoner: the same title and author. An isbn picks one; without it, ambiguous.
    stoner_nyrb = CalibreBook(6, "Stoner", ["John Williams"], uuid=new_uuid(), publisher="NYRB Classics",
                              identifiers={"isbn": "9781590171998"}, languages=["eng"])
    stoner_vintage = CalibreBook(7, "Stoner", ["John Williams"], uuid=new_uuid(), publisher="Vintage",
                                 identifiers={"isbn": "9780099561545"}, languages=["eng"])
    stoner_nyrb.formats = [CalibreFormat("EPUB", original("Stoner", ["John Williams"], 22_000, "stoner-nyrb"))]
    stoner_vintage.formats = [CalibreFormat("EPUB", original("Stoner", ["John Williams"], 23_000, "stoner-vin"))]
    books += [stoner_nyrb, stoner_vintage]
    add_copy(DeviceCopy(6, "Stoner", "John Williams",
                        original("Stoner", ["John Williams"], 22_400, "stoner-shop", [("ISBN", "978-1-59017-199-8")]),
                        "epub", identifiers="isbn:978-1-59017-199-8"), (6, "identifier"))
    add_copy(DeviceCopy(7, "Stoner", "John Williams", original("Stoner", ["John Williams"], 21_000, "stoner-lib"),
                        "epub"), None)

    # 8..12 title_author: copies from elsewhere, whose titles and authors differ only in form.
    title_cases = (
        (8, "The Hobbit: or There and Back Again", ["J.R.R. Tolkien"], "The Hobbit", "J. R. R. Tolkien", "N/A"),
        (9, "Moths of the Fens", ["Rooksby, Rikky"], "Moths Of The Fens", "Rikky Rooksby", "N/A"),
        (10, "Good Omens: The Nice and Accurate Prophecies of Agnes Nutter, Witch",
         ["Terry Pratchett", "Neil Gaiman"], "Good Omens", "Neil Gaiman\nTerry Pratchett", "N/A"),
        (11, "Cien años de soledad", ["Gabriel García Márquez"], "CIEN ANOS DE SOLEDAD", "Gabriel Garcia Marquez",
         "N/A"),
        (12, "Guards! Guards!", ["Terry Pratchett"], "Guards! Guards! (Discworld, #8)", "Terry Pratchett",
         "Discworld #8"),
    )
    for book_id, title, authors, ko_title, ko_authors, ko_series in title_cases:
        book = CalibreBook(book_id, title, authors, uuid=new_uuid(), languages=["eng"])
        book.formats = [CalibreFormat("EPUB", original(title, authors, 18_000 + 500 * book_id, f"b{book_id}"))]
        if book_id == 12:
            book.series = ("Discworld", 8.0)
        books.append(book)
        device_file = original(ko_title, ko_authors.split("\n"), 17_000 + 300 * book_id, f"shop-{book_id}")
        add_copy(DeviceCopy(book_id, ko_title, ko_authors, device_file, "epub", series=ko_series),
                 (book_id, "title_author"))

    # 13, 14 the same file imported twice. Its md5 alone is ambiguous; the sidecar's uuid settles one
    # copy, and the other (no identifiers, and title+authors equal in both books) stays unmatched.
    kafka_file = original("Kafka am Strand", ["Haruki Murakami"], 26_000, "kafka")
    kafka_first = CalibreBook(13, "Kafka am Strand", ["Haruki Murakami"], uuid=new_uuid(), languages=["deu"],
                              formats=[CalibreFormat("EPUB", kafka_file)])
    kafka_again = CalibreBook(14, "Kafka am Strand", ["Haruki Murakami"], uuid=new_uuid(), languages=["deu"],
                              formats=[CalibreFormat("EPUB", kafka_file)], timestamp="2024-06-01 08:00:00+00:00")
    books += [kafka_first, kafka_again]
    add_copy(DeviceCopy(13, "Kafka am Strand", "Haruki Murakami", kafka_file, "epub",
                        identifiers=f"uuid:{kafka_again.uuid}"), (14, "identifier"))
    add_copy(DeviceCopy(14, "Kafka am Strand (Taschenbuch)", "Haruki Murakami", kafka_file, "epub"), None)

    # 15 an empty TXT format: its md5 is every empty file's, so it must identify nothing.
    zauberberg = CalibreBook(15, "Der Zauberberg", ["Thomas Mann"], uuid=new_uuid(), languages=["deu"],
                             formats=[CalibreFormat("TXT", b"")], pubdate="1924-11-01 00:00:00+00:00")
    books.append(zauberberg)
    add_copy(DeviceCopy(15, "notes", "N/A", b"", "txt"), None)

    # 16 path and file name from before a title edit: only the database says where the file is.
    rosa_file = original("Der Name der Rose", ["Umberto Eco"], 24_000, "rosa")
    rosa = CalibreBook(16, "Il nome della rosa", ["Umberto Eco"], uuid=new_uuid(), languages=["ita", "deu"],
                       path="Umberto Eco/Der Name der Rose (16)",
                       formats=[CalibreFormat("EPUB", rosa_file, name="Der Name der Rose - Umberto Eco")])
    books.append(rosa)
    add_copy(DeviceCopy(16, "Der Name der Rose", "Umberto Eco", rosa_file, "epub"), (16, "file_md5"))

    # 17 a book with no format at all, found by title and authors (accents, case).
    miserables = CalibreBook(17, "Les Misérables", ["Victor Hugo"], uuid=new_uuid(), languages=["fra"], rating=0)
    books.append(miserables)
    add_copy(DeviceCopy(17, "Les Miserables", "Victor Hugo", original("Les Miserables", ["Victor Hugo"], 19_000,
                                                                       "hugo"), "epub"), (17, "title_author"))

    # Unmatched: a book the library lacks, and a title the library has with no authors to agree.
    add_copy(DeviceCopy(18, "The Dispossessed", "Ursula K. Le Guin",
                        original("The Dispossessed", ["Ursula K. Le Guin"], 21_500, "disp"), "epub"), None)
    add_copy(DeviceCopy(19, "Piranesi", "N/A", original("Piranesi", [], 20_500, "pir-other"), "epub"), None)
    return books, copies, expected


def _lua_string(text: str) -> str:
    """A Lua string literal as KOReader's dump (``%q``) writes it: a newline becomes backslash-newline."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\0", "\\0")
    return '"' + escaped.replace("\n", "\\\n") + '"'


def sidecar_path(book_file: Path) -> Path:
    """Where KOReader keeps a book's sidecar by default: ``<name>.sdr/metadata.<ext>.lua`` beside it."""
    return book_file.with_suffix(".sdr") / f"metadata{book_file.suffix}.lua"


def write_sidecar(book_file: Path, copy: DeviceCopy, md5: str) -> None:
    """Write the parts of KOReader's sidecar the matching needs: doc_props and the partial md5."""
    sidecar = sidecar_path(book_file)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    authors = "" if copy.authors == "N/A" else copy.authors
    props = {"authors": authors, "identifiers": copy.identifiers, "title": copy.title}
    lines = ["-- " + str(book_file), "return {", '    ["doc_props"] = {']
    lines += [f'        ["{key}"] = {_lua_string(value)},' for key, value in sorted(props.items())]
    lines += ["    },", f'    ["partial_md5_checksum"] = "{md5}",', "}", ""]
    sidecar.write_text("\n".join(lines), encoding="utf-8")


def build_scenario(
    directory,
    *,
    seed: int = 1,
    user_version: int = CURRENT_SCHEMA_VERSION,
    wal: bool = False,
    split: bool = False,
    days: int = 30,
) -> Scenario:
    """Write a library, a device folder and a statistics file under ``directory``.

    Layout: ``library/`` (or ``library/`` + ``books/`` with ``split=True``), ``device/`` and
    ``statistics.sqlite3``. Every statistics book's md5 is KOReader's partial md5 of its file
    in ``device/``. ``Scenario.expected`` says, for each statistics book, which Calibre book
    the rules should find and by which rule (``RULES``), or None when nothing may be matched.
    """
    directory = Path(directory)
    books, copies, expected = _scenario_content(seed)
    library = write_calibre_library(
        directory / "library", books, custom_columns=SCENARIO_COLUMNS, user_version=user_version, wal=wal,
        split_books_dir=directory / "books" if split else None, seed=seed,
    )
    device_dir = directory / "device"
    stat_books, device_files, sidecar_identifiers = [], {}, {}
    for copy in copies:
        device_file = device_dir / f"{copy.stat_id:02d} {ascii_filename(copy.title)}.{copy.extension}"
        device_file.parent.mkdir(parents=True, exist_ok=True)
        device_file.write_bytes(copy.content)
        md5 = koreader_partial_md5(copy.content)
        write_sidecar(device_file, copy, md5)
        device_files[copy.stat_id] = device_file
        if copy.identifiers:
            sidecar_identifiers[copy.stat_id] = copy.identifiers
        stat_books.append(Book(id=copy.stat_id, title=copy.title, authors=copy.authors, pages=200 + copy.stat_id,
                               md5=md5, series=copy.series, language="en"))
    page_rows = simulate_reading(stat_books, days, random.Random(seed))
    statistics_path = write_statistics_file(directory / "statistics.sqlite3", stat_books, page_rows)
    return Scenario(library, statistics_path, device_dir, books, stat_books, sidecar_identifiers, device_files,
                    expected)


DEMO_PUBLISHERS = ("Penguin Classics", "Vintage", "Ace Books", "Gollancz", "NYRB Classics")
DEMO_TAGS = ("Fiction", "Classics", "Science Fiction", "Fantasy", "History", "Philosophy")


def library_for_statistics(directory, stats_db, seed: int = 1) -> CalibreLibrary:
    """A library holding the books of a statistics file, with publishers, tags and series: every other
    book carries CWA's checksum of the device copy (matched exactly), the rest match by title and authors."""
    rng = random.Random(seed)
    conn = sqlite3.connect(f"file:{stats_db}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT id, title, authors, md5 FROM book ORDER BY id").fetchall()
    finally:
        conn.close()
    books = []
    for number, (stat_id, title, authors, md5) in enumerate(rows, 1):
        names = [name for name in (authors or "").split("\n") if name and name != "N/A"] or ["Unknown"]
        books.append(CalibreBook(
            number, title, names, publisher=rng.choice(DEMO_PUBLISHERS), tags=rng.sample(DEMO_TAGS, 2),
            identifiers={"isbn": f"978{rng.randrange(10**9, 10**10)}"}, languages=["eng"],
            rating=rng.choice([6, 8, 10]),
            pubdate=f"{rng.randrange(1850, 2024)}-01-01 00:00:00+00:00",
            cwa_checksums=[("EPUB", md5)] if md5 and stat_id % 2 else [],
        ))
    return write_calibre_library(directory, books, seed=seed)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write an invented Calibre library, device and statistics file.")
    parser.add_argument("outdir")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--user-version", type=int, choices=SCHEMA_VERSIONS, default=CURRENT_SCHEMA_VERSION)
    parser.add_argument("--wal", action="store_true", help="leave metadata.db in WAL mode, as CWA does")
    parser.add_argument("--split", action="store_true", help="keep the book folders apart from metadata.db")
    parser.add_argument("--for-stats", metavar="FILE",
                        help="write only a library holding the books of this statistics file (the quick start)")
    args = parser.parse_args(argv)
    if args.for_stats:
        library = library_for_statistics(args.outdir, args.for_stats, seed=args.seed)
        print(f"library:    {library.metadata_db}")
        return 0
    scenario = build_scenario(args.outdir, seed=args.seed, user_version=args.user_version, wal=args.wal,
                              split=args.split)
    print(f"library:    {scenario.library.metadata_db} (books in {scenario.library.books_dir})")
    print(f"device:     {scenario.device_dir}")
    print(f"statistics: {scenario.statistics_path}")
    for stat_id, match in sorted(scenario.expected.items()):
        print(f"  statistics book {stat_id:2d} -> {tuple(match) if match else None}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
