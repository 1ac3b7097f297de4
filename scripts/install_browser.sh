#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the FiftyOne App browser test (tests/curation/test_app_browser.py).
# Idempotent: does nothing when /usr/bin/chromium already exists. Uses sudo only when not running as root.
set -euo pipefail

CHROMIUM="${STEADYSEG_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    echo "install_browser: $CHROMIUM already installed ($("$CHROMIUM" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
else
    echo "install_browser: not root and no sudo; install chromium yourself (apt-get install -y chromium)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
"$CHROMIUM" --version
