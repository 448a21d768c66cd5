"""Several devices, late rows, re-reads and local days: never counting anything twice."""

import datetime
import random
import uuid

import pytest
from conftest import query, run_cli
from helpers import T0, synced_files
from warehouse import book_seconds, warehouse_state

from bookhelper.sessions import READ_NAMESPACE
from samples.statistics import Book, make_books, simulate_reading, write_statistics_file


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a"), ("a", "b", "a", "b", "b")])
def test_two_synced_devices_in_any_order_and_number_count_every_row_once(tmp_path, etl, database_url, order):
    path_a, path_b, expected = synced_files(tmp_path)
    files = {"a": (path_a, "boox-palma-2"), "b": (path_b, "kobo-libra")}

    for name in order:
        path, device = files[name]
        result = etl(path, "--device", device)
        assert result.returncode == 0, result.stderr

    assert book_seconds(database_url) == expected
    assert query(database_url, "SELECT sum(duration)::bigint FROM page_views")[0][0] == sum(expected.values())


def test_the_same_files_in_another_order_give_the_same_page_rows(tmp_path, etl, new_database, empty_env_file):
    path_a, path_b, _expected = synced_files(tmp_path)
    first, second = new_database(warehouse=True), new_database(warehouse=True)
    for url, order in ((first, (path_a, path_b)), (second, (path_b, path_a))):
        for path, device in zip(order, ("one", "two")):
            assert run_cli("--stats-db", path, "--device", device, env_file=empty_env_file,
                           DATABASE_URL=url, ETL_TIMEZONE="UTC").returncode == 0
    keys = ("SELECT b.book_key, page, start_epoch, duration FROM page_views JOIN book_keys b USING (book_id)"
            " ORDER BY 1, 2, 3")
    assert query(first, keys) == query(second, keys)


@pytest.mark.parametrize("order", [("phone", "kobo"), ("kobo", "phone")])
def test_a_sitting_that_moves_between_devices_within_the_gap_is_one_session_in_any_load_order(
    tmp_path, etl, database_url, order
):
    book = [Book(1, "Stoner", "John Williams", 300, "e" * 32)]
    files = {
        "phone": write_statistics_file(tmp_path / "phone.sqlite3", book,
                                       [(1, 1, T0, 60, 300), (1, 2, T0 + 61, 60, 300)]),
        "kobo": write_statistics_file(tmp_path / "kobo.sqlite3", book, [(1, 3, T0 + 600, 60, 300)]),
    }

    for device in order:
        assert etl(files[device], "--device", device).returncode == 0

    sessions = query(database_url, "SELECT duration_seconds, pages_read, start_page, end_page FROM reading_sessions")
    assert sessions == [(180, 3, 1, 3)]
    # Best known: the device that first reported the session's first row (the phone's, in either order).
    assert query(database_url, "SELECT device FROM reading_sessions") == [("phone",)]


def test_a_session_belongs_to_the_device_that_first_reported_its_rows(tmp_path, etl, database_url):
    book = [Book(1, "Stoner", "John Williams", 300, "e" * 32)]
    rows = [(1, 1, T0, 60, 300), (1, 2, T0 + 61, 60, 300)]
    both = write_statistics_file(tmp_path / "synced.sqlite3", book, rows)
    assert etl(both, "--device", "first").returncode == 0
    assert etl(both, "--device", "second").returncode == 0
    assert query(database_url, "SELECT device, duration_seconds FROM reading_sessions") == [("first", 120)]


def test_metadata_of_the_most_recently_opened_device_wins(tmp_path, etl, database_url):
    rows = [(1, 1, T0, 60, 300)]
    newer = write_statistics_file(tmp_path / "n.sqlite3", [Book(1, "New Title", "A", 300, "e" * 32, last_open=T0 + 99)],
                                  rows)
    older = write_statistics_file(tmp_path / "o.sqlite3", [Book(1, "Old Title", "A", 300, "e" * 32, last_open=T0)],
                                  rows)
    assert etl(newer, "--device", "one").returncode == 0
    assert etl(older, "--device", "two").returncode == 0
    assert query(database_url, "SELECT title FROM books") == [("New Title",)]


def test_late_rows_in_a_later_copy_are_loaded_as_one_load_of_the_final_file(
    tmp_path, etl, database_url, new_database, empty_env_file
):
    rng = random.Random(3)
    books = make_books(5, rng)
    rows = simulate_reading(books, 30, rng, start_epoch=T0)
    latest_start = max(r[2] for r in rows)
    # The first copy lacks the older rows of two books (merged in later from another device).
    late_books = {books[0].id, books[1].id}
    early_copy = [r for r in rows if not (r[0] in late_books and r[2] < latest_start - 10 * 86400)]
    first = write_statistics_file(tmp_path / "first.sqlite3", books, early_copy)
    final = write_statistics_file(tmp_path / "final.sqlite3", books, rows)

    assert etl(first).returncode == 0
    second = etl(final)
    once = new_database(warehouse=True)
    assert run_cli("--stats-db", final, env_file=empty_env_file, DATABASE_URL=once, ETL_TIMEZONE="UTC").returncode == 0

    assert second.returncode == 0
    assert "2 of 5 books changed" in second.stderr
    assert warehouse_state(database_url) == warehouse_state(once)


def test_a_nightly_run_sends_only_the_changed_books_rows(tmp_path, etl, database_url):
    rng = random.Random(4)
    books = make_books(6, rng)
    rows = simulate_reading(books, 30, rng, start_epoch=T0)
    assert etl(write_statistics_file(tmp_path / "d1.sqlite3", books, rows)).returncode == 0
    reader = books[2]
    book_rows = [r for r in rows if r[0] == reader.id]
    tonight = [(reader.id, 1, max(r[2] for r in rows) + 86400, 40, 300)]

    result = etl(write_statistics_file(tmp_path / "d2.sqlite3", books, rows + tonight))

    assert result.returncode == 0
    assert "1 of 6 books changed" in result.stderr
    assert f"page rows: {len(book_rows) + 1:,} sent, 1 new" in result.stderr
    assert "sessions: 1 inserted" in result.stderr


def test_read_ids_are_stable_across_reruns_and_machines(tmp_path, etl, database_url, new_database, empty_env_file):
    rows = [(1, p, T0 + 100 * p, 60, 20) for p in range(1, 21)]
    rows += [(1, p, T0 + 86400 * 30 + 100 * p, 60, 20) for p in range(1, 5)]
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Ficciones", "Jorge Luis Borges", 20, "f" * 32)],
                                  rows)
    assert etl(stats).returncode == 0
    ids = query(database_url, "SELECT read_number, read_instance_id FROM reading_sessions ORDER BY start_time")
    assert etl(stats).returncode == 0
    elsewhere = new_database(warehouse=True)
    assert run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=elsewhere).returncode == 0

    expected = [(n, str(uuid.uuid3(READ_NAMESPACE, f"md5:{'f' * 32}/read/{n}"))) for n in (1, 2)]
    assert ids == expected
    assert query(database_url, "SELECT read_number, read_instance_id FROM reading_sessions ORDER BY start_time") == ids
    assert query(elsewhere, "SELECT read_number, read_instance_id FROM reading_sessions ORDER BY start_time") == ids


def utc(*args):
    return int(datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp())


def test_a_session_across_local_midnight_counts_on_both_days(tmp_path, etl, database_url):
    # Berlin in winter is UTC+1: 22:50 UTC is 23:50 local, 23:10 UTC is 00:10 local the next day.
    rows = [(1, p, utc(2024, 1, 10, 22, 50) + 120 * (p - 1), 100, 300) for p in range(1, 21)]
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)], rows)

    assert etl(stats, ETL_TIMEZONE="Europe/Berlin").returncode == 0

    assert query(database_url, "SELECT count(*) FROM reading_sessions") == [(1,)]
    timeline = query(database_url, "SELECT day::text, reading_seconds::int FROM reading_days ORDER BY day")
    assert timeline == [("2024-01-10", 500), ("2024-01-11", 1500)]


def test_local_days_follow_the_zones_daylight_saving_rules(tmp_path, etl, database_url):
    # Berlin switches to UTC+2 on 2024-03-31 at 01:00 UTC.
    rows = [
        (1, 1, utc(2024, 3, 30, 22, 59), 30, 300),  # 23:59 CET, March 30
        (1, 2, utc(2024, 3, 31, 0, 30), 30, 300),   # 01:30 CET, March 31
        (1, 3, utc(2024, 3, 31, 21, 59), 30, 300),  # 23:59 CEST, March 31
        (1, 4, utc(2024, 3, 31, 22, 1), 30, 300),   # 00:01 CEST, April 1 (would be March 31 at UTC+1)
    ]
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)], rows)

    assert etl(stats, ETL_TIMEZONE="Europe/Berlin").returncode == 0

    timeline = query(database_url, "SELECT day::text, reading_seconds::int FROM reading_days ORDER BY day")
    assert timeline == [("2024-03-30", 30), ("2024-03-31", 60), ("2024-04-01", 30)]
    assert query(database_url, "SELECT timezone, clock FROM devices") == [("Europe/Berlin", "utc")]


def test_a_device_clock_in_local_time_is_converted_to_true_utc(tmp_path, etl, database_url):
    # The Kindle wrote 21:00 Berlin wall time as if it were 21:00 UTC; in July Berlin is UTC+2.
    wall = utc(2024, 7, 1, 21, 0)
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, 1, wall, 60, 300)])

    assert etl(stats, ETL_TIMEZONE="Europe/Berlin", ETL_DEVICE_CLOCK="local").returncode == 0

    # The row keeps KOReader's raw start_time as its identity; its true UTC time is derived.
    assert query(database_url, "SELECT start_epoch, utc_epoch FROM page_view_times") == [(wall, wall - 7200)]
    start = query(database_url, "SELECT start_time AT TIME ZONE 'UTC' FROM reading_sessions")[0][0]
    assert start == datetime.datetime(2024, 7, 1, 19, 0, tzinfo=datetime.timezone.utc)
    assert query(database_url, "SELECT day::text FROM reading_days") == [("2024-07-01",)]
