#!/usr/bin/env bash
# Removes what install.sh installed, except the .env (your settings), the logs and the warehouse.
#   sudo ./uninstall.sh [--prefix DIR] [--destdir DIR]
set -euo pipefail

prefix=/opt/bookhelper-etl
destdir=${DESTDIR:-}
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) prefix=$2; shift 2 ;;
    --destdir) destdir=$2; shift 2 ;;
    -h|--help) sed -n '2,3p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "uninstall.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done
app="$destdir$prefix"
units="$destdir/etc/systemd/system"

if [ -z "$destdir" ] && command -v systemctl >/dev/null; then
  systemctl disable --now bookhelper-etl.timer 2>/dev/null || true
  for timer in $(systemctl list-units --all --plain --no-legend 'bookhelper-etl@*.timer' | awk '{print $1}'); do
    systemctl disable --now "$timer" || true
  done
fi
rm -f "$units"/bookhelper-etl.service "$units"/bookhelper-etl.timer \
      "$units"/bookhelper-etl@.service "$units"/bookhelper-etl@.timer "$destdir/etc/logrotate.d/bookhelper-etl"
rm -rf "$app/venv" "$app/docs"
rm -f "$app/extract_koreader_stats.py" "$app/requirements.txt" "$app/.env.example"
if [ -z "$destdir" ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload
fi
echo "removed bookhelper-etl; kept $app/.env (if any), the logs and the warehouse"
