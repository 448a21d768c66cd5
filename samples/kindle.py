"""Synthetic Kindle parts of an Amazon "Request your data" export, for the tests and the demo.

Every file it writes has the layout of the Kindle export fact sheet (``kindle-export-format.md``): the
folder shapes (``<Dataset>/<Dataset>.csv``, ``<Group>/datasets/<Dataset>/<Dataset>.csv``, a folder named by a
single space, names that differ from their folder), a UTF-8 BOM on every CSV and a doubled one on
``JustInTimeTutorialConfig.csv``, CRLF in the ``Kindle.UnifiedLibraryIndex.*`` files and
``FileDescriptions.csv`` and LF elsewhere, every field quoted in the library index files and only where
needed in the device files, ``Not Available`` sentinels, and a ``whispersync.csv`` field holding a newline.

The reading comes from :func:`generate_kindle_history` or from hand-made :class:`ReadingInterval` rows:
sittings of short intervals, ``Not Available`` starts, rows re-sent with another software version,
overlaps across devices, samples and personal documents whose ids start with ``B0``. With ``distractors``
the export also holds the files that look like reading time but are not (active usage time, day units,
whispersync sync points). The folder and the zip form hold the same bytes; a zip can also carry entries
named ``../escape.csv`` or ``/abs.csv`` to prove that readers never extract. All values are invented.

Headers the sheet states are written exactly; the few files whose columns the sheet does not give
(``FileDescriptions.csv``, ``Kindle.SendToKindleEvents.csv``, ``JustInTimeTutorialConfig.csv``, the
``Frustration Free Setup Credentials.csv`` and the ownership JSON) carry invented columns: they are
there to be found and ignored, so a parser must never depend on them.

Run it from the repository root to write an export folder (or a zip with ``--zip``)::

    python3 -m samples.kindle OUT [--zip] [--intervals 5000] [--years 10] [--seed 1]
"""

import argparse
import csv
import dataclasses
import hashlib
import io
import json
import random
import re
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

BOM = "\ufeff"
NA = "Not Available"
DAY = 86400
END_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z: generated histories end here (no clock is read)
US_UNTIL = 1_577_836_800  # 2020-01-01: older rows write the marketplace "US", newer ones "www.amazon.com"
ZIP_DATE = (2026, 1, 2, 3, 4, 6)  # every zip entry's time stamp, so a seed gives the same zip bytes
HOSTILE_ENTRY_TEXT = b"This entry must never be extracted.\n"

READING_SESSION_HEADER = (
    "start_timestamp,end_timestamp,ASIN,purchased_marketplace,preferred_marketplace,device_family,"
    "device_serial_number,device_software_version,content_type,total_reading_millis,number_of_page_flips"
)
RELATIONSHIP_INDEX_COLUMNS = (
    "Product Name", "ASIN", "Resource Type", "Our Price", "Ownership Type", "Relationship Status",
    "Sortable Title", "Sortable Author Name", "Series Author", "Series Title", "Relation Type",
    "Position In Collection", "Ordered", "Marketplace", "Relationship Creation Date", "Created At",
    "Deleted By Customer",
)
AUTHOR_NAME_COLUMNS = ("Product Name", "ASIN", "Author Name")
AUTHOR_ID_COLUMNS = ("Product Name", "ASIN", "Author ID")
GENRE_COLUMNS = ("Product Name", "ASIN", "Genre")
RELATIONSHIP_TYPE_COLUMNS = ("Product Name", "ASIN", "Ownership Type", "Ownership Subtype")
WHISPERSYNC_HEADER = (
    "ASIN,Product Name,Annotation Type,Customer modified date on device,Device Serial Number,ContentType,"
    "Format,Creation Date,LastUpdatedDate,Highlight,Version,Selection Type,Note,Is Deleted"
)
DOCUMENT_METADATA_HEADER = (
    "DocumentId,Title,DocumentProvider,Filename,DocumentOriginalType,DocumentSizeInBytes,"
    + ",".join(f"DocumentTypeAndConvertionCompletionStatus {n}" for n in range(1, 6))
    + ",HasBeenDeleted,EntryCreationDate"
)
ACTIVE_USAGE_HEADER = "created_timestamp,preferred_marketplace,country,device_family,ASIN,device_active_time_in_ms"
DAY_UNITS_HEADER = "reading_tracked_on_day"
# Invented columns (the sheet does not give these files' headers).
FILE_DESCRIPTIONS_HEADER = "File Name,Description"
SEND_TO_KINDLE_HEADER = "event_timestamp,document_id,source,delivery_status"
TUTORIAL_CONFIG_HEADER = "tutorial_id,times_shown,last_shown_timestamp"
SETUP_CREDENTIALS_HEADER = "Device Type,Created At"

_ULI = "Kindle.UnifiedLibraryIndex"
_ULI_DATASETS = ("CustomerRelationshipIndex", "CustomerRelationshipIndex_FE", "CustomerAuthorNameRelationship",
                 "CustomerAuthorIdRelationship", "CustomerGenres", "CustomerRelationshipTypes")


def _library_index_path(dataset: str) -> str:
    return f"{_ULI}/datasets/{_ULI}.{dataset}/{_ULI}.{dataset}.csv"


READING_SESSION_PATH = "Kindle.Devices.ReadingSession/Kindle.Devices.ReadingSession.csv"
RELATIONSHIP_INDEX_PATH = _library_index_path("CustomerRelationshipIndex")
RELATIONSHIP_INDEX_FE_PATH = _library_index_path("CustomerRelationshipIndex_FE")
AUTHOR_NAME_PATH = _library_index_path("CustomerAuthorNameRelationship")
AUTHOR_ID_PATH = _library_index_path("CustomerAuthorIdRelationship")
GENRES_PATH = _library_index_path("CustomerGenres")
RELATIONSHIP_TYPES_PATH = _library_index_path("CustomerRelationshipTypes")
DOCUMENT_METADATA_PATH = (
    "Kindle.KindleDocs/datasets/Kindle.KindleDocs.DocumentMetadata/Kindle.KindleDocs.DocumentMetadata.csv"
)
WHISPERSYNC_PATH = "Digital.Content.Whispersync/whispersync.csv"
ACTIVE_USAGE_PATH = "Kindle.Devices.EreaderDeviceActiveUsageTime/Kindle.Devices.EreaderDeviceActiveUsageTime.csv"
DAY_UNITS_PATH = "Kindle.ReadingInsights/datasets/Kindle.ReadingInsightsDayUnits/Kindle.ReadingInsightsDayUnits.csv"
FILE_DESCRIPTIONS_PATH = "FileDescriptions.csv"
SEND_TO_KINDLE_PATH = " /Kindle.SendToKindleEvents/Kindle.SendToKindleEvents.csv"  # the folder is one space
TUTORIAL_CONFIG_PATH = "JustInTimeTutorialConfig/JustInTimeTutorialConfig.csv"  # the doubled BOM
SETUP_CREDENTIALS_PATH = "Frustration Free Setup Credentials/Frustration Free Setup Credentials.csv"
OWNERSHIP_JSON_PATH = "Digital.Content.Ownership/Digital.Content.Ownership.{n}.json"
COMPLETED_PATH = "Kindle.UserUniqueTitlesCompleted/Kindle.UserUniqueTitlesCompleted.csv"
COMPLETED_HEADER = "asin_date_and_content_type,product_name"
INSIGHTS_PATH = ("Kindle.reading-insights-sessions_with_adjustments/"
                 "Kindle.reading-insights-sessions_with_adjustments.csv")
INSIGHTS_HEADER = "ASIN,end_time,product_name,reading_marketplace,start_time,total_reading_milliseconds"
CONTENT_UPDATES_PATH = "Kindle.KindleContentUpdate/Kindle.KindleContentUpdate.ContentUpdates.csv"
CONTENT_UPDATES_HEADER = "ASIN,Content Update Date,Product Name,Update Reason"  # invented but ASIN and Product Name
ELSEWHERE_KINDS = ("whispersync", "whispersync_audio", "insights", "content_updates", "ownership")

# Audible ASINs that whispersync.csv's AUDI rows carry (invented; the Audible generator's are different).
WHISPERSYNC_AUDIBLE_ASINS = ("B0WSAUDIO1", "4012345678", "B0WSAUDIO2")
EMBEDDED_NEWLINE_HIGHLIGHT = "The harbor was quiet that night,\nand the lanterns burned low."


@dataclass(frozen=True)
class ReadingInterval:
    """A row of ``Kindle.Devices.ReadingSession.csv``. Times are epoch seconds, UTC.

    ``start=None`` writes ``Not Available`` with empty software version, millis and page flips (and an
    empty purchased marketplace), as every such row of the sheet has. ``millis=-1`` writes the wall span
    ``(end - start) * 1000``; ``None`` writes it empty.
    """

    start: Optional[int]
    end: int
    asin: str
    content_type: str = "E-Book"  # "E-Book", "E-Book Sample", "Personal Document"
    device_family: str = "Kindle E-reader"  # or "" (phone and tablet apps), "Kindle for Mac", "Kindle Cloud Reader"
    serial: str = "G000TESTSERIAL01"
    software_version: str = "4400000022"
    millis: Optional[int] = -1
    page_flips: Optional[int] = 10
    marketplace: str = "www.amazon.com"


@dataclass(frozen=True)
class KindleTitle:
    """A row of ``CustomerRelationshipIndex`` and its ``CustomerAuthorNameRelationship`` rows.

    ``authors`` are written as given, one row each (Amazon mostly writes ``Last, First``). A
    ``series_title`` is written with the series' own ASIN glued on (``<title> <ASIN>``), and
    ``Series Author`` as ``<first author><U+00A0><ASIN>``.
    """

    asin: str
    product_name: str
    authors: tuple = ()
    resource_type: str = "ITEM"
    ownership_type: str = "Item Owner"
    series_title: Optional[str] = None


@dataclass(frozen=True)
class KindleCompletion:
    """A row of ``Kindle.UserUniqueTitlesCompleted.csv``: the key ``<ASIN>_<YYYY-MM-DD>_<how>`` and a title."""

    asin: str
    day: str  # YYYY-MM-DD
    product_name: str = NA
    how: str = "AUTOMATIC"  # or "MANUAL"


@dataclass(frozen=True)
class PersonalDocument:
    """A row of ``Kindle.KindleDocs.DocumentMetadata.csv``; ``document_id`` is 32 upper-case hex."""

    document_id: str
    title: str
    filename: str


# --- bytes of a file -------------------------------------------------------------------------


def csv_bytes(header: Union[str, Sequence[str]], rows: Iterable[Sequence[str]], *, quote_all: bool = False,
              crlf: bool = False, boms: int = 1) -> bytes:
    """A CSV file as Amazon writes it: ``boms`` BOMs, the header, the rows, a line end after each line.

    ``quote_all`` quotes every field, the header too; otherwise a field is quoted only when it must be.
    """
    out = io.StringIO()
    out.write(BOM * boms)
    writer = csv.writer(out, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
                        lineterminator="\r\n" if crlf else "\n")
    writer.writerow(header.split(",") if isinstance(header, str) else header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def write_tree(target: Union[str, Path], files: Mapping[str, bytes], as_zip: bool = False,
               hostile_names: Sequence[str] = ()) -> Path:
    """Write ``files`` (path inside the export -> bytes) as a folder at ``target``, or as a zip whose
    entries are those paths (no wrapper folder), deflated, with fixed time stamps. ``hostile_names`` adds
    zip entries of those exact names, each holding a short text. Returns ``target``."""
    target = Path(target)
    if hostile_names and not as_zip:
        raise ValueError("hostile_names need as_zip: a folder cannot hold such names")
    if not as_zip:
        for name, data in files.items():
            path = target.joinpath(*name.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(_zip_entry(name), data)
        for name in hostile_names:
            archive.writestr(_zip_entry(name), HOSTILE_ENTRY_TEXT)
    return target


def _zip_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)  # keeps "../" and a leading "/" as given
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def iso_seconds(epoch: int) -> str:
    """``2026-01-03T19:02:11Z``: the device files' time stamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def utc_day(epoch: int) -> str:
    """``2026-01-03``: a completion record's day (UTC here: the fact sheet names no zone)."""
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def iso_fraction(epoch: int, digits: int = 3) -> str:
    """``2026-01-03T19:02:11.123Z`` (or ``.12Z``): the other files' time stamps; the fraction is invented."""
    fraction = f"{(epoch * 7919) % 1000:03d}"[:digits]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{fraction}Z"


def _token(text: str, length: int = 8) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:length].upper()


def series_asin(series_title: str) -> str:
    """The (invented) ASIN of a series: ``B0`` and 8 characters derived from its title."""
    return "B0" + _token("series:" + series_title)


_SERIES_SUFFIX = re.compile(r"\s*\([^()]*\)\s*$")
_ARTICLE = re.compile(r"^(The|A|An)\s+")
_PUNCTUATION = re.compile(r"[^\w\s]")
_BOOK_NUMBER = re.compile(r"Book (\d+)\)\s*$")


def sortable_title(product_name: str) -> str:
    """What ``Sortable Title`` holds: no series suffix, no subtitle, no leading article, no punctuation."""
    base = _SERIES_SUFFIX.sub("", product_name).split(":")[0]
    return " ".join(_PUNCTUATION.sub("", _ARTICLE.sub("", base)).split()) or product_name


def _sortable_author(authors: Sequence[str]) -> str:
    if not authors:
        return NA
    name = authors[0].strip()
    if "," in name or " " not in name:
        return name
    first, last = name.rsplit(" ", 1)
    return f"{last}, {first}"


# --- rows of each file -----------------------------------------------------------------------


def _session_row(interval: ReadingInterval) -> list:
    store_book = interval.content_type == "E-Book"
    if interval.start is None:
        return [NA, iso_seconds(interval.end), interval.asin, "", interval.marketplace, interval.device_family,
                interval.serial, "", interval.content_type, "", ""]
    millis = (interval.end - interval.start) * 1000 if interval.millis == -1 else interval.millis
    return [
        iso_seconds(interval.start), iso_seconds(interval.end), interval.asin,
        interval.marketplace if store_book else "", interval.marketplace, interval.device_family,
        interval.serial, interval.software_version, interval.content_type,
        "" if millis is None else str(millis), "" if interval.page_flips is None else str(interval.page_flips),
    ]


def _created(text: str) -> int:
    return 1_420_070_400 + int(_token(text, 7), 16) % (10 * 365 * DAY)


def _title_row(title: KindleTitle) -> list:
    created = _created(title.asin + title.product_name)
    is_item = title.resource_type == "ITEM"
    if title.series_title:
        glued = series_asin(title.series_title)
        first_author = title.authors[0].strip() if title.authors else NA
        series_author, series = f"{first_author}\u00a0{glued}", f"{title.series_title} {glued}"
        number = _BOOK_NUMBER.search(title.product_name)
        position = number.group(1) if number else NA
    else:
        series_author = series = position = NA
    return [
        title.product_name, title.asin, title.resource_type,
        f"{int(_token(title.asin, 2), 16) % 15 + 1} USD" if is_item else NA,
        title.ownership_type, "Active", sortable_title(title.product_name) if is_item else NA,
        _sortable_author(title.authors), series_author, series, NA, position, NA, "www.amazon.com",
        iso_fraction(created, 3), iso_fraction(created + 7, 2 if created % 2 else 3), "false",
    ]


def _document_row(document: PersonalDocument) -> list:
    created = _created(document.document_id)
    kind = document.filename.rsplit(".", 1)[-1].upper() if "." in document.filename else "TXT"
    return [document.document_id, document.title, "Send to Kindle", document.filename, kind,
            str(20_000 + int(_token(document.document_id, 5), 16) % 4_000_000),
            f"{kind}:CONVERSION_COMPLETED", NA, NA, NA, NA, "false", iso_fraction(created, 3)]


def _file_bytes(intervals: Sequence[ReadingInterval], titles: Sequence[KindleTitle],
                documents: Sequence[PersonalDocument], distractors: bool, duplicate_title_rows: bool) -> dict:
    """Every file of the export, path -> bytes, in the order they are written."""
    files = {READING_SESSION_PATH: csv_bytes(READING_SESSION_HEADER, map(_session_row, intervals))}
    title_rows = [_title_row(title) for title in titles]
    if duplicate_title_rows:
        items = [row for row, title in zip(title_rows, titles) if title.resource_type == "ITEM"]
        title_rows += items[::40]  # about 2.5 % of the ITEM rows, written twice
    files[RELATIONSHIP_INDEX_PATH] = csv_bytes(RELATIONSHIP_INDEX_COLUMNS, title_rows, quote_all=True, crlf=True)
    authored = [title for title in titles if title.resource_type == "ITEM" and title.asin != NA]
    files[AUTHOR_NAME_PATH] = csv_bytes(
        AUTHOR_NAME_COLUMNS, ([t.product_name, t.asin, author] for t in authored for author in t.authors),
        quote_all=True, crlf=True)
    files[DOCUMENT_METADATA_PATH] = csv_bytes(DOCUMENT_METADATA_HEADER, map(_document_row, documents))
    if distractors:
        files.update(_distractor_files(intervals, titles, documents))
        descriptions = [[path.rsplit("/", 1)[-1], f"Invented description of {path.rsplit('/', 1)[-1]}."]
                        for path in files]
        files = {FILE_DESCRIPTIONS_PATH: csv_bytes(FILE_DESCRIPTIONS_HEADER, descriptions, crlf=True), **files}
    return files


GENRES = ("Literature & Fiction", "Science Fiction & Fantasy", "Mystery, Thriller & Suspense", "History",
          "Poetry", "Biographies & Memoirs")


def _distractor_files(intervals: Sequence[ReadingInterval], titles: Sequence[KindleTitle],
                      documents: Sequence[PersonalDocument]) -> dict:
    files = {}
    items = [t for t in titles if t.resource_type == "ITEM" and t.asin != NA]
    fe_rows = [[f"Invented list {n}", NA, "LIST", NA, "List Owner", "Active", NA, NA, NA, NA, NA, NA, NA,
                "www.amazon.com", iso_fraction(1_600_000_000 + n * DAY), iso_fraction(1_600_000_000 + n * DAY, 2),
                "false"] for n in range(7)]
    files[RELATIONSHIP_INDEX_FE_PATH] = csv_bytes(RELATIONSHIP_INDEX_COLUMNS, fe_rows, quote_all=True, crlf=True)
    files[AUTHOR_ID_PATH] = csv_bytes(
        AUTHOR_ID_COLUMNS, ([t.product_name, t.asin, "B0" + _token("author:" + a.strip())] for t in items
                            for a in t.authors), quote_all=True, crlf=True)
    files[GENRES_PATH] = csv_bytes(
        GENRE_COLUMNS, ([t.product_name, t.asin, GENRES[int(_token(t.asin, 2), 16) % len(GENRES)]] for t in items),
        quote_all=True, crlf=True)
    files[RELATIONSHIP_TYPES_PATH] = csv_bytes(
        RELATIONSHIP_TYPE_COLUMNS, ([t.product_name, t.asin, t.ownership_type, "Purchase"] for t in items),
        quote_all=True, crlf=True)

    timed = [i for i in intervals if i.start is not None]
    ereader = [i for i in timed if i.device_family == "Kindle E-reader"][:144]
    files[ACTIVE_USAGE_PATH] = csv_bytes(ACTIVE_USAGE_HEADER, (
        [iso_seconds(i.end), i.marketplace, "US", i.device_family, NA if n % 3 == 2 else i.asin,
         str((i.end - i.start) * 1000 + 15_000)] for n, i in enumerate(ereader)))
    days = sorted({i.start - i.start % DAY for i in timed})
    files[DAY_UNITS_PATH] = csv_bytes(DAY_UNITS_HEADER, ([iso_seconds(day)] for day in days))
    files[WHISPERSYNC_PATH] = csv_bytes(WHISPERSYNC_HEADER, _whispersync_rows(items, documents, intervals))
    files[SEND_TO_KINDLE_PATH] = csv_bytes(SEND_TO_KINDLE_HEADER, (
        [iso_fraction(_created(d.document_id)), d.document_id, "email", "DELIVERED"] for d in documents))
    files[TUTORIAL_CONFIG_PATH] = csv_bytes(
        TUTORIAL_CONFIG_HEADER, [["page_turn_hint", "2", iso_fraction(1_700_000_000)],
                                 ["collections_hint", "1", iso_fraction(1_700_086_400, 2)]], boms=2)
    files[SETUP_CREDENTIALS_PATH] = csv_bytes(SETUP_CREDENTIALS_HEADER,
                                              [["Kindle E-reader", iso_seconds(1_650_000_000)]])
    for n, title in enumerate(items[:3], start=1):
        resource = {"ASIN": title.asin, "Product Name": title.product_name, "resourceType": "KindleEBook"}
        files[OWNERSHIP_JSON_PATH.format(n=n)] = json.dumps({"resource": resource}, indent=2).encode("utf-8")
    return files


def _whispersync_rows(items: Sequence[KindleTitle], documents: Sequence[PersonalDocument],
                      intervals: Sequence[ReadingInterval]) -> list:
    """EBOK sync points and highlights (one holding a newline, one with a ``Not Available`` title), AUDI rows
    with Audible ASINs, PDOC rows (title ``Not Available``) for the personal documents, an EBSP row."""
    serial = next((i.serial for i in intervals if i.device_family == "Kindle E-reader"), "G000TESTSERIAL01")
    books = [(t.asin, t.product_name) for t in items[:6]] or [("B0TESTWHS1", "Invented Whispersync Title")]
    rows = []

    def row(asin, name, annotation, content_type, n, highlight=NA, note=NA):
        when = 1_700_000_000 + n * 3_637
        rows.append([asin, name, annotation, iso_fraction(when), serial, content_type, "KINDLE", iso_fraction(when, 2),
                     iso_fraction(when + 60), highlight, str(n % 4 + 1), NA if highlight == NA else "text", note,
                     "false"])

    for n, (asin, name) in enumerate(books):
        row(asin, name, "kindle.last_read", "EBOK", n)
        row(asin, name, "kindle.most_recent_read", "EBOK", n + 1)
        row(asin, name, "kindle.continuous_read", "EBOK", n + 2)
        row(asin, name, "kindle.highlight", "EBOK", n + 3, highlight=f"An invented passage of {name}.")
    asin, name = books[0]
    row(asin, name, "kindle.highlight", "EBOK", 99, highlight=EMBEDDED_NEWLINE_HIGHLIGHT, note="Two lines, one field.")
    row(asin, NA, "kindle.last_read", "EBOK", 100)
    for n, asin in enumerate(WHISPERSYNC_AUDIBLE_ASINS):
        row(asin, f"Invented Audiobook {n + 1}", "kindle.last_read", "AUDI", 200 + n)
    for n, document in enumerate(documents):
        row(document.document_id, NA, "kindle.last_read", "PDOC", 300 + n)
    row(books[-1][0], books[-1][1], "kindle.last_read", "EBSP", 400)
    return rows


def _elsewhere_files(elsewhere: Mapping[str, Sequence[KindleTitle]], files: Mapping[str, bytes]) -> dict:
    """The files that name books the library index lacks (ELSEWHERE_KINDS -> titles): rows added to
    ``whispersync.csv`` (EBOK rows, or AUDI rows for ``whispersync_audio``), a reading-insights file, a
    content-updates file and ownership JSON files numbered after the others."""
    extra: dict[str, bytes] = {}
    synced = [(t, kind) for key, kind in (("whispersync", "EBOK"), ("whispersync_audio", "AUDI"))
              for t in elsewhere.get(key, ())]
    if synced:
        rows = [[t.asin, t.product_name, "kindle.last_read", iso_fraction(1_700_000_000 + n), "G000TESTSERIAL01",
                 kind, "KINDLE", iso_fraction(1_700_000_000 + n, 2), iso_fraction(1_700_000_060 + n), NA, "1", NA, NA,
                 "false"] for n, (t, kind) in enumerate(synced)]
        extra[WHISPERSYNC_PATH] = (files.get(WHISPERSYNC_PATH, csv_bytes(WHISPERSYNC_HEADER, []))
                                   + csv_bytes(WHISPERSYNC_HEADER, rows, boms=0).split(b"\n", 1)[1])
    for kind, path, header, row in (
            ("insights", INSIGHTS_PATH, INSIGHTS_HEADER,
             lambda t: [t.asin, "2025-03-04T20:00:00Z", t.product_name, "www.amazon.com", "2025-03-04T19:00:00Z",
                        "3600000"]),
            ("content_updates", CONTENT_UPDATES_PATH, CONTENT_UPDATES_HEADER,
             lambda t: [t.asin, "2025-03-04", t.product_name, "Quality improvement"])):
        if elsewhere.get(kind):
            extra[path] = csv_bytes(header, map(row, elsewhere[kind]))
    numbered = sum(1 for path in files if path.startswith("Digital.Content.Ownership/"))
    for n, title in enumerate(elsewhere.get("ownership", ()), start=numbered + 1):
        resource = {"ASIN": title.asin, "Product Name": title.product_name, "resourceType": "KindleEBook"}
        extra[OWNERSHIP_JSON_PATH.format(n=n)] = json.dumps({"resource": resource}, indent=2).encode("utf-8")
    return extra


def write_kindle_export(target: Union[str, Path], intervals: Iterable[ReadingInterval],
                        titles: Iterable[KindleTitle] = (), documents: Iterable[PersonalDocument] = (), *,
                        as_zip: bool = False, distractors: bool = True, duplicate_title_rows: bool = True,
                        hostile_names: Sequence[str] = (),
                        elsewhere: Optional[Mapping[str, Sequence[KindleTitle]]] = None,
                        completions: Iterable[KindleCompletion] = ()) -> Path:
    """Write the Kindle part of an export at ``target`` and return ``target``.

    ``target`` is a folder, or with ``as_zip`` a ``.zip`` whose entries are the folder's files (no
    top-level wrapper folder); both forms hold the same bytes. Always written: ReadingSession,
    CustomerRelationshipIndex, CustomerAuthorNameRelationship and DocumentMetadata. ``distractors`` adds
    the files that look like reading time but are not (EreaderDeviceActiveUsageTime, ReadingInsightsDayUnits,
    ``whispersync.csv`` with EBOK/AUDI/PDOC rows and a field with an embedded newline), ``FileDescriptions.csv``
    (CRLF), the ``" "`` folder with SendToKindleEvents, ``JustInTimeTutorialConfig.csv`` with a doubled BOM,
    ``CustomerRelationshipIndex_FE.csv`` and the other library index files, a file name with spaces and a few
    ownership JSON files. ``duplicate_title_rows`` writes a few exact duplicate ITEM rows. ``hostile_names``
    (zip only; ValueError otherwise) adds entries of those names (``../escape.csv``, ``/abs.csv``).
    ``elsewhere`` (ELSEWHERE_KINDS -> titles) names books only in the files after the library index;
    ``completions`` writes ``Kindle.UserUniqueTitlesCompleted.csv``.
    """
    files = _file_bytes(list(intervals), list(titles), list(documents), distractors, duplicate_title_rows)
    files.update(_elsewhere_files(elsewhere or {}, files))
    completions = list(completions)
    if completions:
        files[COMPLETED_PATH] = csv_bytes(COMPLETED_HEADER, ([f"{c.asin}_{c.day}_{c.how}", c.product_name]
                                                             for c in completions))
    return write_tree(target, files, as_zip=as_zip, hostile_names=hostile_names)


# --- an invented reading history -------------------------------------------------------------

ADJECTIVES = ("Quiet", "Salt", "Lantern", "Winter", "Copper", "Hollow", "Silver", "Drowned", "Paper", "Amber",
              "Northern", "Glass", "Borrowed", "Last", "Folded", "Iron")
NOUNS = ("Harbor", "Orchard", "Keeper", "Cartographer", "Archive", "Tide", "Lighthouse", "Garden", "Engine",
         "Meridian", "Weaver", "Embassy", "Observatory", "Ferry", "Almanac", "Clockmaker")
SERIES_NAMES = ("Harbor Lights", "The Glass Court", "Meridian Chronicles", "Saltmarsh Mysteries")
UNICODE_TITLES = ("Die Stille der Fjorde", "Le Jardin d'hiver", "夜の図書館", "Śnieg nad Wisłą", "Café Ångström")
FIRST_NAMES = ("Orla", "Tamsin", "Idris", "Mirela", "Casimir", "Wren", "Elodie", "Ansel", "Priya", "Teodor",
               "Junia", "Halvard", "Noor", "Ysolde")
LAST_NAMES = ("Brennick", "Vey", "Calloway", "Oskarsdottir", "Thorne-Abara", "Quillfeather", "Marchetti-Lund",
              "Okonkwo-Hale", "Ravensworth", "Delacroix-Ibe", "Szymborek", "Fairhallow")


def _asin(rng: random.Random, used: set) -> str:
    while True:
        asin = "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
        if asin not in used:
            used.add(asin)
            return asin


def _author(rng: random.Random, index: int) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    name = f"{first} {last}" if index % 7 == 3 else f"{last}, {first}"
    return name + " " if index % 11 == 5 else name


def _titles(rng: random.Random, books: int, used: set) -> list:
    combos = [f"The {a} {n}" if (i % 3) else f"{a} {n}" for i, (a, n) in
              enumerate((a, n) for a in ADJECTIVES for n in NOUNS)]
    rng.shuffle(combos)
    titles = []
    for i in range(books):
        name = UNICODE_TITLES[i // 9] if i % 9 == 4 and i // 9 < len(UNICODE_TITLES) else combos[i % len(combos)]
        if i >= len(combos):
            name += f" {i // len(combos) + 1}"
        if i % 8 == 6:
            name += ": A Novel"
        if i % 13 == 9:
            name += ", and Other Stories"  # a comma in the title
        count = 3 if i % 50 == 17 else 2 if i % 12 == 7 else 1
        authors = tuple(_author(rng, i + k * 5) for k in range(count))
        series = None
        if i % 3 == 0:
            series = SERIES_NAMES[i % len(SERIES_NAMES)]
            name = f"{name} ({series} Book {i // 12 + 1})"
        titles.append(KindleTitle(_asin(rng, used), name, authors, series_title=series))
    return titles


def _documents(rng: random.Random, count: int) -> list:
    kinds = ("pdf", "docx", "epub", "txt")
    documents = []
    for n in range(count):
        hex_id = "".join(rng.choice("0123456789ABCDEF") for _ in range(32))
        if n % 2 == 0:
            hex_id = "B0" + hex_id[2:]  # a document id can start like a store ASIN
        documents.append(PersonalDocument(hex_id, f"Invented notes {n + 1}",
                                          f"invented-notes-{n + 1}.{kinds[n % len(kinds)]}"))
    return documents


@dataclass(frozen=True)
class _Device:
    family: str
    serial: str
    versions: tuple  # oldest first
    weight: float


def _devices(rng: random.Random) -> list:
    def chars(alphabet, n):
        return "".join(rng.choice(alphabet) for _ in range(n))

    upper = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"
    hexdigits = "0123456789ABCDEF"
    return [
        _Device("Kindle E-reader", "G000" + chars(upper, 12), ("4300000011", "4400000022", "4500000031"), 0.55),
        _Device("", chars(hexdigits, 32), ("1180000033", "1190000041"), 0.25),  # a phone app
        _Device("Kindle Cloud Reader", "TESTCLOUDREADER" + chars(upper, 15), ("20000105", "20000211"), 0.12),
        _Device("Kindle for Mac", chars(hexdigits, 32), ("1170000052", "1200000007"), 0.08),
    ]


def _span(rng: random.Random, device: _Device) -> tuple:
    """Seconds and page flips of one interval: many under a minute, an idle cluster near 600 s on e-readers."""
    draw = rng.random()
    if draw < 0.25:
        seconds = rng.randint(1, 10)
    elif draw < 0.43:
        seconds = rng.randint(11, 59)
    elif draw < 0.50 and device.family == "Kindle E-reader":
        return 600 + rng.randint(0, 4), rng.randint(1, 2)  # left open until the device slept
    elif draw < 0.985:
        seconds = min(7_200, max(60, int(rng.lognormvariate(6.0, 0.8))))
    else:
        seconds = rng.randint(7_200, 10_800)
    return seconds, max(0, seconds // rng.randint(25, 70))


def generate_kindle_history(seed: int, intervals: int, years: int = 10, books: int = 60,
                            documents: int = 3) -> tuple:
    """``(intervals, titles, documents)`` of an invented reading history over ``years`` up to 2026-01-01 UTC.

    Reading comes in sittings of 1-8 intervals with short pauses (most under a minute); about half the
    intervals are under 60 s and e-readers show a cluster near 600 s with 1-2 page flips. Devices: an
    e-reader, a phone app (empty ``device_family``, 32-hex serial), Cloud Reader and Kindle for Mac. About
    14 % of the rows have a ``Not Available`` start; a few are re-sent with another software version, a
    few overlap another row on another device or on the same one. Some rows are samples (of library books
    and of sample-only titles) and personal documents (ids starting with ``B0`` among them); three ASINs
    read are absent from ``titles``. Rows come unsorted. ``titles`` also holds an AUTHOR, a LIST
    (ASIN ``Not Available``) and a ``Not Interested`` row. Exactly ``intervals`` rows; sittings never
    overlap, so a history denser than the days can hold (100,000 intervals in a year) runs past its end.
    """
    rng = random.Random(seed)
    used: set = set()
    library = _titles(rng, books, used)
    sample_only = [KindleTitle(_asin(rng, used), f"Invented Sample Title {n + 1}", (_author(rng, n),),
                               ownership_type="Sample Owner") for n in range(2)]
    missing = [_asin(rng, used) for _ in range(3 if books else 0)]
    extras = [
        KindleTitle("B0" + _token("author:" + FIRST_NAMES[0]), f"{FIRST_NAMES[0]} {LAST_NAMES[0]}",
                    resource_type="AUTHOR", ownership_type="Collection Follow"),
        KindleTitle(NA, "Invented Reading List", resource_type="LIST", ownership_type="List Owner"),
        KindleTitle(_asin(rng, used), "The Unwanted Almanac", (_author(rng, 1),), ownership_type="Not Interested"),
    ]
    docs = _documents(rng, documents)
    devices = _devices(rng)
    weights = [d.weight for d in devices]
    readable = [t.asin for t in library] + missing
    samples = [t.asin for t in library[:4]] + [t.asin for t in sample_only]

    extra_count = max(1, intervals // 600) if intervals >= 50 else 0  # re-sent and overlapping rows, each
    first = END_EPOCH - years * 365 * DAY
    days = max(1, years * 365)
    sittings = sorted(first + rng.randrange(days) * DAY + int(rng.triangular(6, 24.6, 21) * 3600)
                      for _ in range(max(1, round(intervals / 4.4))))  # 4.5 intervals a sitting on average
    rows: list = []
    state = {"current": readable[0] if readable else "B0TESTKND1", "sitting": 0, "free": first}

    def fill(count: int) -> None:
        """Append sittings in time order until ``rows`` holds ``count`` intervals. A sitting starts after
        the previous one ended: the only overlaps are the ones added on purpose."""
        while len(rows) < count:
            sitting = state["sitting"]
            state["sitting"] += 1
            clock = max(sittings[sitting % len(sittings)], state["free"])
            device = rng.choices(devices, weights)[0]
            version = device.versions[min(len(device.versions) - 1, (clock - first) * len(device.versions)
                                          // max(1, END_EPOCH - first))]
            marketplace = "US" if clock < US_UNTIL else "www.amazon.com"
            draw = rng.random()
            if draw < 0.03 and samples:
                asin, content = rng.choice(samples), "E-Book Sample"
            elif draw < 0.06 and docs:
                asin, content = rng.choice(docs).document_id, "Personal Document"
            else:
                if readable and rng.random() < 0.2:
                    state["current"] = rng.choice(readable)
                asin, content = state["current"], "E-Book"
            for _ in range(rng.randint(1, 8)):
                if len(rows) >= count:
                    break
                seconds, flips = _span(rng, device)
                if rng.random() < 0.14:
                    family = device.family if rng.random() < 0.2 else ""
                    rows.append(ReadingInterval(None, clock + seconds, asin, content, family, device.serial, "",
                                                None, None, marketplace))
                else:
                    millis = seconds * 1000 + rng.randint(0, 999)
                    if seconds > 60 and rng.random() < 0.0005:
                        millis -= rng.randint(2_000, 30_000)  # span and millis disagree: an importer flags it
                    rows.append(ReadingInterval(clock, clock + seconds, asin, content, device.family,
                                                device.serial, version, millis, flips, marketplace))
                draw = rng.random()
                clock += seconds + (rng.randint(1, 59) if draw < 0.6 else rng.randint(60, 600) if draw < 0.9
                                    else rng.randint(600, 1_500))
            state["free"] = clock + 1_800

    fill(intervals - 3 * extra_count)
    complete = [row for row in rows if row.start is not None and row.end - row.start >= 3]
    if complete and extra_count:
        for row in rng.sample(complete, min(extra_count, len(complete))):
            other = next(v for v in _device_versions(devices, row.serial) if v != row.software_version)
            rows.append(dataclasses.replace(row, software_version=other))  # re-sent with another version
        for row in rng.sample(complete, min(extra_count, len(complete))):
            other = next(d for d in devices if d.serial != row.serial)
            shift = (row.end - row.start) // 3
            rows.append(dataclasses.replace(row, start=row.start + shift, end=row.end + 120, millis=-1,
                                            device_family=other.family, serial=other.serial,
                                            software_version=other.versions[-1]))
        for row in rng.sample(complete, min(extra_count, len(complete))):
            shift = max(1, (row.end - row.start) // 2)
            rows.append(dataclasses.replace(row, start=row.start + shift, end=row.end + 30, millis=-1))
    fill(intervals)
    rows = rows[:intervals]
    rng.shuffle(rows)
    return rows, library + sample_only + extras, docs


def generate_completions(seed: int, intervals: Iterable[ReadingInterval],
                         titles: Iterable[KindleTitle] = ()) -> list:
    """Completion records (``Kindle.UserUniqueTitlesCompleted.csv``) for a history: about 60 % of the store
    books read finished on the (UTC) day of their last interval (``AUTOMATIC``; a few also marked by hand the next
    day, ``MANUAL``), and about one in ten of those also finished once before, on the day of a middle interval
    (a re-read); and about one in five of the library's books never read on a Kindle marked read by hand
    (``MANUAL``) on a day of the history. Titles from ``titles``, ``Not Available`` for the others; no samples
    or documents."""
    rng = random.Random(seed)
    names = {t.asin: t.product_name for t in titles}
    days: dict[str, list[int]] = {}
    for interval in intervals:
        if interval.start is not None and interval.content_type == "E-Book":
            days.setdefault(interval.asin, []).append(interval.start)
    completions = []
    for asin, starts in sorted(days.items()):
        starts.sort()
        if rng.random() >= 0.6:
            continue
        finished = [starts[-1]] + ([starts[len(starts) // 2]] if len(starts) > 3 and rng.random() < 0.1 else [])
        completions += [KindleCompletion(asin, utc_day(start), names.get(asin, NA)) for start in finished]
        if rng.random() < 0.05:
            completions.append(KindleCompletion(asin, utc_day(starts[-1] + DAY), names.get(asin, NA), "MANUAL"))
    first, last = min((s[0] for s in days.values()), default=0), max((s[-1] for s in days.values()), default=0)
    for asin, name in sorted(names.items()):
        if asin not in days and rng.random() < 0.2:
            completions.append(KindleCompletion(asin, utc_day(rng.randint(first, last)), name, "MANUAL"))
    rng.shuffle(completions)
    return completions


def _device_versions(devices: Sequence[_Device], serial: str) -> tuple:
    for device in devices:
        if device.serial == serial:
            return device.versions
    return ("4400000022", "4500000031")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Kindle part of an invented Amazon data export.")
    parser.add_argument("out", help="the export folder, or with --zip the zip file to write")
    parser.add_argument("--zip", action="store_true", help="write a zip instead of a folder")
    parser.add_argument("--intervals", type=int, default=5_000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--books", type=int, default=60)
    parser.add_argument("--documents", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-distractors", action="store_true", help="only the session and title files")
    args = parser.parse_args(argv)
    intervals, titles, documents = generate_kindle_history(args.seed, args.intervals, years=args.years,
                                                           books=args.books, documents=args.documents)
    path = write_kindle_export(args.out, intervals, titles, documents, as_zip=args.zip,
                               distractors=not args.no_distractors,
                               completions=generate_completions(args.seed, intervals, titles))
    print(f"{path}: {len(intervals)} reading intervals, {len(titles)} library rows, {len(documents)} documents")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
