#!/usr/bin/env bash
# Install promtool (Prometheus' rule checker) into a project-local folder (default .tools/bin).
#
# promtool comes from the Debian package `prometheus`. Rather than installing the package (and
# its service), this downloads the .deb with apt and extracts only usr/bin/promtool. A promtool
# already on PATH is linked instead. Does nothing when .tools/bin/promtool already runs.
#
#   bash tools/install_promtool.sh [DEST_DIR]
set -euo pipefail

dest="${1:-.tools/bin}"
target="$dest/promtool"
mkdir -p "$dest"

if [ -x "$target" ] && "$target" --version >/dev/null 2>&1; then
    echo "promtool already at $target"
    exit 0
fi

if existing="$(command -v promtool 2>/dev/null)" && [ "$existing" != "$(realpath -m "$target")" ]; then
    ln -sf "$existing" "$target"
    echo "promtool linked from $existing"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "promtool not found and apt-get is unavailable: install Prometheus' promtool on PATH" >&2
    exit 1
fi

# The package lists may be missing on a fresh image: refresh them when apt knows no candidate.
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root prometheus)
deb="$(ls "$tmp"/prometheus_*.deb)"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
install -m 0755 "$tmp/usr/bin/promtool" "$target"
echo "installed $("$target" --version 2>&1 | head -1) from $(basename "$deb") at $target"
