#!/usr/bin/env bash
# Chromium for the web demo's browser tests (tests/test_serve_web.py drives Debian's `chromium` through Playwright;
# no `playwright install`). Called by scripts/install.sh. Installs it with apt-get where that is usable (root, or
# passwordless sudo); otherwise it says exactly what to run. Never fails the install: the quickstart needs no browser.
set -uo pipefail
if [ -n "${MUNG_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
    echo "browser: chromium found (${MUNG_CHROMIUM:-$(command -v chromium)})"
    exit 0
fi
as_root=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as_root=(sudo -n); else as_root=(none); fi
fi
if [ "${as_root[0]:-}" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser: installing Debian's chromium for the browser tests (apt-get install chromium)"
    if "${as_root[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq chromium \
        >/dev/null && command -v chromium >/dev/null 2>&1; then
        echo "browser: chromium installed ($(command -v chromium))"
        exit 0
    fi
    echo "browser: apt-get could not install chromium (see above)." >&2
fi
printf '%s\n' >&2 \
    "browser: the web demo's browser tests need Chromium, which this script could not install (it needs apt-get as root)." \
    "  Debian/Ubuntu:  sudo apt-get update && sudo apt-get install -y chromium" \
    "  elsewhere:      install Chromium and run the tests with MUNG_CHROMIUM=/path/to/chromium" \
    "  or skip those tests: MUNG_ALLOW_NO_BROWSER=1 .venv/bin/python -m pytest -q"
exit 0
