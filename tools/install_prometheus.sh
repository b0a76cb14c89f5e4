#!/usr/bin/env bash
# Install Prometheus' binaries into a project-local folder (default .tools/bin): promtool (the
# rule checker) and prometheus from Debian's `prometheus` package, and prometheus-pushgateway
# from `prometheus-pushgateway`. The chart tests run promtool; the monitoring tests start a real
# Prometheus and Pushgateway.
#
# Rather than installing the packages (and their services), this downloads each .deb with apt
# and extracts only the binary. A binary already on PATH is linked instead. Nothing is done for
# a binary .tools/bin already has.
#
#   bash tools/install_prometheus.sh [DEST_DIR]
set -euo pipefail

dest="${1:-.tools/bin}"
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

install_binary() {  # PACKAGE BINARY
    local package="$1" binary="$2" target="$dest/$2" existing deb
    if [ -x "$target" ] && "$target" --version >/dev/null 2>&1; then
        echo "$binary already at $target"
        return
    fi
    if existing="$(command -v "$binary" 2>/dev/null)" && [ "$existing" != "$(realpath -m "$target")" ]; then
        ln -sf "$existing" "$target"
        echo "$binary linked from $existing"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$binary not found and apt-get is unavailable: install Debian's $package" >&2
        exit 1
    fi
    # The package lists may be missing on a fresh image: refresh them when apt knows no candidate.
    if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -qq
    fi
    mkdir -p "$tmp/$package"
    (cd "$tmp/$package" && apt-get download -qq -o APT::Sandbox::User=root "$package")
    deb="$(ls "$tmp/$package"/"${package}"_*.deb)"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/$package" "./usr/bin/$binary"
    install -m 0755 "$tmp/$package/usr/bin/$binary" "$target"
    echo "installed $("$target" --version 2>&1 | head -1) from $(basename "$deb") at $target"
}

install_binary prometheus promtool
install_binary prometheus prometheus
install_binary prometheus-pushgateway prometheus-pushgateway
