"""Configuration: the settings file, precedence and secrets."""

import re
from pathlib import Path

from conftest import ROOT, cli_env, run_cli

import extract_koreader_stats as etl_module
from samples.statistics import generate


def env_example_keys():
    text = (ROOT / ".env.example").read_text()
    return [m.group(1) for m in re.finditer(r"^([A-Z_]+)=", text, re.MULTILINE)]


def test_env_example_lists_every_setting_once_as_plain_key_value_lines():
    keys = env_example_keys()
    assert sorted(keys) == sorted(s.env for s in etl_module.SETTINGS)
    for line in (ROOT / ".env.example").read_text().splitlines():
        assert line == "" or line.startswith("#") or re.fullmatch(r"[A-Z_]+=[^\"' ]*", line), line


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [s.env for s in etl_module.SETTINGS if f"`{s.env}`" not in readme]
    assert missing == []


def test_command_line_beats_environment_beats_env_file(tmp_path, database_url):
    stats = generate(tmp_path / "s.sqlite3", books=2, days=5)
    env_file = tmp_path / "settings.env"
    env_file.write_text(f"DATABASE_URL={database_url}\nETL_DEVICE=from-file\nETL_GAP_MINUTES=45\n")
    env_file.chmod(0o600)

    from_file = run_cli("--stats-db", stats, "--dry-run", env_file=env_file)
    from_env = run_cli("--stats-db", stats, "--dry-run", env_file=env_file, ETL_DEVICE="from-env")
    from_cli = run_cli("--stats-db", stats, "--dry-run", "--device", "from-cli", env_file=env_file,
                       ETL_DEVICE="from-env")

    assert "device from-file" in from_file.stderr
    assert f"loaded {env_file}" in from_file.stderr
    assert "device from-env" in from_env.stderr
    assert "device from-cli" in from_cli.stderr


def test_a_settings_file_readable_by_others_is_warned_about(tmp_path):
    env_file = tmp_path / "settings.env"
    env_file.write_text("ETL_DEVICE=kobo\n")
    env_file.chmod(0o644)
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)

    result = run_cli("--stats-db", stats, "--dry-run", env_file=env_file)

    assert f"chmod 600 {env_file}" in result.stderr


def test_a_missing_explicit_settings_file_is_a_configuration_error(tmp_path):
    result = run_cli("--dry-run", env_file=tmp_path / "absent.env")
    assert result.returncode == 78
    assert "absent.env does not exist" in result.stderr


def test_bad_settings_exit_78_with_the_setting_named(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    cases = {
        "ETL_TIMEZONE": ("Mars/Olympus", "not a known IANA time zone"),
        "ETL_DEVICE_CLOCK": ("sundial", "must be 'utc' or 'local'"),
        "ETL_GAP_MINUTES": ("soon", "is not a whole number"),
        "ETL_MAX_RETRIES": ("-1", "must be at least 0"),
    }
    for name, (value, words) in cases.items():
        result = run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL="embedded", **{name: value})
        assert result.returncode == 78, name
        assert name in result.stderr and words in result.stderr


def closed_local_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_neon_settings_connect_and_never_show_the_password(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    port = closed_local_port()
    result = run_cli(
        "--stats-db", stats, "-v", env_file=empty_env_file, NEON_HOST="localhost", NEON_PORT=port,
        NEON_USER="reader", NEON_PASSWORD="s3cr3t-Pa55", NEON_DATABASE="neondb", ETL_MAX_RETRIES="1",
        ETL_RETRY_MAX_SECONDS="0",
    )
    assert result.returncode == 75, result.stderr
    assert f"reader@localhost:{port}/neondb" in result.stderr
    assert "s3cr3t-Pa55" not in result.stderr + result.stdout


def test_a_remote_host_defaults_to_tls_and_the_url_is_never_shown(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    # hostaddr keeps the connection on this machine while host names a remote server.
    url = f"postgresql://reader:hunter2@db.example.com:{closed_local_port()}/neondb?hostaddr=127.0.0.1"
    result = run_cli("--stats-db", stats, "-v", env_file=empty_env_file, DATABASE_URL=url, ETL_MAX_RETRIES="0")
    assert result.returncode == 75, result.stderr
    assert "(sslmode=require)" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


def test_plain_text_to_a_remote_host_is_refused(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    url = "postgresql://reader:hunter2@db.example.invalid/neondb?sslmode=disable"
    result = run_cli("--stats-db", stats, env_file=empty_env_file, DATABASE_URL=url)
    assert result.returncode == 78
    assert "refusing sslmode=disable" in result.stderr
    assert "hunter2" not in result.stderr


def test_a_malformed_url_is_refused_without_echoing_it(tmp_path, empty_env_file):
    stats = generate(tmp_path / "s.sqlite3", books=1, days=2)
    result = run_cli("--stats-db", stats, "-v", env_file=empty_env_file,
                     DATABASE_URL="postgresql://reader:hunter2@host:notaport/db?x")
    assert result.returncode == 78
    assert "hunter2" not in result.stderr


def test_is_local_host():
    assert etl_module.is_local_host("localhost")
    assert etl_module.is_local_host("127.0.0.1")
    assert etl_module.is_local_host("/run/postgresql")
    assert etl_module.is_local_host("")
    assert not etl_module.is_local_host("ep-cool-123.eu-central-1.aws.neon.tech")
    assert not etl_module.is_local_host("localhost,db.example.com")
    assert Path(etl_module.default_embedded_dir()).name == "postgres"


def test_no_setting_exported_on_the_machine_reaches_a_run_of_the_suite(monkeypatch):
    for setting in etl_module.SETTINGS:
        monkeypatch.setenv(setting.env, "/exported/by/the/developer")
    env = cli_env(ETL_DEVICE="chosen-by-the-test")
    assert [s.env for s in etl_module.SETTINGS if s.env in env] == ["ETL_DEVICE"]
    assert {"KOREADER_SIDECAR_DIR", "CALIBRE_LIBRARY"} <= {s.env for s in etl_module.SETTINGS}
