#!/usr/bin/env bash
# Render an rlvr HTML report to a PNG screenshot with headless Chromium, to check how it looks.
#
#   scripts/render_report.sh runs/quick/report.html [out.png] [height]
#
# Needs Chromium (Debian: apt-get install -y chromium). No network: the report is self-contained
# (PNGs embedded as base64), and Chromium's background networking is switched off.
set -euo pipefail
report=${1:?usage: scripts/render_report.sh REPORT.html [OUT.png] [HEIGHT]}
out=${2:-${report%.html}.png}
height=${3:-2000}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "render_report.sh: no chromium on PATH (Debian: apt-get install -y chromium)" >&2
  exit 2
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
  --disable-sync --disable-component-update --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1280,"$height" --screenshot="$(realpath -m "$out")" "file://$(realpath "$report")" 2>/dev/null
test -s "$out"
echo "screenshot: $out"
