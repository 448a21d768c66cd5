"""The warehouse is a function of all its inputs: random histories of runs over a growing statistics file,
a sidecar folder and a Calibre library that are edited between runs, Kindle and Audible exports replaced by
newer ones, each optional input configured on some nights and not on others, and settings changed in between,
equal one fresh load of the last inputs each source was read from, with the final settings: every table and
view a user queries, row for row."""

import datetime
import os
import tempfile
from pathlib import Path

import pytest
from conftest import reset_warehouse
from helpers import environment, examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from warehouse import whole_state

import extract_koreader_stats as etl_module
from samples.audible import AudibleTitle, ListeningEvent, write_audible_export
from samples.calibre import CalibreBook, write_calibre_library
from samples.kindle import KindleCompletion, KindleTitle, ReadingInterval, write_kindle_export
from samples.sidecars import dump_lua
from samples.statistics import Book, write_statistics_file

T0 = 1_700_000_000
BOOKS = [Book(1, "Stoner", "John Williams", 40, "a" * 32), Book(2, "Dune", "Frank Herbert", 50, "b" * 32),
         Book(3, "Emma", "Jane Austen", 30, None)]
PAPER_MD5 = "c" * 32  # a book only a sidecar knows
TAGS = ("classic", "sf", "novel", "favourite")
PUBLISHERS = ("Vintage", "Ace", "Penguin")

page_rows = st.lists(st.tuples(st.integers(1, 3), st.integers(1, 30), st.integers(0, 40_000), st.integers(1, 200)),
                     min_size=1, max_size=25)
sidecar_versions = st.fixed_dictionaries({
    "status": st.sampled_from(["reading", "complete", "abandoned"]),
    "rating": st.integers(0, 6),
    "pages": st.integers(10, 60),
    "notes": st.lists(st.sampled_from(["a quote", "another", "— 読書"]), max_size=3),
    "copy": st.booleans(),  # a second copy of the sidecar, in docsettings/, older or newer
    "copy_newer": st.booleans(),
})
# Kindle: Stoner by an ASIN that some library versions name (amazon identifier), and a book the warehouse knows
# only from Kindle, which the export does not name (titled by its ASIN, or by the library versions that hold it).
# Audible: Dune's audiobook (its ebook by title and author) and one no ebook has. Intervals and listening days
# near the statistics' page rows, so that reads overlap and tandems come and go with the setting.
KINDLE_ASINS = ("B0STONER01", "B0KINDLE02")
kindle_rows = st.lists(st.tuples(st.sampled_from(KINDLE_ASINS), st.integers(0, 40_000), st.integers(1, 900_000)),
                       min_size=1, max_size=8)
# Amazon's completion records, on the days around the intervals (which cross midnight UTC, and a local midnight
# in some zones): they finish reads and split them, differently in each zone; a record weeks before them, or of
# a book never read on a Kindle, is a finish of its own (and the only thing that brings that book).
kindle_completions = st.lists(st.tuples(st.sampled_from(KINDLE_ASINS + ("B0MARKED03",)),
                                        st.sampled_from(["2023-10-01", "2023-11-14", "2023-11-15"])), max_size=3)
AUDIBLE_BOOKS = (("B0AUDDUNE1", "Dune (Unabridged)", "Frank Herbert"), ("B0AUDLONE1", "Lone Voice", "Ann Lee"))
audible_rows = st.lists(st.tuples(st.integers(0, 1), st.integers(-10, 20), st.integers(1, 4_000_000),
                                  st.integers(0, 100)), min_size=1, max_size=8)
library_versions = st.fixed_dictionaries({
    "stoner_asin": st.booleans(),
    "kindle_asin": st.booleans(),
    "tags": st.lists(st.sets(st.sampled_from(TAGS), max_size=2), min_size=4, max_size=4),
    "publishers": st.lists(st.sampled_from(PUBLISHERS), min_size=4, max_size=4),
    "isbns": st.lists(st.sampled_from(["9780306406157", "0306406152", "9781590171998", None]), min_size=4,
                      max_size=4),
})
nights = st.fixed_dictionaries({
    "stats": st.integers(0, 2), "sidecars": st.one_of(st.none(), st.integers(0, 2)),
    "calibre": st.one_of(st.none(), st.integers(0, 2)),
    "kindle": st.one_of(st.none(), st.integers(0, 2)), "audible": st.one_of(st.none(), st.integers(0, 2)),
    "ETL_TANDEM_MIN_OVERLAP_DAYS": st.sampled_from(["0", "7"]),
    "ETL_TIMEZONE": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    "ETL_GAP_MINUTES": st.sampled_from(["30", "5"]),
})


def write_sidecars(folder: Path, version: dict, written_at: int) -> None:
    """The sidecars of one version, written at ``written_at``: Stoner's (with an optional second copy, older or
    newer) and the book read on paper."""
    for md5, name in (("a" * 32, "Stoner"), (PAPER_MD5, "Paper")):
        data = {"partial_md5_checksum": md5, "doc_props": {"title": name, "authors": "Someone"},
                "doc_pages": version["pages"],
                "summary": {"status": version["status"], "modified": "2024-03-02", "rating": version["rating"]},
                "annotations": {n: {"datetime": f"2024-03-01 21:{10 + n}:00", "text": text, "pageno": n}
                                for n, text in enumerate(version["notes"], 1)}}
        copies = [(f"Books/{name}.sdr/metadata.epub.lua", data, written_at + 100)]
        if version["copy"]:
            other = dict(data, summary={**data["summary"], "status": "reading"})
            copies.append((f"docsettings/Books/{name}.sdr/metadata.epub.lua", other,
                           written_at + (200 if version["copy_newer"] else 50)))
        for relative, content, mtime in copies:
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"return " + dump_lua(content))
            os.utime(path, (mtime, mtime))


def write_library(folder: Path, version: dict) -> Path:
    """The reader's library of one version: the three books and one the statistics never saw (the Kindle-only
    book, in the versions that hold its ASIN)."""
    titles = [(b.title, b.authors) for b in BOOKS] + [("Unread", "Nobody")]
    books = [CalibreBook(n, title, [author], publisher=version["publishers"][n - 1],
                         tags=sorted(version["tags"][n - 1]),
                         identifiers={**({"isbn": version["isbns"][n - 1]} if version["isbns"][n - 1] else {}),
                                      **({"amazon": KINDLE_ASINS[0]} if n == 1 and version["stoner_asin"] else {}),
                                      **({"mobi-asin": KINDLE_ASINS[1]} if n == 4 and version["kindle_asin"] else {})})
             for n, (title, author) in enumerate(titles, 1)]
    return write_calibre_library(folder, books, cwa=False).metadata_db.parent


def write_kindle(path: Path, rows: list, completions: list) -> Path:
    """A Kindle export of these intervals (ASIN, start offset, millis) and completion records (ASIN, day), which
    names Stoner only."""
    intervals = [ReadingInterval(T0 + start, T0 + start + millis // 1000, asin, millis=millis)
                 for asin, start, millis in rows]
    titles = [KindleTitle(KINDLE_ASINS[0], "Stoner", ("Williams, John",))]
    return write_kindle_export(path, intervals, titles, as_zip=True,
                               completions=[KindleCompletion(asin, day) for asin, day in completions])


def write_audible(path: Path, rows: list) -> Path:
    """An Audible export of these events (which book, day offset, millis, end position in percent)."""
    day0 = datetime.date(2023, 11, 14)
    events = [ListeningEvent(str(day0 + datetime.timedelta(days=day)), str(day0 + datetime.timedelta(days=day)),
                             millis, 0, 36_000 * percent, AUDIBLE_BOOKS[book][1], AUDIBLE_BOOKS[book][0],
                             book_length_ms=3_600_000)
              for book, day, millis, percent in rows]
    library = [AudibleTitle(asin, name.replace(" (Unabridged)", ""), authors=(author,), length_minutes=60)
               for asin, name, author in AUDIBLE_BOOKS]
    return write_audible_export(path, {"Account Holder": events}, library)


def run(url, env_file, night, paths):
    args = ["--stats-db", str(paths["stats"][night["stats"]]), "--database-url", url, "--env-file", str(env_file),
            "-q"]
    if night["sidecars"] is not None:
        args += ["--sidecar-dir", str(paths["sidecars"][night["sidecars"]])]
    if night["calibre"] is not None:
        args += ["--calibre-library", str(paths["calibre"][night["calibre"]])]
    for source in ("kindle", "audible"):
        if night[source] is not None:
            args += [f"--{source}-export", str(paths[source][night[source]])]
    with environment(ETL_TIMEZONE=night["ETL_TIMEZONE"], ETL_GAP_MINUTES=night["ETL_GAP_MINUTES"],
                     ETL_TANDEM_MIN_OVERLAP_DAYS=night["ETL_TANDEM_MIN_OVERLAP_DAYS"]):
        assert etl_module.main(args) == 0


@pytest.mark.slow
@settings(max_examples=examples(30), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=page_rows, cuts=st.lists(st.integers(0, 40_000), min_size=2, max_size=2),
       sidecars=st.lists(sidecar_versions, min_size=3, max_size=3),
       libraries=st.lists(library_versions, min_size=3, max_size=3),
       kindle=kindle_rows, completions=kindle_completions, audible=audible_rows,
       export_cuts=st.lists(st.integers(0, 8), min_size=2, max_size=2),
       history=st.lists(nights, min_size=1, max_size=5),
       final_sources=st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2)))
def test_property_any_history_over_all_inputs_equals_one_fresh_load(two_warehouses, empty_env_file, rows, cuts,
                                                                    sidecars, libraries, kindle, completions, audible,
                                                                    export_cuts, history, final_sources):
    step_by_step, once = two_warehouses
    reset_warehouse(step_by_step)
    reset_warehouse(once)
    final_rows = sorted({(book, page, T0 + start): (book, page, T0 + start, duration, 40)
                         for book, page, start, duration in rows}.values())
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        versions = [[r for r in final_rows if r[2] < T0 + cut] for cut in sorted(cuts)] + [final_rows]
        paths = {"stats": [write_statistics_file(root / f"s{n}.sqlite3", BOOKS, version)
                           for n, version in enumerate(versions)],
                 "sidecars": [], "calibre": [],
                 # each export a superset of the one before, as Amazon's full-history snapshots are
                 "kindle": [write_kindle(root / f"kindle{n}.zip", kindle[:cut],
                                         completions[:len(completions) * n // 2])
                            for n, cut in enumerate(sorted(export_cuts) + [len(kindle)])],
                 "audible": [write_audible(root / f"audible{n}", audible[:cut])
                             for n, cut in enumerate(sorted(export_cuts) + [len(audible)])]}
        for n, (sidecar, library) in enumerate(zip(sidecars, libraries)):
            write_sidecars(root / f"device{n}", sidecar, T0 + 1000 * n)
            paths["sidecars"].append(root / f"device{n}")
            paths["calibre"].append(write_library(root / f"library{n}", library))
        # Time goes forward: the statistics copies grow and the device's sidecars are replaced by newer ones, as
        # Syncthing brings them (the Calibre library is edited back and forth). On the last night every input is
        # there: an input missing on the last night is left as it was, which no fresh load can know.
        history = sorted(history, key=lambda night: night["stats"])
        history[-1] = {**history[-1], "sidecars": final_sources[0], "calibre": final_sources[1],
                       "kindle": final_sources[2], "audible": final_sources[3]}
        for source in ("sidecars", "kindle", "audible"):
            newest = 0
            for night in history:
                if night[source] is not None:
                    newest = night[source] = max(newest, night[source])
        for night in history:
            run(step_by_step, empty_env_file, night, paths)
        run(once, empty_env_file, history[-1], paths)

        assert whole_state(step_by_step) == whole_state(once)
