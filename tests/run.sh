#!/usr/bin/env bash
# Install what the tests need (idempotently), then run pytest with the given arguments.
#   ./tests/run.sh -q                 # whole suite
#   SHARPEYES_TEST_CAMERA_SIZE=640x360 ./tests/run.sh tests/support_tests
#   SHARPEYES_SKIP_LINT=1 ./tests/run.sh tests/archive   # without ruff and mypy
#   SHARPEYES_TEST_WORKERS=0 ./tests/run.sh -x tests/ingest  # in one process (default: 4 xdist workers)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(ffmpeg gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly
  gstreamer1.0-libav gstreamer1.0-tools chromium sip-tester vlc-bin vlc-plugin-base)
# Node and npm for the browser tests (tests/browser); a NodeSource nodejs already includes npm.
command -v npm >/dev/null 2>&1 || APT_PACKAGES+=(nodejs npm)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "run.sh: installing ${missing[*]}" >&2
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
stamp=.venv/.sharpeyes-test-install
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  echo "$want" > "$stamp"
fi

# Browser tests: playwright-core drives the system Chromium (no browser download).
npm_stamp=tests/browser/node_modules/.sharpeyes-npm-ci
npm_want="$(sha256sum tests/browser/package-lock.json | cut -d' ' -f1)"
if [ ! -f "$npm_stamp" ] || [ "$(cat "$npm_stamp")" != "$npm_want" ]; then
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund
  echo "$npm_want" > "$npm_stamp"
fi

# Lint and types first (fast, and CI runs this script): SHARPEYES_SKIP_LINT=1 skips them.
if [ "${SHARPEYES_SKIP_LINT:-0}" != "1" ]; then
  .venv/bin/ruff check --quiet .
  .venv/bin/mypy
fi

# Most tests wait on real time (cameras at 25 fps, SIP timers, leases), not on the CPU, so the
# suite runs on several pytest-xdist workers, a test file to a worker (module fixtures stay
# shared). SHARPEYES_TEST_WORKERS=0 runs it in one process; `-n N` on the command line wins.
parallel=()
workers="${SHARPEYES_TEST_WORKERS:-4}"
if [ "$workers" != "0" ] && [[ " $* " != *" -n "* ]] && [[ " $* " != *" -p no:xdist "* ]]; then
  parallel=(-n "$workers" --dist loadfile)
fi

rc=0
.venv/bin/python -m pytest "${parallel[@]}" "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run.sh: no tests were collected" >&2
fi
exit "$rc"
