"""Book matching, pure: identifiers, ISBN forms, comparable titles and author names, and the rules, in
order, that decide which warehouse book a source's book is. No I/O."""

import operator
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from bookhelper.core import Book

if TYPE_CHECKING:  # the matcher reads a library; it never imports a source
    from bookhelper.calibre import CalibreLibrary


@dataclass(frozen=True)
class ReaderBook:
    """A row of the reader's books that no book of the job holds yet: a candidate for a new book."""

    book_id: int
    title: str
    first_author: Optional[str]
    file_hash: Optional[str]
    isbns: tuple[str, ...]


def match_reader_books(new_books: Iterable[Book], rows: Iterable[ReaderBook],
                       isbns_of_key: dict[str, set[str]]) -> dict[str, tuple[int, str]]:
    """book_key -> (book_id, rule) of the reader's row each new book is, by the first rule that finds exactly
    one row no other new book took: the same file hash, an ISBN Calibre gives the book, then the same
    normalised title and first author (a row the enrichment job created first)."""
    rows = list(rows)
    titles = {row.book_id: row.title for row in rows}
    by_rule: dict[str, dict] = {"file_hash": {}, "isbn": {}, "author": {}}
    for row in rows:
        keys = {"file_hash": [row.file_hash], "isbn": [isbn_key(i) for i in row.isbns],
                "author": [normalise_author(row.first_author) if row.first_author else None]}
        for rule, values in keys.items():
            for value in values:
                if value:
                    by_rule[rule].setdefault(value, set()).add(row.book_id)
    matches: dict[str, tuple[int, str]] = {}
    for book in sorted(new_books, key=operator.attrgetter("book_key")):
        first_author = normalise_author(book.authors[0]) if book.authors else ""
        same_author = by_rule["author"].get(first_author, set()) if first_author and book.title else set()
        wanted = {"file_hash": by_rule["file_hash"].get(book.file_hash, set()),
                  "isbn": set().union(*(by_rule["isbn"].get(isbn_key(i), set())
                                        for i in isbns_of_key.get(book.book_key, ()))),
                  "title_author": {book_id for book_id in same_author if titles_agree(book.title, titles[book_id])}}
        taken = {book_id for book_id, _rule in matches.values()}
        for rule, candidates in wanted.items():
            found = candidates - taken
            if len(found) == 1:
                matches[book.book_key] = (found.pop(), rule)
                break
    return matches


def parse_identifier(text: str) -> tuple[str, str]:
    """(scheme, value) of ``scheme:value``; ``urn:uuid:…`` and ``urn:isbn:…`` count as uuid and isbn."""
    text = text.strip()
    if text.lower().startswith("urn:"):
        text = text[4:]
    scheme, _sep, value = text.partition(":")
    return scheme.strip().lower(), value.strip()


# Matching a warehouse book to a Calibre book: comparable titles and author names.
SAME_CHARACTERS = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
})


LATIN_ACCENTS = re.compile("[\u0300-\u036f]")  # not every combining mark: kana voicing marks carry meaning
TRAILING_BRACKETS = re.compile(r"\s*[(\[{][^()\[\]{}]*[)\]}]\s*$")
LEADING_ARTICLE = re.compile(r"^(the|a|an) ")
SUBTITLE = re.compile(r"\s*:\s*|\s+-\s+")
NAME_SUFFIX = re.compile(r"(jr|sr|ii|iii|iv)\.?", re.IGNORECASE)
MATCH_RULES = ("cwa_checksum", "ko_md5_column", "file_md5", "identifier", "title_author")


def normalise_text(text: str) -> str:
    """NFKC, one kind of quote and dash, ``&`` as "and", case-folded, Latin accents and punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).translate(SAME_CHARACTERS).replace("&", " and ")
    text = LATIN_ACCENTS.sub("", unicodedata.normalize("NFKD", text.casefold()))
    text = unicodedata.normalize("NFC", text).replace("'", "")  # "Alice's" -> "alices"
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def title_forms(text: str) -> tuple[str, str]:
    """(full title, main title before ``:`` or `` - ``), normalised, without a series or edition suffix in
    brackets ("Guards! Guards! (Discworld, #8)") or a leading English article."""
    text = text.translate(SAME_CHARACTERS).strip()
    while True:
        suffix = TRAILING_BRACKETS.search(text)
        if not suffix or suffix.start() == 0:
            break
        text = text[:suffix.start()]
    full, main = (LEADING_ARTICLE.sub("", normalise_text(part)) for part in (text, SUBTITLE.split(text, 1)[0]))
    return full, main


def titles_agree(one: str, other: str) -> bool:
    """The same full title, or one is the other's main title; two different subtitles do not agree."""
    full_one, main_one = title_forms(one)
    full_other, main_other = title_forms(other)
    return bool(full_one and full_other) and (full_one in (full_other, main_other) or main_one == full_other)


def normalise_author(name: str) -> str:
    """A comparable author name: calibre's "Le Guin, Ursula K." equals KOReader's "Ursula K. Le Guin"."""
    name = name.replace("|", ",").strip()
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        if first and last and not NAME_SUFFIX.fullmatch(first):
            name = f"{first} {last}"
    return normalise_text(name)


def isbn_digits(value: str) -> str:
    """An ISBN as written, without hyphens, spaces or anything but its digits and check character."""
    return re.sub(r"[^0-9X]", "", value.upper())


def isbn_key(value: str) -> Optional[str]:
    """The digits of an ISBN; a valid ISBN-10 as its ISBN-13, so both forms meet."""
    digits = isbn_digits(value)
    checksum = sum((10 - i) * (10 if d == "X" else int(d)) for i, d in enumerate(digits)) if len(digits) == 10 else 1
    if digits[:9].isdigit() and checksum % 11 == 0:
        body = "978" + digits[:9]
        return body + str(-sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10)
    return digits or None


def isbn_columns(value: str) -> tuple[Optional[str], Optional[str]]:
    """An ISBN as the reader's books.isbn_13 and isbn_10 hold it: digits only, each form where it has one."""
    digits = isbn_digits(value)
    isbn_13 = isbn_key(value)
    return (isbn_13 if isbn_13 and len(isbn_13) == 13 and isbn_13.isdigit() else None,
            digits if len(digits) == 10 and isbn_13 != digits else None)


def identifier_key(scheme: str, value: str) -> Optional[tuple[str, str]]:
    """A key that two spellings of one identifier share (ISBN-10 and -13, case)."""
    if scheme == "calibre":  # a calibre id holds only in the library that wrote it
        return None
    if scheme == "isbn":
        isbn = isbn_key(value)
        return ("isbn", isbn) if isbn else None
    return (scheme, value.strip().lower())


@dataclass(frozen=True)
class WarehouseBook:
    """A warehouse book as the matcher sees it, with the identifiers its sidecars hold."""

    book_id: int
    title: Optional[str]
    authors: tuple[str, ...]
    file_hash: Optional[str]
    identifiers: tuple[str, ...]  # "scheme:value"


def match_calibre_books(books: Iterable[WarehouseBook], library: "CalibreLibrary",
                        file_md5s: dict[int, set[str]]) -> dict[int, tuple[int, str]]:
    """book_id -> (calibre id, rule), by the first rule that finds exactly one Calibre book.

    Rules, in order: an md5 the library holds (CWA's checksums, then a #ko_md5 column), the partial md5 of
    a format file on disk, the sidecar's identifiers (uuid first, then isbn and others), then title and
    authors. A rule that finds several books decides nothing but narrows the candidates of the next, so a
    weaker rule never picks a book a stronger one ruled out; a book no rule decides stays unmatched.
    """
    def index(pairs) -> dict:
        found: dict = {}
        for key, calibre_id in pairs:
            if key:
                found.setdefault(key, set()).add(calibre_id)
        return found

    by_md5 = {
        "cwa_checksum": index((md5, calibre_id) for calibre_id, md5 in library.cwa_checksums),
        "ko_md5_column": index((book.ko_md5, book.calibre_id) for book in library.books.values()),
        "file_md5": index((md5, calibre_id) for calibre_id, md5s in file_md5s.items() for md5 in md5s),
    }
    by_uuid = index(((book.uuid or "").lower(), book.calibre_id) for book in library.books.values())
    by_identifier = index((identifier_key(scheme, value), book.calibre_id)
                          for book in library.books.values() for scheme, value in book.identifiers)
    by_authors = index((frozenset(normalise_author(a) for a in book.authors) - {""}, book.calibre_id)
                       for book in library.books.values())

    def hits(rule: str, book: WarehouseBook) -> set:
        if rule in by_md5:
            return by_md5[rule].get(book.file_hash, set()) if book.file_hash else set()
        pairs = [parse_identifier(text) for text in book.identifiers]
        if rule == "identifier":
            uuids = set().union(*(by_uuid.get(value.lower(), set()) for scheme, value in pairs if scheme == "uuid"))
            return uuids or set().union(*(by_identifier.get(identifier_key(s, v), set()) for s, v in pairs
                                          if s != "uuid"))
        authors = frozenset(normalise_author(a) for a in book.authors) - {""}
        return {calibre_id for calibre_id in by_authors.get(authors, ()) if book.title and authors
                and titles_agree(book.title, library.books[calibre_id].title)}

    matches = {}
    for book in books:
        candidates: Optional[set] = None
        for rule in MATCH_RULES:
            found = hits(rule, book) if candidates is None else hits(rule, book) & candidates
            if len(found) == 1:
                matches[book.book_id] = (found.pop(), rule)
                break
            candidates = found or candidates
    return matches


# Amazon's exports: a Kindle book by its store ASIN, an audiobook by its title and first author.
ASIN = re.compile(r"[A-Z0-9]{10}")
# Calibre's amazon identifiers first; books.asin; then mobi-asin, which calibre's MOBI writer may fill with
# the book's uuid or a random value (only an ASIN-shaped one counts).
ASIN_RULES = ("calibre_amazon", "books_asin", "calibre_mobi_asin")
AUDIOBOOK_SUFFIX = re.compile(r"\s*\((?:unabridged|abridged|dramati[sz]ed)\b[^()]*\)\s*$", re.IGNORECASE)


def asin_key(value: Optional[str]) -> Optional[str]:
    """A store ASIN, trimmed and upper-cased: ten letters or digits, else None."""
    key = (value or "").strip().upper()
    return key if ASIN.fullmatch(key) else None


def asin_rule(scheme: str) -> Optional[str]:
    """The rule under which a Calibre identifier scheme names a Kindle ASIN (``amazon``, ``amazon_de``, ...)."""
    scheme = scheme.strip().lower()
    if scheme == "amazon" or scheme.startswith("amazon_"):
        return "calibre_amazon"
    return "calibre_mobi_asin" if scheme == "mobi-asin" else None


@dataclass(frozen=True)
class AsinHolder:
    """A warehouse book that holds an ASIN, and under which rule (ASIN_RULES)."""

    book_id: int
    rule: str
    asin: str


def match_asins(asins: Iterable[str], holders: Iterable[AsinHolder]) -> dict[str, tuple[int, str]]:
    """ASIN -> (book_id, rule): the first rule under which exactly one warehouse book holds the ASIN.
    Several books under one rule decide nothing there (the next rule may); none: the ASIN has no book yet."""
    held: dict[tuple[str, str], set[int]] = {}
    for holder in holders:
        key = asin_key(holder.asin)
        if key:
            held.setdefault((holder.rule, key), set()).add(holder.book_id)
    matches = {}
    for asin in asins:
        for rule in ASIN_RULES:
            found = held.get((rule, asin), set())
            if len(found) == 1:
                matches[asin] = (next(iter(found)), rule)
                break
    return matches


def audiobook_title(name: str) -> str:
    """An audiobook's title without Audible's `` (Unabridged)`` and the like."""
    return AUDIOBOOK_SUFFIX.sub("", name).strip()


def titled_books(rows: Iterable[Sequence]) -> list[WarehouseBook]:
    """(book_id, title, first author) rows (schema.titled_books_json) as the matcher's books."""
    return [WarehouseBook(book_id, title, (author,) if author else (), None, ()) for book_id, title, author in rows]


def match_title_author(titles: Iterable[tuple[str, str, Optional[str]]],
                       books: Iterable[WarehouseBook]) -> dict[str, int]:
    """key -> book_id for (key, title, first author) of an export's book: the one warehouse book whose first
    author is the same and whose title agrees (an audiobook's without Audible's `` (Unabridged)``): how an
    audiobook finds its ebook (an Audible ASIN never equals an ebook's), and a Kindle book no ASIN places.
    No candidate or several: none."""
    by_author: dict[str, list[WarehouseBook]] = {}
    for book in books:
        if book.authors and book.title:
            by_author.setdefault(normalise_author(book.authors[0]), []).append(book)
    matches = {}
    for key, title, first_author in titles:
        author = normalise_author(first_author) if first_author else ""
        found = {book.book_id for book in by_author.get(author, ()) if author and title
                 and titles_agree(audiobook_title(title), book.title)}
        if len(found) == 1:
            matches[key] = found.pop()
    return matches
