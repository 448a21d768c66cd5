#!/usr/bin/env bash
# Installs or upgrades bookhelper-etl on a Raspberry Pi (or any systemd machine): run as root, e.g.
#   sudo ./install.sh --user pi [--device kobo-libra]
# It creates (or upgrades) a virtualenv with the requirements in the app directory and checks that the
# user can run it, copies the script (its shebang pointing at the venv) and docs, installs the command
# /usr/local/bin/bookhelper-etl, fills in the user and paths in the systemd units and the logrotate file
# and installs them (root-owned, 0644), creates the log directory (owned by the user), copies
# .env.example to .env (mode 600) only when no .env exists, then reloads systemd and enables the nightly
# timer. Where systemd is not running (a container, a chroot) it says how to use cron instead.
#
# Options (defaults in brackets):
#   --user NAME       the account that runs the job and owns .env and the logs [$SUDO_USER]
#   --group NAME      its group [the user's primary group]
#   --prefix DIR      the app directory [/opt/bookhelper-etl]
#   --log-dir DIR     the log directory [/var/log/bookhelper-etl]
#   --destdir DIR     stage everything below DIR (also $DESTDIR); systemctl is then not called
#   --python PY       the interpreter for the virtualenv [/usr/bin/python3]
#   --device NAME     also create DIR/NAME.env for bookhelper-etl@NAME (never overwritten); repeatable
# Exit codes: 0 done, 64 usage, 67 no such user, 69 no usable interpreter or packages, 77 not root,
# 78 the user cannot run the virtualenv; any other: a command failed (its message is above).
set -euo pipefail
umask 022  # the venv and the script must be readable by the job's user, whatever root's umask is

fail() { local code=$1; shift; echo "install.sh: $*" >&2; exit "$code"; }

user=${SUDO_USER:-}
group=
prefix=/opt/bookhelper-etl
log_dir=/var/log/bookhelper-etl
destdir=${DESTDIR:-}
# Not the caller's PATH: under root that may be a pyenv interpreter in /root that the user cannot run.
python=/usr/bin/python3
devices=()
while [ $# -gt 0 ]; do
  case $1 in
    --user|--group|--prefix|--log-dir|--destdir|--python|--device)
      [ $# -ge 2 ] || fail 64 "$1 needs a value (see --help)" ;;&
    --user) user=$2; shift 2 ;;
    --group) group=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --device) devices+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail 64 "unknown option $1 (see --help)" ;;
  esac
done
[ -n "$user" ] || fail 64 "say which account runs the job: --user NAME"
for device in ${devices[@]+"${devices[@]}"}; do
  # A systemd instance name that is also a plain file name: no escaping, no hidden file, no option.
  [[ $device =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    fail 64 "bad device name '$device': use letters, digits, '.', '-' and '_', starting with a letter or digit"
done
id "$user" >/dev/null 2>&1 || fail 67 "no such user: $user"
group=${group:-$(id -gn "$user")}
[ "$(id -u)" -eq 0 ] || fail 77 "run as root (sudo), so units and logrotate files are root-owned"
python_path=$(command -v "$python") || fail 69 "no interpreter $python; install python3 and python3-venv, or pass --python PY"

source_dir=$(cd "$(dirname "$0")" && pwd)
app="$destdir$prefix"
venv="$app/venv"
units="$destdir/etc/systemd/system"
rotate="$destdir/etc/logrotate.d"
logs="$destdir$log_dir"
bin="$destdir/usr/local/bin"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1  # older pips ignore these

render() {  # render TEMPLATE TARGET: fill in the placeholders, root-owned, mode 0644
  sed -e "s|@APP_DIR@|$prefix|g" -e "s|@LOG_DIR@|$log_dir|g" -e "s|@USER@|$user|g" -e "s|@GROUP@|$group|g" \
    "$1" > "$2"
  chown root:root "$2"
  chmod 0644 "$2"
}

as_user() {  # run a command as the job's user, as systemd would: clean environment, cwd /
  (cd / && runuser -u "$user" -- env -i PATH=/usr/bin:/bin "$@")
}

echo "installing bookhelper-etl into $app for $user:$group"
install -d -m 0755 "$app" "$app/docs" "$units" "$rotate" "$bin"
install -m 0644 "$source_dir/requirements.txt" "$source_dir/.env.example" "$app/"
install -m 0644 "$source_dir"/docs/*.md "$app/docs/"

# A venv whose python the user cannot run, that a failed creation left without pip, or that another
# interpreter made, is recreated (--clear) rather than reused.
clear=
if [ -e "$venv" ]; then
  if ! as_user "$venv/bin/python" -I -m pip --version >/dev/null 2>&1; then
    echo "recreating $venv: its python does not work for $user"
    clear=--clear
  elif [ "$(readlink -f "$venv/bin/python")" != "$(readlink -f "$python_path")" ]; then
    echo "recreating $venv with $python_path"
    clear=--clear
  fi
fi
if [ ! -e "$venv" ] || [ -n "$clear" ]; then
  "$python_path" -m venv $clear "$venv" ||
    { rm -rf "$venv"; fail 69 "cannot create the virtualenv $venv with $python_path (Debian: apt install python3-venv)"; }
fi
# --upgrade: a re-run is the upgrade, and it brings the packages up to what requirements.txt allows.
"$venv/bin/python" -m pip install --quiet --upgrade -r "$app/requirements.txt" ||
  fail 69 "pip could not install requirements.txt into $venv (see its messages above)"
as_user "$venv/bin/python" -I -c 'import psycopg2, dotenv' ||
  fail 78 "$user cannot run $venv/bin/python with its packages; pass --python with an interpreter $user can execute"

# The script runs with the venv's interpreter however it is started; so does the command.
sed "1s|^#!.*|#!$prefix/venv/bin/python|" "$source_dir/extract_koreader_stats.py" > "$app/extract_koreader_stats.py"
chmod 0755 "$app/extract_koreader_stats.py"
# The package beside the script (sources, schema, report), replaced whole so no module of an older release
# stays behind (1.x-3.0 shipped bookhelper_report.py beside the script).
rm -rf "$app/bookhelper" "$app/bookhelper_report.py"
install -d -m 0755 "$app/bookhelper"
install -m 0644 "$source_dir"/bookhelper/*.py "$app/bookhelper/"
# Compiled once here: the service may not write beside its modules, and would compile them on every run (65 ms).
"$venv/bin/python" -m compileall -q "$app/bookhelper" >/dev/null
printf '#!/bin/sh\n# bookhelper-etl, installed by install.sh: the job with its own virtualenv.\nexec %s %s "$@"\n' \
  "$prefix/venv/bin/python" "$prefix/extract_koreader_stats.py" > "$bin/bookhelper-etl"
chmod 0755 "$bin/bookhelper-etl"

for unit in bookhelper-etl.service bookhelper-etl.timer bookhelper-etl@.service bookhelper-etl@.timer; do
  render "$source_dir/systemd/$unit" "$units/$unit"
done
render "$source_dir/logrotate/bookhelper-etl" "$rotate/bookhelper-etl"

install -d -m 0750 -o "$user" -g "$group" "$logs"
if [ -e "$app/.env" ]; then
  echo "keeping the existing $app/.env"
else
  install -m 0600 -o "$user" -g "$group" "$source_dir/.env.example" "$app/.env"
  echo "created $app/.env: fill in KOREADER_STATS_DB and DATABASE_URL"
fi
for device in ${devices[@]+"${devices[@]}"}; do
  target="$app/$device.env"
  if [ -e "$target" ]; then
    echo "keeping the existing $target"
    continue
  fi
  install -m 0600 -o "$user" -g "$group" /dev/null "$target"
  # Every setting commented out but the device: the unit reads .env first, so only what is uncommented
  # here overrides it, and the database password stays in .env alone.
  {
    echo "# Settings of device $device for bookhelper-etl@$device (systemd reads .env first, then this file)."
    echo "# Uncomment what differs from .env: usually KOREADER_STATS_DB, ETL_TIMEZONE, ETL_DEVICE_CLOCK."
    sed -e 's/^\([A-Z][A-Z0-9_]*=\)/#\1/' -e "s/^#ETL_DEVICE=.*/ETL_DEVICE=$device/" "$source_dir/.env.example"
  } > "$target"
  echo "created $target: set its KOREADER_STATS_DB, then: systemctl enable --now bookhelper-etl@$device.timer"
done

if [ -n "$destdir" ]; then
  echo "staged below $destdir; systemd was not told"
elif [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable --now bookhelper-etl.timer
  echo "enabled bookhelper-etl.timer; try: sudo systemctl start bookhelper-etl.service && journalctl -u bookhelper-etl"
else
  # Checked like the cron line below: systemctl may be installed where systemd is not running.
  echo "systemd is not running here, so no timer was enabled. To run the job nightly from cron,"
  echo "add this line to $user's crontab (sudo crontab -u $user -e), never to root's:"
  echo "0 2 * * * [ -d /run/systemd/system ] || /usr/local/bin/bookhelper-etl --log-file $log_dir/bookhelper-etl.log -q"
fi
