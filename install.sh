#!/usr/bin/env bash
# Installs bookhelper-etl on a Raspberry Pi (or any systemd machine): run as root, e.g.
#   sudo ./install.sh --user pi
# It creates a virtualenv with the requirements in the app directory, copies the script and docs,
# fills in the user and paths in the systemd units and the logrotate file and installs them (root-owned,
# 0644), creates the log directory (owned by the user), copies .env.example to .env (mode 600) only when
# no .env exists, then reloads systemd and enables the nightly timer.
#
# Options (defaults in brackets):
#   --user NAME       the account that runs the job and owns .env and the logs [$SUDO_USER]
#   --group NAME      its group [the user's primary group]
#   --prefix DIR      the app directory [/opt/bookhelper-etl]
#   --log-dir DIR     the log directory [/var/log/bookhelper-etl]
#   --destdir DIR     stage everything below DIR (also $DESTDIR); systemctl is then not called
#   --python PY       the interpreter for the virtualenv [python3]
set -euo pipefail

user=${SUDO_USER:-}
group=
prefix=/opt/bookhelper-etl
log_dir=/var/log/bookhelper-etl
destdir=${DESTDIR:-}
python=python3
while [ $# -gt 0 ]; do
  case $1 in
    --user) user=$2; shift 2 ;;
    --group) group=$2; shift 2 ;;
    --prefix) prefix=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
[ -n "$user" ] || { echo "install.sh: say which account runs the job: --user NAME" >&2; exit 64; }
id "$user" >/dev/null 2>&1 || { echo "install.sh: no such user: $user" >&2; exit 67; }
group=${group:-$(id -gn "$user")}
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo), so units and logrotate files are root-owned" >&2; exit 77; }

source_dir=$(cd "$(dirname "$0")" && pwd)
app="$destdir$prefix"
units="$destdir/etc/systemd/system"
rotate="$destdir/etc/logrotate.d"
logs="$destdir$log_dir"

render() {  # render TEMPLATE TARGET: fill in the placeholders, root-owned, mode 0644
  sed -e "s|@APP_DIR@|$prefix|g" -e "s|@LOG_DIR@|$log_dir|g" -e "s|@USER@|$user|g" -e "s|@GROUP@|$group|g" \
    "$1" > "$2"
  chown root:root "$2"
  chmod 0644 "$2"
}

echo "installing bookhelper-etl into $app for $user:$group"
install -d -m 0755 "$app" "$app/docs" "$units" "$rotate"
install -m 0755 "$source_dir/extract_koreader_stats.py" "$app/"
install -m 0644 "$source_dir/requirements.txt" "$source_dir/.env.example" "$app/"
install -m 0644 "$source_dir"/docs/*.md "$app/docs/"
"$python" -m venv "$app/venv"
"$app/venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$app/requirements.txt"

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

if [ -z "$destdir" ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
  systemctl enable --now bookhelper-etl.timer
  echo "enabled bookhelper-etl.timer; try: sudo systemctl start bookhelper-etl.service && journalctl -u bookhelper-etl"
fi
