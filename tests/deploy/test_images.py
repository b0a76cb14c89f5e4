"""The container images: no Docker engine runs here, so the Dockerfiles are checked for the
invariants the chart relies on (multi-stage, pinned bases, the project installed from its lock,
a non-root uid 10001 user, no build tools in the final stage), linted with hadolint, and
`make images` is checked to build both with the tags the chart deploys by default."""

from __future__ import annotations

import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO, need

from .conftest import CHART, require_tool, run

DOCKERFILES = {
    "components": REPO / "docker" / "components.Dockerfile",
    "serving": REPO / "docker" / "serving.Dockerfile",
}
IMAGE_UID = 10001
# A pinned base: an explicit version tag (digits) or a digest, never a bare name or latest.
PINNED_FROM = re.compile(r"^[\w./-]+(:(?P<tag>[\w.-]*\d[\w.-]*))?(@sha256:[a-f0-9]{64})?$")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|build-essential|make|cmake|clang|python3-dev|libc6-dev)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: (instruction, arguments) with continuations joined, comments
    dropped."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    stages: list[Stage] = []
    for entry in logical:
        instruction, _, args = entry.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def dockerfile_problems(text: str) -> list[str]:
    """What a Dockerfile lacks of the project's image rules."""
    stages = parse(text)
    problems = []
    if len(stages) < 2:
        problems.append("not a multi-stage build")
    for stage in stages:
        match = PINNED_FROM.match(stage.base)
        if not match or not (match.group("tag") or "@sha256:" in stage.base):
            problems.append(f"FROM {stage.base} is not pinned to a version tag or digest")
        elif match.group("tag") == "latest":
            problems.append(f"FROM {stage.base} uses latest")
    if not stages:
        return [*problems, "no FROM"]
    final = stages[-1]
    users = [args for instruction, args in final.instructions if instruction == "USER"]
    if not users:
        problems.append("the final stage sets no USER")
    else:
        uid = users[-1].split(":")[0]
        if uid != str(IMAGE_UID):
            problems.append(f"the final USER is {users[-1]!r}, not uid {IMAGE_UID}")
    runs = " ".join(args for instruction, args in final.instructions if instruction == "RUN")
    if BUILD_TOOLS.search(runs):
        problems.append(f"build tools in the final stage: {BUILD_TOOLS.search(runs)}")
    if "pip install" in runs:
        problems.append("the final stage installs Python packages (do it in the build stage)")
    builders = [s.name for s in stages[:-1] if s.name]
    copies_from_build = [
        args
        for instruction, args in final.instructions
        if instruction == "COPY" and any(f"--from={name}" in args for name in builders)
    ]
    if not copies_from_build:
        problems.append("the final stage copies nothing from a build stage")
    installs = [
        args
        for stage in stages[:-1]
        for instruction, args in stage.instructions
        if instruction == "RUN" and "pip install" in args
    ]
    if not any("-c constraints.txt" in args for args in installs):
        problems.append("the project is not installed with the lock (-c constraints.txt)")
    return problems


@pytest.mark.parametrize("image", list(DOCKERFILES))
def test_dockerfile_invariants(image: str) -> None:
    assert dockerfile_problems(DOCKERFILES[image].read_text()) == []


def test_dockerfile_checks_can_fail() -> None:
    bad = """\
FROM python:latest
RUN apt-get update && apt-get install -y gcc && pip install .
USER root
"""
    problems = dockerfile_problems(bad)
    assert "not a multi-stage build" in problems
    assert any("latest" in p for p in problems)
    assert any("USER is 'root'" in p for p in problems)
    assert any("build tools" in p for p in problems)
    assert any("-c constraints.txt" in p for p in problems)
    unpinned = (
        "FROM python AS build\nRUN pip install -c constraints.txt .\nFROM python\nUSER 10001\n"
    )
    assert any("not pinned" in p for p in dockerfile_problems(unpinned))


@pytest.mark.parametrize("image", list(DOCKERFILES))
def test_images_copy_only_what_exists(image: str) -> None:
    """Every COPY source is in the repository and not excluded by .dockerignore."""
    ignored = {
        line.strip().lstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for stage in parse(DOCKERFILES[image].read_text()):
        for instruction, args in stage.instructions:
            if instruction != "COPY" or "--from=" in args:
                continue
            *sources, _dest = shlex.split(args)
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert source.rstrip("/") not in ignored, f"COPY {source}: in .dockerignore"
    assert {".venv", ".git", ".tools", "data"} <= ignored


@pytest.mark.integration
@pytest.mark.parametrize("image", list(DOCKERFILES))
def test_hadolint_passes(image: str) -> None:
    hadolint = require_tool("hadolint")
    result = run([hadolint, str(DOCKERFILES[image])])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.integration
def test_hadolint_can_fail(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y gcc\n")
    result = run([hadolint, str(bad)])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # "Using latest is prone to errors"


def test_make_images_builds_what_the_chart_deploys() -> None:
    """`make images` tags both images the way the chart's default values pull them, and takes
    REGISTRY and TAG from the command line."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    make = run(["make", "-n", "-C", str(REPO), "images"])
    assert make.returncode == 0, make.stderr
    registry = values["images"]["registry"]
    for image, dockerfile in DOCKERFILES.items():
        repository = f"{registry}/{values['images'][image]['repository']}"
        expected = f"docker build -f docker/{dockerfile.name} -t {repository}:{app_version} ."
        assert expected in make.stdout
    custom = run(["make", "-n", "-C", str(REPO), "images", "REGISTRY=reg.example/tm", "TAG=1.2.3"])
    assert "-t reg.example/tm/components:1.2.3" in custom.stdout
    assert "-t reg.example/tm/serving:1.2.3" in custom.stdout


# ---- what a cluster needs: the `cluster` extra, in the images and in the lock --------------------


def image_extras(dockerfile: Path) -> set[str]:
    """The extras a Dockerfile installs by default (``ARG EXTRAS=…``)."""
    (value,) = re.findall(r"^ARG EXTRAS=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    return set(value.split(","))


def project_extras() -> dict[str, list[Requirement]]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in extras.items()}


def lock_pins(text: str | None = None) -> dict[str, str]:
    """constraints.txt as {canonical name: pinned version}; every line is ``name==version``."""
    pins: dict[str, str] = {}
    lines = (REPO / "constraints.txt").read_text() if text is None else text
    for line in lines.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"constraints.txt: {line!r} is not an exact pin"
        assert canonicalize_name(name) not in pins, f"constraints.txt pins {name} twice"
        pins[canonicalize_name(name)] = version.strip()
    return pins


def closure(requirements: list[Requirement]) -> tuple[dict[str, list[Requirement]], set[str]]:
    """Every requirement reached from ``requirements`` (extras and this platform's markers
    applied) through the metadata of the installed distributions, by canonical name, and the
    names reached that are not installed here (their own requirements are not followed)."""
    reached: dict[str, list[Requirement]] = {}
    absent: set[str] = set()
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        reached.setdefault(name, []).append(req)
        if (name, frozenset(req.extras)) in visited:
            continue
        visited.add((name, frozenset(req.extras)))
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            absent.add(name)
            continue
        for text in dist.requires or []:
            dep = Requirement(text)
            extras = ("", *sorted(req.extras))
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dep)
    return reached, absent


def unpinned(reached: dict[str, list[Requirement]], pins: dict[str, str]) -> list[str]:
    """Requirements the lock does not pin, or pins to a version they exclude."""
    problems = []
    for name, reqs in sorted(reached.items()):
        if name not in pins:
            problems.append(f"{name} is not pinned")
            continue
        for req in reqs:
            if not req.specifier.contains(pins[name], prereleases=True):
                problems.append(f"{name}=={pins[name]} does not satisfy {req}")
    return problems


def test_images_install_the_cluster_extra() -> None:
    """The Ray client the jobs reach the RayCluster with (``ray://…:10001``: ray[default],
    grpcio) and s3fs for an ``s3://`` model registry are in the `cluster` extra, which both
    images install; `all` (the dev install) stays without it."""
    extras = project_extras()
    cluster = {(canonicalize_name(r.name), frozenset(r.extras)) for r in extras["cluster"]}
    assert cluster == {("ray", frozenset({"default"})), ("s3fs", frozenset())}
    for image, dockerfile in DOCKERFILES.items():
        assert "cluster" in image_extras(dockerfile), image
        assert image_extras(dockerfile) <= set(extras), image
    # The images' extras resolve together with the dev install's (all, dev and the neural
    # learners the tests train): `make lock` locks them all.
    make = run(["make", "-n", "-C", str(REPO), "lock"])
    assert re.search(r"pip install --quiet \"\.\[all,dev,neural,cluster\]\"", make.stdout), (
        make.stdout
    )


def test_the_lock_pins_what_the_cluster_extra_needs() -> None:
    """Every package the cluster extra reaches is pinned in constraints.txt at a version its
    dependants accept: followed through the installed metadata (ray[default]'s whole tree),
    by name for what is not installed here (s3fs; its tree is resolved below)."""
    pins = lock_pins()
    reached, absent = closure(project_extras()["cluster"])
    assert {"ray", "grpcio", "aiohttp-cors", "opencensus", "py-spy", "s3fs"} <= set(reached)
    assert unpinned(reached, pins) == []
    assert absent <= set(pins)
    # The checks can fail: a missing pin and an excluded version are both reported.
    del pins["grpcio"]
    pins["ray"] = "2.0.0"
    problems = unpinned(reached, pins)
    assert "grpcio is not pinned" in problems
    assert any(p.startswith("ray==2.0.0 does not satisfy") for p in problems)


def test_lock_lines_are_exact_pins() -> None:
    with pytest.raises(AssertionError, match="not an exact pin"):
        lock_pins("s3fs>=2024.2\n")
    with pytest.raises(AssertionError, match="twice"):
        lock_pins("smart_open==9.0.2\nsmart-open==9.0.2\n")


NETWORK_TROUBLE = re.compile(
    r"NewConnectionError|Max retries exceeded|Temporary failure in name resolution|"
    r"No route to host|Network is unreachable|Could not fetch URL|ConnectTimeout",
)


@pytest.mark.integration
@pytest.mark.slow
def test_the_images_install_only_locked_packages(tmp_path: Path) -> None:
    """pip resolves what the Dockerfiles install (their EXTRAS, wheels only but
    kfp-server-api, -c constraints.txt) without installing anything, and every package it
    picks is pinned in the lock at exactly that version: the images, cluster extra included,
    are the lock's packages and no others. Needs the package index."""
    extras = sorted(set().union(*(image_extras(d) for d in DOCKERFILES.values())))
    report = tmp_path / "report.json"
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "--only-binary=:all:",
            "--no-binary=kfp-server-api",
            "-c",
            str(REPO / "constraints.txt"),
            f"{REPO}[{','.join(extras)}]",
        ],
        timeout=900,
    )
    output = result.stdout + result.stderr
    need(
        result.returncode == 0 or not NETWORK_TROUBLE.search(output),
        f"the package index is not reachable: {output[-300:]}",
    )
    assert result.returncode == 0, output[-3000:]
    pins = lock_pins()
    picked = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    picked.pop("turbomode")
    assert {"s3fs", "aiobotocore", "botocore", "grpcio", "ray"} <= set(picked)
    wrong = {n: (v, pins.get(n)) for n, v in picked.items() if pins.get(n) != v}
    assert wrong == {}, "resolved (version, pinned): run `make lock`"
