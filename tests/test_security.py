"""Security: TLS against a real server, a least-privilege role, and credentials that never leak."""

import uuid

import psycopg2.extensions
import pytest
from conftest import empty_warehouse, query, run_cli
from pgtools import Forwarder, TlsServer, free_port, make_certificate, system_postgres_bin
from psycopg2 import sql
from warehouse import table_names

from samples.statistics import generate


@pytest.fixture(scope="module")
def tls_server():
    bin_dir = system_postgres_bin()
    if bin_dir is None:
        pytest.skip("TLS needs Debian's postgresql server package (the embedded wheel has no SSL); "
                    ".ci/run installs it")
    server = TlsServer(bin_dir)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stats_file(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("tls") / "statistics.sqlite3", books=3, days=10)


def tls_url(server, host="localhost", **options):
    extra = "&".join(f"{k}={v}" for k, v in options.items())
    return f"postgresql://postgres:not-the-password@{host}:{server.port}/postgres?{extra}"


def test_a_remote_host_without_sslmode_connects_with_tls(tls_server, stats_file, empty_env_file):
    # The server rejects plain text on 127.0.0.1; hostaddr keeps the traffic here while host looks remote.
    url = tls_url(tls_server, host="db.test", hostaddr="127.0.0.1")
    result = run_cli("--stats-db", stats_file, "--dry-run", env_file=empty_env_file, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "(sslmode=require)" in result.stderr
    assert "dry run, would be: sessions:" in result.stderr
    assert "not-the-password" not in result.stderr


def test_verify_full_with_the_servers_ca_succeeds(tls_server, stats_file, empty_env_file):
    url = tls_url(tls_server, sslmode="verify-full", sslrootcert=tls_server.cert)
    result = run_cli("--stats-db", stats_file, env_file=empty_env_file, DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert query(url, "SELECT count(*) > 0 FROM reading_sessions") == [(True,)]
    empty_warehouse(url)


def test_verify_full_against_an_unknown_ca_is_refused_without_retries(tmp_path, tls_server, stats_file,
                                                                       empty_env_file):
    stranger, _key = make_certificate(tmp_path, "stranger")
    url = tls_url(tls_server, sslmode="verify-full", sslrootcert=stranger)
    result = run_cli("--stats-db", stats_file, env_file=empty_env_file, DATABASE_URL=url)
    assert result.returncode == 78, result.stderr
    assert "certificate verify failed" in result.stderr
    assert "retrying" not in result.stderr


def test_sslrootcert_system_is_understood(tls_server, stats_file, empty_env_file):
    """The bundled libpq reads the system CA store: our self-signed server is not in it."""
    url = tls_url(tls_server, sslmode="verify-full", sslrootcert="system")
    result = run_cli("--stats-db", stats_file, env_file=empty_env_file, DATABASE_URL=url)
    assert result.returncode == 78, result.stderr
    assert "certificate verify failed" in result.stderr
    assert "could not read root certificate" not in result.stderr


def test_the_job_runs_under_a_role_that_may_only_read_and_write_its_tables(tmp_path, etl, database_url):
    first = generate(tmp_path / "first.sqlite3", books=4, days=20, seed=8)
    grown = generate(tmp_path / "grown.sqlite3", books=4, days=40, seed=8)
    assert etl(first).returncode == 0  # the owner creates the schema
    role = f"etl_job_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    grants = [
        sql.SQL("CREATE ROLE {} LOGIN").format(ident),
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
    ] + [statement.format(sql.Identifier(schema), ident) for schema in ("public", "bookhelper") for statement in (
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}"),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}"),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}"))]
    for statement in grants:
        query(database_url, statement)
    try:
        may_create = ("SELECT has_schema_privilege(%s, 'public', 'CREATE'),"
                      " has_schema_privilege(%s, 'bookhelper', 'CREATE')")
        assert query(database_url, may_create, (role, role)) == [(False, False)]
        as_job = f"{database_url} user={role}"
        result = etl(grown, DATABASE_URL=as_job)
        assert result.returncode == 0, result.stderr
        assert "sessions:" in result.stderr and "creating" not in result.stderr
        refused = etl(grown, "--device", "other", DATABASE_URL=as_job + " options='-c search_path=nowhere'")
        assert refused.returncode in (70, 78)
    finally:
        query(database_url, sql.SQL("DROP OWNED BY {}").format(ident))
        query(database_url, sql.SQL("DROP ROLE {}").format(ident))


def test_a_password_never_reaches_the_terminal_or_the_log_file(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    log_file = tmp_path / "etl.log"
    password = "p%40ss%3Aw%2Frd%231"  # URL-encoded in the URL; libpq decodes it
    url = f"postgresql://reader:{password}@127.0.0.1:{free_port()}/db"
    result = run_cli("--stats-db", stats, "-v", "--log-file", log_file, env_file=empty_env_file,
                     DATABASE_URL=url, ETL_MAX_RETRIES="1", ETL_RETRY_MAX_SECONDS="0")
    everything = result.stdout + result.stderr + log_file.read_text()
    assert result.returncode == 75
    for secret in (password, "p@ss:w/rd#1", url):
        assert secret not in everything
    assert "reader@127.0.0.1" in everything


@pytest.mark.empty_database
def test_a_remote_host_is_never_reached_in_plain_text(tmp_path, database_url, empty_env_file):
    """libpq's own default (prefer) would fall back to plain text with a server that has no TLS."""
    if query(database_url, "SHOW ssl") == [("on",)]:
        pytest.skip("this server offers TLS; the embedded server (no TLS) covers the refusal")
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    port = free_port()
    dsn = psycopg2.extensions.parse_dsn(database_url)
    forwarder = Forwarder(database_url, port).start()
    try:
        url = f"postgresql://{dsn.get('user', 'postgres')}@db.test:{port}/{dsn['dbname']}?hostaddr=127.0.0.1"
        result = run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=url, ETL_MAX_RETRIES="0")
    finally:
        forwarder.stop()
    assert result.returncode == 78, result.stderr
    assert "SSL was required" in result.stderr
    assert table_names(database_url) == set()
