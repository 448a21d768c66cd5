"""A warehouse made by bookhelper-etl 1.0.0 (schema version 1) is migrated in place on the first run."""

from pathlib import Path

from conftest import query, run_cli
from generator import Book, write_statistics_file
from warehouse import reading_state

T0 = 1_719_860_400  # 2024-07-01 19:00 UTC
BERLIN_SUMMER = 7200
SCHEMA_V1 = Path(__file__).with_name("schema_v1.sql")

# What 1.0.0 stored for a local-clock Kindle in Berlin: epochs converted to UTC, sessions split by device.
V1_ROWS = """
INSERT INTO devices (device_id, name, timezone, clock) VALUES (1, 'kindle', 'Europe/Berlin', 'local'),
                                                               (2, 'boox', 'UTC', 'utc');
INSERT INTO authors (author_id, name) VALUES (1, 'John Williams'), (2, 'Nobody Any More');
INSERT INTO books (book_id, book_key, title, author_id, file_hash, page_count)
VALUES (1, 'md5:eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'Stoner', 1, 'eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 300);
INSERT INTO book_authors VALUES (1, 1, 1);
INSERT INTO page_views (book_id, page, start_epoch, duration, total_pages, device_id)
SELECT 1, page, %(t0)s + 100 * page - %(offset)s, 60, 300, 1 FROM generate_series(1, 5) AS page;
INSERT INTO device_books VALUES (1, 1, 5, 300, %(t0)s + 500, 0, 'stale', now());
INSERT INTO reading_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,
                              start_page, end_page, total_pages, device, read_number)
VALUES (1, to_timestamp(%(t0)s + 100 - %(offset)s), to_timestamp(%(t0)s + 300 - %(offset)s), 180, 3, 3, 1, 3, 300,
        'kindle', 1),
       (1, to_timestamp(%(t0)s + 400 - %(offset)s), to_timestamp(%(t0)s + 560 - %(offset)s), 120, 2, 2, 4, 5, 300,
        'boox', 1);
INSERT INTO etl_runs (run_uuid, started_at, finished_at, status, device, script_version)
VALUES ('00000000-0000-0000-0000-000000000001', now(), now(), 'success', 'kindle', '1.0.0');
SELECT setval(pg_get_serial_sequence('devices', 'device_id'), 2);
"""


def test_a_version_1_warehouse_is_migrated_in_place_and_equals_a_fresh_load(
    tmp_path, database_url, new_database, empty_env_file
):
    query(database_url, SCHEMA_V1.read_text())
    query(database_url, V1_ROWS, {"t0": T0, "offset": BERLIN_SUMMER})
    stats = write_statistics_file(tmp_path / "kindle.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, page, T0 + 100 * page, 60, 300) for page in range(1, 6)])
    kindle = {"ETL_TIMEZONE": "Europe/Berlin", "ETL_DEVICE_CLOCK": "local"}

    result = run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url,
                     **kindle)

    assert result.returncode == 0, result.stderr
    assert "upgrading the warehouse schema to version 2" in result.stderr
    once = new_database()
    assert run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=once,
                   **kindle).returncode == 0
    assert reading_state(database_url) == reading_state(once)
    # The raw KOReader start_time is the row's identity again: no row was added.
    assert query(database_url, "SELECT count(*), min(start_epoch) FROM page_views") == [(5, T0 + 100)]
    # History stays: the run records and the devices.
    assert query(database_url, "SELECT script_version FROM etl_runs ORDER BY run_id") == [("1.0.0",), ("2.0.0",)]
    assert query(database_url, "SELECT device_id, name FROM devices ORDER BY 1") == [(1, "kindle"), (2, "boox")]
    assert query(database_url, """SELECT data_type FROM information_schema.columns
                                  WHERE column_name = 'device_id' GROUP BY 1""") == [("integer",)]
    assert query(database_url, "SELECT max_value FROM pg_sequences WHERE sequencename LIKE 'devices%%'") == [
        (2**31 - 1,)]
    assert query(database_url, "SELECT value FROM schema_meta WHERE key = 'schema_version'") == [("2",)]


def test_a_second_run_after_the_migration_changes_nothing(tmp_path, database_url, empty_env_file):
    query(database_url, SCHEMA_V1.read_text())
    query(database_url, V1_ROWS, {"t0": T0, "offset": BERLIN_SUMMER})
    stats = write_statistics_file(tmp_path / "kindle.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, page, T0 + 100 * page, 60, 300) for page in range(1, 6)])
    settings = {"ETL_TIMEZONE": "Europe/Berlin", "ETL_DEVICE_CLOCK": "local"}
    assert run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url,
                   **settings).returncode == 0
    before = reading_state(database_url)

    again = run_cli("--stats-db", stats, "--device", "kindle", env_file=empty_env_file, DATABASE_URL=database_url)

    assert again.returncode == 0, again.stderr
    assert "0 of 1 books changed" in again.stderr
    assert reading_state(database_url) == before
