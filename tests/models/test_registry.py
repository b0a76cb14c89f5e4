"""Model registry: checksummed immutable versions, atomic pointer, rollback, pruning, CLI.

Most tests run against both a local directory and ``memory://`` (the stand-in for an object
store), so both write paths — temp file + rename, and a single whole-object put — are covered.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fsspec
import pytest
from typer.testing import CliRunner

from turbomode.cli.models import models_app
from turbomode.models.registry import (
    ChecksumError,
    ModelRegistry,
    NoPreviousVersionError,
    NoProductionVersionError,
    VersionExistsError,
    VersionNotFoundError,
    key_segment,
    new_version_id,
)

KEY = "Information Technology/1d"
MANIFEST_IN = {
    "metrics": {"balanced_accuracy": 0.41, "rank_ic": 0.03},
    "features": ["rsi_14", "ret_5d"],
    "data_range": ["2018-01-02", "2023-12-29"],
    "data_hash": "ab" * 32,
    "params": {"n_estimators": 100},
    "code_version": "0.1.0",
    "run_id": "run-1",
}


@pytest.fixture(params=["local", "memory"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "local":
        yield str(tmp_path / "registry")
        return
    uri = f"memory://registry-{uuid.uuid4().hex}"
    yield uri
    fs, path = fsspec.core.url_to_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=True)


@pytest.fixture
def registry(root: str, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(root, keep=2, cache_dir=tmp_path / "cache")


def _register(reg: ModelRegistry, tag: str, key: str = KEY, **kw: str) -> str:
    files = {"lgbm.lgb.txt": f"trees {tag}".encode(), "meta.json": b'{"w": [1, 2]}'}
    return reg.register(key, files, {**MANIFEST_IN, "run_id": tag}, **kw)


def _tamper(reg: ModelRegistry, key: str, version: str, name: str) -> None:
    path = f"{reg._version_dir(key, version)}/{name}"
    data = bytearray(reg.fs.cat_file(path))
    data[0] ^= 0x01
    reg.fs.pipe_file(path, bytes(data))


def test_register_and_load_round_trip(registry: ModelRegistry, tmp_path: Path) -> None:
    model_file = tmp_path / "rf.skops"
    model_file.write_bytes(b"\x00skops" * 1000)
    version = registry.register(
        KEY, {"rf.skops": model_file, "lgbm.lgb.txt": b"tree text"}, MANIFEST_IN
    )
    assert registry.list_versions(KEY) == [version]
    assert registry.list_keys() == [KEY]

    directory, manifest = registry.load(KEY, version)
    assert (directory / "rf.skops").read_bytes() == model_file.read_bytes()
    assert (directory / "lgbm.lgb.txt").read_bytes() == b"tree text"
    assert manifest["files"]["rf.skops"] == {
        "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
        "size": 6000,
    }
    for field, value in MANIFEST_IN.items():
        assert manifest[field] == value
    assert manifest["version"] == version and manifest["key"] == KEY
    assert manifest["family"] == "turbomode" and manifest["created_at"]

    blobs, same = registry.load_bytes(KEY, version)
    assert blobs["lgbm.lgb.txt"] == b"tree text" and same == manifest
    # A second load reuses the verified copy (local: the registry's own directory).
    assert registry.load(KEY, version)[0] == directory
    dest, _ = registry.load(KEY, version, dest=tmp_path / "dest")
    assert (dest / "rf.skops").read_bytes() == model_file.read_bytes()


def test_version_ids_sort_by_registration_time(registry: ModelRegistry) -> None:
    early = new_version_id(datetime(2024, 1, 1, tzinfo=UTC))
    late = new_version_id(datetime(2024, 1, 1, 0, 0, 1, tzinfo=UTC))
    assert early < late
    ids = [_register(registry, str(i)) for i in range(3)]
    assert registry.list_versions(KEY) == sorted(ids) == ids


def test_corrupted_artifact_raises_checksum_error_naming_it(registry: ModelRegistry) -> None:
    version = _register(registry, "a")
    _tamper(registry, KEY, version, "lgbm.lgb.txt")
    for load in (registry.load, registry.load_bytes, registry.verify):
        with pytest.raises(ChecksumError, match=r"'lgbm\.lgb\.txt'") as info:
            load(KEY, version)
        assert info.value.file == "lgbm.lgb.txt"
    with pytest.raises(ChecksumError):
        registry.promote(KEY, version)
    assert registry.production(KEY) is None


def test_missing_artifact_is_a_checksum_error(registry: ModelRegistry) -> None:
    version = _register(registry, "a")
    registry.fs.rm_file(f"{registry._version_dir(KEY, version)}/meta.json")
    with pytest.raises(ChecksumError, match="missing"):
        registry.load(KEY, version)


def test_versions_are_immutable(registry: ModelRegistry) -> None:
    _register(registry, "a", version_id="v1")
    with pytest.raises(VersionExistsError, match="immutable"):
        _register(registry, "b", version_id="v1")
    assert registry.load_bytes(KEY, "v1")[0]["lgbm.lgb.txt"] == b"trees a"


def test_bad_inputs_are_refused(registry: ModelRegistry) -> None:
    with pytest.raises(ValueError, match="reserved"):
        registry.register(KEY, {"a.bin": b"x"}, {"files": []})
    for name in ("../x", "manifest.json", "a/b"):
        with pytest.raises(ValueError, match="artifact name"):
            registry.register(KEY, {name: b"x"}, {})
    with pytest.raises(ValueError, match="at least one"):
        registry.register(KEY, {}, {})
    with pytest.raises(ValueError, match="invalid model key"):
        registry.register("", {"a.bin": b"x"}, {})
    assert registry.list_keys() == []


def test_promote_rollback_sequence(registry: ModelRegistry) -> None:
    v1, v2, v3 = (_register(registry, t) for t in "abc")
    assert registry.production(KEY) is None and registry.pointer_etag(KEY) is None
    with pytest.raises(NoProductionVersionError):
        registry.load(KEY)
    with pytest.raises(NoProductionVersionError):
        registry.rollback(KEY)

    registry.promote(KEY, v1)
    etag1 = registry.pointer_etag(KEY)
    with pytest.raises(NoPreviousVersionError, match="no previous production version"):
        registry.rollback(KEY)
    registry.promote(KEY, v1)  # already production: nothing changes
    assert registry.pointer_etag(KEY) == etag1

    registry.promote(KEY, v2)
    registry.promote(KEY, v3)
    assert registry.pointer_etag(KEY) != etag1
    assert registry.production(KEY) == v3
    assert registry.pointer(KEY)["previous"] == [v2, v1]  # type: ignore[index]
    assert registry.load_bytes(KEY)[0]["lgbm.lgb.txt"] == b"trees c"

    assert registry.rollback(KEY) == v2
    assert registry.load(KEY)[1]["version"] == v2
    assert registry.rollback(KEY) == v1
    with pytest.raises(NoPreviousVersionError):
        registry.rollback(KEY)
    assert registry.production(KEY) == v1
    events = registry.history(KEY)
    assert [(e["action"], e["version"]) for e in events] == [
        ("rollback", v1),
        ("rollback", v2),
        ("promote", v3),
        ("promote", v2),
        ("promote", v1),
    ]
    with pytest.raises(VersionNotFoundError):
        registry.promote(KEY, "20990101T000000000000Z-ffffff")


def test_crash_in_pointer_write_keeps_old_production(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = _register(registry, "a"), _register(registry, "b")
    registry.promote(KEY, v1)
    # A new version that was never promoted (crash before the pointer update) changes nothing.
    assert registry.production(KEY) == v1
    etag = registry.pointer_etag(KEY)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("simulated crash")

    if registry._local:
        # Crash while writing the temp file, then at the final rename.
        real_write = Path.write_bytes

        def half_write(self: Path, data: bytes) -> int:
            real_write(self, data[: len(data) // 2])
            raise OSError("simulated crash mid-write")

        for target, fake in (("write_bytes", half_write), ("replace", boom)):
            with monkeypatch.context() as m:
                m.setattr(Path, target, fake)
                with pytest.raises(OSError, match="simulated crash"):
                    registry.promote(KEY, v2)
            key_dir = Path(registry._key_dir(KEY))
            assert [p.name for p in key_dir.iterdir() if p.is_file()] == ["production.json"]
    else:
        monkeypatch.setattr(registry.fs, "pipe_file", boom)
        with pytest.raises(OSError, match="simulated crash"):
            registry.promote(KEY, v2)
        monkeypatch.undo()

    assert registry.production(KEY) == v1
    assert registry.pointer_etag(KEY) == etag
    assert registry.load_bytes(KEY)[0]["lgbm.lgb.txt"] == b"trees a"
    registry.promote(KEY, v2)  # and the registry still works afterwards
    assert registry.production(KEY) == v2


def test_incomplete_version_is_invisible(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("crash before the manifest")

    with monkeypatch.context() as m:
        m.setattr(registry, "_put_atomic", crash)
        with pytest.raises(OSError):
            _register(registry, "a", version_id="v-broken")
    assert registry.fs.exists(f"{registry._version_dir(KEY, 'v-broken')}/lgbm.lgb.txt")
    assert registry.list_versions(KEY) == []
    assert registry.list_keys() == []
    with pytest.raises(VersionNotFoundError):
        registry.load(KEY, "v-broken")
    with pytest.raises(VersionNotFoundError):
        registry.promote(KEY, "v-broken")
    # The id stays taken: an incomplete version is not silently overwritten.
    with pytest.raises(VersionExistsError):
        _register(registry, "b", version_id="v-broken")


def test_pruning_keeps_newest_and_pointer_history(registry: ModelRegistry) -> None:
    assert registry.keep == 2
    v = [_register(registry, str(i), version_id=f"v{i}") for i in range(1, 7)]
    assert registry.list_versions(KEY) == v  # registering alone never prunes
    registry.promote(KEY, "v1")  # newest two (v5, v6) + production v1 survive
    assert registry.list_versions(KEY) == ["v1", "v5", "v6"]

    registry.promote(KEY, "v5")
    registry.promote(KEY, "v6")  # previous = [v5, v1]
    assert registry.list_versions(KEY) == ["v1", "v5", "v6"]
    v7 = _register(registry, "7", version_id="v7")
    v8 = _register(registry, "8", version_id="v8")
    registry.promote(KEY, v8)  # previous = [v6, v5]; v1 falls off (keep=2) and is pruned
    assert registry.pointer(KEY)["previous"] == ["v6", "v5"]  # type: ignore[index]
    assert registry.list_versions(KEY) == ["v5", "v6", v7, v8]
    assert registry.rollback(KEY) == "v6"
    assert registry.rollback(KEY) == "v5"


def test_pruning_removes_only_stale_incomplete_versions(
    registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_id = new_version_id(datetime.now(UTC) - timedelta(days=3))
    fresh_id = new_version_id()
    with monkeypatch.context() as m:
        m.setattr(registry, "_put_atomic", lambda *a, **k: (_ for _ in ()).throw(OSError()))
        for vid in (old_id, fresh_id):
            with pytest.raises(OSError):
                _register(registry, "x", version_id=vid)
    version = _register(registry, "a")
    registry.promote(KEY, version)
    assert registry._all_version_dirs(KEY) == sorted([fresh_id, version])


def test_families_never_see_each_other(root: str, tmp_path: Path) -> None:
    ours = ModelRegistry(root, cache_dir=tmp_path / "c1")
    theirs = ModelRegistry(root, family="legacy", cache_dir=tmp_path / "c2")
    mine = _register(ours, "ours")
    other = _register(theirs, "theirs")
    _register(theirs, "theirs", key="Energy/5d")
    ours.promote(KEY, mine)
    assert ours.list_keys() == [KEY]
    assert theirs.list_keys() == ["Energy/5d", KEY]
    assert theirs.production(KEY) is None
    assert ours.list_versions(KEY) == [mine] and theirs.list_versions(KEY) == [other]
    with pytest.raises(VersionNotFoundError):
        ours.load(KEY, other)


def test_keys_are_quoted_into_one_safe_segment() -> None:
    assert key_segment(KEY) == "Information%20Technology%2F1d"
    for key in ("..", ".hidden", "a/../b"):
        segment = key_segment(key)
        assert "/" not in segment and not segment.startswith(".")
    with pytest.raises(ValueError):
        key_segment("bad\nkey")


def test_remote_cache_is_refetched_when_damaged(tmp_path: Path) -> None:
    reg = ModelRegistry(f"memory://cache-{uuid.uuid4().hex}", cache_dir=tmp_path / "cache")
    version = _register(reg, "a")
    directory, _ = reg.load(KEY, version)
    assert directory.is_relative_to(tmp_path / "cache")
    (directory / "meta.json").write_bytes(b"tampered")
    again, _ = reg.load(KEY, version)
    assert again == directory and (again / "meta.json").read_bytes() == b'{"w": [1, 2]}'
    reg.fs.rm(reg._base, recursive=True)


# ---- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def cli_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    uri = str(tmp_path / "cli-registry")
    monkeypatch.setenv("TURBOMODE_STORES__MODEL_REGISTRY_URI", uri)
    monkeypatch.delenv("TURBOMODE_CONFIG", raising=False)
    return ModelRegistry(uri)


def test_cli_list_show_promote_rollback(cli_registry: ModelRegistry) -> None:
    runner = CliRunner()
    result = runner.invoke(models_app, ["list"])
    assert result.exit_code == 0 and "no models" in result.output

    v1, v2 = _register(cli_registry, "a"), _register(cli_registry, "b")
    result = runner.invoke(models_app, ["promote", KEY, v1])
    assert result.exit_code == 0, result.output
    assert runner.invoke(models_app, ["promote", KEY, v2]).exit_code == 0
    assert cli_registry.production(KEY) == v2

    result = runner.invoke(models_app, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert KEY in result.output and v2 in result.output and "2" in result.output

    result = runner.invoke(models_app, ["show", KEY, "--version", v1], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "balanced_accuracy" in result.output and "lgbm.lgb.txt" in result.output
    result = runner.invoke(models_app, ["show", KEY, "--json"])
    assert json.loads(result.output)["version"] == v2

    result = runner.invoke(models_app, ["rollback", KEY])
    assert result.exit_code == 0 and v1 in result.output
    assert cli_registry.production(KEY) == v1


def test_cli_show_names_the_gate_decision_and_its_look(cli_registry: ModelRegistry) -> None:
    gate = {
        "decision": "reject",
        "deciding_rule": "beats_baselines",
        "look": {"number": 3, "alpha": 0.003377, "nominal_alpha": 0.05},
    }
    version = cli_registry.register(KEY, {"m.txt": b"m"}, {**MANIFEST_IN, "gate": gate})
    for _ in range(3):
        cli_registry.record_look(KEY, {"version": version, "decision": "reject"})
    result = CliRunner().invoke(
        models_app, ["show", KEY, "--version", version], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "reject — beats_baselines (decision 3 on this key, baselines at alpha 0.00338)" in (
        result.output
    )
    assert re.search(r"gate looks on this key\s+│\s+3\b", result.output), result.output


def test_cli_errors_exit_2_without_traceback(cli_registry: ModelRegistry) -> None:
    runner = CliRunner()
    version = _register(cli_registry, "a")
    cli_registry.promote(KEY, version)
    cases = [
        (["rollback", KEY], "no previous production version"),
        (["promote", KEY, "nope"], "no complete version"),
        (["show", "Energy/1d"], "no production version"),
    ]
    for args, message in cases:
        result = runner.invoke(models_app, args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output
    corrupt = _register(cli_registry, "b")
    _tamper(cli_registry, KEY, corrupt, "meta.json")
    result = runner.invoke(models_app, ["promote", KEY, corrupt])
    assert result.exit_code == 2 and "checksum mismatch" in result.stderr
    assert "'meta.json'" in result.stderr
    assert cli_registry.production(KEY) == version


def test_cli_show_prints_the_global_importance(cli_registry: ModelRegistry) -> None:
    importance = {
        "output": "P(BUY) - P(SELL)",
        "rows": 800,
        "features": {f"f{i}": i / 1000 for i in range(12)},
        "groups": {"trend": 0.004, "volume": 0.02},
    }
    version = cli_registry.register(KEY, {"m.txt": b"m"}, {**MANIFEST_IN, "importance": importance})
    result = CliRunner().invoke(
        models_app, ["show", KEY, "--version", version], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "by group (800 rows)" in out and out.index("volume") < out.index("trend")
    shown = re.findall(r"f(\d+)\s+│\s+0\.0", out)
    assert [int(x) for x in shown] == list(range(11, 1, -1))  # the top ten, largest first
