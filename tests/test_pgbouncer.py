"""Through a transaction-mode pooler, as Neon's pooled endpoint (PgBouncer) is: loads, dry runs and
concurrent runs, with no session state carried between transactions."""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from conftest import SCRIPT, cli_env, query, run_cli
from pgtools import free_port
from warehouse import reading_state

from samples.statistics import generate

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@pytest.fixture
def pooled_url(database_url):
    """``database_url`` reached through a real pgbouncer in transaction mode."""
    if not os.path.exists(PGBOUNCER):
        if os.environ.get("CI"):
            pytest.fail("pgbouncer is missing; .ci/run installs it")
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    upstream = psycopg2.extensions.parse_dsn(database_url)
    port = free_port()
    # Outside pytest's private tree: pgbouncer drops root for the postgres account.
    directory = Path(tempfile.mkdtemp(prefix="bookhelper-test-pgbouncer-"))
    directory.chmod(0o777)
    user = upstream.get("user", "postgres")
    (directory / "users.txt").write_text(f'"{user}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        f"""[databases]
* = host={upstream.get("host", "localhost")} port={upstream.get("port", "5432")}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {directory}/users.txt
admin_users = {user}
pool_mode = transaction
default_pool_size = 3
logfile = {directory}/pgbouncer.log
pidfile = {directory}/pgbouncer.pid
"""
    )
    command = [PGBOUNCER, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # pgbouncer refuses root; run it as an account that can reach the upstream socket
        host = upstream.get("host", "")
        account = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else "nobody"
        command[1:1] = ["-u", account]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = psycopg2.extensions.make_dsn(host="127.0.0.1", port=port, user=user, dbname=upstream["dbname"])
    deadline = time.monotonic() + 15
    while True:
        try:
            psycopg2.connect(url).close()
            break
        except psycopg2.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"pgbouncer did not start: {server.stderr.read().decode()}")
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)
    shutil.rmtree(directory, ignore_errors=True)


def pool_mode(url):
    conn = psycopg2.connect(psycopg2.extensions.make_dsn(url, dbname="pgbouncer"))
    conn.autocommit = True
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW CONFIG")
        return {row[0]: row[1] for row in cursor.fetchall()}["pool_mode"]
    finally:
        conn.close()


def test_loads_dry_runs_and_concurrent_runs_work_through_a_transaction_pooler(
    tmp_path, pooled_url, database_url, new_database, empty_env_file
):
    assert pool_mode(pooled_url) == "transaction"
    small = generate(tmp_path / "small.sqlite3", books=6, days=40, seed=5)
    big = generate(tmp_path / "big.sqlite3", books=6, days=90, seed=5)

    dry = run_cli("--stats-db", small, "--dry-run", env_file=empty_env_file, DATABASE_URL=pooled_url,
                  ETL_TIMEZONE="UTC")
    assert dry.returncode == 0, dry.stderr
    assert "nothing was written" in dry.stderr
    first = run_cli("--stats-db", small, env_file=empty_env_file, DATABASE_URL=pooled_url, ETL_TIMEZONE="UTC")
    assert first.returncode == 0, first.stderr
    concurrent = [
        subprocess.Popen([sys.executable, str(SCRIPT), "--env-file", str(empty_env_file), "--stats-db", str(big),
                          "--device", device], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=cli_env(DATABASE_URL=pooled_url, ETL_TIMEZONE="UTC"))
        for device in ("one", "two", "three")
    ]
    for process in concurrent:
        _out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err
    status = run_cli("--status", env_file=empty_env_file, DATABASE_URL=pooled_url)
    assert status.returncode == 0, status.stderr

    direct = new_database(warehouse=True)
    assert run_cli("--stats-db", big, env_file=empty_env_file, DATABASE_URL=direct, ETL_TIMEZONE="UTC").returncode == 0
    assert reading_state(database_url) == reading_state(direct)
    assert query(database_url, "SELECT count(*) FROM etl_runs") == [(4,)]
