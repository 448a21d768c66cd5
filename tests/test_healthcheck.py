"""Monitoring never changes the outcome: healthcheck pings against good, broken and hostile endpoints.

Every endpoint is a small stdlib server on 127.0.0.1 (a free port) that records what it receives,
misbehaves in one way, and stops by itself; the runs are real CLI subprocesses. The ping timeout
comes from the hidden setting ETL_HEALTHCHECK_TIMEOUT (seconds), 1 s here.
"""

import re
import socket
import struct
import threading
import time
import uuid

import pytest
from conftest import query, run_cli
from warehouse import table_names

from samples.kindle import KindleTitle, ReadingInterval, write_kindle_export
from samples.statistics import generate

# Runs that fail before anything runs must leave no table behind: each test starts from an empty database.
pytestmark = pytest.mark.empty_database

PASSWORD = "s3cr3t-Ping-pw"
TIMEOUT = "1"  # ETL_HEALTHCHECK_TIMEOUT for every run: a hanging endpoint costs a second per ping
HANG_SECONDS = 12.0  # a hanging endpoint gives up after this, so that no test can wait forever
SERVER_LIFETIME = 60.0  # every server stops by itself after this, whatever the test does
LOG_LINE = re.compile(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[(DEBUG|INFO|WARNING|ERROR)\] \[[A-Z]+\] .*")


@pytest.fixture
def database_url(emptied_module_database):
    """This module's database, emptied for each test."""
    return emptied_module_database


class Endpoint:
    """A TCP server on 127.0.0.1 with one behaviour, recording every request it reads.

    Behaviours: ``ok`` (200), ``500``, ``garbage`` (an SSH banner: not HTTP, BadStatusLine),
    ``reset`` (reads the request, then resets the connection), ``hang`` (reads the request,
    never answers), ``close`` (reads the request, closes without a word), ``echo`` (a 500 whose
    reason phrase repeats the credentials, as some proxies do), and ``refused`` (the port is
    bound but nobody listens: the connection is refused).
    """

    def __init__(self, behaviour):
        self.behaviour = behaviour
        self.requests = []  # (method, target, body)
        self.connections = 0
        self._stop = threading.Event()
        self._threads = []
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        if behaviour != "refused":
            self._socket.listen(16)
            self._socket.settimeout(0.1)
            self._spawn(self._accept)

    def url(self, path="/ping/check-uuid", userinfo=""):
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def _spawn(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self):
        deadline = time.monotonic() + SERVER_LIFETIME
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                client, _ = self._socket.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            self._spawn(self._serve, client)

    def _read_request(self, client):
        client.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = client.recv(65536)
                if not chunk:
                    break
                body += chunk
        except OSError:
            return
        method, target = (lines[0].split(" ") + ["", ""])[:2]
        self.requests.append((method, target, body.decode("utf-8", "replace")))

    def _serve(self, client):
        try:
            self._read_request(client)
            if self.behaviour == "ok":
                client.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
            elif self.behaviour == "500":
                client.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\nerror"
                )
            elif self.behaviour == "echo":
                reason = f"upstream refused http://pinguser:{PASSWORD}@127.0.0.1/ping".encode()
                client.sendall(b"HTTP/1.1 500 " + reason + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            elif self.behaviour == "garbage":
                client.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                self._stop.wait(0.5)
            elif self.behaviour == "reset":
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.behaviour == "hang":
                self._stop.wait(HANG_SECONDS)
        except OSError:
            pass
        finally:
            client.close()

    def stop(self):
        self._stop.set()
        self._socket.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def endpoint():
    """A factory of endpoints, all stopped at the end of the test."""
    started = []

    def start(behaviour):
        server = Endpoint(behaviour)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def stats(tmp_path_factory):
    """A small, valid statistics file: a run with it exits 0."""
    return generate(tmp_path_factory.mktemp("healthcheck") / "statistics.sqlite3", books=1, days=3)


def assert_clean_stderr(stderr, pings, errors=()):
    """Only well-formed log lines (no traceback, no multi-line message); at most one warning per
    ping, each about the ping; the ERROR lines are exactly ``errors`` (substrings, in order)."""
    lines = stderr.splitlines()
    assert "Traceback" not in stderr, stderr
    assert all(LOG_LINE.fullmatch(line) for line in lines), stderr
    warnings = [line for line in lines if "[WARNING]" in line]
    assert len(warnings) <= pings, stderr
    assert all(re.search("healthcheck|ping", line, re.IGNORECASE) for line in warnings), stderr
    error_lines = [line for line in lines if "[ERROR]" in line]
    assert len(error_lines) == len(errors), stderr
    assert all(expected in line for expected, line in zip(errors, error_lines)), stderr


def assert_pinged(server, code):
    """Both pings were tried: /start first, /<code> last (a retry of either would not break the contract)."""
    paths = [target.split("?")[0] for _method, target, _body in server.requests]
    start, end = "/ping/check-uuid/start", f"/ping/check-uuid/{code}"
    assert paths[:1] == [start] and paths[-1:] == [end] and set(paths) == {start, end}, paths


def run_uuid_of(path):
    """The rid of a recorded ping target, checked to be a UUID."""
    match = re.fullmatch(r"/ping/check-uuid/[0-9]+\?rid=(.+)|/ping/check-uuid/start\?rid=(.+)", path)
    assert match, path
    rid = match.group(1) or match.group(2)
    assert str(uuid.UUID(rid)) == rid
    return rid


# A ping that works -------------------------------------------------------------------------------


def test_a_good_endpoint_receives_start_then_the_exit_code_with_one_run_id(etl, stats, database_url, endpoint):
    server = endpoint("ok")

    result = etl(stats, ETL_HEALTHCHECK_URL=server.url(), ETL_HEALTHCHECK_TIMEOUT=TIMEOUT)

    assert result.returncode == 0, result.stderr
    assert_clean_stderr(result.stderr, pings=0)
    (run_uuid,) = [row[0] for row in query(database_url, "SELECT run_uuid::text FROM etl_runs")]
    assert [(method, target) for method, target, _body in server.requests] == [
        ("POST", f"/ping/check-uuid/start?rid={run_uuid}"),
        ("POST", f"/ping/check-uuid/0?rid={run_uuid}"),
    ]
    assert "finished with exit code 0" in server.requests[1][2]


def test_a_failing_run_pings_its_own_exit_code_with_one_run_id(etl, tmp_path, database_url, endpoint):
    server = endpoint("ok")

    result = etl(tmp_path / "missing.sqlite3", ETL_HEALTHCHECK_URL=server.url(), ETL_HEALTHCHECK_TIMEOUT=TIMEOUT)

    assert result.returncode == 66, result.stderr
    assert_clean_stderr(result.stderr, pings=0, errors=["no such file"])
    targets = [target for method, target, _body in server.requests if method == "POST"]
    assert len(server.requests) == 2 and len(targets) == 2, server.requests
    rid = run_uuid_of(targets[0])
    assert targets == [f"/ping/check-uuid/start?rid={rid}", f"/ping/check-uuid/66?rid={rid}"]
    assert "no such file" in server.requests[1][2]
    assert table_names(database_url) == set()


def test_a_run_of_exports_alone_pings_its_exit_code_and_a_missing_export_pings_66(tmp_path, database_url, endpoint,
                                                                                 empty_env_file):
    server = endpoint("ok")
    export = write_kindle_export(tmp_path / "kindle", [ReadingInterval(1_767_000_000, 1_767_000_600, "B0TESTKND1")],
                                 [KindleTitle("B0TESTKND1", "The Lantern Keeper")])
    settings = dict(HOME=str(tmp_path), DATABASE_URL=database_url, ETL_HEALTHCHECK_URL=server.url(),
                    ETL_HEALTHCHECK_TIMEOUT=TIMEOUT)

    loaded = run_cli("--kindle-export", export, env_file=empty_env_file, **settings)
    missing = run_cli("--kindle-export", tmp_path / "no-export.zip", env_file=empty_env_file, **settings)

    assert loaded.returncode == 0, loaded.stderr
    assert missing.returncode == 66, missing.stderr
    targets = [target.split("?")[0] for method, target, _body in server.requests]
    assert targets == ["/ping/check-uuid/start", "/ping/check-uuid/0", "/ping/check-uuid/start", "/ping/check-uuid/66"]
    assert query(database_url, "SELECT count(*) FROM reading_sessions WHERE data_source = 'kindle'") == [(1,)]


# Pings that fail ---------------------------------------------------------------------------------

FAILURES = ["refused", "hang", "reset", "garbage", "500", "close"]


@pytest.mark.parametrize("behaviour", FAILURES)
def test_a_failing_ping_is_one_warning_at_most_and_a_good_run_still_exits_0(
    etl, stats, database_url, endpoint, behaviour
):
    server = endpoint(behaviour)
    started = time.monotonic()

    result = etl(stats, ETL_HEALTHCHECK_URL=server.url(), ETL_HEALTHCHECK_TIMEOUT=TIMEOUT, timeout=60)

    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert_clean_stderr(result.stderr, pings=2)
    assert query(database_url, "SELECT status FROM etl_runs") == [("success",)]
    if behaviour != "refused":
        assert_pinged(server, "0")
    # Two pings of at most ETL_HEALTHCHECK_TIMEOUT each, not the default 10 s each.
    assert elapsed < 9, f"the run took {elapsed:.1f} s"


@pytest.mark.parametrize("behaviour", FAILURES)
def test_a_failing_ping_keeps_a_failing_runs_exit_code(etl, tmp_path, database_url, endpoint, behaviour):
    server = endpoint(behaviour)
    started = time.monotonic()

    result = etl(
        tmp_path / "missing.sqlite3", ETL_HEALTHCHECK_URL=server.url(), ETL_HEALTHCHECK_TIMEOUT=TIMEOUT, timeout=60
    )

    elapsed = time.monotonic() - started
    assert result.returncode == 66, result.stderr
    assert_clean_stderr(result.stderr, pings=2, errors=["no such file"])
    if behaviour != "refused":
        assert_pinged(server, "66")
    assert elapsed < 8, f"the run took {elapsed:.1f} s"
    assert table_names(database_url) == set()


# A malformed URL is a configuration error, found before anything runs ----------------------------

MALFORMED = {
    "non-numeric port": "http://127.0.0.1:abc/ping",
    "port out of range": "http://127.0.0.1:99999/ping",
    "no scheme": "127.0.0.1:{port}/ping",
    "host as scheme": "localhost:{port}/ping",
    "ftp scheme": "ftp://127.0.0.1:{port}/ping",
    "file scheme": "file:///etc/hostname",
    "no host": "http:///ping",
    "no host, a port": "http://:{port}/ping",
    "credentials, non-numeric port": f"http://pinguser:{PASSWORD}@127.0.0.1:abc/ping",
    "credentials, ftp scheme": f"ftp://pinguser:{PASSWORD}@127.0.0.1:{{port}}/ping",
}


@pytest.mark.parametrize("url", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_healthcheck_url_exits_78_before_anything_runs(etl, stats, database_url, endpoint, url):
    listener = endpoint("ok")  # where a lenient run would end up: it must never be contacted
    url = url.format(port=listener.port)

    result = etl(stats, ETL_HEALTHCHECK_URL=url, ETL_HEALTHCHECK_TIMEOUT=TIMEOUT, timeout=60)

    assert result.returncode == 78, result.stderr
    assert_clean_stderr(result.stderr, pings=0, errors=["ETL_HEALTHCHECK_URL"])
    assert PASSWORD not in result.stderr
    assert listener.connections == 0
    assert table_names(database_url) == set()


@pytest.mark.parametrize("url", [u for name, u in MALFORMED.items() if "credentials" in name],
                         ids=[name for name in MALFORMED if "credentials" in name])
def test_a_malformed_url_never_shows_its_password_even_verbose(etl, stats, tmp_path, database_url, url):
    log_file = tmp_path / "etl.log"

    result = etl(stats, "-v", "--log-file", log_file, ETL_HEALTHCHECK_URL=url.format(port=9), timeout=60)

    assert result.returncode == 78, result.stderr
    assert "ETL_HEALTHCHECK_URL" in result.stderr
    assert PASSWORD not in result.stderr
    assert not log_file.exists() or PASSWORD not in log_file.read_text()
    assert table_names(database_url) == set()


# Credentials in the URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "verbose"])
def test_a_url_with_credentials_is_pinged_and_its_password_never_shown(
    etl, stats, tmp_path, database_url, endpoint, verbosity
):
    server = endpoint("ok")
    log_file = tmp_path / "etl.log"

    result = etl(
        stats, "--log-file", log_file, *verbosity,
        ETL_HEALTHCHECK_URL=server.url(userinfo=f"pinguser:{PASSWORD}@"), ETL_HEALTHCHECK_TIMEOUT=TIMEOUT,
    )

    assert result.returncode == 0, result.stderr
    (run_uuid,) = [row[0] for row in query(database_url, "SELECT run_uuid::text FROM etl_runs")]
    assert [(method, target) for method, target, _body in server.requests] == [
        ("POST", f"/ping/check-uuid/start?rid={run_uuid}"),
        ("POST", f"/ping/check-uuid/0?rid={run_uuid}"),
    ]
    assert "[WARNING]" not in result.stderr
    assert PASSWORD not in result.stderr
    assert PASSWORD not in log_file.read_text()
    assert all(PASSWORD not in body for _method, _target, body in server.requests)


@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "verbose"])
@pytest.mark.parametrize("behaviour", ["refused", "echo", "garbage"])
def test_the_password_stays_hidden_when_the_ping_fails(
    etl, stats, tmp_path, endpoint, behaviour, verbosity
):
    server = endpoint(behaviour)
    log_file = tmp_path / "etl.log"

    result = etl(
        stats, "--log-file", log_file, *verbosity,
        ETL_HEALTHCHECK_URL=server.url(userinfo=f"pinguser:{PASSWORD}@"), ETL_HEALTHCHECK_TIMEOUT=TIMEOUT,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    if not verbosity:
        assert_clean_stderr(result.stderr, pings=2)
    assert PASSWORD not in result.stderr
    assert PASSWORD not in log_file.read_text()
    if behaviour != "refused":
        assert server.connections >= 2, "both pings must be tried"
