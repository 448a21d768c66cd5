"""The Kindle and Audible export generators write the layout the fact sheets state.

Each file is read back as bytes (BOMs, line ends, quoting) and with Python's csv module (headers,
records, values), in the folder form and the zip form, for hand-made rows (the sheets' invented
examples, reproduced byte for byte) and for generated histories (their measured shapes).
"""

import calendar
import csv
import io
import os
import re
import time
import zipfile
from collections import Counter, defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest

from samples import audible, kindle
from samples.audible import (
    LIBRARY_HEADER,
    LISTENING_HEADER,
    AudibleTitle,
    ListeningEvent,
    generate_audible_history,
    write_audible_export,
)
from samples.kindle import (
    READING_SESSION_HEADER,
    KindleTitle,
    PersonalDocument,
    ReadingInterval,
    generate_completions,
    generate_kindle_history,
    write_kindle_export,
)

BOM = b"\xef\xbb\xbf"
ALL_QUOTED_LINE = re.compile(r'^"(?:[^"]|"")*"(?:,"(?:[^"]|"")*")*$')
ISO_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
HOSTILE_NAMES = ("../escape.csv", "/abs.csv", "../../etc/also-not.csv")
KINDLE_CRLF = (kindle.RELATIONSHIP_INDEX_PATH, kindle.RELATIONSHIP_INDEX_FE_PATH, kindle.AUTHOR_NAME_PATH,
               kindle.AUTHOR_ID_PATH, kindle.GENRES_PATH, kindle.RELATIONSHIP_TYPES_PATH,
               kindle.FILE_DESCRIPTIONS_PATH)
QUOTE_ALL_KINDLE = KINDLE_CRLF[:-1]


# --- reading back --------------------------------------------------------------------------


def tree(root: Path) -> dict:
    """Every file under a folder: path inside the export ("/"-separated) -> bytes."""
    files = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder, name)
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def boms(data: bytes) -> int:
    count = 0
    while data.startswith(BOM, count * 3):
        count += 1
    return count


def text(data: bytes) -> str:
    """The file's text after all its BOMs."""
    return data[3 * boms(data):].decode("utf-8")


def records(data: bytes) -> list:
    """The file's records (header first), as the csv module reads them."""
    return list(csv.reader(io.StringIO(text(data), newline="")))


def dicts(data: bytes) -> list:
    return list(csv.DictReader(io.StringIO(text(data), newline="")))


def lines(data: bytes, end: str) -> list:
    body = text(data)
    assert body.endswith(end)
    return body[: -len(end)].split(end)


# --- Kindle ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kindle_history():
    return generate_kindle_history(7, 5_000)


@pytest.fixture(scope="module")
def kindle_files(tmp_path_factory, kindle_history):
    root = write_kindle_export(tmp_path_factory.mktemp("kindle") / "export", *kindle_history)
    return tree(root)


@pytest.fixture(scope="module")
def kindle_zip(tmp_path_factory, kindle_history):
    return write_kindle_export(tmp_path_factory.mktemp("kindle-zip") / "kindle.zip", *kindle_history, as_zip=True,
                               hostile_names=HOSTILE_NAMES)


SHEET_SESSION_EXAMPLE = """\
start_timestamp,end_timestamp,ASIN,purchased_marketplace,preferred_marketplace,device_family,device_serial_number,device_software_version,content_type,total_reading_millis,number_of_page_flips
2026-01-03T19:02:11Z,2026-01-03T19:30:02Z,B0TESTKND1,www.amazon.com,www.amazon.com,Kindle E-reader,G000TESTSERIAL01,4300000011,E-Book,1671400,38
2026-01-02T06:40:00Z,2026-01-02T06:40:04Z,B0TESTKND1,www.amazon.com,www.amazon.com,,0123456789ABCDEF0123456789ABCDEF,1180000033,E-Book,3800,1
2026-01-03T19:02:11Z,2026-01-03T19:30:02Z,B0TESTKND1,www.amazon.com,www.amazon.com,Kindle E-reader,G000TESTSERIAL01,4400000022,E-Book,1671400,38
Not Available,2026-01-04T21:15:40Z,B0TESTKND2,,www.amazon.com,,0123456789ABCDEF0123456789ABCDEF,,E-Book,,
2026-01-05T22:01:09Z,2026-01-05T22:11:09Z,B0TESTKND1,www.amazon.com,www.amazon.com,Kindle E-reader,G000TESTSERIAL01,4400000022,E-Book,600300,1
2026-01-06T12:00:00Z,2026-01-06T12:05:30Z,B0C0FFEE0123456789ABCDEF01234567,,www.amazon.com,Kindle E-reader,G000TESTSERIAL01,4400000022,Personal Document,330100,12
2026-01-06T20:10:00Z,2026-01-06T20:14:10Z,B0TESTKND3,,www.amazon.com,Kindle Cloud Reader,TESTCLOUDREADERSERIAL000000001,20000105,E-Book Sample,249600,9
"""  # noqa: E501 - the sheet's invented example, verbatim
PHONE = "0123456789ABCDEF0123456789ABCDEF"


def utc(stamp: str) -> int:
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


def sheet_intervals() -> list:
    start, end = utc("2026-01-03T19:02:11Z"), utc("2026-01-03T19:30:02Z")
    return [
        ReadingInterval(start, end, "B0TESTKND1", software_version="4300000011", millis=1_671_400, page_flips=38),
        ReadingInterval(utc("2026-01-02T06:40:00Z"), utc("2026-01-02T06:40:04Z"), "B0TESTKND1", device_family="",
                        serial=PHONE, software_version="1180000033", millis=3_800, page_flips=1),
        ReadingInterval(start, end, "B0TESTKND1", millis=1_671_400, page_flips=38),
        ReadingInterval(None, utc("2026-01-04T21:15:40Z"), "B0TESTKND2", device_family="", serial=PHONE),
        ReadingInterval(utc("2026-01-05T22:01:09Z"), utc("2026-01-05T22:11:09Z"), "B0TESTKND1", millis=600_300,
                        page_flips=1),
        ReadingInterval(utc("2026-01-06T12:00:00Z"), utc("2026-01-06T12:05:30Z"), "B0C0FFEE0123456789ABCDEF01234567",
                        "Personal Document", millis=330_100, page_flips=12),
        ReadingInterval(utc("2026-01-06T20:10:00Z"), utc("2026-01-06T20:14:10Z"), "B0TESTKND3", "E-Book Sample",
                        "Kindle Cloud Reader", "TESTCLOUDREADERSERIAL000000001", "20000105", 249_600, 9),
    ]


def test_the_sheets_session_example_is_written_byte_for_byte(tmp_path):
    files = tree(write_kindle_export(tmp_path / "export", sheet_intervals(), distractors=False))
    assert files[kindle.READING_SESSION_PATH] == BOM + SHEET_SESSION_EXAMPLE.encode()


def test_session_defaults_write_the_span_and_empty_values_as_asked(tmp_path):
    intervals = [ReadingInterval(1_700_000_000, 1_700_000_042, "B0TESTKND1"),
                 ReadingInterval(1_700_000_100, 1_700_000_142, "B0TESTKND1", millis=None, page_flips=None),
                 ReadingInterval(None, 1_700_000_300, "B0TESTKND1", millis=5, page_flips=3)]
    rows = dicts(tree(write_kindle_export(tmp_path / "e", intervals, distractors=False))[kindle.READING_SESSION_PATH])
    assert [r["total_reading_millis"] for r in rows] == ["42000", "", ""]
    assert [r["number_of_page_flips"] for r in rows] == ["10", "", ""]
    assert rows[2]["start_timestamp"] == "Not Available" and rows[2]["device_software_version"] == ""
    assert rows[2]["end_timestamp"] == "2023-11-14T22:18:20Z"


def test_hand_made_titles_and_documents_are_written_as_the_sheet_says(tmp_path):
    titles = [KindleTitle("B0TESTKND1", "The Lantern Keeper (Harbor Lights Book 2)", ("Lee, Ann ", "Bo Park"),
                          series_title="Harbor Lights"),
              KindleTitle("B0TESTKND2", "Quiet Hours", ("Dunn, Cy",), ownership_type="Sample Owner")]
    documents = [PersonalDocument("B0C0FFEE0123456789ABCDEF01234567", "Invented notes", "notes.pdf")]
    files = tree(write_kindle_export(tmp_path / "e", [], titles, documents, duplicate_title_rows=False))
    lantern, quiet = dicts(files[kindle.RELATIONSHIP_INDEX_PATH])
    glued = kindle.series_asin("Harbor Lights")
    assert lantern["Series Title"] == f"Harbor Lights {glued}" and lantern["Series Author"] == f"Lee, Ann\u00a0{glued}"
    assert lantern["Product Name"] == "The Lantern Keeper (Harbor Lights Book 2)"
    assert lantern["Sortable Title"] == "Lantern Keeper" and lantern["Position In Collection"] == "2"
    assert quiet["Series Title"] == quiet["Series Author"] == "Not Available"
    assert quiet["Ownership Type"] == "Sample Owner" and quiet["Resource Type"] == "ITEM"
    authors = [(r["Product Name"], r["ASIN"], r["Author Name"]) for r in dicts(files[kindle.AUTHOR_NAME_PATH])]
    assert authors == [(lantern["Product Name"], "B0TESTKND1", "Lee, Ann "), (lantern["Product Name"], "B0TESTKND1",
                       "Bo Park"), ("Quiet Hours", "B0TESTKND2", "Dunn, Cy")]
    (document,) = dicts(files[kindle.DOCUMENT_METADATA_PATH])
    assert (document["DocumentId"], document["Title"], document["Filename"]) == (
        "B0C0FFEE0123456789ABCDEF01234567", "Invented notes", "notes.pdf")
    sent = dicts(files[kindle.SEND_TO_KINDLE_PATH])
    assert [r["document_id"] for r in sent] == ["B0C0FFEE0123456789ABCDEF01234567"]


def test_every_csv_has_one_bom_but_the_tutorial_config_two_and_json_none(kindle_files):
    counts = {path: boms(data) for path, data in kindle_files.items()}
    assert counts.pop(kindle.TUTORIAL_CONFIG_PATH) == 2
    assert {path: n for path, n in counts.items() if path.endswith(".csv") and n != 1} == {}
    assert {path: n for path, n in counts.items() if path.endswith(".json") and n != 0} == {}
    assert any(path.endswith(".json") for path in counts)


def test_library_index_files_and_file_descriptions_are_crlf_the_others_lf(kindle_files):
    for path, data in kindle_files.items():
        if path in KINDLE_CRLF:
            assert data.endswith(b"\r\n") and data.count(b"\n") == data.count(b"\r\n"), path
        else:
            assert b"\r" not in data, path
    assert set(KINDLE_CRLF) <= set(kindle_files)


def test_library_index_files_quote_every_field_header_too(kindle_files):
    headers = {kindle.RELATIONSHIP_INDEX_PATH: kindle.RELATIONSHIP_INDEX_COLUMNS,
               kindle.RELATIONSHIP_INDEX_FE_PATH: kindle.RELATIONSHIP_INDEX_COLUMNS,
               kindle.AUTHOR_NAME_PATH: ("Product Name", "ASIN", "Author Name")}
    for path in QUOTE_ALL_KINDLE:
        file_lines = lines(kindle_files[path], "\r\n")
        assert len(file_lines) > 1, path
        assert all(ALL_QUOTED_LINE.match(line) for line in file_lines), path
        if path in headers:
            assert tuple(records(kindle_files[path])[0]) == headers[path]
    assert lines(kindle_files[kindle.RELATIONSHIP_INDEX_PATH], "\r\n")[0] == (
        '"Product Name","ASIN","Resource Type","Our Price","Ownership Type","Relationship Status","Sortable Title",'
        '"Sortable Author Name","Series Author","Series Title","Relation Type","Position In Collection","Ordered",'
        '"Marketplace","Relationship Creation Date","Created At","Deleted By Customer"')


def test_reading_session_is_bare_with_the_exact_header(kindle_files, kindle_history):
    data = kindle_files[kindle.READING_SESSION_PATH]
    assert text(data).split("\n", 1)[0] == READING_SESSION_HEADER
    assert b'"' not in data
    rows = records(data)
    assert len(rows) == 1 + len(kindle_history[0]) and {len(row) for row in rows} == {11}


def test_not_available_starts_have_empty_version_millis_and_flips(kindle_files):
    rows = dicts(kindle_files[kindle.READING_SESSION_PATH])
    missing = [r for r in rows if r["start_timestamp"] == "Not Available"]
    assert 0.10 < len(missing) / len(rows) < 0.18
    for row in missing:
        assert (row["device_software_version"], row["total_reading_millis"], row["number_of_page_flips"]) == ("",) * 3
        assert ISO_SECONDS.match(row["end_timestamp"])
    assert Counter(r["device_family"] for r in missing).most_common(1)[0][0] == ""
    timed = [r for r in rows if r["start_timestamp"] != "Not Available"]
    assert all(ISO_SECONDS.match(r["start_timestamp"]) and r["total_reading_millis"].isdigit() for r in timed)


def test_series_fields_carry_the_series_asin(kindle_files):
    rows = dicts(kindle_files[kindle.RELATIONSHIP_INDEX_PATH])
    series = [r for r in rows if r["Series Title"] != "Not Available"]
    assert series
    for row in series:
        title, glued = row["Series Title"].rsplit(" ", 1)
        assert re.fullmatch(r"B[0-9A-Z]{9}", glued) and title
        assert row["Series Author"].endswith("\u00a0" + glued)
        assert row["Product Name"].endswith(")") and "(" not in row["Sortable Title"]
    assert {r["Ordered"] for r in rows} == {"Not Available"}
    assert all(re.fullmatch(r"\d+ USD", r["Our Price"]) for r in rows if r["Resource Type"] == "ITEM")
    assert {"ITEM", "AUTHOR", "LIST"} <= {r["Resource Type"] for r in rows}
    assert any(r["ASIN"] == "Not Available" for r in rows)


def test_a_few_item_rows_are_exact_duplicates_unless_asked_not(kindle_files, kindle_history, tmp_path):
    def duplicates(data):
        counts = Counter(tuple(r) for r in records(data)[1:] if r[2] == "ITEM")
        return sum(n - 1 for n in counts.values())

    assert 1 <= duplicates(kindle_files[kindle.RELATIONSHIP_INDEX_PATH]) <= 4
    plain = write_kindle_export(tmp_path / "e", [], kindle_history[1], duplicate_title_rows=False, distractors=False)
    assert duplicates(tree(plain)[kindle.RELATIONSHIP_INDEX_PATH]) == 0


def test_one_author_row_per_author_written_as_amazon_writes_them(kindle_files, kindle_history):
    titles = [t for t in kindle_history[1] if t.resource_type == "ITEM" and t.asin != "Not Available"]
    rows = dicts(kindle_files[kindle.AUTHOR_NAME_PATH])
    assert [(r["ASIN"], r["Author Name"]) for r in rows] == [(t.asin, a) for t in titles for a in t.authors]
    names = [r["Author Name"] for r in rows]
    assert any(n.endswith(" ") for n in names)
    assert sum(", " in n for n in names) > len(names) / 2 > sum(", " not in n for n in names) > 0
    per_asin = Counter(r["ASIN"] for r in rows)
    assert max(per_asin.values()) >= 2


def test_whispersync_has_a_newline_inside_a_field_and_ebok_audi_pdoc_rows(kindle_files, kindle_history):
    data = kindle_files[kindle.WHISPERSYNC_PATH]
    rows = dicts(data)
    assert text(data).split("\n", 1)[0] == kindle.WHISPERSYNC_HEADER
    assert len(rows) < len(lines(data, "\n")) - 1  # more data lines than records
    assert any("\n" in r["Highlight"] for r in rows)
    by_type = defaultdict(set)
    for row in rows:
        by_type[row["ContentType"]].add(row["ASIN"])
    assert {"EBOK", "AUDI", "PDOC"} <= set(by_type)
    documents = {r["DocumentId"] for r in dicts(kindle_files[kindle.DOCUMENT_METADATA_PATH])}
    assert by_type["PDOC"] == documents == {d.document_id for d in kindle_history[2]}
    library = {r["ASIN"] for r in dicts(kindle_files[kindle.RELATIONSHIP_INDEX_PATH])}
    assert by_type["AUDI"] and not by_type["AUDI"] & library
    assert all(r["Product Name"] == "Not Available" for r in rows if r["ContentType"] == "PDOC")


def test_document_metadata_has_documentid_and_hex_ids(kindle_files):
    data = kindle_files[kindle.DOCUMENT_METADATA_PATH]
    header = records(data)[0]
    assert header[0] == "DocumentId" and "Document ID" not in header and len(header) == 13
    ids = [r["DocumentId"] for r in dicts(data)]
    assert ids and all(re.fullmatch(r"[0-9A-F]{32}", i) for i in ids) and any(i.startswith("B0") for i in ids)


def test_distractor_files_sit_where_the_sheet_puts_them(kindle_files):
    assert kindle.SEND_TO_KINDLE_PATH.split("/")[0] == " "
    names = {path.rsplit("/", 1)[-1] for path in kindle_files}
    assert {"Kindle.SendToKindleEvents.csv", "JustInTimeTutorialConfig.csv", "whispersync.csv",
            "Kindle.Devices.EreaderDeviceActiveUsageTime.csv", "Kindle.ReadingInsightsDayUnits.csv",
            "Kindle.UnifiedLibraryIndex.CustomerRelationshipIndex_FE.csv", "FileDescriptions.csv",
            "Frustration Free Setup Credentials.csv"} <= names
    assert kindle.SEND_TO_KINDLE_PATH in kindle_files and kindle.FILE_DESCRIPTIONS_PATH in kindle_files
    described = {r[0] for r in records(kindle_files[kindle.FILE_DESCRIPTIONS_PATH])[1:]}
    assert described == names - {"FileDescriptions.csv"}
    fe = dicts(kindle_files[kindle.RELATIONSHIP_INDEX_FE_PATH])
    assert len(fe) == 7 and {r["ASIN"] for r in fe} == {"Not Available"}
    usage = dicts(kindle_files[kindle.ACTIVE_USAGE_PATH])
    assert usage and {r["device_family"] for r in usage} == {"Kindle E-reader"}
    assert any(r["ASIN"] == "Not Available" for r in usage)
    days = [r["reading_tracked_on_day"] for r in dicts(kindle_files[kindle.DAY_UNITS_PATH])]
    assert days and all(d.endswith("T00:00:00Z") for d in days)


def test_without_distractors_only_the_four_source_files(tmp_path, kindle_history):
    files = tree(write_kindle_export(tmp_path / "e", *kindle_history, distractors=False))
    assert set(files) == {kindle.READING_SESSION_PATH, kindle.RELATIONSHIP_INDEX_PATH, kindle.AUTHOR_NAME_PATH,
                          kindle.DOCUMENT_METADATA_PATH}


def test_the_zip_holds_the_folders_bytes_without_a_wrapper(kindle_zip, kindle_files):
    with zipfile.ZipFile(kindle_zip) as archive:
        entries = {info.filename: info for info in archive.infolist()}
        contents = {name: archive.read(name) for name in entries if name not in HOSTILE_NAMES}
    assert contents == kindle_files
    assert {info.compress_type for info in entries.values()} == {zipfile.ZIP_DEFLATED}
    assert kindle.FILE_DESCRIPTIONS_PATH in entries and kindle.SEND_TO_KINDLE_PATH in entries
    assert not any(name.endswith("/") for name in entries)


def test_hostile_entry_names_only_in_the_zip(kindle_zip, tmp_path):
    with zipfile.ZipFile(kindle_zip) as archive:
        names = archive.namelist()
        assert [n for n in names if n in HOSTILE_NAMES] == list(HOSTILE_NAMES)
        assert archive.read("/abs.csv") == kindle.HOSTILE_ENTRY_TEXT
    with pytest.raises(ValueError):
        write_kindle_export(tmp_path / "folder", [], hostile_names=["../escape.csv"])
    assert not (tmp_path / "escape.csv").exists()


def test_a_seed_gives_the_same_zip_bytes_and_another_seed_others(tmp_path):
    def zipped(seed, name):
        return write_kindle_export(tmp_path / name, *generate_kindle_history(seed, 400), as_zip=True).read_bytes()

    assert zipped(3, "a.zip") == zipped(3, "b.zip") != zipped(4, "c.zip")


def test_completion_records_finish_read_store_books_on_days_they_were_read(kindle_history):
    intervals, titles, _documents = kindle_history
    read_days = {}
    for i in intervals:
        if i.start is not None and i.content_type == "E-Book":
            read_days.setdefault(i.asin, set()).add(time.strftime("%Y-%m-%d", time.gmtime(i.start)))

    completions = generate_completions(7, intervals, titles)

    assert completions == generate_completions(7, intervals, titles) != generate_completions(8, intervals, titles)
    finished = {c.asin for c in completions if c.asin in read_days}
    assert 0.4 < len(finished) / len(read_days) < 0.8
    assert all(c.day in read_days[c.asin] for c in completions if c.how == "AUTOMATIC")
    assert {c.how for c in completions} == {"AUTOMATIC", "MANUAL"}
    assert any(sum(c.asin == asin and c.how == "AUTOMATIC" for c in completions) == 2 for asin in finished)
    # some of the books never read on a Kindle (nine here), marked read by hand
    unread = {t.asin for t in titles} - set(read_days)
    marked = {c.asin for c in completions} - set(read_days)
    assert marked <= unread and 0 < len(marked) < len(unread)
    assert all(c.how == "MANUAL" for c in completions if c.asin in marked)


def test_history_has_exactly_the_rows_asked(kindle_history):
    assert len(kindle_history[0]) == 5_000
    for count in (0, 1, 49, 50, 777):
        assert len(generate_kindle_history(5, count, years=2, books=5)[0]) == count


def test_history_devices_look_like_the_sheets(kindle_history):
    devices = {(i.device_family, i.serial) for i in kindle_history[0] if i.start is not None}
    families = {family: serial for family, serial in devices}
    assert {"Kindle E-reader", "", "Kindle Cloud Reader"} <= set(families)
    assert len(families["Kindle E-reader"]) == 16
    assert re.fullmatch(r"[0-9A-F]{32}", families[""])
    versions = {(i.device_family, len(i.software_version)) for i in kindle_history[0] if i.start is not None}
    assert ("Kindle Cloud Reader", 8) in versions and ("Kindle E-reader", 10) in versions and ("", 10) in versions
    markets = {i.marketplace for i in kindle_history[0]}
    assert markets == {"US", "www.amazon.com"}


def test_history_reads_in_sittings_of_short_intervals(kindle_history):
    timed = [i for i in kindle_history[0] if i.start is not None]
    spans = [i.end - i.start for i in timed]
    assert 0.35 < sum(s < 60 for s in spans) / len(spans) < 0.55
    assert sum(s <= 10 for s in spans) > len(spans) / 5
    idle = [i for i in timed if 600 <= i.end - i.start <= 604 and i.page_flips <= 2]
    assert len(idle) > 50 and {i.device_family for i in idle} == {"Kindle E-reader"}
    assert max(spans) <= 3 * 3600 + 1
    by_device = defaultdict(list)
    for i in timed:
        by_device[i.serial].append(i)
    pauses = []
    for rows in by_device.values():
        rows.sort(key=lambda i: i.start)
        pauses += [b.start - a.end for a, b in zip(rows, rows[1:])]
    assert sum(0 < p < 60 for p in pauses) > len(pauses) / 4
    assert any(i.end // 86400 != i.start // 86400 for i in timed)  # crosses a UTC midnight


def test_history_millis_follow_the_span_within_a_second(kindle_history):
    timed = [i for i in kindle_history[0] if i.start is not None]
    close = [i for i in timed if i.millis == -1 or 0 <= i.millis - (i.end - i.start) * 1000 < 1000]
    assert len(close) / len(timed) > 0.99


def test_history_is_unsorted_and_has_resends_and_overlaps(kindle_history):
    rows = kindle_history[0]
    starts = [i.start for i in rows if i.start is not None]
    assert starts != sorted(starts)
    keys = defaultdict(set)
    for i in rows:
        if i.start is not None:
            keys[(i.asin, i.start, i.serial)].add(i.software_version)
    assert sum(len(versions) > 1 for versions in keys.values()) >= 5
    by_asin = defaultdict(list)
    for i in rows:
        if i.start is not None:
            by_asin[i.asin].append(i)
    across = same = 0
    for group in by_asin.values():
        group.sort(key=lambda i: i.start)
        for a, b in zip(group, group[1:]):
            if b.start < a.end and b.start != a.start:
                across += a.serial != b.serial
                same += a.serial == b.serial
    assert across >= 3 and same >= 3


def test_history_has_samples_documents_and_asins_no_library_file_names(kindle_history):
    intervals, titles, documents = kindle_history
    kinds = Counter(i.content_type for i in intervals)
    assert kinds["E-Book Sample"] > 0 and kinds["Personal Document"] > 0
    document_ids = {d.document_id for d in documents}
    assert {i.asin for i in intervals if i.content_type == "Personal Document"} <= document_ids
    assert any(i.startswith("B0") for i in document_ids)
    known = {t.asin for t in titles}
    assert 1 <= len({i.asin for i in intervals if i.content_type == "E-Book"} - known) <= 3
    assert {t.ownership_type for t in titles} >= {"Item Owner", "Sample Owner", "Not Interested"}


def test_kindle_cli_writes_a_zip(tmp_path, capsys):
    out = tmp_path / "kindle.zip"
    assert kindle.main([str(out), "--zip", "--intervals", "300", "--seed", "3", "--years", "2"]) == 0
    with zipfile.ZipFile(out) as archive:
        rows = records(archive.read(kindle.READING_SESSION_PATH))
    assert len(rows) == 301 and str(out) in capsys.readouterr().out


def test_kindle_hundred_thousand_intervals_in_a_few_seconds(tmp_path):
    began = time.perf_counter()
    history = generate_kindle_history(11, 100_000)
    write_kindle_export(tmp_path / "big.zip", *history, as_zip=True)
    assert time.perf_counter() - began < 8


# --- Audible ---------------------------------------------------------------------------------


SHEET_LISTENING_EXAMPLE = """\
"Start Date","End Date","Event Duration Milliseconds","Start Position Milliseconds","End Position Milliseconds","Product Name","ASIN","Book Length Milliseconds","Delivery Type","Narration Speed","Bookmark","Audio Type","Asin Owned","Listening Mode","Store","App Version","Local Timezone"
"2026-01-08","2026-01-08","1500000","3600000","5400000","The Lantern Keeper: Harbor Lights, Book 2 (Unabridged)","B0TESTAUD2","61200000","Download","1.20","0","FullTitle","No","Online","Audible","3.99.0","Europe/Berlin"
"2026-01-08","2026-01-08","1500000","3600000","5400000","The Lantern Keeper: Harbor Lights, Book 2 (Unabridged) Part 1","B0TESTAUD2","61200000","Download","1.20","0","FullTitle","No","Online","Audible","3.99.0","Europe/Berlin"
"2026-01-08","2026-01-08","1500000","3600000","5400000","The Lantern Keeper: Harbor Lights, Book 2 (Unabridged) Part 2","B0TESTAUD2","61200000","Download","1.20","0","FullTitle","No","Online","Audible","3.99.0","Europe/Berlin"
"2026-01-08","2026-01-08","4000","5400000","5370000","The Lantern Keeper: Harbor Lights, Book 2 (Unabridged)","B0TESTAUD2","61200000","Download","1.20","0","FullTitle","No","Online","Audible","3.99.0","Europe/Berlin"
"2026-01-07","2026-01-08","2700000","0","2700000","Quiet Hours (Unabridged)","B0TESTAUD1","36000000","Streaming","1.00","0","FullTitle","No","Online","Audible","3.99","Europe/Berlin"
"2026-01-06","2026-01-06","95400","0","95400","Atlas of Small Things: Part 3","1234567890","43200000","Download","1.00","0","FullTitle","No","Offline","Audible","3.98.1","Europe/Berlin"
"2026-01-06","2026-01-06","300000","0","300000","Salt Road (Unabridged)","B0TESTAUD3","43200000","Streaming","1.00","0","Preview","No","Online","Audible","3.98.1","Europe/Berlin"
"""  # noqa: E501 - the sheet's invented example, verbatim
LANTERN = "The Lantern Keeper: Harbor Lights, Book 2 (Unabridged)"


def sheet_events() -> list:
    """The sheet's example rows, given oldest first: the writer puts the newest day first."""
    return [
        ListeningEvent("2026-01-06", "2026-01-06", 95_400, 0, 95_400, "Atlas of Small Things: Part 3", "1234567890",
                       43_200_000, app_version="3.98.1"),
        ListeningEvent("2026-01-06", "2026-01-06", 300_000, 0, 300_000, "Salt Road (Unabridged)", "B0TESTAUD3",
                       43_200_000, audio_type="Preview", delivery_type="Streaming", listening_mode="Online",
                       app_version="3.98.1"),
        ListeningEvent("2026-01-07", "2026-01-08", 2_700_000, 0, 2_700_000, "Quiet Hours (Unabridged)", "B0TESTAUD1",
                       delivery_type="Streaming", listening_mode="Online", app_version="3.99"),
        ListeningEvent("2026-01-08", "2026-01-08", 1_500_000, 3_600_000, 5_400_000, LANTERN, "B0TESTAUD2",
                       61_200_000, "1.20", listening_mode="Online", echo_parts=2),
        ListeningEvent("2026-01-08", "2026-01-08", 4_000, 5_400_000, 5_370_000, LANTERN, "B0TESTAUD2", 61_200_000,
                       "1.20", listening_mode="Online"),
    ]


@pytest.fixture(scope="module")
def audible_history():
    return generate_audible_history(5, 6_000)


@pytest.fixture(scope="module")
def audible_files(tmp_path_factory, audible_history):
    return tree(write_audible_export(tmp_path_factory.mktemp("audible") / "export", *audible_history))


def listening_path(profile="Account Holder"):
    return audible.LISTENING_PATH.format(profile=profile)


def test_the_sheets_listening_example_is_written_byte_for_byte(tmp_path):
    files = tree(write_audible_export(tmp_path / "e", {"Account Holder": sheet_events()}, distractors=False))
    assert files["Audible.Listening/Account Holder/Listening.csv"] == BOM + SHEET_LISTENING_EXAMPLE.encode()
    assert SHEET_LISTENING_EXAMPLE.split("\n", 1)[0] == LISTENING_HEADER


def test_listening_csv_quotes_every_field_with_one_bom_and_lf(audible_files, audible_history):
    data = audible_files[listening_path()]
    assert boms(data) == 1 and b"\r" not in data and data.endswith(b'"\n')
    file_lines = lines(data, "\n")
    assert file_lines[0] == LISTENING_HEADER
    assert all(ALL_QUOTED_LINE.match(line) for line in file_lines)
    rows = records(data)
    events = audible_history[0]["Account Holder"]
    assert len(rows) - 1 == sum(1 + e.echo_parts for e in events) and {len(r) for r in rows} == {17}
    days = [r[0] for r in rows[1:]]
    assert days == sorted(days, reverse=True)  # newest first
    assert {r[16] for r in rows[1:]} == {"Europe/Berlin"} and {r[10] for r in rows[1:]} == {"0"}


def test_echo_rows_follow_their_event_identical_but_for_the_name(audible_files):
    rows = records(audible_files[listening_path()])[1:]
    echoes = 0
    for n, row in enumerate(rows):
        part = re.search(r" Part (\d+)$", row[5])
        if part and rows[n - int(part.group(1))][5] == row[5][: part.start()]:
            base = rows[n - int(part.group(1))]
            assert row[:5] + row[6:] == base[:5] + base[6:]
            assert base[5].endswith(")")
            echoes += 1
    assert 0.40 < echoes / len(rows) < 0.48
    assert Counter(len(re.findall(r"\)( Part \d+)$", r[5])) for r in rows)[1] == echoes


def test_part_in_a_real_title_is_not_an_echo(audible_history):
    events = audible_history[0]["Account Holder"]
    atlas = [e for e in events if ": Part 3" in e.product_name]
    assert atlas and all(e.echo_parts == 0 for e in atlas)


def test_old_layout_single_file_with_camelcase_header(tmp_path):
    files = tree(write_audible_export(tmp_path / "e", {"Account Holder": sheet_events()}, old_layout=True))
    assert listening_path() not in files
    rows = dicts(files[audible.OLD_LISTENING_PATH])
    assert tuple(rows[0]) == audible.OLD_LISTENING_COLUMNS
    assert [r["StartDate"] for r in rows[:2]] == ["08-Jan-2026", "08-Jan-2026"] and rows[4]["EndDate"] == "08-Jan-2026"
    assert {r["AsinOwned"] for r in rows} == {"false"} and rows[1]["Title"] == LANTERN + " Part 1"
    assert len(rows) == 7
    with pytest.raises(ValueError):
        write_audible_export(tmp_path / "two", {"A": [], "B": []}, old_layout=True)


def test_library_csv_has_a_bare_header_and_quoted_data(tmp_path):
    library = [AudibleTitle("B0TESTAUD1", "Quiet Hours", authors=("Ann Lee", "Bo Park"), narrators=("Cy Dunn",)),
               AudibleTitle("1234567890", "Atlas of Small Things: Part 3", "Stories, Mostly", length_minutes=None,
                            content_delivery_type="MultiPartBook", is_finished=True,
                            series=("B0SERIES01", "Small Things"))]
    data = tree(write_audible_export(tmp_path / "e", {"Account Holder": []}, library))[audible.LIBRARY_PATH]
    assert boms(data) == 1 and b"\r" not in data
    header, *data_lines = lines(data, "\n")
    assert header == LIBRARY_HEADER and '"' not in header and len(header.split(",")) == 45
    assert len(data_lines) == 2 and all(ALL_QUOTED_LINE.match(line) for line in data_lines)
    quiet, atlas = dicts(data)
    assert quiet["authors"] == "Ann Lee,Bo Park" and quiet["audiobook_narrator"] == "Cy Dunn"
    assert quiet["title"] == quiet["product_name"] == quiet["title_in_english"] == "Quiet Hours"
    assert quiet["subtitle"] == quiet["subtitle_in_english"] == "Not Available" and quiet["length_in_minutes"] == "600"
    assert atlas["length_in_minutes"] == "Not Available" and atlas["subtitle"] == "Stories, Mostly"
    assert atlas["book_series_info"] == "asin:B0SERIES01,title:Small Things" and atlas["is_finished"] == "Yes"
    assert quiet["profile_name"] != "Account Holder"
    assert quiet["whispersync_for_voice_support"] == quiet["ebook_read_along_support"] == "Yes"


def test_audible_distractors(audible_files, tmp_path, audible_history):
    assert {p: boms(d) for p, d in audible_files.items() if boms(d) != 1} == {audible.SETTINGS_PATH: 2}
    descriptions = audible_files[audible.FILE_DESCRIPTIONS_PATH]
    assert descriptions.count(b"\n") == descriptions.count(b"\r\n") > 1
    assert {p for p, d in audible_files.items() if b"\r" in d} == {audible.FILE_DESCRIPTIONS_PATH}
    old = lines(audible_files[audible.OLD_LIBRARY_PATH], "\n")
    assert old[0] == ('"Date Added","Product Name","ASIN","Downloaded","Deleted","Delete By","Date Deleted","Public",'
                      '"Streamed","Preorder","Downloads","Date First Downloaded","Order Number","Origin Type"')
    purchases = lines(audible_files[audible.PURCHASE_HISTORY_PATH], "\n")
    assert all(ALL_QUOTED_LINE.match(line) for line in old + purchases)
    header = records(audible_files[audible.PURCHASE_HISTORY_PATH])[0]
    assert len(header) == 24 and header[-4:] == ["Product Name", "ASIN", "Action", "Whispersync"]
    bare = tree(write_audible_export(tmp_path / "bare", *audible_history, distractors=False))
    assert set(bare) == {listening_path(), audible.LIBRARY_PATH}


def test_audible_zip_holds_the_folders_bytes(tmp_path, audible_history, audible_files):
    path = write_audible_export(tmp_path / "audible.zip", *audible_history, as_zip=True)
    with zipfile.ZipFile(path) as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    assert contents == audible_files
    assert "Audible.Listening/Account Holder/Listening.csv" in contents


def test_sentinels_are_written_as_given(tmp_path):
    events = [ListeningEvent("2026-01-01", "2026-01-01", value, 0, 10, "Odd", "B0TESTAUD9", "Not Available")
              for value in ("", "Not Available", "-5")]
    rows = dicts(tree(write_audible_export(tmp_path / "e", {"Account Holder": events}))[listening_path()])
    assert [r["Event Duration Milliseconds"] for r in rows] == ["", "Not Available", "-5"]
    assert {r["Book Length Milliseconds"] for r in rows} == {"Not Available"}


def test_one_folder_per_profile_each_with_one_zone(tmp_path):
    history, library = generate_audible_history(2, 1_500, years=2, books=12, profiles=("Account Holder", "Kim"))
    files = tree(write_audible_export(tmp_path / "e", history, library))
    for profile in ("Account Holder", "Kim"):
        rows = dicts(files[listening_path(profile)])
        assert rows and len({r["Local Timezone"] for r in rows}) == 1
    assert sum(map(len, history.values())) == 1_500 and len(history["Account Holder"]) > len(history["Kim"])
    with pytest.raises(ValueError):
        write_audible_export(tmp_path / "bad", {"a/b": []})


def test_audible_history_shapes(audible_history):
    profiles, library = audible_history
    events = profiles["Account Holder"]
    assert len(events) == 6_000
    full = [e for e in events if e.audio_type == "FullTitle"]
    kinds = Counter(e.audio_type for e in events)
    assert kinds["Preview"] > 0 and kinds["CatalogSample"] > 0 and len(full) > 0.97 * len(events)
    trial_asins = {e.asin for e in events if e.audio_type != "FullTitle"}
    full_asins = {e.asin for e in full}
    assert len(trial_asins - full_asins) > len(trial_asins & full_asins)
    assert 0.3 < sum(e.duration_ms < 60_000 for e in full) / len(full) < 0.6
    assert any(e.duration_ms < 1_000 for e in full)
    midnight = [e for e in events if e.end_date != e.start_date]
    assert midnight and all(
        date.fromisoformat(e.start_date) + timedelta(days=1) == date.fromisoformat(e.end_date) for e in midnight)
    assert any(e.end_position_ms < e.start_position_ms for e in full)
    per_day = Counter((e.asin, e.start_date) for e in full)
    assert max(per_day.values()) >= 5
    assert {re.fullmatch(r"\d\.\d\d", e.narration_speed) is not None for e in events} == {True}
    in_library = {t.asin for t in library}
    absent = full_asins - in_library
    assert absent and any(e.echo_parts for e in full if e.asin in absent)
    assert any(a.isdigit() for a in full_asins) and any(re.fullmatch(r"\d{9}X", a) for a in full_asins)
    assert all(len(a) == 10 for a in full_asins | trial_asins)
    echoing = {e.asin for e in full if e.echo_parts}
    multipart = {t.asin for t in library if t.content_delivery_type == "MultiPartBook"}
    assert echoing & in_library <= multipart and multipart - echoing
    assert sum(t.length_minutes is None for t in library) == 1
    assert any(t.asin not in full_asins | trial_asins for t in library)  # owned, never played


def test_audible_history_relistens_after_finishing(audible_history):
    events = audible_history[0]["Account Holder"][::-1]  # oldest first
    finished = set()
    relistened = False
    for event in events:
        if event.audio_type != "FullTitle":
            continue
        if event.asin in finished and event.start_position_ms == 0:
            relistened = True
        if event.end_position_ms >= event.book_length_ms:
            finished.add(event.asin)
    assert finished and relistened


def test_audible_cli_writes_a_folder(tmp_path, capsys):
    out = tmp_path / "audible"
    assert audible.main([str(out), "--events", "400", "--seed", "2", "--years", "1", "--books", "10"]) == 0
    rows = records((out / "Audible.Listening" / "Account Holder" / "Listening.csv").read_bytes())
    assert len(rows) > 401 and (out / audible.LIBRARY_PATH).is_file() and str(out) in capsys.readouterr().out


def test_audible_fifty_thousand_events_in_a_few_seconds(tmp_path):
    began = time.perf_counter()
    history = generate_audible_history(11, 50_000)
    write_audible_export(tmp_path / "big.zip", *history, as_zip=True)
    assert time.perf_counter() - began < 8


def test_same_seed_same_audible_bytes(tmp_path):
    def zipped(seed, name):
        history = generate_audible_history(seed, 500, years=1, books=8)
        return write_audible_export(tmp_path / name, *history, as_zip=True).read_bytes()

    assert zipped(1, "a.zip") == zipped(1, "b.zip") != zipped(2, "c.zip")
