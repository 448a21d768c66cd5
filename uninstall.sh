#!/usr/bin/env bash
# Removes what install.sh installed: the timers (disabled first), the units, the logrotate file, the
# command /usr/local/bin/bookhelper-etl, the venv, the script, the docs and the census cache
# (/var/cache/bookhelper-etl: only a speed-up).
#   sudo ./uninstall.sh [--prefix DIR] [--log-dir DIR] [--destdir DIR] [--purge]
# It keeps, unless --purge is given: the settings (DIR/.env and the per-device DIR/<device>.env: your
# database password; the app directory stays only for them), the `systemctl edit` drop-ins
# (/etc/systemd/system/bookhelper-etl*.d: a reinstall picks them up again) and the log directory.
# --purge removes those too. The warehouse (and an embedded server's data directory) is never touched.
# Exit codes: 0 done, 64 usage; any other: a command failed (its message is above).
set -euo pipefail

fail() { local code=$1; shift; echo "uninstall.sh: $*" >&2; exit "$code"; }

prefix=/opt/bookhelper-etl
log_dir=/var/log/bookhelper-etl
destdir=${DESTDIR:-}
purge=
while [ $# -gt 0 ]; do
  case $1 in
    --prefix|--log-dir|--destdir) [ $# -ge 2 ] || fail 64 "$1 needs a value (see --help)" ;;&
    --prefix) prefix=$2; shift 2 ;;
    --log-dir) log_dir=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    --purge) purge=yes; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail 64 "unknown option $1 (see --help)" ;;
  esac
done
for dir in "$prefix" "$log_dir"; do  # they are removed recursively: never / or a relative path
  [[ $dir == /?* && $dir != *..* ]] || fail 64 "refusing '$dir': give an absolute directory below /"
done
app="$destdir$prefix"
units="$destdir/etc/systemd/system"
logs="$destdir$log_dir"
systemd=
if [ -z "$destdir" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemd=yes
fi

# Read before the unit goes, for the cron hint below.
job_user=$(sed -n 's/^User=//p' "$units/bookhelper-etl.service" 2>/dev/null || true)

# The enabled timers, the main one and every device's, are the links in timers.target.wants.
for link in "$units"/timers.target.wants/bookhelper-etl.timer "$units"/timers.target.wants/bookhelper-etl@*.timer; do
  [ -L "$link" ] || continue
  if [ -n "$systemd" ]; then
    systemctl disable --now "$(basename "$link")" || true
  fi
  rm -f "$link"
done
rm -f "$units"/bookhelper-etl.service "$units"/bookhelper-etl.timer \
      "$units"/bookhelper-etl@.service "$units"/bookhelper-etl@.timer \
      "$destdir/etc/logrotate.d/bookhelper-etl" "$destdir/usr/local/bin/bookhelper-etl"
rm -rf "$app/venv" "$app/docs" "$app/bookhelper" "$destdir/var/cache/bookhelper-etl"
rm -f "$app/extract_koreader_stats.py" "$app/bookhelper_report.py" "$app/requirements.txt" "$app/.env.example"
dropins=("$units"/bookhelper-etl.service.d "$units"/bookhelper-etl.timer.d \
         "$units"/bookhelper-etl@*.service.d "$units"/bookhelper-etl@*.timer.d)
if [ -n "$purge" ]; then
  rm -rf "$app" "$logs" "${dropins[@]}"
else
  rmdir "$app" 2>/dev/null || true  # gone when no settings file is left in it
fi
if [ -n "$systemd" ]; then
  systemctl daemon-reload
elif [ -z "$destdir" ]; then
  echo "systemd is not running here; if you added the cron line, remove it: sudo crontab -u ${job_user:-USER} -e"
fi

echo "removed bookhelper-etl"
kept=()
for path in "$app"/.env "$app"/*.env "${dropins[@]}" "$logs"; do
  [ -e "$path" ] && kept+=("$path")
done
if [ ${#kept[@]} -gt 0 ]; then
  echo "kept (settings, systemctl edit drop-ins, logs; uninstall.sh --purge removes them):"
  printf '  %s\n' "${kept[@]}"
fi
echo "the warehouse was not touched"
