"""Amazon's Kindle and Audible exports: read in place (zip or folder), hostile files, whole rows in the
warehouse, matching across formats and sources, tandem reads, current state."""

import calendar
import datetime
import signal
import subprocess
import sys
import zipfile
from collections import Counter

import psycopg2
import pytest
from conftest import SCRIPT, cli_env, query, run_cli
from pgtools import wait_for_backends_to_end, wait_for_statement
from test_sidecars import current_sidecar, write_sidecar
from warehouse import whole_state

from bookhelper import audible, kindle
from bookhelper.exports import open_export, read_rows
from bookhelper.schema import SCHEMA_VERSION
from bookhelper.sessions import exact_seconds
from samples.audible import AudibleTitle, ListeningEvent, write_audible_export
from samples.calibre import CalibreBook, write_calibre_library
from samples.kindle import KindleCompletion, KindleTitle, PersonalDocument, ReadingInterval, write_kindle_export
from samples.statistics import Book, write_statistics_file

NOW = calendar.timegm((2026, 6, 1, 0, 0, 0))
DOC_ID = "B0C0FFEE0123456789ABCDEF01234567"  # a personal document whose id starts like a store ASIN
APP_SERIAL = "0123456789ABCDEF0123456789ABCDEF"


def utc(text):
    return calendar.timegm(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").timetuple())


# The fact sheet's invented example, as intervals.
SHEET_INTERVALS = [
    ReadingInterval(utc("2026-01-03T19:02:11Z"), utc("2026-01-03T19:30:02Z"), "B0TESTKND1", millis=1671400,
                    page_flips=38, software_version="4300000011"),
    ReadingInterval(utc("2026-01-02T06:40:00Z"), utc("2026-01-02T06:40:04Z"), "B0TESTKND1", device_family="",
                    serial=APP_SERIAL, software_version="1180000033", millis=3800, page_flips=1),
    ReadingInterval(utc("2026-01-03T19:02:11Z"), utc("2026-01-03T19:30:02Z"), "B0TESTKND1", millis=1671400,
                    page_flips=38, software_version="4400000022"),
    ReadingInterval(None, utc("2026-01-04T21:15:40Z"), "B0TESTKND2", device_family="", serial=APP_SERIAL),
    ReadingInterval(utc("2026-01-05T22:01:09Z"), utc("2026-01-05T22:11:09Z"), "B0TESTKND1", millis=600300,
                    page_flips=1),
    ReadingInterval(utc("2026-01-06T12:00:00Z"), utc("2026-01-06T12:05:30Z"), DOC_ID,
                    content_type="Personal Document", millis=330100, page_flips=12),
    ReadingInterval(utc("2026-01-06T20:10:00Z"), utc("2026-01-06T20:14:10Z"), "B0TESTKND3",
                    content_type="E-Book Sample", device_family="Kindle Cloud Reader",
                    serial="TESTCLOUDREADERSERIAL000000001", software_version="20000105", millis=249600, page_flips=9),
]
SHEET_TITLES = [KindleTitle("B0TESTKND1", "The Lantern Keeper (Harbor Lights Book 1)", ("Whitcombe, Calla ",))]
SHEET_DOCUMENTS = [PersonalDocument(DOC_ID, "Field Notes", "field-notes.pdf")]

SESSION_ROWS = """
SELECT b.title, s.start_time, s.end_time, s.duration_seconds, s.duration_minutes, s.pages_read, s.device,
       s.media_type, s.data_source, s.read_number, s.is_parallel_read, s.time_precision, s.device_stats_source
FROM reading_sessions s JOIN books b USING (book_id) ORDER BY s.data_source, s.start_time
"""


def ts(text):
    return datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


def run_exports(tmp_path, database_url, *args, **settings):
    """A run with exports and no statistics file (HOME has none at the default path)."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env_file.chmod(0o600)
    settings.setdefault("HOME", str(tmp_path))
    settings.setdefault("DATABASE_URL", database_url)
    settings.setdefault("ETL_TIMEZONE", "UTC")
    return run_cli(*args, env_file=env_file, **settings)


# Reading the export -------------------------------------------------------------------------------


def test_the_sheets_example_gives_each_interval_once_and_counts_what_it_skips(tmp_path):
    export = kindle.extract_kindle_export(write_kindle_export(tmp_path / "k", SHEET_INTERVALS, SHEET_TITLES,
                                                              SHEET_DOCUMENTS), NOW)

    assert [(i.content_id, i.kind, i.start, i.millis, i.device) for i in export.intervals] == [
        ("B0C0FFEE0123456789ABCDEF01234567", "document", utc("2026-01-06T12:00:00Z"), 330100, "Kindle E-reader"),
        ("B0TESTKND1", "book", utc("2026-01-02T06:40:00Z"), 3800, "Kindle app"),
        ("B0TESTKND1", "book", utc("2026-01-03T19:02:11Z"), 1671400, "Kindle E-reader"),
        ("B0TESTKND1", "book", utc("2026-01-05T22:01:09Z"), 600300, "Kindle E-reader"),
    ]
    assert dict(export.problems) == {"a sample, not the book": 1, "reported twice (counted once)": 1,
                                     "start Not Available": 1}
    assert export.titles["B0TESTKND1"] == ("The Lantern Keeper (Harbor Lights Book 1)", ("Calla Whitcombe",))
    assert export.titles[DOC_ID] == ("Field Notes", ())


@pytest.mark.parametrize("as_zip", [False, True])
def test_a_book_the_library_index_lacks_is_titled_by_the_next_file_that_names_it(tmp_path, as_zip):
    def named(asin, name):
        return KindleTitle(asin, name)

    elsewhere = {"whispersync": [named("B0TESTWHS1", "Synced Title"), named("B0TESTBTH1", "Synced First")],
                 "whispersync_audio": [named("B0TESTAUD1", "An Audiobook's Name")],
                 "insights": [named("B0TESTINS1", "Insights Title")],
                 "content_updates": [named("B0TESTUPD1", "Updated Title"), named("B0TESTKND1", "Not the index's")],
                 "ownership": [named("B0TESTOWN1", "Owned Title")]}
    completions = [KindleCompletion("B0TESTCMP1", "2026-01-05", "Completed Title"),
                   KindleCompletion("B0TESTBTH1", "2026-01-05", "Completed Second"),
                   KindleCompletion("B0TESTNA01", "2026-01-05", "Not Available")]
    export = kindle.extract_kindle_export(write_kindle_export(tmp_path / "k.zip", SHEET_INTERVALS, SHEET_TITLES,
                                                              as_zip=as_zip, elsewhere=elsewhere,
                                                              completions=completions), NOW)

    # the library index first, then whispersync's ebook rows, completed titles, insights, updates, ownership;
    # never an audiobook's row or a Not Available title
    assert {asin: title for asin, title in export.titles.items() if asin.startswith("B0")} == {
        "B0TESTKND1": ("The Lantern Keeper (Harbor Lights Book 1)", ("Calla Whitcombe",)),
        "B0TESTWHS1": ("Synced Title", ()), "B0TESTBTH1": ("Synced First", ()),
        "B0TESTCMP1": ("Completed Title", ()), "B0TESTINS1": ("Insights Title", ()),
        "B0TESTUPD1": ("Updated Title", ()), "B0TESTOWN1": ("Owned Title", ())}


def test_a_title_file_without_its_columns_or_a_broken_ownership_file_names_nothing_and_fails_nothing(tmp_path):
    folder = write_kindle_export(tmp_path / "k", SHEET_INTERVALS, SHEET_TITLES,
                                 completions=[KindleCompletion("B0TESTCMP1", "2026-01-05", "Completed Title")])
    completed = next(folder.rglob("Kindle.UserUniqueTitlesCompleted.csv"))
    completed.write_text("\ufeffasin,title\nB0TESTCMP1,Completed Title\n", encoding="utf-8")
    (folder / "Digital.Content.Ownership" / "Digital.Content.Ownership.9.json").write_bytes(b"{not json")

    export = kindle.extract_kindle_export(folder, NOW)

    assert "B0TESTCMP1" not in export.titles
    assert dict(export.problems)["Kindle.UserUniqueTitlesCompleted.csv without its columns (ignored)"] == 1
    assert dict(export.problems)["JSON file unreadable or too large (ignored)"] == 1


def test_a_zip_and_its_folder_read_alike_and_a_zip_is_never_extracted(tmp_path):
    folder = write_kindle_export(tmp_path / "folder", SHEET_INTERVALS, SHEET_TITLES, SHEET_DOCUMENTS)
    archive = write_kindle_export(tmp_path / "export.zip", SHEET_INTERVALS, SHEET_TITLES, SHEET_DOCUMENTS,
                                  as_zip=True, hostile_names=["../Kindle.Devices.ReadingSession.csv", "/abs.csv"])
    before = sorted(p.name for p in tmp_path.rglob("*"))

    from_folder = kindle.extract_kindle_export(folder, NOW)
    from_zip = kindle.extract_kindle_export(archive, NOW)

    assert from_zip.intervals == from_folder.intervals and from_zip.titles == from_folder.titles
    assert dict(from_zip.problems)["zip entries with unsafe names (ignored)"] == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written beside it


def test_an_export_without_the_session_file_or_a_column_is_refused_by_name(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("Kindle.Devices.ReadingSession/Kindle.Devices.ReadingSession.csv",
                     "\ufeffstart_timestamp,end_timestamp,ASIN\n2026-01-01T00:00:00Z,2026-01-01T00:01:00Z,B0TESTKND1\n")
    with pytest.raises(kindle.SourceUnusable, match="has no column device_family, device_serial_number"):
        kindle.extract_kindle_export(archive, NOW)
    (tmp_path / "empty").mkdir()
    with pytest.raises(kindle.SourceUnusable, match="holds no Kindle.Devices.ReadingSession.csv"):
        kindle.extract_kindle_export(tmp_path / "empty", NOW)
    with pytest.raises(audible.SourceUnusable, match="holds no Audible.Listening"):
        audible.extract_audible_export(tmp_path / "empty", datetime.date(2026, 6, 1))


def test_huge_fields_and_invalid_utf8_are_skipped_rows_not_a_failed_file(tmp_path):
    header = kindle_header()
    good = "2026-01-03T19:02:11Z,2026-01-03T19:30:02Z,B0TESTKND1,US,US,Kindle E-reader,G0,1,E-Book,60000,3"
    huge_asin = good.replace("B0TESTKND1", "B" * 200_000)
    bad_bytes = good.replace("B0TESTKND1", "B0TESTKND9").encode().replace(b"E-reader", b"E-\xff\xfereader")
    wrong_width = "2026-01-03T20:02:11Z,2026-01-03T20:30:02Z,B0TESTKND1"
    archive = tmp_path / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("Kindle.Devices.ReadingSession/Kindle.Devices.ReadingSession.csv",
                     b"\xef\xbb\xbf\xef\xbb\xbf" + "\n".join([header, good, huge_asin, wrong_width]).encode()
                     + b"\n" + bad_bytes + b"\n")

    export = kindle.extract_kindle_export(archive, NOW)

    assert [(i.content_id, i.device) for i in export.intervals] == [
        ("B0TESTKND1", "Kindle E-reader"), ("B0TESTKND9", "Kindle E-\ufffd\ufffdreader")]
    assert dict(export.problems) == {"not an ASIN or document id": 1, "row with a wrong number of fields": 1,
                                     "invalid UTF-8 replaced": 1}


def kindle_header():
    return ("start_timestamp,end_timestamp,ASIN,purchased_marketplace,preferred_marketplace,device_family,"
            "device_serial_number,device_software_version,content_type,total_reading_millis,number_of_page_flips")


@pytest.mark.parametrize("millis, reason", [("", "empty or negative duration"), ("-5", "empty or negative duration"),
                                            ("0", "empty or negative duration"),
                                            ("99999999999", "longer than a day")])
def test_a_bad_duration_is_a_skipped_row(millis, reason):
    row = dict(zip(kindle_header().split(","), [
        "2026-01-03T19:02:11Z", "2026-01-03T19:30:02Z", "B0TESTKND1", "US", "US", "Kindle E-reader", "G0", "1",
        "E-Book", millis, "3"]))
    problems = Counter()
    assert kindle.transform_intervals([row], NOW, problems) == ()
    assert problems == {reason: 1}


def day(text):
    return datetime.date.fromisoformat(text)


@pytest.mark.parametrize("completed, reads, finishes, marks", [
    ([], [1, 1, 1, 1, 1], {}, []),
    # finished once: the sessions after it continue that read (nothing shows it began again)
    (["2026-01-03"], [1, 1, 1, 1, 1], {1: "2026-01-03"}, []),
    # finished twice: the sessions between the two finishes are the re-read
    (["2026-01-03", "2026-02-01"], [1, 1, 2, 2, 2], {1: "2026-01-03", 4: "2026-02-01"}, []),
    # a second mark with no session since the first (MANUAL after AUTOMATIC) is the same finish
    (["2026-01-03", "2026-01-04", "2026-02-01"], [1, 1, 2, 2, 2], {1: "2026-01-03", 4: "2026-02-01"}, []),
    (["2026-01-03", "2026-01-09", "2026-02-01"], [1, 1, 2, 2, 2], {1: "2026-01-03", 4: "2026-02-01"}, []),
    # ... and so is one a day later with a session between: the finish moves to that session, dated by the first
    (["2026-01-01", "2026-01-02"], [1, 1, 1, 1, 1], {1: "2026-01-01"}, []),
    (["2026-01-01", "2026-01-02", "2026-01-10"], [1, 1, 2, 2, 2], {1: "2026-01-01", 2: "2026-01-10"}, []),
    # the window runs from the finish's first record, not from a later mark of it: 10 January is a re-read's
    (["2026-01-02", "2026-01-09", "2026-01-10"], [1, 1, 2, 2, 2], {1: "2026-01-02", 2: "2026-01-10"}, []),
    # a finish on the day of a session finishes with it; one a day before the first session (a record dated in
    # a zone west of the reader's) finishes that session; an earlier one is a finish of its own, known only by
    # its record (records a day apart are one)
    (["2025-12-31"], [1, 1, 1, 1, 1], {0: "2025-12-31"}, []),
    (["2025-12-01", "2026-01-02"], [1, 1, 1, 1, 1], {1: "2026-01-02"}, ["2025-12-01"]),
    (["2025-12-01", "2025-12-02"], [1, 1, 1, 1, 1], {}, ["2025-12-01"]),
    (["2025-11-01", "2025-12-01"], [1, 1, 1, 1, 1], {}, ["2025-11-01", "2025-12-01"]),
    (["2026-01-03", "2026-01-20", "2026-03-01"], [1, 1, 2, 3, 3], {1: "2026-01-03", 2: "2026-01-20",
                                                                   4: "2026-03-01"}, []),
])
def test_kindle_reads_follow_amazons_completion_records(completed, reads, finishes, marks):
    session_days = [day(text) for text in ("2026-01-01", "2026-01-02", "2026-01-10", "2026-01-25", "2026-01-25")]

    found = kindle.kindle_reads(session_days, [day(text) for text in completed])

    assert found == kindle.KindleReads(reads, {index: day(text) for index, text in finishes.items()},
                                       [day(text) for text in marks])


def test_a_calibre_book_names_an_asin_by_the_asin_rules_and_lends_its_authors_to_a_title_without_them():
    rows = [("B0TESTKND1", "calibre_amazon", 1, "Lantern", ["Calla Whitcombe"]),
            ("B0TESTKND2", "calibre_amazon", 2, "One", ["A"]), ("B0TESTKND2", "calibre_amazon", 3, "Two", ["B"]),
            ("B0TESTKND2", "calibre_mobi_asin", 4, "Weak", ["C"]),
            ("B0TESTKND3", "calibre_mobi_asin", 5, "Three", []), ("B0TESTKND3", "calibre_mobi_asin", 6, "Four", []),
            ("B0TESTKND4", "calibre_amazon", 7, "", ["Nobody"])]

    calibre = kindle.calibre_names(rows)

    # two books under amazon decide nothing there; the one under mobi-asin does, as it places a warehouse book
    assert calibre == {"B0TESTKND1": ("Lantern", ("Calla Whitcombe",)), "B0TESTKND2": ("Weak", ("C",))}
    export_titles = {"B0TESTKND1": ("The Lantern Keeper", ()), "B0TESTKND2": ("Export", ("Ann Lee",)),
                     "B0TESTKND5": ("Five", ())}
    assert kindle.book_names(export_titles, calibre) == {
        "B0TESTKND1": ("The Lantern Keeper", ("Calla Whitcombe",)), "B0TESTKND2": ("Export", ("Ann Lee",)),
        "B0TESTKND5": ("Five", ())}


def test_completion_records_give_each_asin_its_days_and_count_a_broken_key(tmp_path):
    completions = [KindleCompletion("B0TESTKND1", "2026-01-05", how="MANUAL"),
                   KindleCompletion("b0testknd1", "2026-01-03"), KindleCompletion("B0TESTKND1", "2026-01-05"),
                   KindleCompletion("B0TESTKND2", "2026-02-30"), KindleCompletion("B0TESTKND2", "2031-01-01"),
                   KindleCompletion("NOTANASIN", "2026-01-05")]
    export = kindle.extract_kindle_export(write_kindle_export(tmp_path / "k", SHEET_INTERVALS, SHEET_TITLES,
                                                              completions=completions), NOW)

    assert export.completions == {"B0TESTKND1": (day("2026-01-03"), day("2026-01-05"))}
    assert dict(export.problems)["completion record without an ASIN and a day"] == 3


def test_overlapping_intervals_count_their_union_and_a_book_its_millis_rounded_once():
    def interval(start, millis, serial="A"):
        return kindle.KindleInterval("B0TESTKND1", "book", start, start + millis // 1000, millis, serial, "d", None)

    sessions = kindle.kindle_sessions([interval(1000, 600_000), interval(1300, 600_000, "B"),
                                       interval(1900 + 1800, 1_500), interval(3701 + 1801, 400)], 1800)

    # 1000..1600 and 1300..1900 overlap by 300 s: their union is 900 s, not 1200 s. A pause of exactly the gap
    # (1900..3700) continues the session; one a second longer (3701.5..5502) ends it.
    assert [(s.start, s.end, s.millis) for s in sessions] == [(1000, 3702, 901_500), (5502, 5503, 400)]
    assert exact_seconds([901_500, 400]) == [902, 0]
    assert sum(exact_seconds([499, 499, 499, 499])) == 2  # 1.996 s, rounded once


def listening(day, millis, start, end, name="Quiet Hours (Unabridged)", asin="B0TESTAUD1", **more):
    return ListeningEvent(day, more.pop("end_date", day), millis, start, end, name, asin, **more)


SHEET_EVENTS = [
    listening("2026-01-08", 1500000, 3600000, 5400000, "The Lantern Keeper: Harbor Lights, Book 2 (Unabridged)",
              "B0TESTAUD2", book_length_ms=61200000, narration_speed="1.20", echo_parts=2),
    listening("2026-01-08", 4000, 5400000, 5370000, "The Lantern Keeper: Harbor Lights, Book 2 (Unabridged)",
              "B0TESTAUD2", book_length_ms=61200000, narration_speed="1.20"),
    listening("2026-01-07", 2700000, 0, 2700000, end_date="2026-01-08", book_length_ms=36000000,
              delivery_type="Streaming"),
    listening("2026-01-06", 95400, 0, 95400, "Atlas of Small Things: Part 3", "1234567890", book_length_ms=43200000),
    listening("2026-01-06", 300000, 0, 300000, "Salt Road (Unabridged)", "B0TESTAUD3", audio_type="Preview"),
]


def test_the_audible_sheets_example_gives_one_row_per_book_and_day_each_echo_once(tmp_path):
    export = audible.extract_audible_export(write_audible_export(tmp_path / "a", {"Account Holder": SHEET_EVENTS}),
                                            datetime.date(2026, 6, 1))

    assert [(d.profile, d.asin, d.day.isoformat(), d.timezone, d.millis, d.events, d.first_position,
             d.last_position, d.length) for d in export.days] == [
        ("Account Holder", "1234567890", "2026-01-06", "Europe/Berlin", 95400, 1, 0, 95400, 43200000),
        ("Account Holder", "B0TESTAUD1", "2026-01-07", "Europe/Berlin", 2700000, 1, 0, 2700000, 36000000),
        ("Account Holder", "B0TESTAUD2", "2026-01-08", "Europe/Berlin", 1504000, 2, 3600000, 5400000, 61200000),
    ]
    assert dict(export.problems) == {"a multipart echo (counted once)": 2, "a preview or sample": 1}
    assert export.titles["1234567890"].title == "Atlas of Small Things: Part 3"  # a real "Part" title stays


def test_the_older_single_listening_file_reads_alike(tmp_path):
    current = audible.extract_audible_export(write_audible_export(tmp_path / "a", {"Account Holder": SHEET_EVENTS}),
                                             datetime.date(2026, 6, 1))
    older = audible.extract_audible_export(write_audible_export(tmp_path / "b", {"Account Holder": SHEET_EVENTS},
                                                                old_layout=True), datetime.date(2026, 6, 1))

    assert [(d.asin, d.day, d.millis) for d in older.days] == [(d.asin, d.day, d.millis) for d in current.days]
    assert {d.profile for d in older.days} == {""}


def test_a_listening_file_without_a_column_is_refused_by_name(tmp_path):
    folder = tmp_path / "x" / "Audible.Listening" / "Account Holder"
    folder.mkdir(parents=True)
    (folder / "Listening.csv").write_text('\ufeff"Start Date","End Date","ASIN"\n"2026-01-01","2026-01-01","B0X"\n')
    with pytest.raises(audible.SourceUnusable, match="Listening.csv has no column Event Duration Milliseconds"):
        audible.extract_audible_export(tmp_path / "x", datetime.date(2026, 6, 1))


def test_read_rows_strips_a_doubled_bom_before_a_quoted_header(tmp_path):
    (tmp_path / "f.csv").write_bytes(b'\xef\xbb\xbf\xef\xbb\xbf"A","B"\r\n"1","x\ny"\r\n')
    export = open_export(tmp_path, "X")
    assert list(read_rows(export, str(tmp_path / "f.csv"), ("A", "B"), Counter())) == [{"A": "1", "B": "x\ny"}]


# In the warehouse ---------------------------------------------------------------------------------


def test_a_kindle_export_alone_lands_whole_sessions(tmp_path, database_url):
    archive = write_kindle_export(tmp_path / "export.zip", SHEET_INTERVALS, SHEET_TITLES, SHEET_DOCUMENTS,
                                  as_zip=True)

    result = run_exports(tmp_path, database_url, "--kindle-export", archive)

    assert result.returncode == 0, result.stderr
    assert "no statistics file tonight" in result.stderr
    stats = "Kindle.Devices.ReadingSession.csv"
    assert query(database_url, SESSION_ROWS) == [
        ("The Lantern Keeper (Harbor Lights Book 1)", ts("2026-01-02 06:40:00"), ts("2026-01-02 06:40:04"), 4, 1, 1,
         "Kindle app", "ebook", "kindle", 1, False, "second", stats),
        ("The Lantern Keeper (Harbor Lights Book 1)", ts("2026-01-03 19:02:11"), ts("2026-01-03 19:30:03"), 1671, 28,
         38, "Kindle E-reader", "ebook", "kindle", 1, False, "second", stats),
        ("The Lantern Keeper (Harbor Lights Book 1)", ts("2026-01-05 22:01:09"), ts("2026-01-05 22:11:10"), 601, 10,
         1, "Kindle E-reader", "ebook", "kindle", 1, False, "second", stats),
        ("Field Notes", ts("2026-01-06 12:00:00"), ts("2026-01-06 12:05:31"), 330, 6, 12, "Kindle E-reader", "ebook",
         "kindle", 1, False, "second", stats),
    ]
    assert query(database_url, "SELECT title, author, source FROM books ORDER BY title") == [
        ("Field Notes", None, "kindle"), ("The Lantern Keeper (Harbor Lights Book 1)", "Calla Whitcombe", "kindle")]
    assert query(database_url, "SELECT sum(millis) FROM bookhelper.kindle_intervals") == [(1671400 + 3800 + 600300
                                                                                          + 330100,)]
    assert "Kindle: skipped 2 rows (a sample, not the book: 1, reported twice (counted once): 1, start Not " \
           "Available: 1)" in result.stderr
    status = run_exports(tmp_path, database_url, "--status")
    assert status.returncode == 0, status.stderr
    assert ["kindle", "ebook", "4", "0.7", "2026-01-02", "2026-01-06"] in [line.split() for line in
                                                                          status.stdout.splitlines()]


def test_a_newer_export_replaces_the_older_and_an_unchanged_one_costs_one_query(tmp_path, database_url):
    older = write_kindle_export(tmp_path / "older", SHEET_INTERVALS[:3], SHEET_TITLES)
    newer = write_kindle_export(tmp_path / "newer", SHEET_INTERVALS, SHEET_TITLES, SHEET_DOCUMENTS)
    assert run_exports(tmp_path, database_url, "--kindle-export", older).returncode == 0

    assert run_exports(tmp_path, database_url, "--kindle-export", newer).returncode == 0
    again = run_exports(tmp_path, database_url, "--kindle-export", newer)

    assert query(database_url, "SELECT count(*), sum(duration_seconds) FROM reading_sessions") == [(4, 4 + 1671 + 601
                                                                                                    + 330)]
    assert "the Kindle export and the books holding ASINs are unchanged since the last run" in again.stderr
    assert "Kindle reading intervals" not in again.stderr  # an unchanged export is digested, never parsed
    # The ASIN titled by itself in the older export (no library row for it there) takes its title later.
    assert run_exports(tmp_path, database_url, "--kindle-export",
                       write_kindle_export(tmp_path / "untitled", SHEET_INTERVALS)).returncode == 0
    assert query(database_url, "SELECT title FROM books ORDER BY title") == [("B0C0FFEE0123456789ABCDEF01234567",),
                                                                             ("B0TESTKND1",)]


def test_an_asin_the_export_names_nowhere_takes_the_name_of_the_calibre_book_that_holds_it(tmp_path, database_url,
                                                                                          new_database):
    day = utc("2026-01-03T19:00:00Z")
    intervals = [ReadingInterval(day + n * 86400, day + n * 86400 + 600, asin, millis=600_000)
                 for n, asin in enumerate(("B0TESTKND1", "B0TESTKND2", "B0TESTKND3"))]
    export = write_kindle_export(tmp_path / "kindle", intervals, [KindleTitle("B0TESTKND2", "Export Title",
                                                                              ("Lee, Ann",))])
    # None of these books is in the warehouse: Calibre matches none of them, it only names the ASINs.
    library = write_calibre_library(tmp_path / "library", [
        CalibreBook(1, "The Lantern Keeper", ["Calla Whitcombe", "Bo Park"], identifiers={"amazon_de": "b0testknd1"}),
        CalibreBook(2, "Calibre Title", ["Someone Else"], identifiers={"amazon": "B0TESTKND2"}),
        CalibreBook(3, "One Edition", ["Ann Lee"], identifiers={"mobi-asin": "B0TESTKND3"}),
        CalibreBook(4, "Another Edition", ["Ann Lee"], identifiers={"mobi-asin": "B0TESTKND3"})]).metadata_db.parent
    names = """SELECT b.title, b.author, b.source, k.book_key,
                      (SELECT array_agg(a.name ORDER BY ba.position) FROM book_authors ba
                       JOIN author_names a USING (author_id) WHERE ba.book_id = b.book_id)
               FROM books b JOIN book_keys k USING (book_id) ORDER BY k.book_key"""

    assert run_exports(tmp_path, database_url, "--kindle-export", export).returncode == 0
    assert query(database_url, names) == [
        ("B0TESTKND1", None, "kindle", "kindle:B0TESTKND1", None),
        ("Export Title", "Ann Lee", "kindle", "kindle:B0TESTKND2", ["Ann Lee"]),
        ("B0TESTKND3", None, "kindle", "kindle:B0TESTKND3", None)]

    result = run_exports(tmp_path, database_url, "--calibre-library", library, "--kindle-export", export)

    # The export's own name first, then the one Calibre book that holds the ASIN; two books name nothing.
    assert result.returncode == 0, result.stderr
    assert query(database_url, names) == [
        ("The Lantern Keeper", "Calla Whitcombe", "kindle", "kindle:B0TESTKND1", ["Calla Whitcombe", "Bo Park"]),
        ("Export Title", "Ann Lee", "kindle", "kindle:B0TESTKND2", ["Ann Lee"]),
        ("B0TESTKND3", None, "kindle", "kindle:B0TESTKND3", None)]
    assert query(database_url, "SELECT count(*) FROM bookhelper.book_calibre") == [(0,)]
    once = new_database()
    assert run_exports(tmp_path, once, "--calibre-library", library, "--kindle-export", export).returncode == 0
    assert whole_state(database_url) == whole_state(once)

    # The library forgets the identifier: the ASIN is the title again.
    write_calibre_library(tmp_path / "edited", [CalibreBook(1, "The Lantern Keeper", ["Calla Whitcombe"])])
    assert run_exports(tmp_path, database_url, "--calibre-library", tmp_path / "edited", "--kindle-export",
                       export).returncode == 0
    assert query(database_url, names)[0] == ("B0TESTKND1", None, "kindle", "kindle:B0TESTKND1", None)


def test_amazons_completion_records_finish_kindle_reads_and_a_second_one_makes_a_re_read(tmp_path, database_url):
    starts = [utc(f"2026-{day}T20:00:00Z") for day in ("01-01", "01-02", "01-10", "01-25", "02-10")]
    intervals = [ReadingInterval(start, start + 600, "B0TESTKND1", millis=600_000) for start in starts]
    completions = [KindleCompletion("B0TESTKND1", "2026-01-02", "The Lantern Keeper"),
                   KindleCompletion("B0TESTKND1", "2026-01-03", "The Lantern Keeper", how="MANUAL"),
                   KindleCompletion("B0TESTKND1", "2026-01-26", "The Lantern Keeper")]
    reads = "SELECT start_time, read_number FROM reading_sessions ORDER BY 1"
    finished = "SELECT title, read_number, finished_at, finished_on, evidence, formats FROM finished_books ORDER BY 2"

    export = write_kindle_export(tmp_path / "k", intervals, SHEET_TITLES, completions=completions)

    result = run_exports(tmp_path, database_url, "--kindle-export", export)

    # the session of 10 February comes after the last finish: it continues the second read, which still
    # finished with the session of 25 January, on the day of its record
    assert result.returncode == 0, result.stderr
    assert query(database_url, reads) == [(ts(f"2026-{day} 20:00:00"), read) for day, read in (
        ("01-01", 1), ("01-02", 1), ("01-10", 2), ("01-25", 2), ("02-10", 2))]
    title, utc_zone = SHEET_TITLES[0].product_name, datetime.timezone.utc
    assert query(database_url, finished) == [
        (title, 1, ts("2026-01-02 20:10:00").replace(tzinfo=utc_zone), datetime.date(2026, 1, 2), "reading", "ebook"),
        (title, 2, ts("2026-01-25 20:10:00").replace(tzinfo=utc_zone), datetime.date(2026, 1, 26), "reading", "ebook")]
    assert query(database_url, "SELECT count(DISTINCT read_instance_id) FROM reading_sessions") == [(2,)]

    # The same export in Tokyo: the evening sessions fall on the next local day, so the record of the 2nd
    # finishes the first session and the one of the 3rd, a day later, moves that finish to the second.
    tokyo = run_exports(tmp_path, database_url, "--kindle-export", export, ETL_TIMEZONE="Asia/Tokyo")
    assert tokyo.returncode == 0, tokyo.stderr
    assert [read for _start, read in query(database_url, reads)] == [1, 1, 2, 2, 2]
    assert query(database_url, "SELECT start_time, completed_on FROM bookhelper.kindle_finishes ORDER BY 1") == [
        (ts("2026-01-02 20:00:00"), datetime.date(2026, 1, 2)), (ts("2026-01-25 20:00:00"), datetime.date(2026, 1, 26))]

    # A newer export without the records: one unfinished read, as before.
    assert run_exports(tmp_path, database_url, "--kindle-export",
                       write_kindle_export(tmp_path / "newer", intervals, SHEET_TITLES)).returncode == 0
    assert [read for _start, read in query(database_url, reads)] == [1, 1, 1, 1, 1]
    assert query(database_url, finished) == []
    assert query(database_url, "SELECT count(*) FROM bookhelper.kindle_finishes") == [(0,)]


def test_a_book_amazon_says_was_finished_before_any_kindle_reading_is_a_finish_of_its_own(tmp_path, database_url,
                                                                                          new_database):
    start = utc("2026-01-10T20:00:00Z")
    completions = [KindleCompletion("B0TESTKND1", "2025-06-01", how="MANUAL"),  # read on paper, then again
                   KindleCompletion("B0TESTKND1", "2026-01-10"),
                   KindleCompletion("B0TESTKND2", "2025-03-01", "Read on Paper", how="MANUAL"),
                   KindleCompletion("B0TESTKND2", "2025-03-02", "Read on Paper")]
    export = write_kindle_export(tmp_path / "k", [ReadingInterval(start, start + 600, "B0TESTKND1", millis=600_000)],
                                 SHEET_TITLES, completions=completions)
    finished = "SELECT title, read_number, finished_at, finished_on, evidence, formats FROM finished_books ORDER BY 4"
    title = SHEET_TITLES[0].product_name

    result = run_exports(tmp_path, database_url, "--kindle-export", export)

    assert result.returncode == 0, result.stderr
    assert query(database_url, finished) == [
        ("Read on Paper", None, None, datetime.date(2025, 3, 1), "completion record", None),
        (title, None, None, datetime.date(2025, 6, 1), "completion record", None),
        (title, 1, ts("2026-01-10 20:10:00").replace(tzinfo=datetime.timezone.utc), datetime.date(2026, 1, 10),
         "reading", "ebook")]
    assert query(database_url, "SELECT title, sessions, reading_seconds, reads FROM book_reading ORDER BY 1") == [
        ("Read on Paper", 0, 0, 0), (title, 1, 600, 1)]
    assert "1 sessions of 1 books (0 on books the warehouse knew by ASIN, 1 of their own); sessions 1 inserted, " \
           "0 updated, 0 removed; 2 finishes known only by completion records (1 books the export has no reading " \
           "of)" in result.stderr
    once = new_database()
    assert run_exports(tmp_path, once, "--kindle-export", export).returncode == 0
    assert whole_state(database_url) == whole_state(once)

    # A newer export without those records: the book only they named goes, with its finish.
    assert run_exports(tmp_path, database_url, "--kindle-export", write_kindle_export(
        tmp_path / "newer", [ReadingInterval(start, start + 600, "B0TESTKND1", millis=600_000)], SHEET_TITLES,
        completions=completions[1:2])).returncode == 0
    assert query(database_url, "SELECT title FROM books") == [(title,)]
    assert [row[3] for row in query(database_url, finished)] == [datetime.date(2026, 1, 10)]


def test_a_completion_record_within_a_finished_read_or_by_a_complete_status_is_that_finish(tmp_path, database_url):
    md5, start = "0" * 31 + "1", utc("2025-12-20T18:00:00Z")
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", [Book(
        1, "The Lantern Keeper", "Calla Whitcombe", 10, md5, None, "en", start)],
        [(1, page, start + page * 60, 50, 10) for page in range(1, 11)])  # the whole book, in KOReader
    library = write_calibre_library(tmp_path / "library", [
        CalibreBook(1, "The Lantern Keeper", ["Calla Whitcombe"], identifiers={"amazon": "B0TESTKND1"},
                    cwa_checksums=[("EPUB", md5)]),
        CalibreBook(2, "On Paper", ["Ann Lee"], identifiers={"amazon": "B0TESTKND2"})])
    write_sidecar(tmp_path / "device", "Books/Paper.sdr/metadata.pdf.lua", current_sidecar(
        partial_md5_checksum="cd" * 16, doc_props={"title": "On Paper", "authors": "Ann Lee"}, annotations={},
        summary={"status": "complete", "modified": "2026-01-05"}))
    kindle_export = write_kindle_export(tmp_path / "kindle", [], completions=[
        KindleCompletion("B0TESTKND1", "2025-12-21", how="MANUAL"),  # marked on Amazon after reading in KOReader
        KindleCompletion("B0TESTKND2", "2026-01-06", how="MANUAL"),  # a day after the status: the same finish
        KindleCompletion("B0TESTKND2", "2024-05-01", how="MANUAL")])  # an earlier reading, on paper too

    result = run_exports(tmp_path, database_url, "--stats-db", stats, "--sidecar-dir", tmp_path / "device",
                         "--calibre-library", library.metadata_db.parent, "--kindle-export", kindle_export)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT title, read_number, finished_on, evidence FROM finished_books ORDER BY 3") == [
        ("On Paper", None, datetime.date(2024, 5, 1), "completion record"),
        ("The Lantern Keeper", 1, datetime.date(2025, 12, 20), "reading"),
        ("On Paper", None, datetime.date(2026, 1, 5), "status")]
    assert query(database_url, "SELECT count(*) FROM bookhelper.kindle_marks") == [(3,)]


def test_a_tandem_read_of_a_kindle_book_and_its_audiobook_finishes_with_the_later_format(tmp_path, database_url):
    starts = [utc(f"2026-01-{n:02d}T20:00:00Z") for n in range(1, 11)]
    kindle_export = write_kindle_export(tmp_path / "kindle", [
        ReadingInterval(start, start + 600, "B0TESTKND1", millis=600_000) for start in starts], SHEET_TITLES,
        completions=[KindleCompletion("B0TESTKND1", "2026-01-10")])
    audible_export = write_audible_export(tmp_path / "audible", {"Account Holder": [
        listening(f"2026-01-{n:02d}", 3_600_000, (n - 2) * 1_500_000, (n - 1) * 1_500_000, "The Lantern Keeper",
                  "B0TESTAUD9", book_length_ms=36_000_000) for n in range(2, 26)]},
        [AudibleTitle("B0TESTAUD9", "The Lantern Keeper", "", ("Calla Whitcombe",), (), 600)])
    finished = "SELECT read_number, finished_at, finished_on, formats FROM finished_books"

    result = run_exports(tmp_path, database_url, "--kindle-export", kindle_export, "--audible-export", audible_export)

    # the Kindle read finished on 10 January, the audiobook of the same read on 25 January (its last second in
    # Berlin, the file's zone): one finish, the later
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(DISTINCT read_instance_id), bool_and(is_parallel_read) "
                               "FROM reading_sessions") == [(1, True)]
    assert query(database_url, finished) == [
        (1, ts("2026-01-25 22:59:59").replace(tzinfo=datetime.timezone.utc), datetime.date(2026, 1, 25),
         "audiobook, ebook")]


def test_a_koreader_status_set_during_a_kindle_read_leaves_the_finish_on_amazons_day(tmp_path, database_url):
    md5, start = "0" * 31 + "1", utc("2025-12-20T18:00:00Z")
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", [Book(
        1, "The Lantern Keeper", "Calla Whitcombe", 300, md5, None, "en", start)],
        [(1, page, start + page * 60, 50, 300) for page in range(1, 11)])  # a first look, far from the end
    library = write_calibre_library(tmp_path / "library", [CalibreBook(
        1, "The Lantern Keeper", ["Calla Whitcombe"], identifiers={"amazon": "B0TESTKND1"},
        cwa_checksums=[("EPUB", md5)])])
    write_sidecar(tmp_path / "device", "Books/Lantern.sdr/metadata.epub.lua", current_sidecar(
        partial_md5_checksum=md5, annotations={}, summary={"status": "complete", "modified": "2026-01-05"}))
    kindle_export = write_kindle_export(tmp_path / "kindle", [
        ReadingInterval(utc(f"2026-01-{n:02d}T20:00:00Z"), utc(f"2026-01-{n:02d}T20:10:00Z"), "B0TESTKND1",
                        millis=600_000) for n in range(1, 11)],
        completions=[KindleCompletion("B0TESTKND1", "2026-01-10")])

    result = run_exports(tmp_path, database_url, "--stats-db", stats, "--sidecar-dir", tmp_path / "device",
                         "--calibre-library", library.metadata_db.parent, "--kindle-export", kindle_export)

    # the status, set on 5 January while the Kindle read went on, is that read's finish, dated by Amazon's record
    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT read_number, finished_on, evidence, formats FROM finished_books") == [
        (1, datetime.date(2026, 1, 10), "reading and status", "ebook")]


def test_a_finishing_session_another_source_already_holds_finishes_nothing(tmp_path, database_url):
    start = utc("2026-01-02T20:00:00Z")
    export = write_kindle_export(tmp_path / "k", [ReadingInterval(start, start + 600, "B0TESTKND1", millis=600_000)],
                                 completions=[KindleCompletion("B0TESTKND1", "2026-01-02")])
    # the reader's book holds the ASIN, and another loader's session holds the Kindle session's key
    query(database_url, """
        WITH book AS (INSERT INTO books (title, asin) VALUES ('The Lantern Keeper', 'B0TESTKND1') RETURNING book_id)
        INSERT INTO reading_sessions (book_id, start_time, end_time, duration_minutes, device, data_source)
        SELECT book_id, '2026-01-02 20:00:00', '2026-01-02 20:10:00', 10, 'Kindle E-reader', 'bookplayer' FROM book""")

    result = run_exports(tmp_path, database_url, "--kindle-export", export)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT data_source FROM reading_sessions") == [("bookplayer",)]
    assert query(database_url, "SELECT count(*) FROM bookhelper.kindle_finishes") == [(0,)]
    assert "Kindle: sessions left out (another source's row holds their book, start and device): 1" in result.stderr


@pytest.mark.empty_database
def test_missing_exports_exit_66_and_a_dry_run_writes_nothing(tmp_path, database_url):
    missing = run_exports(tmp_path, database_url, "--kindle-export", tmp_path / "nope.zip")
    assert missing.returncode == 66
    assert "nope.zip: no such file or folder (check --kindle-export or KINDLE_EXPORT)" in missing.stderr
    assert "Traceback" not in missing.stderr

    dry = run_exports(tmp_path, database_url, "--dry-run", "--kindle-export",
                      write_kindle_export(tmp_path / "k", SHEET_INTERVALS, SHEET_TITLES))
    assert dry.returncode == 0, dry.stderr
    assert query(database_url, "SELECT to_regclass('bookhelper.kindle_intervals')") == [(None,)]


def test_a_kindle_book_in_calibre_is_the_koreader_book_and_its_audiobook_a_tandem_read(tmp_path, database_url):
    day = 86400
    start = utc("2026-01-01T18:00:00Z")
    koreader_book = Book(1, "The Lantern Keeper", "Calla Whitcombe", 300, "0" * 31 + "1", None, "en", start)
    page_rows = [(1, page, start + (page - 1) * 3 * day + 3600, 600, 300) for page in range(1, 11)]
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", [koreader_book], page_rows)
    library = write_calibre_library(tmp_path / "library", [CalibreBook(
        1, "The Lantern Keeper", ["Calla Whitcombe"], identifiers={"amazon": "b0testknd1"},
        cwa_checksums=[("EPUB", "0" * 31 + "1")])])
    kindle_export = write_kindle_export(tmp_path / "kindle", [ReadingInterval(
        start + 5 * day, start + 5 * day + 1200, "B0TESTKND1", millis=1_200_000)], SHEET_TITLES)
    audible_export = write_audible_export(tmp_path / "audible", {"Account Holder": [
        listening(f"2026-01-{n:02d}", 3_600_000, (n - 2) * 3_600_000, (n - 1) * 3_600_000,
                  "The Lantern Keeper: Harbor Lights, Book 1 (Unabridged)", "B0TESTAUD9", book_length_ms=36_000_000)
        for n in range(2, 12)]}, [AudibleTitle("B0TESTAUD9", "The Lantern Keeper", "Harbor Lights, Book 1",
                                               ("Calla Whitcombe",), ("Ann Lee", "Bo Park"), 600)])

    result = run_exports(tmp_path, database_url, "--stats-db", stats, "--calibre-library", library.metadata_db.parent,
                         "--kindle-export", kindle_export, "--audible-export", audible_export)

    assert result.returncode == 0, result.stderr
    assert query(database_url, "SELECT count(*), min(audio_seconds) FROM books") == [(1, 36000)]
    assert query(database_url, """
        SELECT data_source, media_type, count(*), count(DISTINCT read_instance_id), min(read_number),
               bool_and(is_parallel_read), sum(duration_seconds)
        FROM reading_sessions GROUP BY 1, 2 ORDER BY 1""") == [
        ("audible", "audiobook", 10, 1, 1, True, 36000), ("kindle", "ebook", 1, 1, 1, False, 1200),
        ("koreader", "ebook", 10, 1, 1, True, 6000)]
    assert query(database_url, """
        SELECT count(DISTINCT s.read_instance_id) FROM reading_sessions s
        WHERE s.data_source IN ('audible', 'koreader')""") == [(1,)]
    assert query(database_url, "SELECT session_count, distinct_media_types FROM tandem_reading_sessions") == [(20, 2)]
    assert query(database_url, "SELECT matched_by, narrators FROM bookhelper.audible_books") == [
        ("title_author", ["Ann Lee", "Bo Park"])]

    # With a longer rule, the ten days of overlap are not enough: the audiobook read is its own again.
    again = run_exports(tmp_path, database_url, "--stats-db", stats, "--calibre-library", library.metadata_db.parent,
                        "--kindle-export", kindle_export, "--audible-export", audible_export,
                        ETL_TANDEM_MIN_OVERLAP_DAYS="30")
    assert again.returncode == 0, again.stderr
    assert query(database_url, "SELECT count(*) FROM reading_sessions WHERE is_parallel_read") == [(0,)]
    assert query(database_url, "SELECT count(DISTINCT read_instance_id) FROM reading_sessions") == [(3,)]


def test_a_3_0_0_warehouse_is_upgraded_and_then_loads_the_exports(tmp_path, database_url):
    stats = write_statistics_file(tmp_path / "statistics.sqlite3", [Book(1, "Dune", "Frank Herbert", 50, "b" * 32)],
                                  [(1, 1, utc("2026-01-02T10:00:00Z"), 60, 50)])
    assert run_exports(tmp_path, database_url, "--stats-db", stats).returncode == 0
    # what 3.0.0 had: none of the export tables, no time_precision, schema version 3
    query(database_url, """
        DROP TABLE bookhelper.kindle_intervals, bookhelper.audible_days, bookhelper.audible_books,
                   bookhelper.export_match_overrides CASCADE;
        ALTER TABLE public.reading_sessions DROP COLUMN time_precision;
        UPDATE bookhelper.schema_meta SET value = '3' WHERE key = 'schema_version'""")

    result = run_exports(tmp_path, database_url, "--stats-db", stats, "--kindle-export",
                         write_kindle_export(tmp_path / "k", SHEET_INTERVALS, SHEET_TITLES))

    assert result.returncode == 0, result.stderr
    assert f"upgrading the warehouse schema to version {SCHEMA_VERSION}" in result.stderr
    assert query(database_url, """SELECT data_source, time_precision, count(*) FROM reading_sessions
                                  GROUP BY 1, 2 ORDER BY 1""") == [("kindle", "second", 4), ("koreader", "second", 1)]
    assert query(database_url, "SELECT sum(reading_seconds), sum(ebook_seconds) FROM reading_days") == [
        (60 + 4 + 1671 + 601 + 330, 60 + 4 + 1671 + 601 + 330)]


def test_listening_days_number_reads_by_position_and_keep_profiles_apart(tmp_path, database_url):
    def event(day, start, end, duration="1800000"):
        return listening(day, duration, start, end, book_length_ms=36_000_000)
    holder = [event("2026-01-01", 0, 20_000_000), event("2026-01-02", 20_000_000, 35_000_000),
              event("2026-01-05", 0, 1_800_000), event("2026-01-06", "", "", duration="Not Available"),
              event("2026-01-06", 0, 0, duration="-5")]
    kid = [event("2026-01-02", 0, 1_800_000)]
    export = write_audible_export(tmp_path / "a.zip", {"Account Holder": holder, "Kid": kid}, as_zip=True)

    result = run_exports(tmp_path, database_url, "--audible-export", export)

    assert result.returncode == 0, result.stderr
    assert "empty or negative duration: 2" in result.stderr
    assert query(database_url, """
        SELECT s.start_time, s.end_time, s.device, s.duration_seconds, s.read_number, s.time_precision, s.media_type
        FROM reading_sessions s ORDER BY s.device, s.start_time""") == [
        (ts("2025-12-31 23:00:00"), ts("2026-01-01 23:00:00"), "Audible", 1800, 1, "day", "audiobook"),
        (ts("2026-01-01 23:00:00"), ts("2026-01-02 23:00:00"), "Audible", 1800, 1, "day", "audiobook"),
        (ts("2026-01-04 23:00:00"), ts("2026-01-05 23:00:00"), "Audible", 1800, 2, "day", "audiobook"),
        (ts("2026-01-01 23:00:00"), ts("2026-01-02 23:00:00"), "Audible (Kid)", 1800, 1, "day", "audiobook")]
    assert query(database_url, "SELECT title, audio_seconds, source FROM books") == [("Quiet Hours", None, "audible")]
    # The first read reached the end: a finished audiobook (the second, started again, has not yet).
    assert query(database_url, "SELECT count(*) FROM finished_books WHERE formats = 'audiobook'") == [(1,)]


def test_a_run_lost_after_all_its_export_writes_leaves_the_warehouse_as_it_was(tmp_path, database_url):
    older = write_kindle_export(tmp_path / "older", SHEET_INTERVALS[:3], SHEET_TITLES)
    assert run_exports(tmp_path, database_url, "--kindle-export", older).returncode == 0
    before = query(database_url, SESSION_ROWS)
    newer = write_kindle_export(tmp_path / "newer", SHEET_INTERVALS, SHEET_TITLES, SHEET_DOCUMENTS)
    listening_export = write_audible_export(tmp_path / "audible", {"Account Holder": SHEET_EVENTS})
    holder = psycopg2.connect(database_url)
    # the run's last statement waits for this lock, with every write of both exports done in its transaction
    holder.cursor().execute("LOCK TABLE bookhelper.etl_runs IN EXCLUSIVE MODE")
    try:
        env_file = tmp_path / "empty.env"
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--env-file", str(env_file), "--kindle-export", str(newer),
             "--audible-export", str(listening_export)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=cli_env(DATABASE_URL=database_url, HOME=str(tmp_path), ETL_TIMEZONE="UTC", TMPDIR=str(tmp_path)))
        pid = wait_for_statement(database_url, "INSERT INTO etl_runs")
        assert pid
        # the machine goes away: the process is killed and its connection lost with it
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        query(database_url, "SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        holder.close()
    wait_for_backends_to_end(database_url)

    assert query(database_url, SESSION_ROWS) == before
    assert query(database_url, "SELECT count(*) FROM bookhelper.audible_days") == [(0,)]
    again = run_exports(tmp_path, database_url, "--kindle-export", newer, "--audible-export", listening_export)
    assert again.returncode == 0, again.stderr
    assert query(database_url, "SELECT data_source, count(*) FROM reading_sessions GROUP BY 1 ORDER BY 1") == [
        ("audible", 3), ("kindle", 4)]


# The reader's sync_status and the job's device_sync ---------------------------------------------------------------


def test_each_export_gets_its_row_in_the_readers_sync_status_and_a_run_without_statistics_writes_no_koreader_row(
    tmp_path, database_url
):
    kindle_export = write_kindle_export(tmp_path / "kindle", SHEET_INTERVALS, SHEET_TITLES, SHEET_DOCUMENTS)
    audible_export = write_audible_export(tmp_path / "audible", {"Account Holder": SHEET_EVENTS})
    rows = """SELECT source_name, sync_status, records_synced, records_created, records_updated, error_message,
                     last_sync_time IS NOT NULL, sync_mode FROM sync_status ORDER BY 1"""

    first = run_exports(tmp_path, database_url, "--kindle-export", kindle_export, "--audible-export", audible_export)

    assert first.returncode == 0, first.stderr
    written = dict(query(database_url, "SELECT data_source, count(*) FROM reading_sessions GROUP BY 1"))
    assert written == {"audible": 3, "kindle": 4}
    assert query(database_url, rows) == [
        ("audible", "success", 3, 3, 0, None, True, "incremental"),  # three listening days, each a new row
        ("kindle", "success", 4, 4, 0, None, True, "incremental"),  # the intervals it kept, each its own session
    ]
    again = run_exports(tmp_path, database_url, "--kindle-export", kindle_export)
    assert again.returncode == 0, again.stderr
    assert query(database_url, rows) == [
        ("audible", "success", 3, 3, 0, None, True, "incremental"),  # not configured tonight: left as it was
        ("kindle", "success", 0, 0, 0, None, True, "incremental"),  # unchanged: nothing read, nothing written
    ]
    assert query(database_url, "SELECT count(*) FROM bookhelper.device_sync") == [(0,)]


def test_a_failed_night_marks_every_configured_source_failed_in_the_readers_sync_status(tmp_path, database_url):
    kindle_export = write_kindle_export(tmp_path / "kindle", SHEET_INTERVALS, SHEET_TITLES)
    assert run_exports(tmp_path, database_url, "--kindle-export", kindle_export).returncode == 0

    failed = run_exports(tmp_path, database_url, "--kindle-export", kindle_export,
                         "--stats-db", tmp_path / "missing.sqlite3")

    assert failed.returncode == 66, failed.stderr
    assert query(database_url, """SELECT source_name, sync_status, error_message LIKE '%missing.sqlite3%'
                                  FROM sync_status ORDER BY 1""") == [("kindle", "failed", True),
                                                                      ("koreader", "failed", True)]


def test_two_runs_of_the_same_exports_at_once_serialize_and_load_them_once(tmp_path, database_url, new_database):
    kindle_export = write_kindle_export(tmp_path / "kindle.zip", SHEET_INTERVALS, SHEET_TITLES, as_zip=True)
    audible_export = write_audible_export(tmp_path / "audible", {"Account Holder": SHEET_EVENTS})
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env_file.chmod(0o600)
    arguments = [sys.executable, str(SCRIPT), "--env-file", str(env_file), "--kindle-export", str(kindle_export),
                 "--audible-export", str(audible_export)]
    runs = [subprocess.Popen(arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=cli_env(HOME=str(tmp_path), DATABASE_URL=database_url, ETL_TIMEZONE="UTC"))
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    once = new_database(warehouse=True)
    assert run_exports(tmp_path, once, "--kindle-export", kindle_export, "--audible-export",
                       audible_export).returncode == 0
    assert query(database_url, SESSION_ROWS) == query(once, SESSION_ROWS)
    assert query(database_url, "SELECT count(*) FROM etl_runs WHERE status = 'success'") == [(2,)]
