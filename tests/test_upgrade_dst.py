"""Upgrading a 1.0.0 warehouse whose local-clock rows straddle a DST change: the rows come back as KOReader's
raw start_time, so the upgrade and every later run equal one fresh load and count each second once.

1.0.0 stored a ``clock = local`` device's rows converted to UTC, reading the raw epoch as wall time in the
device's zone. At a fall-back that conversion is one-to-one (an ambiguous wall time becomes one instant,
which reads back as the same wall time). At a spring-forward it is two-to-one: a wall time the zone skips
(02:10 in Berlin on 2023-03-26) becomes the same instant as the wall time an hour later (03:10), and when
both were views of one page, 1.0.0 kept only the longer. Those rows cannot be converted back; the upgrade
drops them and the device's re-sent file brings them back with their raw epochs."""

import datetime
import json
import os
from pathlib import Path

import pytest
from conftest import empty_warehouse, query, run_cli
from helpers import environment, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouse import book_seconds, reading_state, whole_state

import extract_koreader_stats as etl_module
from bookhelper.schema import SCHEMA_VERSION
from samples.calibre import CalibreBook, write_calibre_library
from samples.sidecars import dump_lua
from samples.statistics import Book, write_statistics_file

# Every test here starts from an empty database (what a first run or an upgrade finds).
pytestmark = pytest.mark.empty_database

SCHEMA_V1 = Path(__file__).with_name("schema_v1.sql")
STONER = Book(1, "Stoner", "John Williams", 300, "e" * 32)
STONER_KEY = "md5:" + "e" * 32
OMENS = Book(1, "Good Omens", "Terry Pratchett", 400, "a" * 32)
KINDLE = {"ETL_TIMEZONE": "Europe/Berlin", "ETL_DEVICE_CLOCK": "local"}
BOOX = {"ETL_TIMEZONE": "UTC", "ETL_DEVICE_CLOCK": "utc"}


def wall(text):
    """A raw KOReader start_time of a local-clock device: the wall time, counted as if it were UTC."""
    return int(datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc).timestamp())


# A Kindle whose clock keeps Berlin wall time, reading across a DST change: (id_book, page, start_time, duration,
# total_pages) as in page_stat_data.
ACROSS = {
    # 2023-10-29: at 03:00 CEST the clock goes back to 02:00 CET, so 02:00-03:00 happens twice.
    "fall-back": [(1, 1, wall("2023-10-29 01:50"), 60, 300), (1, 2, wall("2023-10-29 02:10"), 60, 300),
                  (1, 3, wall("2023-10-29 02:40"), 60, 300), (1, 4, wall("2023-10-29 02:10"), 60, 300),
                  (1, 5, wall("2023-10-29 02:40"), 60, 300), (1, 6, wall("2023-10-29 03:20"), 60, 300)],
    # 2023-03-26: at 02:00 CET the clock goes on to 03:00 CEST; this device's clock still said 02:10 and 02:40.
    "spring-forward": [(1, 1, wall("2023-03-26 01:50"), 60, 300), (1, 2, wall("2023-03-26 02:10"), 60, 300),
                       (1, 3, wall("2023-03-26 02:40"), 60, 300), (1, 4, wall("2023-03-26 03:20"), 60, 300)],
    # The same, and page 3 viewed again at 03:40, the instant 1.0.0 also gave 02:40: it kept one row of 90 s.
    "spring-forward, two views made one": [
        (1, 1, wall("2023-03-26 01:50"), 60, 300), (1, 2, wall("2023-03-26 02:10"), 60, 300),
        (1, 3, wall("2023-03-26 02:40"), 90, 300), (1, 4, wall("2023-03-26 03:20"), 60, 300),
        (1, 3, wall("2023-03-26 03:40"), 30, 300)],
}
# The other device's reading, true UTC.
BOOX_ROWS = [(1, page, 1_719_860_400 + 100 * page, 45, 400) for page in range(1, 4)]

# What 1.0.0 stored: the devices, the books, the page views (a local-clock device's start converted to UTC with
# 1.0.0's expression, merged on that converted start, the longer view winning) and the fingerprints.
V1_WAREHOUSE = """
INSERT INTO devices (device_id, name, timezone, clock) VALUES (1, 'kindle', 'Europe/Berlin', 'local'),
                                                               (2, 'boox', 'UTC', 'utc');
SELECT setval(pg_get_serial_sequence('devices', 'device_id'), 2);
INSERT INTO authors (author_id, name) VALUES (1, 'John Williams'), (2, 'Terry Pratchett');
INSERT INTO books (book_id, book_key, title, author_id, file_hash, page_count)
VALUES (1, 'md5:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'Stoner', 1, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 300),
       (2, 'md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'Good Omens', 2, 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 400);
SELECT setval(pg_get_serial_sequence('books', 'book_id'), 2), setval(pg_get_serial_sequence('authors', 'author_id'), 2);
INSERT INTO book_authors VALUES (1, 1, 1), (2, 2, 1);
-- Good Omens only when the Boox read it.
DELETE FROM books WHERE book_id = 2 AND NOT %(boox)s;
DELETE FROM authors WHERE author_id = 2 AND NOT %(boox)s;
INSERT INTO page_views AS pv (book_id, page, start_epoch, duration, total_pages, device_id)
SELECT DISTINCT ON (book_id, page, utc_epoch) book_id, page, utc_epoch, duration, total_pages, device_id
FROM (SELECT r.*,
             CASE WHEN d.clock = 'local'
                  THEN extract(epoch FROM (to_timestamp(start_epoch) AT TIME ZONE 'UTC') AT TIME ZONE d.timezone)
                  ELSE start_epoch END::bigint AS utc_epoch
      FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(book_id integer, page integer, start_epoch bigint, duration integer,
                                                  total_pages integer, device_id integer)
      JOIN devices d USING (device_id)) AS i
ORDER BY book_id, page, utc_epoch, duration DESC
ON CONFLICT (book_id, page, start_epoch) DO UPDATE
    SET duration = EXCLUDED.duration, total_pages = EXCLUDED.total_pages WHERE EXCLUDED.duration > pv.duration;
INSERT INTO device_books (device_id, book_id, row_count, duration_sum, last_start_epoch, future_rows, metadata_hash)
SELECT device_id, book_id, count(*), sum(duration), max(start_epoch), 0, 'stale'
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(book_id integer, device_id integer, start_epoch bigint, duration integer)
GROUP BY 1, 2;
INSERT INTO etl_runs (run_uuid, started_at, finished_at, status, device, script_version)
VALUES ('00000000-0000-0000-0000-000000000001', now(), now(), 'success', 'kindle', '1.0.0');
"""


def version_1_warehouse(url, kindle_rows, boox_rows=()):
    """A warehouse as 1.0.0 left it after loading these rows of the Kindle (Stoner) and of the Boox (Good Omens)."""
    rows = [{"book_id": 1, "page": page, "start_epoch": start, "duration": duration, "total_pages": total,
             "device_id": 1} for _id, page, start, duration, total in kindle_rows]
    rows += [{"book_id": 2, "page": page, "start_epoch": start, "duration": duration, "total_pages": total,
              "device_id": 2} for _id, page, start, duration, total in boox_rows]
    query(url, SCHEMA_V1.read_text())
    query(url, V1_WAREHOUSE, {"rows": json.dumps(rows), "boox": bool(boox_rows)})


def stoner_views(url):
    """The Kindle's book's page views in the warehouse: (page, start_epoch, duration), in time order."""
    return query(url, "SELECT page, start_epoch, duration FROM page_views WHERE book_id = 1 ORDER BY 2, 1")


def views_of(rows):
    """What ``stoner_views`` holds when the warehouse has each of these page rows once, at its raw start_time."""
    return sorted(((page, start, duration) for _id, page, start, duration, _total in rows), key=lambda r: (r[1], r[0]))


def load(url, env_file, runs):
    """Run each (statistics file, device, settings) into ``url``, in order."""
    for stats, device, device_settings in runs:
        result = run_cli("--stats-db", stats, "--device", device, env_file=env_file, DATABASE_URL=url,
                         **device_settings)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("rows", ACROSS.values(), ids=ACROSS.keys())
def test_an_upgrade_by_the_local_clock_device_equals_a_fresh_load(tmp_path, database_url, new_database,
                                                                 empty_env_file, rows):
    version_1_warehouse(database_url, rows)
    kindle = write_statistics_file(tmp_path / "kindle.sqlite3", [STONER], rows)

    result = run_cli("--stats-db", kindle, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url,
                     **KINDLE)

    assert result.returncode == 0, result.stderr
    assert f"upgrading the warehouse schema to version {SCHEMA_VERSION}" in result.stderr
    once = new_database()
    load(once, empty_env_file, [(kindle, "kindle", KINDLE)])
    assert reading_state(database_url) == reading_state(once)
    # Every row once, at its raw KOReader start_time, and every second of the file once.
    assert stoner_views(database_url) == views_of(rows)
    assert book_seconds(database_url) == {STONER_KEY: sum(row[3] for row in rows)}
    # The next run finds nothing to do and changes nothing.
    again = run_cli("--stats-db", kindle, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url)
    assert again.returncode == 0, again.stderr
    assert "0 of 1 books changed" in again.stderr
    assert reading_state(database_url) == reading_state(once)


@pytest.mark.parametrize("rows", ACROSS.values(), ids=ACROSS.keys())
def test_an_upgrade_by_another_device_converges_on_the_local_clock_devices_next_run(tmp_path, database_url,
                                                                                   new_database, empty_env_file, rows):
    version_1_warehouse(database_url, rows, BOOX_ROWS)
    runs = [(write_statistics_file(tmp_path / "boox.sqlite3", [OMENS], BOOX_ROWS), "boox", BOOX),
            (write_statistics_file(tmp_path / "kindle.sqlite3", [STONER], rows), "kindle", KINDLE)]

    load(database_url, empty_env_file, runs[:1])

    # Until the Kindle's next run, its rows 1.0.0 stored exactly are back at their raw start_time; the ones whose
    # instant two raw epochs share (1.0.0 stored them between 01:00 and 02:00 UTC on 2023-03-26) wait for it.
    kept = [row for row in rows if not wall("2023-03-26 02:00") <= row[2] < wall("2023-03-26 04:00")]
    assert stoner_views(database_url) == views_of(kept)
    load(database_url, empty_env_file, runs[1:])
    once = new_database()
    load(once, empty_env_file, runs)
    assert reading_state(database_url) == reading_state(once)
    assert book_seconds(database_url) == {STONER_KEY: sum(row[3] for row in rows),
                                          "md5:" + "a" * 32: sum(row[3] for row in BOOX_ROWS)}


def test_rows_only_an_older_copy_held_stay_at_their_raw_start_time(tmp_path, database_url, new_database,
                                                                    empty_env_file):
    # 1.0.0 loaded an older copy of the Kindle's file, with reading around the fall-back and on an ordinary
    # evening, that the current file no longer holds (KOReader's "reset statistics", a restored backup).
    older = ACROSS["fall-back"] + [(1, 7, wall("2023-11-02 21:15"), 120, 300)]
    current = [(1, 8, wall("2023-11-05 20:00"), 60, 300), (1, 9, wall("2023-11-05 20:01"), 60, 300)]
    version_1_warehouse(database_url, older + current)
    kindle = write_statistics_file(tmp_path / "kindle.sqlite3", [STONER], current)

    load(database_url, empty_env_file, [(kindle, "kindle", KINDLE)])

    # The warehouse is a function of every row ever loaded: the older copy's rows are kept, exactly.
    once = new_database()
    load(once, empty_env_file, [(write_statistics_file(tmp_path / "older.sqlite3", [STONER], older), "kindle", KINDLE),
                                (kindle, "kindle", KINDLE)])
    assert reading_state(database_url) == reading_state(once)
    assert book_seconds(database_url) == {STONER_KEY: sum(row[3] for row in older + current)}


# Any history that starts from 1.0.0 -----------------------------------------------------------------------

DST_CHANGES = {"fall-back": wall("2023-10-29 02:00"), "spring-forward": wall("2023-03-26 02:00")}
# (page, minutes from the change, seconds) for the Kindle's local clock; (page, minutes, seconds) for the Boox.
kindle_reading = st.lists(st.tuples(st.integers(1, 6), st.integers(-150, 150), st.integers(1, 120)),
                          min_size=1, max_size=12)
boox_reading = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 600), st.integers(1, 120)), max_size=5)
# Each later night: the device, how much of its file the copy holds, the gap, which Calibre library and which
# version of the Kindle's sidecar folder it reads (if any).
later_nights = st.lists(st.tuples(st.sampled_from(["kindle", "boox"]), st.floats(0, 1), st.sampled_from(["30", "5"]),
                                  st.sampled_from([None, 0, 1]), st.sampled_from([None, 0, 1])), max_size=3)
SIDECAR_STATUSES = ("reading", "complete")
SIDECARS_WRITTEN = 1_700_000_000


def write_sidecars(folder, version):
    """The Kindle's sidecar folder of one version (Stoner's status; the newer version written later)."""
    sidecar = folder / f"sidecars{version}" / "Books" / "Stoner.sdr" / "metadata.epub.lua"
    sidecar.parent.mkdir(parents=True)
    sidecar.write_bytes(b"return " + dump_lua({
        "partial_md5_checksum": "e" * 32, "doc_props": {"title": "Stoner", "authors": "John Williams"},
        "doc_pages": 300, "summary": {"status": SIDECAR_STATUSES[version], "modified": f"2023-11-0{version + 1}"}}))
    os.utime(sidecar, (SIDECARS_WRITTEN + version, SIDECARS_WRITTEN + version))
    return folder / f"sidecars{version}"
LIBRARY_TAGS = (("classic",), ("classic", "favourite"))


def write_library(folder, version):
    """The reader's Calibre library of both books, with one of two tag sets."""
    books = [CalibreBook(1, "Stoner", ["John Williams"], tags=list(LIBRARY_TAGS[version])),
             CalibreBook(2, "Good Omens", ["Terry Pratchett"], tags=["comic"], identifiers={"isbn": "9780060853983"})]
    return write_calibre_library(folder / f"library{version}", books, cwa=False).metadata_db.parent


@pytest.fixture
def two_empty_databases(new_database):
    """Two databases for every example of a property (hypothesis runs a test's fixtures once)."""
    return new_database(), new_database()


def copies(rows, fraction):
    """The rows a copy of the file holds when a ``fraction`` of the reading is in it (rows in file order)."""
    return rows[:round(len(rows) * fraction)]


@pytest.mark.slow
@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(change=st.sampled_from(sorted(DST_CHANGES)), kindle=kindle_reading, boox=boox_reading,
       loaded_by_v1=st.tuples(st.floats(0, 1), st.floats(0, 1)), nights=later_nights,
       final_gap=st.sampled_from(["30", "5"]), final_library=st.sampled_from([0, 1]),
       final_sidecars=st.sampled_from([0, 1]))
def test_property_any_history_from_a_1_0_0_warehouse_equals_one_fresh_load(
    tmp_path_factory, two_empty_databases, empty_env_file, change, kindle, boox, loaded_by_v1, nights, final_gap,
    final_library, final_sidecars
):
    """1.0.0 loaded older copies of both devices' files; then the current release runs grown copies, one device
    a night, with the gap changed in between, the Calibre library read on some nights (edited between them) and
    the Kindle's sidecars on some (replaced by newer ones), and finally both whole files with the library and
    the newest sidecars: one fresh load of those equals it."""
    rows = {"kindle": sorted({(page, DST_CHANGES[change] + 60 * minutes): (1, page, DST_CHANGES[change] + 60 * minutes,
                                                                           seconds, 300)
                              for page, minutes, seconds in kindle}.values(), key=lambda row: (row[2], row[1])),
            "boox": sorted({(page, minutes): (1, page, 1_719_860_400 + 60 * minutes, seconds, 400)
                            for page, minutes, seconds in boox}.values(), key=lambda row: (row[2], row[1]))}
    book = {"kindle": STONER, "boox": OMENS}
    settings_of = {"kindle": KINDLE, "boox": BOOX}
    folder = tmp_path_factory.mktemp("history")
    upgraded, once = two_empty_databases
    empty_warehouse(upgraded)
    empty_warehouse(once)
    shown = {device: loaded_by_v1[n] for n, device in enumerate(("kindle", "boox"))}
    version_1_warehouse(upgraded, copies(rows["kindle"], shown["kindle"]), copies(rows["boox"], shown["boox"]))

    libraries = [write_library(folder, version) for version in (0, 1)]
    sidecar_folders = [write_sidecars(folder, version) for version in (0, 1)]

    def night(url, device, fraction, gap, library, sidecars):
        if not rows[device]:
            return
        stats = write_statistics_file(folder / f"{device}.sqlite3", [book[device]], copies(rows[device], fraction))
        calibre = [] if library is None else ["--calibre-library", str(libraries[library])]
        sidecar_dir = [] if sidecars is None or device != "kindle" else ["--sidecar-dir",
                                                                         str(sidecar_folders[sidecars])]
        with environment(ETL_GAP_MINUTES=gap, **settings_of[device]):
            assert etl_module.main(["--stats-db", str(stats), "--device", device, "--database-url", url,
                                    "--env-file", str(empty_env_file), "-q", *calibre, *sidecar_dir]) == 0

    newest_sidecars = 0
    for device, fraction, gap, library, sidecars in nights:  # copies only grow: Syncthing brings newer ones
        shown[device] = max(shown[device], fraction)
        if sidecars is not None:
            newest_sidecars = sidecars = max(newest_sidecars, sidecars)
        night(upgraded, device, shown[device], gap, library, sidecars)
    final_sidecars = max(newest_sidecars, final_sidecars)
    for url in (upgraded, once):
        for device in ("kindle", "boox"):
            night(url, device, 1, final_gap, final_library, final_sidecars)

    assert whole_state(upgraded) == whole_state(once)
