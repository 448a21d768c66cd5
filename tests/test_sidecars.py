"""KOReader's sidecars in the warehouse: status, finish dates, ratings and highlights, exactly as written."""

import datetime
import hashlib
import os
import re
import uuid
from pathlib import Path

import pytest
from conftest import query

from bookhelper.sidecars import SidecarFile, transform_sidecar
from samples.sidecars import books_from_statistics, dump_lua, write_sidecars
from samples.statistics import Book, generate, write_statistics_file

T0 = 1_700_000_000
MD5 = "ab" * 16
HOSTILE = ' "quoted" \\back\\slash\\ \nnew line\ttab — 読書 📚 trailing  '

HIGHLIGHT_ROWS = """
    SELECT b.book_key, h.position, h.kind, h.text, h.note, h.chapter, h.page, h.pageref, h.pos0, h.pos1, h.color,
           h.drawer, h.created_local::text, h.updated_local::text, h.created_at, h.updated_at
    FROM highlights h JOIN book_keys b USING (book_id) ORDER BY 1, 2"""
SIDECAR_ROWS = """
    SELECT b.book_key, s.status, s.status_modified::text, s.rating, s.review, s.percent_finished, s.doc_pages,
           s.identifiers
    FROM book_sidecars s JOIN book_keys b USING (book_id) ORDER BY 1"""


def write_sidecar(folder: Path, relative: str, data: dict, mtime: int = T0) -> Path:
    """One sidecar in KOReader's syntax (the generator's dump.lua), with a chosen modification time."""
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"-- " + str(path).encode() + b"\nreturn " + dump_lua(data) + b"\n")
    os.utime(path, (mtime, mtime))
    return path


def current_sidecar(**overrides) -> dict:
    data = {
        "partial_md5_checksum": MD5,
        "doc_props": {"title": "Stoner", "authors": "John Williams", "identifiers": "uuid:1234\nISBN:978-1-59017"},
        "doc_pages": 320,
        "percent_finished": 0.5,
        "summary": {"status": "complete", "modified": "2024-03-02", "rating": 4, "note": HOSTILE},
        "annotations": {
            1: {"datetime": "2024-03-01 21:15:00", "drawer": "lighten", "color": "yellow", "text": HOSTILE,
                "chapter": "One", "pageno": 12, "pageref": "12", "pos0": "/body/p[1].0", "pos1": "/body/p[1].9"},
            2: {"datetime": "2024-03-01 21:20:00", "datetime_updated": "2024-03-01 21:21:00", "drawer": "underscore",
                "text": "with a NUL\x00inside", "note": "my note", "chapter": "One", "pageno": 13},
            3: {"datetime": "2024-03-01 21:30:00", "text": "in One", "chapter": "One", "pageno": 14,
                "page": "/body/p[9].0"},
        },
    }
    data.update(overrides)
    return data


def berlin(text):
    local = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    return local.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=1)))


@pytest.fixture
def stats(tmp_path):
    return write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 320, MD5)],
                                 [(1, p, T0 + 60 * p, 50, 320) for p in range(280, 300)])


def test_a_current_sidecar_lands_as_whole_rows_with_exact_text(tmp_path, etl, database_url, stats):
    folder = tmp_path / "sync"
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar())

    result = etl(stats, "--sidecar-dir", folder, ETL_TIMEZONE="Europe/Berlin")

    assert result.returncode == 0, result.stderr
    key = f"md5:{MD5}"
    assert query(database_url, SIDECAR_ROWS) == [
        (key, "complete", "2024-03-02", 4, HOSTILE, 0.5, 320, ["isbn:978-1-59017", "uuid:1234"])]
    assert query(database_url, HIGHLIGHT_ROWS) == [
        (key, 1, "highlight", HOSTILE, None, "One", 12, "12", "/body/p[1].0", "/body/p[1].9", "yellow", "lighten",
         "2024-03-01 21:15:00", None, berlin("2024-03-01 21:15:00"), None),
        (key, 2, "note", "with a NUL\ufffdinside", "my note", "One", 13, None, None, None, None, "underscore",
         "2024-03-01 21:20:00", "2024-03-01 21:21:00", berlin("2024-03-01 21:20:00"), berlin("2024-03-01 21:21:00")),
        (key, 3, "bookmark", "in One", None, "One", 14, None, "/body/p[9].0", None, None, None,
         "2024-03-01 21:30:00", None, berlin("2024-03-01 21:30:00"), None),
    ]
    assert query(database_url, "SELECT status, rating, highlights FROM book_reading") == [("complete", 4, 2)]


def test_legacy_highlights_are_joined_to_their_bookmarks_by_datetime(tmp_path, etl, database_url, stats):
    folder = tmp_path / "sync"
    legacy = {
        "partial_md5_checksum": MD5,
        "highlight": {
            5: {1: {"datetime": "2023-01-02 10:00:00", "drawer": "lighten", "text": "quoted once",
                    "chapter": "Two", "pos0": "/a", "pos1": "/b"},
                2: {"datetime": "2023-01-02 10:05:00", "drawer": "lighten", "text": "quoted twice", "chapter": "Two"}},
        },
        "bookmarks": {
            1: {"datetime": "2023-01-03 09:00:00", "notes": "in Three", "page": 9, "chapter": "Three"},
            2: {"datetime": "2023-01-02 10:05:00", "notes": "quoted twice", "text": "a real note",
                "highlighted": True, "page": 5},
            3: {"datetime": "2023-01-02 10:00:00", "notes": "quoted once",
                "text": "Page 5 quoted once @ 2023-01-02 10:00:00", "highlighted": True, "page": 5},
        },
    }
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", legacy)

    assert etl(stats, "--sidecar-dir", folder).returncode == 0

    rows = query(database_url, "SELECT position, kind, text, note, chapter, page, pos0 FROM highlights ORDER BY 1")
    assert rows == [(1, "highlight", "quoted once", None, "Two", 5, "/a"),
                    (2, "note", "quoted twice", "a real note", "Two", 5, None),
                    (3, "bookmark", "in Three", None, "Three", 9, None)]
    assert query(database_url, "SELECT status FROM book_sidecars") == [("reading",)]


def test_a_generated_device_folder_loads_what_koreader_would_read(tmp_path, etl, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=8, days=20, seed=3)
    files = write_sidecars(tmp_path / "device", books_from_statistics(stats), broken=True)

    result = etl(stats, "--sidecar-dir", tmp_path / "device")

    assert result.returncode == 0, result.stderr
    read = [f for f in files if f.koreader_reads]
    expected = {}
    for sidecar in read:
        book = transform_sidecar(SidecarFile("x", "h", 0, sidecar.expected))
        expected[book.book.book_key] = (book.status, book.rating, len(book.highlights))
    stored = query(database_url, """SELECT b.book_key, s.status, s.rating,
                                           (SELECT count(*) FROM highlights h WHERE h.book_id = s.book_id)::int
                                    FROM book_sidecars s JOIN book_keys b USING (book_id)""")
    assert {key: tuple(rest) for key, *rest in stored} == expected
    broken = [f for f in files if f.expected is None]
    assert result.stderr.count("[WARNING] [EXTRACT] skipped the sidecar") == len(broken)
    recovered = [f for f in broken if Path(f"{f.path}.old").exists()]
    assert recovered, "the fixture has broken files with a good backup"
    assert (f"skipped {len(broken)} (does not parse: {len(broken) - len(recovered)}, "
            f"read from the .old backup: {len(recovered)})") in result.stderr


def test_a_rerun_changes_nothing_and_sends_no_sidecar(tmp_path, etl, database_url, stats):
    folder = tmp_path / "sync"
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar())
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    before = query(database_url, HIGHLIGHT_ROWS), query(database_url, SIDECAR_ROWS)

    again = etl(stats, "--sidecar-dir", folder)

    assert again.returncode == 0
    assert "0 of 1 sidecars changed" in again.stderr
    assert (query(database_url, HIGHLIGHT_ROWS), query(database_url, SIDECAR_ROWS)) == before


def test_a_deleted_highlight_disappears_and_a_removed_sidecar_keeps_its_data(tmp_path, etl, database_url, stats):
    folder = tmp_path / "sync"
    path = write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar())
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    fewer = current_sidecar()
    del fewer["annotations"][2]
    fewer["annotations"] = {1: fewer["annotations"][1], 2: fewer["annotations"][3]}
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", fewer, mtime=T0 + 60)

    kinds = "SELECT position, kind FROM highlights ORDER BY 1"
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    assert query(database_url, kinds) == [(1, "highlight"), (2, "bookmark")]

    path.unlink()
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    assert query(database_url, kinds) == [(1, "highlight"), (2, "bookmark")]
    assert query(database_url, "SELECT status FROM book_sidecars") == [("complete",)]


def test_lua_code_is_refused_and_never_run(tmp_path, etl, database_url, stats):
    canary = tmp_path / f"ran-{uuid.uuid4().hex}"
    folder = tmp_path / "sync"
    for name, code in (("exec", f'os.execute("touch {canary}")'), ("call", 'tostring(1)'), ("concat", '"a" .. "b"')):
        path = folder / f"{name}.sdr" / "metadata.epub.lua"
        path.parent.mkdir(parents=True)
        path.write_text(f'return {{\n    ["partial_md5_checksum"] = "{MD5}",\n    ["x"] = {code},\n}}\n')
    truncated = folder / "truncated.sdr" / "metadata.epub.lua"
    truncated.parent.mkdir()
    truncated.write_bytes(b'-- x\nreturn {\n    ["partial_md5_checksum"] = "' + MD5.encode() + b'",\n    ["summ')

    result = etl(stats, "--sidecar-dir", folder)

    assert result.returncode == 0, result.stderr
    assert not canary.exists()
    assert result.stderr.count("[WARNING] [EXTRACT] skipped the sidecar") == 4
    assert query(database_url, "SELECT count(*) FROM book_sidecars") == [(0,)]


def test_a_sidecar_of_a_book_without_reading_lands_as_a_book_without_sessions(tmp_path, etl, database_url, stats):
    folder = tmp_path / "sync"
    paper = current_sidecar(partial_md5_checksum="cd" * 16, doc_props={"title": "On Paper", "authors": "A\nB"},
                            annotations={})
    write_sidecar(folder, "Books/Paper.sdr/metadata.pdf.lua", paper)

    assert etl(stats, "--sidecar-dir", folder).returncode == 0

    on_paper = "SELECT title, authors, sessions, status FROM book_reading WHERE title = 'On Paper'"
    assert query(database_url, on_paper) == [("On Paper", "A; B", 0, "complete")]
    finished = query(database_url, "SELECT title, read_number, finished_on::text, evidence FROM finished_books "
                                   "ORDER BY title")
    stoner_day = datetime.datetime.fromtimestamp(T0 + 60 * 299 + 50, datetime.timezone.utc).date().isoformat()
    assert finished == [("On Paper", None, "2024-03-02", "status"), ("Stoner", 1, stoner_day, "reading")]


def test_a_finish_by_reading_and_by_status_counts_once(tmp_path, etl, database_url):
    rows = [(1, p, T0 + 60 * p, 50, 20) for p in range(1, 21)]  # the whole book, one read
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 20, MD5)], rows)
    folder = tmp_path / "sync"
    finished_day = datetime.datetime.fromtimestamp(T0 + 1300, datetime.timezone.utc).date().isoformat()
    write_sidecar(folder, "Stoner.sdr/metadata.epub.lua",
                  current_sidecar(summary={"status": "complete", "modified": finished_day}))

    assert etl(stats, "--sidecar-dir", folder).returncode == 0

    assert query(database_url, "SELECT read_number, finished_on::text, evidence FROM finished_books") == [
        (1, finished_day, "reading and status")]


def test_the_sidecar_folder_is_only_read(tmp_path, etl, stats):
    folder = tmp_path / "sync"
    write_sidecars(folder, books_from_statistics(generate(tmp_path / "g.sqlite3", books=7, days=5)), broken=True)

    def snapshot():
        return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest()
                       if p.is_file() else None) for p in folder.rglob("*"))

    before = snapshot()
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    assert snapshot() == before


def test_a_sidecar_folder_missing_tonight_is_skipped_loudly_and_what_it_gave_stays(
        tmp_path, etl, database_url, stats, ping_server):
    url, recorder = ping_server
    folder = tmp_path / "device"
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar())
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    before = query(database_url, SIDECAR_ROWS), query(database_url, HIGHLIGHT_ROWS)

    result = etl(stats, "--sidecar-dir", tmp_path / "not-mounted", ETL_HEALTHCHECK_URL=url)

    assert result.returncode == 80, result.stderr
    assert re.search(r"\[WARNING\] \[EXTRACT\] sidecars skipped: the folder .*not-mounted does not exist or is not a "
                     r"folder \(not mounted\? check --sidecar-dir or KOREADER_SIDECAR_DIR\); the reading still loads",
                     result.stderr)
    assert (query(database_url, SIDECAR_ROWS), query(database_url, HIGHLIGHT_ROWS)) == before
    assert recorder.pings[-1][0].startswith("/ping/check-uuid/80?rid=")


def test_a_changed_device_zone_moves_the_highlight_times(tmp_path, etl, database_url, stats):
    folder = tmp_path / "sync"
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar())
    assert etl(stats, "--sidecar-dir", folder, ETL_TIMEZONE="Europe/Berlin").returncode == 0
    assert etl(stats, "--sidecar-dir", folder, ETL_TIMEZONE="UTC").returncode == 0
    first = query(database_url, "SELECT created_at FROM highlights WHERE position = 1")[0][0]
    assert first == datetime.datetime(2024, 3, 1, 21, 15, tzinfo=datetime.timezone.utc)


# Histories that must end as one fresh load of the final folder ---------------------------------------------

SIDECAR_STATE = (SIDECAR_ROWS, HIGHLIGHT_ROWS,
                 "SELECT b.book_key, s.sidecar_path FROM book_sidecars s JOIN book_keys b USING (book_id) ORDER BY 1",
                 "SELECT k.book_key, r.title, r.page_count FROM book_reading r JOIN book_keys k USING (book_id) "
                 "ORDER BY 1")


def fresh_load(etl_cli, new_database, stats, folder):
    url = new_database(warehouse=True)
    assert etl_cli(stats, "--sidecar-dir", folder, DATABASE_URL=url).returncode == 0
    return [query(url, statement) for statement in SIDECAR_STATE]


def test_a_sidecar_only_change_of_the_page_count_reaches_the_book(tmp_path, etl, database_url, new_database, stats):
    folder = tmp_path / "device"
    paper = "Books/Paper.sdr/metadata.pdf.lua"
    write_sidecar(folder, paper, current_sidecar(partial_md5_checksum="cd" * 16, doc_pages=100))
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    write_sidecar(folder, paper, current_sidecar(partial_md5_checksum="cd" * 16, doc_pages=101), mtime=T0 + 60)
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar(doc_pages=321), mtime=T0 + 60)

    assert etl(stats, "--sidecar-dir", folder).returncode == 0

    state = [query(database_url, statement) for statement in SIDECAR_STATE]
    assert state == fresh_load(etl, new_database, stats, folder)
    assert ("md5:" + "cd" * 16, "Stoner", 101) in state[3]


def test_when_the_newer_of_two_copies_is_deleted_the_older_one_speaks(tmp_path, etl, database_url, new_database,
                                                                       stats):
    folder = tmp_path / "device"
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua",
                  current_sidecar(summary={"status": "reading"}), mtime=T0)
    newer = write_sidecar(folder, "docsettings/Books/Stoner.sdr/metadata.epub.lua",
                          current_sidecar(summary={"status": "complete", "modified": "2024-03-02"}), mtime=T0 + 600)
    assert etl(stats, "--sidecar-dir", folder).returncode == 0
    assert query(database_url, "SELECT status FROM book_sidecars") == [("complete",)]
    newer.unlink()

    assert etl(stats, "--sidecar-dir", folder).returncode == 0

    state = [query(database_url, statement) for statement in SIDECAR_STATE]
    assert state == fresh_load(etl, new_database, stats, folder)
    assert query(database_url, "SELECT status, sidecar_path FROM book_sidecars") == [
        ("reading", "Books/Stoner.sdr/metadata.epub.lua")]
    assert query(database_url, "SELECT sidecar_path FROM sidecar_files") == [("Books/Stoner.sdr/metadata.epub.lua",)]


def test_the_sidecar_path_names_the_copy_the_status_came_from(tmp_path, etl, database_url, stats):
    folder = tmp_path / "device"
    write_sidecar(folder, "Books/Stoner.sdr/metadata.epub.lua", current_sidecar(summary={"status": "abandoned"}),
                  mtime=T0)
    write_sidecar(folder, "docsettings/Books/Stoner.sdr/metadata.epub.lua",
                  current_sidecar(summary={"status": "reading"}), mtime=T0 + 600)

    assert etl(stats, "--sidecar-dir", folder).returncode == 0

    assert query(database_url, "SELECT status, sidecar_path FROM book_sidecars") == [
        ("reading", "docsettings/Books/Stoner.sdr/metadata.epub.lua")]
