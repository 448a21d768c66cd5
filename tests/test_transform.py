"""The pure transform: books, sessions and reads, without a database."""

from hypothesis import given, settings
from hypothesis import strategies as st

from bookhelper.core import Book, clean_text, make_book_key, normalise_md5, split_authors
from bookhelper.sessions import Session, number_reads, transform_sessions
from extract_koreader_stats import Fingerprint, changed_book_keys, transform_book, transform_books, transform_census

GAP = 1800


def test_title_is_trimmed_of_whitespace_and_trailing_nul():
    assert clean_text("  Dune\x00") == "Dune"
    assert clean_text("Du\x00ne \n") == "Dune"
    assert clean_text("   ") is None
    assert clean_text(None) is None
    assert clean_text(b"Caf\xc3\xa9") == "Café"


def test_authors_split_on_newlines_never_commas():
    assert split_authors("Terry Pratchett\nNeil Gaiman") == ("Terry Pratchett", "Neil Gaiman")
    assert split_authors("Rooksby, Rikky") == ("Rooksby, Rikky",)
    assert split_authors("N/A") == ()
    assert split_authors("") == ()
    assert split_authors(None) == ()
    assert split_authors(" A \n\nN/A\n B ") == ("A", "B")


def test_empty_file_md5_and_garbage_are_no_file_hash():
    assert normalise_md5("d41d8cd98f00b204e9800998ecf8427e") is None
    assert normalise_md5("") is None
    assert normalise_md5("N/A") is None
    assert normalise_md5("0123456789ABCDEF0123456789ABCDEF") == "0123456789abcdef0123456789abcdef"


def test_book_key_is_file_hash_or_title_and_authors():
    assert make_book_key("ab" * 16, "T", ("A",)) == "md5:" + "ab" * 16
    by_title = make_book_key(None, "T", ("A",))
    assert by_title.startswith("title:")
    assert by_title == make_book_key(None, "T", ("A",))
    assert by_title != make_book_key(None, "T", ("B",))
    assert make_book_key(None, None, ("A",)) is None


def test_book_row_becomes_a_whole_book():
    row = (7, " Good Omens\x00", "Terry Pratchett\nNeil Gaiman", "N/A", "en", "AB" * 16, 412, 1700000000)
    assert transform_book(row) == Book(
        book_key="md5:" + "ab" * 16,
        title="Good Omens",
        authors=("Terry Pratchett", "Neil Gaiman"),
        file_hash="ab" * 16,
        series=None,
        language="en",
        page_count=412,
        last_open=1700000000,
    )


def test_duplicate_book_rows_take_the_most_recently_opened_metadata():
    md5 = "cd" * 16
    rows = [
        (1, "Old title", "A", "N/A", "en", md5, 100, 1000),
        (2, "New title", "A", "N/A", "en", md5, 100, 2000),
        (3, None, "N/A", "N/A", "N/A", "", 0, 5),
    ]
    books, key_of, unusable = transform_books(rows)
    assert list(books) == [f"md5:{md5}"]
    assert books[f"md5:{md5}"].title == "New title"
    assert key_of == {1: f"md5:{md5}", 2: f"md5:{md5}"}
    assert unusable == [3]


def test_census_counts_skips_and_folds_fingerprints_per_book():
    md5 = "cd" * 16
    books, key_of, _unusable = transform_books(
        [
            (1, "T", "A", None, None, md5, 10, 1),
            (2, "T", "A", None, None, md5, 10, 2),
            (3, None, None, None, None, None, 0, 0),
        ]
    )
    census = transform_census(
        problems=[("page below 1", 2), ("book without title or md5", 4), ("no book id", 1)],
        # book id 1's rows in two leaf pages: two parts
        per_book=[(1, 10, 250, 4000, 0), (2, 5, 100, 9000, 1), (3, 4, 40, 7, 0), (None, 1, 0, 0, 0),
                  (1, 2, 50, 5000, 0)],
        books=books,
        key_of=key_of,
    )
    assert census.rows_read == 22
    assert census.skipped == {"page below 1": 2, "book without title or md5": 4, "no book id": 1}
    assert census.rows_valid == 15
    key = f"md5:{md5}"
    assert census.fingerprints == {key: Fingerprint(17, 400, 9000, 1, books[key].metadata_hash())}
    assert census.ids_by_key[key] == [1, 2]  # each id once, in the order met


def test_changed_books_are_those_whose_fingerprint_differs():
    same = Fingerprint(1, 2, 3, 0, "h")
    file_prints = {"a": same, "b": Fingerprint(2, 2, 3, 0, "h"), "c": same}
    assert changed_book_keys(file_prints, {"a": same, "b": same}) == ["b", "c"]


def test_sessions_split_on_a_pause_longer_than_the_gap_after_the_previous_row_ended():
    rows = [
        # page, start_time, duration, total_pages
        (1, 1000, 100, 300),
        (2, 1100, 60, 300),       # continues
        (3, 1160 + GAP, 30, 300),  # starts exactly the gap after row 2 ended: continues
        (4, 2990 + GAP + 1, 20, 310),  # one second more than the gap after row 3 ended: new session
        (3, 4811 + 20, 40, 310),  # back-paging, continues
    ]
    assert transform_sessions(rows, GAP) == [
        Session(start_time=1000, end_time=2990, duration_seconds=190, pages_read=3, start_page=1, end_page=3,
                total_pages=300),
        Session(start_time=4791, end_time=4871, duration_seconds=60, pages_read=2, start_page=4, end_page=4,
                total_pages=310),
    ]


def test_duration_minutes_round_halves_up():
    def session(seconds):
        return Session(0, seconds, seconds, 1, 1, 1, 1)

    # halves up, and never below 1: the reader's reading_sessions CHECK (duration_minutes > 0)
    assert [session(s).duration_minutes for s in (1, 29, 30, 89, 90, 150)] == [1, 1, 1, 1, 2, 3]


def test_reads_start_again_near_the_beginning_after_reaching_the_end():
    def session(start_page, end_page, total=100):
        return Session(0, 0, 0, 1, start_page, end_page, total)

    sessions = [
        session(1, 40),    # read 1
        session(41, 95),   # reaches 90%
        session(5, 20),    # within the first 10% after the end: read 2
        session(2, 8),     # near the beginning again, but read 2 has not reached the end
        session(9, 100),   # read 2 reaches the end
        session(50, 60),   # not near the beginning: still read 2
        session(10, 30),   # 10% exactly: read 3
        session(1, 2, 0),  # no page count: no opinion
    ]
    assert number_reads(sessions) == [1, 1, 2, 2, 2, 2, 3, 3]


page_rows = st.lists(
    st.tuples(
        st.integers(1, 50),            # page
        st.integers(0, 40_000),        # start_time
        st.integers(0, 7200),          # duration
        st.integers(0, 60),            # total_pages
    ),
    max_size=60,
    unique_by=lambda r: (r[0], r[1]),
)


@settings(max_examples=300, deadline=None)
@given(page_rows, st.integers(1, 3600))
def test_property_time_is_conserved(rows, gap):
    sessions = transform_sessions(rows, gap)
    assert sum(s.duration_seconds for s in sessions) == sum(r[2] for r in rows)
    assert bool(sessions) == bool(rows)


@settings(max_examples=300, deadline=None)
@given(page_rows, st.integers(1, 3600))
def test_property_consecutive_sessions_are_more_than_the_gap_apart(rows, gap):
    sessions = transform_sessions(rows, gap)
    for earlier, later in zip(sessions, sessions[1:]):
        assert later.start_time - earlier.end_time > gap
    for session in sessions:
        assert session.start_time <= session.end_time
        assert session.pages_read >= 1


@settings(max_examples=200, deadline=None)
@given(page_rows)
def test_property_reads_count_up_from_one_without_gaps(rows):
    numbers = number_reads(transform_sessions(rows, GAP))
    assert numbers == sorted(numbers)
    assert not numbers or numbers[0] == 1
    assert all(b - a in (0, 1) for a, b in zip(numbers, numbers[1:]))
