#!/usr/bin/env bash
# Headless Chromium and its WebDriver from Debian, for the dashboard's browser test
# (tests/serving/test_dashboard.py). Idempotent: does nothing when both are installed; runs
# `apt-get update` at most once, and only when a package is missing. Needs root (CI runs as
# root); elsewhere it says what to install and exits 0 so `make test` goes on (the browser test
# then skips, or fails under TURBOMODE_REQUIRE_SERVICES=1). As root it says what it is about to
# install before apt-get runs; SKIP_BROWSER=1 leaves the system alone.
set -euo pipefail

packages=(chromium chromium-driver)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get here; install ${missing[*]} (Chromium + chromedriver) by hand" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install_browser: not root; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 0
fi
echo "install_browser: the dashboard test needs ${missing[*]} (headless Chromium and its" \
    "WebDriver), which are missing; as root, this installs them system-wide with apt-get." >&2
if [ -n "${SKIP_BROWSER:-}" ]; then
    echo "install_browser: SKIP_BROWSER is set: not installing; the browser test will skip" >&2
    exit 0
fi
echo "install_browser: installing ${missing[*]} with apt-get now (SKIP_BROWSER=1 skips this)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
