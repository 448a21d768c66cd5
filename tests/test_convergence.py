"""The warehouse is a function of its inputs: any history of runs equals one fresh load of the final files.

One named test per case that used to depend on history (a book's key changing under the same KOReader
id, a changed clock or zone, the load order of devices, a changed session gap), then a property over
random histories of several synced devices, grown copies and settings changed between runs.
"""

import tempfile
from pathlib import Path

import pytest
from conftest import query, reset_warehouse, run_cli
from helpers import T0, book_rows, environment, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouse import book_seconds, reading_state

import extract_koreader_stats as etl_module
from samples.statistics import Book, write_statistics_file


def fresh_load(new_database, env_file, loads):
    """A new warehouse loaded once with ``loads``: (stats file, device, settings) each."""
    url = new_database(warehouse=True)
    for stats, device, run_settings in loads:
        result = run_cli("--stats-db", stats, "--device", device, env_file=env_file, DATABASE_URL=url, **run_settings)
        assert result.returncode == 0, result.stderr
    return url


# Case 1 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("md5_before, md5_after", [(None, None), ("", None), (None, "ab" * 16)],
                         ids=["no md5", "empty-file md5", "md5 appears"])
def test_a_title_keyed_book_edited_in_koreader_stays_one_book(
    tmp_path, etl, database_url, new_database, empty_env_file, md5_before, md5_after
):
    empty = "d41d8cd98f00b204e9800998ecf8427e"
    rows = [(7, p, T0 + 100 * p, 50, 40) for p in range(1, 11)]  # 500 s
    before = Book(7, "Stoner", "John Williams", 40, empty if md5_before == "" else md5_before)
    after = Book(7, "Stoner: A Novel", "John Edward Williams", 40, md5_after, last_open=T0 + 5000)
    grown = rows + [(7, 11, T0 + 1100, 50, 40)]  # 550 s
    first = write_statistics_file(tmp_path / "first.sqlite3", [before], rows)
    edited = write_statistics_file(tmp_path / "edited.sqlite3", [after], grown)

    assert etl(first).returncode == 0
    result = etl(edited)

    assert result.returncode == 0, result.stderr
    assert list(book_seconds(database_url).values()) == [550]
    once = fresh_load(new_database, empty_env_file, [(edited, "boox-palma-2", {"ETL_TIMEZONE": "UTC"})])
    assert reading_state(database_url) == reading_state(once)
    assert query(database_url, "SELECT (SELECT count(*) FROM authors), (SELECT count(*) FROM author_names)") == [
        (1, 1)]


def test_a_book_renamed_to_the_title_of_another_merges_into_it(tmp_path, etl, database_url, new_database,
                                                                 empty_env_file):
    books = [Book(1, "Dubliners", "James Joyce", 40, None), Book(2, "Ulysses", "James Joyce", 40, None)]
    rows = [(1, 1, T0, 60, 40), (2, 1, T0 + 9000, 60, 40)]
    renamed = [Book(1, "Ulysses", "James Joyce", 40, None, last_open=T0 + 1), books[1]]
    first = write_statistics_file(tmp_path / "first.sqlite3", books, rows)
    second = write_statistics_file(tmp_path / "second.sqlite3", renamed, rows)

    assert etl(first).returncode == 0
    assert etl(second).returncode == 0

    once = fresh_load(new_database, empty_env_file, [(second, "boox-palma-2", {"ETL_TIMEZONE": "UTC"})])
    assert reading_state(database_url) == reading_state(once)
    assert list(book_seconds(database_url).values()) == [120]


def test_a_book_with_a_real_md5_keeps_its_key_when_its_title_is_edited(tmp_path, etl, database_url):
    rows = [(1, 1, T0, 60, 40)]
    first = write_statistics_file(tmp_path / "a.sqlite3", [Book(1, "Stoner", "J. Williams", 40, "e" * 32)], rows)
    edited = write_statistics_file(tmp_path / "b.sqlite3",
                                   [Book(1, "Stoner (NYRB)", "J. Williams", 40, "e" * 32, last_open=T0 + 9)], rows)
    assert etl(first).returncode == 0
    assert etl(edited).returncode == 0
    assert query(database_url, "SELECT book_key, title FROM book_keys") == [(f"md5:{'e' * 32}", "Stoner (NYRB)")]


# Case 2 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        [{"ETL_DEVICE_CLOCK": "local", "ETL_TIMEZONE": "Europe/Berlin"},
         {"ETL_DEVICE_CLOCK": "local", "ETL_TIMEZONE": "America/New_York"}],
        [{"ETL_DEVICE_CLOCK": "utc", "ETL_TIMEZONE": "Europe/Berlin"},
         {"ETL_DEVICE_CLOCK": "local", "ETL_TIMEZONE": "Europe/Berlin"}],
        [{"ETL_DEVICE_CLOCK": "local", "ETL_TIMEZONE": "Europe/Berlin"},
         {"ETL_DEVICE_CLOCK": "utc", "ETL_TIMEZONE": "Europe/Berlin"}],
    ],
    ids=["zone changed", "utc to local", "local to utc"],
)
def test_a_changed_clock_or_zone_reinterprets_the_rows_instead_of_duplicating_them(
    tmp_path, etl, database_url, new_database, empty_env_file, history
):
    rows = [(1, p, T0 + 3600 * 20 + 90 * p, 60, 300) for p in range(1, 12)]  # 11 rows around local midnight
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)], rows)

    for run_settings in history:
        result = etl(stats, **run_settings)
        assert result.returncode == 0, result.stderr

    assert query(database_url, "SELECT count(*) FROM page_views") == [(11,)]
    once = fresh_load(new_database, empty_env_file, [(stats, "boox-palma-2", history[-1])])
    assert reading_state(database_url) == reading_state(once)
    assert "sessions and local days are derived again" in result.stderr


def test_a_run_without_zone_or_clock_keeps_the_devices_stored_settings(tmp_path, etl, database_url, empty_env_file):
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)],
                                  [(1, 1, T0, 60, 300)])
    assert etl(stats, ETL_TIMEZONE="Europe/Berlin", ETL_DEVICE_CLOCK="local").returncode == 0
    before = reading_state(database_url)

    # A run by hand from a shell in another zone, with neither setting.
    result = run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=database_url, TZ="America/Chicago")

    assert result.returncode == 0, result.stderr
    assert "derived again" not in result.stderr
    assert query(database_url, "SELECT timezone, clock FROM devices") == [("Europe/Berlin", "local")]
    assert reading_state(database_url) == before


# Case 3 -------------------------------------------------------------------------------------------


def test_synced_devices_in_either_order_give_one_warehouse(tmp_path, new_database, empty_env_file):
    book = [Book(1, "Stoner", "John Williams", 300, "e" * 32)]
    x_rows = [(1, 1, T0, 60, 300)]
    x = write_statistics_file(tmp_path / "x.sqlite3", book, x_rows)
    # Y's file holds X's row (synced) and its own, 10 s after X's ended.
    y = write_statistics_file(tmp_path / "y.sqlite3", [Book(4, "Stoner", "John Williams", 300, "e" * 32)],
                              [(4, 1, T0, 60, 300), (4, 2, T0 + 70, 60, 300)])
    utc = {"ETL_TIMEZONE": "UTC"}

    x_then_y = fresh_load(new_database, empty_env_file, [(x, "x", utc), (y, "y", utc)])
    y_then_x = fresh_load(new_database, empty_env_file, [(y, "y", utc), (x, "x", utc)])

    assert reading_state(x_then_y) == reading_state(y_then_x)
    assert query(x_then_y, "SELECT duration_seconds FROM reading_sessions") == [(120,)]


# Case 4 -------------------------------------------------------------------------------------------


def test_a_changed_gap_derives_every_session_again(tmp_path, etl, database_url, new_database, empty_env_file):
    rows = [(1, 1, T0, 60, 300), (1, 2, T0 + 60 + 900, 60, 300), (1, 3, T0 + 1020 + 900, 60, 300)]  # pauses of 15 min
    stats = write_statistics_file(tmp_path / "s.sqlite3", [Book(1, "Stoner", "John Williams", 300, "e" * 32)], rows)

    assert etl(stats).returncode == 0
    assert query(database_url, "SELECT count(*) FROM reading_sessions") == [(1,)]
    result = etl(stats, "--gap-minutes", "10")

    assert result.returncode == 0, result.stderr
    assert "deriving every session again" in result.stderr
    assert query(database_url, "SELECT count(*) FROM reading_sessions") == [(3,)]
    once = fresh_load(new_database, empty_env_file, [(stats, "boox-palma-2", {"ETL_TIMEZONE": "UTC",
                                                                              "ETL_GAP_MINUTES": "10"})])
    assert reading_state(database_url) == reading_state(once)


# The property ---------------------------------------------------------------------------------------

ZONES = ("UTC", "Europe/Berlin", "America/New_York")
BOOKS = [Book(1, "Book 1", "Author 1", 30, f"{1:032x}"), Book(2, "Book 2", "Author 2", 30, f"{2:032x}"),
         Book(3, "Kein Hash", "Autorin 3", 30, None)]


run_settings = st.fixed_dictionaries({
    "ETL_TIMEZONE": st.none() | st.sampled_from(ZONES),
    "ETL_DEVICE_CLOCK": st.none() | st.sampled_from(["utc", "local"]),
    "ETL_GAP_MINUTES": st.sampled_from(["30", "5", "90"]),
})


@st.composite
def histories(draw):
    """Devices whose files hold the union of everyone's rows (as KOReader's sync makes them), each in
    growing copies, loaded in a random interleaving with settings changed between runs."""
    rows = [r for book in (1, 2, 3) for r in draw(book_rows(book))]
    rnd = draw(st.randoms(use_true_random=False))
    devices = []
    for device in range(draw(st.integers(2, 3))):
        longer = {i for i in range(len(rows)) if rnd.random() < 0.15}
        final = [(10 * device + b, p, s, d + 7 * (i in longer), t) for i, (b, p, s, d, t) in enumerate(rows)]
        versions = []
        for cut in sorted(draw(st.lists(st.integers(0, 30_000), max_size=2))):
            versions.append([r for r in final if r[2] < T0 + cut and rnd.random() > 0.2])
        devices.append(versions + [final])
    order = [device for device, versions in enumerate(devices) for _ in versions]
    order += draw(st.lists(st.sampled_from(range(len(devices))), max_size=2))  # repeated loads
    rnd.shuffle(order)
    runs, loaded = [], [0] * len(devices)
    for device in order:
        version = min(loaded[device], len(devices[device]) - 1)
        loaded[device] += 1
        runs.append((device, version, draw(run_settings)))
    final = {"ETL_TIMEZONE": draw(st.sampled_from(ZONES)), "ETL_DEVICE_CLOCK": draw(st.sampled_from(["utc", "local"]))}
    last_run = {device: i for i, (device, _version, _settings) in enumerate(runs)}
    runs = [(device, version, {**run, **final} if last_run[device] == i else run)
            for i, (device, version, run) in enumerate(runs)]
    return devices, runs


def load_in_process(url, path, device, env_file, run):
    with environment(**run):
        code = etl_module.main(["--stats-db", str(path), "--database-url", url, "--env-file", str(env_file),
                                "--device", f"device-{device}", "-q"])
    assert code == 0


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories())
def test_property_any_history_of_runs_equals_one_fresh_load_of_the_final_files(history, two_warehouses,
                                                                                 empty_env_file):
    devices, runs = history
    step_by_step, once = two_warehouses
    reset_warehouse(step_by_step)
    reset_warehouse(once)
    final_version = {}
    with tempfile.TemporaryDirectory() as directory:
        def file_of(device, version):
            books = [Book(10 * device + b.id, b.title, b.authors, b.pages, b.md5) for b in BOOKS]
            path = Path(directory) / f"d{device}v{version}.sqlite3"
            if not path.exists():
                write_statistics_file(path, books, devices[device][version])
            return path

        for device, version, run in runs:
            load_in_process(step_by_step, file_of(device, version), device, empty_env_file, run)
            final_version[device] = (version, run)
        last_gap = runs[-1][2]["ETL_GAP_MINUTES"]
        for device in sorted(final_version):
            version, run = final_version[device]
            final_run = {**run, "ETL_GAP_MINUTES": last_gap}
            load_in_process(once, file_of(device, version), device, empty_env_file, final_run)

    assert reading_state(step_by_step) == reading_state(once)



@pytest.mark.parametrize("order", [("one", "two"), ("two", "one")])
def test_metadata_of_two_devices_opened_at_the_same_moment_does_not_depend_on_the_load_order(
    tmp_path, new_database, empty_env_file, order
):
    rows = [(1, 1, T0, 60, 40)]
    files = {
        "one": write_statistics_file(tmp_path / "one.sqlite3", [Book(1, "Stoner", "A", 40, "e" * 32, last_open=T0)],
                                     rows),
        "two": write_statistics_file(tmp_path / "two.sqlite3",
                                     [Book(1, "Stoner: A Novel", "A", 40, "e" * 32, last_open=T0)], rows),
    }
    utc = {"ETL_TIMEZONE": "UTC"}
    this_order = fresh_load(new_database, empty_env_file, [(files[d], d, utc) for d in order])
    other_order = fresh_load(new_database, empty_env_file, [(files[d], d, utc) for d in reversed(order)])
    assert reading_state(this_order) == reading_state(other_order)
