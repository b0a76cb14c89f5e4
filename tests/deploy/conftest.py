"""Fixtures for the deployment tests: the real tools (``make tools`` puts them in .tools/bin) and
the chart rendered once per values profile."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, SHARED, need

CHART = REPO / "charts" / "turbomode"
TOOLS_BIN = REPO / ".tools" / "bin"
SCHEMAS = SHARED / "schemas"
RELEASE = "turbomode"
NAMESPACE = "turbomode"
# Values files of each profile the tests render, relative to the chart.
PROFILES: dict[str, tuple[str, ...]] = {
    "default": (),
    "production": ("values-production.yaml",),
}

Manifest = dict[str, Any]


def find_tool(name: str) -> str | None:
    """A tool from .tools/bin (``make tools``) or, failing that, from PATH."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    need(path is not None, f"{name} is not in .tools/bin or on PATH (run `make tools`)")
    assert path is not None
    return path


def run(cmd: Sequence[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)


def helm_args(profile: str) -> list[str]:
    return [arg for name in PROFILES[profile] for arg in ("-f", str(CHART / name))]


def helm_template(
    helm: str, profile: str = "default", sets: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *helm_args(profile)]
    for item in sets:
        cmd += ["--set", item]
    return run(cmd)


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool("helm")


@pytest.fixture(scope="session")
def rendered_text(helm: str) -> dict[str, str]:
    """``helm template`` output of every profile, rendered once for the session."""
    out: dict[str, str] = {}
    for profile in PROFILES:
        result = helm_template(helm, profile)
        assert result.returncode == 0, f"helm template ({profile}) failed:\n{result.stderr}"
        out[profile] = result.stdout
    return out


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[Manifest]]:
    return {profile: load_manifests(text) for profile, text in rendered_text.items()}


@pytest.fixture(scope="session")
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


@pytest.fixture(scope="session")
def schemas_dir() -> Path:
    """../shared/schemas: the published JSON schemas of the custom resources."""
    need(SCHEMAS.is_dir(), f"custom resource schemas not found at {SCHEMAS}")
    return SCHEMAS


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]
