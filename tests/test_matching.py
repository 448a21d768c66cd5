"""bookhelper.matching on its own, without a database or files: comparable titles and author names, ISBN and
identifier forms, and the rules, in order, by which a warehouse book finds its Calibre book and a new book its
reader's row."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bookhelper.calibre import CalibreBook, CalibreLibrary
from bookhelper.core import Book
from bookhelper.matching import (
    MATCH_RULES,
    ReaderBook,
    WarehouseBook,
    identifier_key,
    isbn_columns,
    isbn_digits,
    isbn_key,
    match_calibre_books,
    match_reader_books,
    normalise_author,
    normalise_text,
    parse_identifier,
    title_forms,
    titles_agree,
)

ISBN_10 = "0306406152"
ISBN_13 = "9780306406157"


def calibre_book(calibre_id, title="", authors=(), uuid=None, identifiers=(), ko_md5=None):
    return CalibreBook(calibre_id=calibre_id, uuid=uuid, title=title, authors=tuple(authors), publisher=None,
                       published_on=None, series=None, series_index=None, languages=(), rating=None, tags=(),
                       identifiers=tuple(identifiers), formats=(), ko_md5=ko_md5, ko_status=None)


def library(*books, cwa_checksums=()):
    return CalibreLibrary(books={book.calibre_id: book for book in books}, cwa_checksums=tuple(cwa_checksums),
                          fingerprint="test")


def warehouse_book(book_id, title=None, authors=(), file_hash=None, identifiers=()):
    return WarehouseBook(book_id=book_id, title=title, authors=tuple(authors), file_hash=file_hash,
                         identifiers=tuple(identifiers))


def new_book(book_key, title=None, authors=(), file_hash=None):
    return Book(book_key=book_key, title=title, authors=tuple(authors), file_hash=file_hash, series=None,
                language=None, page_count=None, last_open=None)


def reader_row(book_id, title, first_author=None, file_hash=None, isbns=()):
    return ReaderBook(book_id=book_id, title=title, first_author=first_author, file_hash=file_hash,
                      isbns=tuple(isbns))


# normalise_text


@pytest.mark.parametrize(("text", "expected"), [
    ("Don\u2019t Panic", "dont panic"),
    ("Don't Panic", "dont panic"),
    ("Don`t Panic", "dont panic"),
    ("\u201cQuoted\u201d", "quoted"),
    ("War \u2014 Peace", "war peace"),
    ("War \u2013 Peace", "war peace"),
    ("Pride & Prejudice", "pride and prejudice"),
    ("Rock&Roll", "rock and roll"),
    ("THE HOBBIT", "the hobbit"),
    ("Café Noël", "cafe noel"),
    ("Straße", "strasse"),
    ("\ufb01ne", "fine"),
    ("Guards! Guards! (Discworld, #8)", "guards guards discworld 8"),
    ("  a \t b  ", "a b"),
    ("", ""),
])
def test_normalise_text(text, expected):
    assert normalise_text(text) == expected


def test_normalise_text_keeps_kana_voicing():
    assert normalise_text("が") == "が"
    assert normalise_text("か") == "か"
    assert normalise_text("か\u3099") == "が"  # decomposed voicing is recomposed, not dropped
    assert normalise_text("\uff76\uff9e") == "ガ"  # half-width katakana become full-width


# title_forms


@pytest.mark.parametrize(("title", "expected"), [
    ("Guards! Guards! (Discworld, #8)", ("guards guards", "guards guards")),
    ("Title (Series) [Edition]", ("title", "title")),
    ("(Discworld)", ("discworld", "discworld")),
    ("The Hobbit", ("hobbit", "hobbit")),
    ("A Wizard of Earthsea", ("wizard of earthsea", "wizard of earthsea")),
    ("An Instance of the Fingerpost", ("instance of the fingerpost", "instance of the fingerpost")),
    ("Theory of Everything", ("theory of everything", "theory of everything")),
    ("Dune: Messiah", ("dune messiah", "dune")),
    ("Foo - Bar", ("foo bar", "foo")),
    ("Foo \u2013 Bar", ("foo bar", "foo")),
    ("Foo-Bar", ("foo bar", "foo bar")),
    ("The Name of the Wind: The Kingkiller Chronicle (Book 1)",
     ("name of the wind the kingkiller chronicle", "name of the wind")),
    ("", ("", "")),
])
def test_title_forms(title, expected):
    assert title_forms(title) == expected


# titles_agree


@pytest.mark.parametrize(("one", "other"), [
    ("Don\u2019t Panic", "Don't Panic"),
    ("Foo \u2014 Bar", "Foo - Bar"),
    ("Pride & Prejudice", "Pride and Prejudice"),
    ("THE HOBBIT", "the hobbit"),
    ("Café", "Cafe"),
    ("Guards! Guards! (Discworld, #8)", "Guards! Guards!"),
    ("The Hobbit", "Hobbit"),
    ("Dune: Messiah", "Dune"),
    ("Dune", "Dune: Messiah"),
    ("Foo - Bar", "Foo"),
])
def test_titles_agree(one, other):
    assert titles_agree(one, other) is True


@pytest.mark.parametrize(("one", "other"), [
    ("かがみ", "かかみ"),
    ("ガラス", "カラス"),
    ("Dune: Messiah", "Dune: Children"),
    ("Foo - Bar", "Foo - Baz"),
    ("Dune", "Dune Messiah"),
    ("", ""),
    ("", "Dune"),
    ("Dune", ""),
    ("   ", "   "),
    ("", ": Foo"),
])
def test_titles_disagree(one, other):
    assert titles_agree(one, other) is False


def test_an_empty_main_title_does_not_agree_with_an_empty_title():
    assert titles_agree(": Foo", "") is False


# normalise_author


@pytest.mark.parametrize(("name", "expected"), [
    ("Le Guin, Ursula K.", "ursula k le guin"),
    ("Ursula K. Le Guin", "ursula k le guin"),
    ("Le Guin|Ursula K.", "ursula k le guin"),
    ("Le Guin| Ursula K.", "ursula k le guin"),
    ("Brontë, Charlotte", "charlotte bronte"),
    ("King, Jr.", "king jr"),
    ("Sammy Davis, Jr.", "sammy davis jr"),
    ("Smith, sr", "smith sr"),
    ("Gates, III", "gates iii"),
    ("Gates|IV", "gates iv"),
    ("", ""),
])
def test_normalise_author(name, expected):
    assert normalise_author(name) == expected


def test_author_sort_form_equals_display_form():
    assert normalise_author("Le Guin, Ursula K.") == normalise_author("Ursula K. Le Guin")
    assert normalise_author("Le Guin|Ursula K.") == normalise_author("Ursula K. Le Guin")


# isbn_digits, isbn_key, isbn_columns


@pytest.mark.parametrize(("value", "expected"), [
    ("0-306-40615-2", ISBN_10),
    ("0 306 40615 2", ISBN_10),
    ("978-0-306-40615-7", ISBN_13),
    ("0-8044-2957-x", "080442957X"),
    ("abc", ""),
    ("", ""),
])
def test_isbn_digits(value, expected):
    assert isbn_digits(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("0-306-40615-2", ISBN_13),
    ("0 306 40615 2", ISBN_13),
    (ISBN_10, ISBN_13),
    ("978-0-306-40615-7", ISBN_13),
    (ISBN_13, ISBN_13),
    ("080442957X", "9780804429573"),
    ("0-8044-2957-x", "9780804429573"),
    ("979-10-90636-07-1", "9791090636071"),
    ("0306406153", "0306406153"),  # a wrong check digit: not an ISBN-10, kept as written
    ("03064X6152", "03064X6152"),  # an X before the check digit
    ("123", "123"),
    ("", None),
    ("--", None),
])
def test_isbn_key(value, expected):
    assert isbn_key(value) == expected


def test_isbn_10_and_its_isbn_13_share_a_key():
    assert isbn_key("0-306-40615-2") == isbn_key("978 0 306 40615 7") == ISBN_13


@pytest.mark.parametrize(("value", "expected"), [
    ("0-306-40615-2", (ISBN_13, ISBN_10)),
    ("978-0-306-40615-7", (ISBN_13, None)),
    ("0-8044-2957-x", ("9780804429573", "080442957X")),
    ("979-10-90636-07-1", ("9791090636071", None)),
    ("0306406153", (None, None)),
    ("123", (None, None)),
    ("", (None, None)),
])
def test_isbn_columns(value, expected):
    assert isbn_columns(value) == expected


def isbn_10_check(digits):
    total = sum((10 - i) * int(d) for i, d in enumerate(digits))
    check = (11 - total % 11) % 11
    return "X" if check == 10 else str(check)


def isbn_13_check(digits):
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits))
    return str((10 - total % 10) % 10)


def test_the_check_digit_helpers_agree_with_known_isbns():
    assert isbn_10_check("030640615") == "2"
    assert isbn_10_check("080442957") == "X"
    assert isbn_13_check("978030640615") == "7"


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_any_isbn_10_and_its_isbn_13_meet(body):
    isbn_10 = body + isbn_10_check(body)
    isbn_13 = "978" + body + isbn_13_check("978" + body)
    hyphenated = f"{isbn_10[0]}-{isbn_10[1:4]}-{isbn_10[4:9]}-{isbn_10[9].lower()}"

    assert isbn_key(isbn_10) == isbn_key(isbn_13) == isbn_key(hyphenated) == isbn_13
    assert isbn_columns(isbn_10) == (isbn_13, isbn_10)
    assert isbn_columns(hyphenated) == (isbn_13, isbn_10)
    assert isbn_columns(isbn_13) == (isbn_13, None)


# identifier_key, parse_identifier


@pytest.mark.parametrize(("scheme", "value", "expected"), [
    ("calibre", "12", None),
    ("isbn", "0-306-40615-2", ("isbn", ISBN_13)),
    ("isbn", "978-0-306-40615-7", ("isbn", ISBN_13)),
    ("isbn", "0306406153", ("isbn", "0306406153")),
    ("isbn", "--", None),
    ("isbn", "", None),
    ("asin", " B00ABC ", ("asin", "b00abc")),
    ("uuid", "6F2E-AB", ("uuid", "6f2e-ab")),
])
def test_identifier_key(scheme, value, expected):
    assert identifier_key(scheme, value) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("urn:isbn:0-306-40615-2", ("isbn", "0-306-40615-2")),
    ("URN:ISBN:978-0-306-40615-7", ("isbn", "978-0-306-40615-7")),
    ("urn:uuid:6F2E-AB", ("uuid", "6F2E-AB")),
    ("ISBN:0306406152", ("isbn", "0306406152")),
    (" isbn : 123 ", ("isbn", "123")),
    ("uuid:abc", ("uuid", "abc")),
    ("calibre:12", ("calibre", "12")),
    ("amazon:B00:X", ("amazon", "B00:X")),
    ("noscheme", ("noscheme", "")),
    ("", ("", "")),
])
def test_parse_identifier(text, expected):
    assert parse_identifier(text) == expected


def test_spellings_of_one_isbn_share_an_identifier_key():
    keys = {identifier_key(*parse_identifier(text))
            for text in ("urn:isbn:0-306-40615-2", "ISBN:978-0-306-40615-7", "isbn:0306406152")}
    assert keys == {("isbn", ISBN_13)}


# match_calibre_books


def test_the_rules_and_their_order():
    assert MATCH_RULES == ("cwa_checksum", "ko_md5_column", "file_md5", "identifier", "title_author")


def test_each_rule_matches_on_its_own():
    lib = library(
        calibre_book(1, "One", ["Author One"]),
        calibre_book(2, "Two", ["Author Two"], ko_md5="md5-2"),
        calibre_book(3, "Three", ["Author Three"]),
        calibre_book(4, "Four", ["Author Four"], identifiers=[("isbn", ISBN_13)]),
        calibre_book(5, "The Left Hand of Darkness", ["Ursula K. Le Guin"]),
        cwa_checksums=[(1, "md5-1")],
    )
    books = [
        warehouse_book(10, file_hash="md5-1"),
        warehouse_book(11, file_hash="md5-2"),
        warehouse_book(12, file_hash="md5-3"),
        warehouse_book(13, identifiers=["urn:isbn:0-306-40615-2"]),
        warehouse_book(14, "Left Hand of Darkness (Hainish Cycle, #4)", ["Le Guin, Ursula K."]),
        warehouse_book(15, "Unknown", ["Nobody"], file_hash="md5-9", identifiers=["isbn:9780804429573"]),
    ]

    assert match_calibre_books(books, lib, {3: {"md5-3"}}) == {
        10: (1, "cwa_checksum"),
        11: (2, "ko_md5_column"),
        12: (3, "file_md5"),
        13: (4, "identifier"),
        14: (5, "title_author"),
    }


@pytest.mark.parametrize("first", range(len(MATCH_RULES)))
def test_a_stronger_rule_wins_over_a_weaker_one(first):
    """Each rule points at a different Calibre book (rule i at book i + 1); only rules from ``first`` on hold."""
    holds = set(MATCH_RULES[first:])
    lib = library(
        calibre_book(1, "One", ["Author One"]),
        calibre_book(2, "Two", ["Author Two"], ko_md5="h" if "ko_md5_column" in holds else None),
        calibre_book(3, "Three", ["Author Three"]),
        calibre_book(4, "Four", ["Author Four"], identifiers=[("isbn", ISBN_13)] if "identifier" in holds else []),
        calibre_book(5, "Dune" if "title_author" in holds else "Five", ["Frank Herbert"]),
        cwa_checksums=[(1, "h")] if "cwa_checksum" in holds else [],
    )
    file_md5s = {3: {"h"}} if "file_md5" in holds else {}
    book = warehouse_book(7, "Dune", ["Frank Herbert"], file_hash="h", identifiers=["isbn:" + ISBN_10])

    assert match_calibre_books([book], lib, file_md5s) == {7: (first + 1, MATCH_RULES[first])}


def test_a_weaker_rule_never_picks_a_book_a_stronger_one_ruled_out():
    lib = library(
        calibre_book(1, "One", ["Author One"]),
        calibre_book(2, "Two", ["Author Two"]),
        calibre_book(3, "Dune", ["Frank Herbert"], identifiers=[("isbn", ISBN_13)]),
        cwa_checksums=[(1, "h"), (2, "h")],
    )
    book = warehouse_book(7, "Dune", ["Frank Herbert"], file_hash="h", identifiers=["isbn:" + ISBN_13])

    assert match_calibre_books([book], lib, {}) == {}


def test_a_rule_with_several_candidates_narrows_the_next():
    lib = library(
        calibre_book(1, "Dune", ["Frank Herbert"]),
        calibre_book(2, "Two", ["Author Two"], identifiers=[("isbn", ISBN_13)]),
        calibre_book(3, "Dune", ["Frank Herbert"], identifiers=[("isbn", ISBN_13)]),
        calibre_book(4, "Four", ["Author Four"], identifiers=[("isbn", ISBN_13)]),
        cwa_checksums=[(1, "h"), (2, "h"), (3, "h")],
    )
    with_isbn = warehouse_book(7, "Dune", ["Frank Herbert"], file_hash="h", identifiers=["isbn:" + ISBN_10])
    without_isbn = warehouse_book(8, "Dune", ["Frank Herbert"], file_hash="h")

    # cwa_checksum finds {1, 2, 3}; the isbn narrows them to {2, 3}; title_author then finds {1, 3} & {2, 3}
    assert match_calibre_books([with_isbn, without_isbn], lib, {}) == {7: (3, "title_author")}


def test_narrowed_candidates_survive_rules_that_find_nothing():
    lib = library(
        calibre_book(1, "One", ["Author One"]),
        calibre_book(2, "Dune", ["Frank Herbert"]),
        calibre_book(3, "Dune", ["Frank Herbert"]),
        cwa_checksums=[(1, "h"), (2, "h")],
    )
    book = warehouse_book(7, "Dune", ["Frank Herbert"], file_hash="h", identifiers=["isbn:" + ISBN_13])

    assert match_calibre_books([book], lib, {}) == {7: (2, "title_author")}


def test_an_identifier_uuid_beats_an_isbn():
    lib = library(
        calibre_book(1, "One", ["Author One"], identifiers=[("isbn", ISBN_13)]),
        calibre_book(2, "Two", ["Author Two"], uuid="6f2e-ab"),
    )
    books = [
        warehouse_book(7, identifiers=["urn:isbn:" + ISBN_10, "urn:uuid:6F2E-AB"]),
        warehouse_book(8, identifiers=["urn:isbn:" + ISBN_10, "urn:uuid:0000-00"]),
    ]

    assert match_calibre_books(books, lib, {}) == {7: (2, "identifier"), 8: (1, "identifier")}


def test_other_identifiers_match_case_insensitively_but_calibre_ids_never():
    lib = library(
        calibre_book(1, "One", ["Author One"], identifiers=[("asin", "b00abc")]),
        calibre_book(2, "Two", ["Author Two"], identifiers=[("calibre", "2")]),
    )
    books = [warehouse_book(7, identifiers=["ASIN:B00ABC"]), warehouse_book(8, identifiers=["calibre:2"])]

    assert match_calibre_books(books, lib, {}) == {7: (1, "identifier")}


def test_an_ambiguous_book_stays_unmatched():
    lib = library(
        calibre_book(1, "Dune", ["Frank Herbert"], identifiers=[("isbn", ISBN_13)]),
        calibre_book(2, "Dune", ["Frank Herbert"], identifiers=[("isbn", ISBN_13)]),
        calibre_book(3, "Emma", ["Jane Austen"], ko_md5="h"),
        calibre_book(4, "Persuasion", ["Jane Austen"], ko_md5="h"),
    )
    books = [
        warehouse_book(7, "Dune", ["Frank Herbert"], identifiers=["isbn:" + ISBN_10]),
        warehouse_book(8, "Sense and Sensibility", ["Jane Austen"], file_hash="h"),
    ]

    assert match_calibre_books(books, lib, {}) == {}


def test_title_author_needs_a_title_and_authors():
    lib = library(
        calibre_book(1, "Dune", ["Frank Herbert"]),
        calibre_book(2, "Untitled", []),
    )
    books = [
        warehouse_book(7, None, ["Frank Herbert"]),
        warehouse_book(8, "", ["Frank Herbert"]),
        warehouse_book(9, "Untitled", []),
        warehouse_book(10, "Untitled", [""]),
    ]

    assert match_calibre_books(books, lib, {}) == {}


def test_title_author_compares_normalised_titles_and_the_set_of_authors():
    lib = library(
        calibre_book(1, "Good Omens", ["Neil Gaiman", "Terry Pratchett"]),
        calibre_book(2, "Guards! Guards!", ["Terry Pratchett"]),
    )
    books = [
        warehouse_book(7, "Good Omens: The Nice and Accurate Prophecies", ["Pratchett, Terry", "Gaiman, Neil"]),
        warehouse_book(8, "Good Omens", ["Terry Pratchett"]),
        warehouse_book(9, "GUARDS! GUARDS! (Discworld, #8)", ["Pratchett|Terry"]),
    ]

    assert match_calibre_books(books, lib, {}) == {7: (1, "title_author"), 9: (2, "title_author")}


def test_a_missing_hash_matches_no_missing_md5():
    lib = library(calibre_book(1, "One", ["Author One"], ko_md5=None))

    assert match_calibre_books([warehouse_book(7, file_hash=None)], lib, {1: set()}) == {}


def test_an_empty_uuid_matches_no_book_without_one():
    lib = library(calibre_book(1, "One", ["Author One"], uuid=None), calibre_book(2, "Two", ["Author Two"], uuid="u"))

    assert match_calibre_books([warehouse_book(7, identifiers=["urn:uuid:"])], lib, {}) == {}


# match_reader_books


def test_reader_rows_match_by_hash_then_isbn_then_title_and_author():
    rows = [
        reader_row(1, "One", "Author One", file_hash="h1"),
        reader_row(2, "Two", "Author Two", isbns=[ISBN_13, ISBN_10]),
        reader_row(3, "Wizard of Earthsea (Earthsea, #1)", "Le Guin, Ursula K."),
        reader_row(4, "Dune", "Frank Herbert", file_hash="h4", isbns=["9780804429573"]),
    ]
    books = [
        new_book("a", "Something Else", ["Someone"], file_hash="h1"),
        new_book("b", "Another", ["Someone"]),
        new_book("c", "A Wizard of Earthsea", ["Ursula K. Le Guin", "Someone"]),
        new_book("d", "Dune", ["Frank Herbert"], file_hash="h4"),
        new_book("e", "Unknown", ["Nobody"], file_hash="h9"),
    ]
    isbns_of_key = {"b": {"0-306-40615-2"}, "d": {"080442957X"}, "e": {"9780000000002"}}

    assert match_reader_books(books, rows, isbns_of_key) == {
        "a": (1, "file_hash"),
        "b": (2, "isbn"),
        "c": (3, "title_author"),
        "d": (4, "file_hash"),
    }


def test_a_reader_row_with_only_an_isbn_10_meets_an_isbn_13():
    rows = [reader_row(1, "One", "Author One", isbns=[ISBN_10])]

    assert match_reader_books([new_book("a", "Other")], rows, {"a": {"978-0-306-40615-7"}}) == {"a": (1, "isbn")}


def test_a_stronger_reader_rule_wins():
    rows = [
        reader_row(1, "Dune", "Frank Herbert"),
        reader_row(2, "Two", "Author Two", isbns=[ISBN_13]),
        reader_row(3, "Three", "Author Three", file_hash="h"),
    ]
    books = [new_book("a", "Dune", ["Frank Herbert"], file_hash="h")]

    assert match_reader_books(books, rows, {"a": {ISBN_10}}) == {"a": (3, "file_hash")}
    assert match_reader_books(books, rows[:2], {"a": {ISBN_10}}) == {"a": (2, "isbn")}
    assert match_reader_books(books, rows[:1], {"a": {ISBN_10}}) == {"a": (1, "title_author")}


def test_reader_title_author_needs_exactly_one_row():
    rows = [reader_row(1, "Dune", "Frank Herbert"), reader_row(2, "Dune (Dune, #1)", "Herbert, Frank")]

    assert match_reader_books([new_book("a", "Dune", ["Frank Herbert"])], rows, {}) == {}


def test_reader_title_author_needs_a_title_and_an_author():
    rows = [reader_row(1, "Dune", "Frank Herbert"), reader_row(2, "Emma", None)]
    books = [new_book("a", None, ["Frank Herbert"]), new_book("b", "Emma", []), new_book("c", "Emma", [""])]

    assert match_reader_books(books, rows, {}) == {}


def test_reader_title_author_compares_only_the_first_author():
    rows = [reader_row(1, "Good Omens", "Terry Pratchett")]
    books = [new_book("a", "Good Omens", ["Neil Gaiman", "Terry Pratchett"]),
             new_book("b", "Good Omens", ["Terry Pratchett", "Neil Gaiman"])]

    assert match_reader_books(books, rows, {}) == {"b": (1, "title_author")}


def test_a_missing_hash_matches_no_reader_row():
    rows = [reader_row(1, "One", "Author One", file_hash=None)]

    assert match_reader_books([new_book("a", "Other", ["Someone"], file_hash=None)], rows, {}) == {}


def test_two_new_books_wanting_one_row_the_first_by_key_takes_it():
    rows = [reader_row(1, "Dune", "Frank Herbert", file_hash="h")]
    books = [new_book("b", "Dune", ["Frank Herbert"], file_hash="h"),
             new_book("a", "Dune", ["Frank Herbert"], file_hash="h")]

    assert match_reader_books(books, rows, {}) == {"a": (1, "file_hash")}


def test_a_taken_row_leaves_the_next_book_the_other_candidates():
    rows = [
        reader_row(1, "One", "Author One", file_hash="h", isbns=[ISBN_13]),
        reader_row(2, "Two", "Author Two", file_hash="h"),
        reader_row(3, "Dune", "Frank Herbert"),
    ]
    books = [new_book("a", "Other", ["Someone"]),
             new_book("b", "Dune", ["Frank Herbert"], file_hash="h"),
             new_book("c", "Dune", ["Frank Herbert"], file_hash="h")]

    # a takes row 1 by isbn; b then finds only row 2 by hash; c finds no free hash row and takes row 3 by title
    assert match_reader_books(books, rows, {"a": {ISBN_10}}) == {
        "a": (1, "isbn"),
        "b": (2, "file_hash"),
        "c": (3, "title_author"),
    }


def test_reader_rows_may_be_any_iterable():
    rows = [reader_row(1, "Dune", "Frank Herbert", file_hash="h")]
    books = [new_book("a", "Dune", ["Frank Herbert"], file_hash="h")]

    assert match_reader_books(books, (row for row in rows), {}) == {"a": (1, "file_hash")}
