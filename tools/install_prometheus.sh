#!/usr/bin/env bash
# Install Prometheus' binaries into a project-local folder (default .tools/bin): promtool (the
# rule checker) and prometheus from Debian's `prometheus` package, prometheus-pushgateway from
# `prometheus-pushgateway`, and alertmanager and amtool (its config checker) from
# `prometheus-alertmanager` (Debian names the daemon prometheus-alertmanager; it is installed as
# alertmanager). The chart tests run promtool and amtool; the monitoring tests start a real
# Prometheus, Pushgateway and Alertmanager.
#
# Rather than installing the packages (and their services), this downloads each .deb with apt
# and extracts only the binary. A binary already on PATH is linked instead. Nothing is done for
# a binary .tools/bin already has. One exception to "project-local": Debian's Alertmanager reads
# its notification templates from /usr/share/prometheus/alertmanager (compiled in, no flag), so
# as root this copies the package's templates there when they are missing (announced first);
# elsewhere it says what to install.
#
#   bash tools/install_prometheus.sh [DEST_DIR]
set -euo pipefail

dest="${1:-.tools/bin}"
mkdir -p "$dest"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

download() {  # PACKAGE: the path of its .deb (downloaded once)
    local package="$1"
    if ! ls "$tmp/$package"/"${package}"_*.deb >/dev/null 2>&1; then
        # The package lists may be missing on a fresh image: refresh them when apt knows no
        # candidate.
        if ! apt-cache policy "$package" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -qq >&2
        fi
        mkdir -p "$tmp/$package"
        (cd "$tmp/$package" && apt-get download -qq -o APT::Sandbox::User=root "$package" >&2)
    fi
    ls "$tmp/$package"/"${package}"_*.deb
}

install_binary() {  # PACKAGE BINARY [NAME]: the package's /usr/bin/BINARY as DEST/NAME
    local package="$1" binary="$2" name="${3:-$2}" target existing deb
    target="$dest/$name"
    if [ -x "$target" ] && "$target" --version >/dev/null 2>&1; then
        echo "$name already at $target"
        return
    fi
    if existing="$(command -v "$name" 2>/dev/null)" && [ "$existing" != "$(realpath -m "$target")" ]; then
        ln -sf "$existing" "$target"
        echo "$name linked from $existing"
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$name not found and apt-get is unavailable: install Debian's $package" >&2
        exit 1
    fi
    deb="$(download "$package")"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/$package" "./usr/bin/$binary"
    install -m 0755 "$tmp/$package/usr/bin/$binary" "$target"
    echo "installed $("$target" --version 2>&1 | head -1) from $(basename "$deb") at $target"
}

install_binary prometheus promtool
install_binary prometheus prometheus
install_binary prometheus-pushgateway prometheus-pushgateway
install_binary prometheus-alertmanager prometheus-alertmanager alertmanager
install_binary prometheus-alertmanager amtool

# Debian's alertmanager needs its default templates at this compiled-in path to start.
templates=/usr/share/prometheus/alertmanager
if [ ! -f "$templates/default.tmpl" ]; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "alertmanager needs $templates/default.tmpl: install Debian's prometheus-alertmanager" \
            "(or copy its usr/share/prometheus/alertmanager there)" >&2
        exit 1
    fi
    echo "alertmanager reads its templates from $templates: copying Debian's there"
    deb="$(download prometheus-alertmanager)"
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ".$templates"
    mkdir -p "$templates"
    cp -r "$tmp$templates/." "$templates/"
fi
