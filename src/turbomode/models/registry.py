"""Model registry: immutable checksummed versions and an atomically replaced production pointer.

Layout under any fsspec root (a local directory, ``memory://`` in tests, ``s3://…``)::

    <root>/<family>/<quoted key>/versions/<version id>/<artifacts…>
    <root>/<family>/<quoted key>/versions/<version id>/manifest.json   (written last)
    <root>/<family>/<quoted key>/production.json                       (the pointer)

Why this shape:

* ``family`` is a namespace, so TurboMode's models never mix with another system's in a shared
  bucket. Keys such as ``"Information Technology/1d"`` are percent-quoted into one segment.
* A version is visible only once its ``manifest.json`` exists, and the manifest is written after
  every artifact, so a writer that dies half-way leaves an invisible directory, never a broken
  version. The manifest holds each artifact's SHA-256; every load verifies them.
* Versions are never rewritten: registering into an existing id raises.
* Production is one small JSON object replaced in a single step (temp file + ``os.replace`` on
  a local disk, one whole-object put elsewhere — atomic on object stores), so a reader sees the
  old pointer or the new one. It carries the previous production versions, newest first, which
  is what :meth:`ModelRegistry.rollback` steps back through.
* Old versions are pruned only after a successful promotion, and never one the pointer names.

Concurrent promotions of the same key are last-writer-wins: run one trainer per key.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import fsspec
from fsspec.implementations.local import LocalFileSystem

from turbomode.errors import TurboModeError
from turbomode.io import atomic_path

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
POINTER = "production.json"
LOOKS = "gate_looks.json"
REGISTRY_FORMAT = 1
RESERVED_MANIFEST_KEYS = frozenset(
    {"registry_format", "family", "key", "version", "registered_at", "files"}
)
MAX_EVENTS = 100
STALE_INCOMPLETE = timedelta(days=1)
_CHUNK = 1 << 20
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_VERSION_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"


class RegistryError(TurboModeError):
    """A registry operation could not be done as asked."""


class ChecksumError(RegistryError):
    """An artifact's bytes differ from the SHA-256 its manifest recorded (or it is missing)."""

    def __init__(
        self, key: str, version: str, file: str, expected: str, actual: str | None
    ) -> None:
        self.key, self.version, self.file = key, version, file
        self.expected, self.actual = expected, actual
        found = "the file is missing" if actual is None else f"found sha256 {actual[:16]}…"
        super().__init__(
            f"checksum mismatch in {key!r} version {version}: artifact {file!r} should have "
            f"sha256 {expected[:16]}…, {found}; it is corrupt or was modified — "
            "re-register the model or roll back"
        )


class VersionExistsError(RegistryError):
    """Versions are immutable: this id is already taken."""


class VersionNotFoundError(RegistryError):
    """No complete version with this id (an incomplete one, without manifest, is invisible)."""


class NoProductionVersionError(RegistryError):
    """The key has no production pointer yet."""


class NoPreviousVersionError(RegistryError):
    """Rollback asked for, but the pointer remembers no earlier production version."""


def new_version_id(now: datetime | None = None) -> str:
    """A sortable id: UTC time to the microsecond plus a random suffix against collisions."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC).strftime(_VERSION_TIME_FORMAT)}-{secrets.token_hex(3)}"


def key_segment(key: str) -> str:
    """The single path segment that stores ``key`` (reversible with :func:`unquote`)."""
    if not key or not key.strip() or any(ord(c) < 32 for c in key) or len(key) > 200:
        raise ValueError(f"invalid model key {key!r}: non-empty printable text, ≤ 200 chars")
    segment = quote(key, safe="-_")
    return "%2E" + segment[1:] if segment.startswith(".") else segment


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays
        return obj.tolist()
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"manifest value of type {type(obj).__name__} is not JSON serializable")


def _dumps(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ModelRegistry:
    """Versioned model store over any fsspec filesystem (see the module docstring)."""

    def __init__(
        self,
        root: str | Path,
        family: str = "turbomode",
        keep: int = 5,
        cache_dir: Path | str | None = None,
    ) -> None:
        if not _SEGMENT_RE.match(family):
            raise ValueError(f"invalid family {family!r}: letters, digits, '_', '-', '.'")
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        self.root = str(root)
        self.family = family
        self.keep = keep
        self.fs, base = fsspec.core.url_to_fs(self.root)
        self._local = isinstance(self.fs, LocalFileSystem)
        self._base = f"{base.rstrip('/')}/{family}"
        self.cache_dir = (
            Path(cache_dir or Path(tempfile.gettempdir()) / "turbomode-model-cache") / family
        )

    def __repr__(self) -> str:
        return f"ModelRegistry({self.root!r}, family={self.family!r}, keep={self.keep})"

    # ---- paths -------------------------------------------------------------------------
    def _key_dir(self, key: str) -> str:
        return f"{self._base}/{key_segment(key)}"

    def _version_dir(self, key: str, version: str) -> str:
        if not _SEGMENT_RE.match(version):
            raise ValueError(f"invalid version id {version!r}")
        return f"{self._key_dir(key)}/versions/{version}"

    # ---- low-level writes --------------------------------------------------------------
    def _put_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` in one step: a crash leaves the old content or the new one."""
        if self._local:
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
        else:
            self.fs.pipe_file(path, data)  # a single whole-object put

    def _write_artifact(self, path: str, chunks: Iterator[bytes]) -> tuple[str, int]:
        """Stream chunks to ``path``; return (sha256, size). Local files are fsynced so the
        manifest written after them never names bytes still in a page cache."""
        digest, size = hashlib.sha256(), 0
        if self._local:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            with Path(path).open("xb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        else:
            with self.fs.open(path, "wb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
        return digest.hexdigest(), size

    # ---- register ----------------------------------------------------------------------
    def register(
        self,
        key: str,
        files: Mapping[str, Path | str | bytes],
        manifest: Mapping[str, Any],
        *,
        version_id: str | None = None,
    ) -> str:
        """Store a new immutable version of ``key``; return its id.

        ``files`` maps artifact names to bytes or local paths. ``manifest`` is the caller's
        record (metrics, gate report, features, data range and hash, params, code version,
        run id, created_at); the registry adds the file list with checksums and writes it last.
        """
        if not files:
            raise ValueError("register needs at least one artifact")
        for name in files:
            if not _SEGMENT_RE.match(name) or name in (MANIFEST, POINTER):
                raise ValueError(f"invalid artifact name {name!r}")
        clash = RESERVED_MANIFEST_KEYS & set(manifest)
        if clash:
            raise ValueError(f"manifest keys reserved by the registry: {sorted(clash)}")
        version = version_id or new_version_id()
        vdir = self._version_dir(key, version)
        if self.fs.exists(vdir):
            raise VersionExistsError(
                f"version {version} of {key!r} already exists; versions are immutable"
            )
        body = _dumps(dict(manifest))  # fail on unserializable values before writing anything

        recorded: dict[str, dict[str, Any]] = {}
        for name, content in sorted(files.items()):
            sha, size = self._write_artifact(f"{vdir}/{name}", _chunks(content))
            recorded[name] = {"sha256": sha, "size": size}
        full = {
            **json.loads(body),
            "registry_format": REGISTRY_FORMAT,
            "family": self.family,
            "key": key,
            "version": version,
            "registered_at": _now(),
            "files": recorded,
        }
        full.setdefault("created_at", full["registered_at"])
        self._put_atomic(f"{vdir}/{MANIFEST}", _dumps(full))
        log.info("registered %s %s (%d artifacts)", key, version, len(recorded))
        return version

    # ---- gate looks --------------------------------------------------------------------
    def looks(self, key: str) -> list[dict[str, Any]]:
        """Every gate decision ever taken on ``key``, oldest first.

        Kept apart from the versions because :meth:`prune` deletes old versions, and the
        gate's alpha spending (:func:`turbomode.models.gate.look_alpha`) must count every
        look, not only the ones whose model is still stored.
        """
        try:
            raw = self.fs.cat_file(f"{self._key_dir(key)}/{LOOKS}")
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"gate looks of {key!r} are not JSON: {exc}") from exc
        return list(doc.get("looks", []))

    def record_look(self, key: str, look: Mapping[str, Any]) -> int:
        """Append one gate decision to ``key``'s record; return how many there are now."""
        looks = [*self.looks(key), {**look, "at": _now()}]
        doc = {"registry_format": REGISTRY_FORMAT, "family": self.family, "key": key}
        self._put_atomic(f"{self._key_dir(key)}/{LOOKS}", _dumps({**doc, "looks": looks}))
        return len(looks)

    # ---- listing -----------------------------------------------------------------------
    def list_keys(self) -> list[str]:
        """Every key of this family that has a complete version or a pointer."""
        try:
            entries = self.fs.ls(self._base, detail=True)
        except FileNotFoundError:
            return []
        keys = []
        for entry in entries:
            if entry.get("type") != "directory":
                continue
            key = unquote(entry["name"].rstrip("/").rsplit("/", 1)[-1])
            if self.list_versions(key) or self._read_pointer(key) is not None:
                keys.append(key)
        return sorted(keys)

    def list_versions(self, key: str) -> list[str]:
        """Complete versions of ``key``, oldest first (ids sort by time)."""
        found = self.fs.glob(f"{self._key_dir(key)}/versions/*/{MANIFEST}")
        return sorted(p.rstrip("/").split("/")[-2] for p in found)

    def _all_version_dirs(self, key: str) -> list[str]:
        try:
            entries = self.fs.ls(f"{self._key_dir(key)}/versions", detail=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e["type"] == "directory"
        )

    # ---- manifests and loading ----------------------------------------------------------
    def _resolve(self, key: str, version: str | None) -> str:
        if version is not None:
            return version
        current = self.production(key)
        if current is None:
            raise NoProductionVersionError(f"{key!r} has no production version yet; promote one")
        return current

    def manifest(self, key: str, version: str | None = None) -> dict[str, Any]:
        """The manifest of a version (production when ``version`` is None), unverified."""
        version = self._resolve(key, version)
        path = f"{self._version_dir(key, version)}/{MANIFEST}"
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            raise VersionNotFoundError(
                f"no complete version {version} of {key!r} in {self.root} ({self.family}); "
                f"its versions: turbomode models versions {key!r}"
            ) from None
        try:
            data: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(
                f"manifest of {key!r} version {version} is not JSON: {exc}"
            ) from exc
        return data

    def verify(self, key: str, version: str | None = None) -> dict[str, Any]:
        """Re-hash every artifact in the store; raise :class:`ChecksumError` on a mismatch."""
        version = self._resolve(key, version)
        meta = self.manifest(key, version)
        vdir = self._version_dir(key, version)
        for name, info in meta["files"].items():
            try:
                with self.fs.open(f"{vdir}/{name}", "rb") as fh:
                    actual = _sha256_stream(fh)
            except FileNotFoundError:
                actual = None
            if actual != info["sha256"]:
                raise ChecksumError(key, version, name, info["sha256"], actual)
        return meta

    def load_bytes(
        self, key: str, version: str | None = None
    ) -> tuple[dict[str, bytes], dict[str, Any]]:
        """Artifacts as bytes, each verified against the manifest; for in-memory serving."""
        version = self._resolve(key, version)
        meta = self.manifest(key, version)
        vdir = self._version_dir(key, version)
        out: dict[str, bytes] = {}
        for name, info in meta["files"].items():
            try:
                data = self.fs.cat_file(f"{vdir}/{name}")
            except FileNotFoundError:
                raise ChecksumError(key, version, name, info["sha256"], None) from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != info["sha256"]:
                raise ChecksumError(key, version, name, info["sha256"], actual)
            out[name] = data
        return out, meta

    def load(
        self, key: str, version: str | None = None, *, dest: Path | str | None = None
    ) -> tuple[Path, dict[str, Any]]:
        """A local directory holding the verified artifacts of a version, and its manifest.

        ``version=None`` loads production. On a local root without ``dest`` the directory is
        the registry's own (read-only by contract: versions are immutable); otherwise artifacts
        are copied to ``dest`` or to a per-version cache that is reused once it verifies.
        """
        version = self._resolve(key, version)
        meta = self.manifest(key, version)
        if self._local and dest is None:
            vdir = Path(self._version_dir(key, version))
            _verify_local(key, version, vdir, meta)
            return vdir, meta
        if dest is not None:
            target = Path(dest)
            target.mkdir(parents=True, exist_ok=True)
            self._download(key, version, meta, target)
            return target, meta
        target = self.cache_dir / key_segment(key) / version
        if target.is_dir():
            try:
                _verify_local(key, version, target, meta)
                return target, meta
            except ChecksumError:
                shutil.rmtree(target)  # a damaged cache: fetch again
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            self._download(key, version, meta, staging)
            try:
                staging.replace(target)
            except OSError:  # another process filled the cache first
                _verify_local(key, version, target, meta)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return target, meta

    def _download(self, key: str, version: str, meta: Mapping[str, Any], target: Path) -> None:
        vdir = self._version_dir(key, version)
        for name, info in meta["files"].items():
            try:
                self.fs.get_file(f"{vdir}/{name}", str(target / name))
            except FileNotFoundError:
                raise ChecksumError(key, version, name, info["sha256"], None) from None
        _verify_local(key, version, target, meta)

    # ---- the production pointer ---------------------------------------------------------
    def _pointer_path(self, key: str) -> str:
        return f"{self._key_dir(key)}/{POINTER}"

    def _read_pointer_bytes(self, key: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(self._pointer_path(key))
        except FileNotFoundError:
            return None
        return data

    def _read_pointer(self, key: str) -> dict[str, Any] | None:
        raw = self._read_pointer_bytes(key)
        if raw is None:
            return None
        try:
            pointer: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            raise RegistryError(f"production pointer of {key!r} is not JSON: {exc}") from exc
        return pointer

    def pointer(self, key: str) -> dict[str, Any] | None:
        """The whole pointer: ``version``, ``previous`` (newest first), ``events``."""
        return self._read_pointer(key)

    def production(self, key: str) -> str | None:
        """The production version of ``key``, or None before the first promotion."""
        pointer = self._read_pointer(key)
        return None if pointer is None else str(pointer["version"])

    def history(self, key: str) -> list[dict[str, Any]]:
        """Promotions and rollbacks of ``key``, newest first (the last 100)."""
        pointer = self._read_pointer(key)
        return [] if pointer is None else list(pointer.get("events", []))

    def pointer_etag(self, key: str) -> str | None:
        """SHA-256 of the pointer's bytes: a watcher reloads when it changes (one small read)."""
        raw = self._read_pointer_bytes(key)
        return None if raw is None else hashlib.sha256(raw).hexdigest()

    def _write_pointer(
        self, key: str, version: str, previous: list[str], event: dict[str, Any], old: Any
    ) -> None:
        events = [event, *(old or {}).get("events", [])][:MAX_EVENTS]
        pointer = {
            "registry_format": REGISTRY_FORMAT,
            "family": self.family,
            "key": key,
            "version": version,
            "previous": previous,
            "updated_at": event["at"],
            "events": events,
        }
        self._put_atomic(self._pointer_path(key), _dumps(pointer))

    def promote(self, key: str, version: str) -> None:
        """Make ``version`` production after re-verifying its checksums, then prune.

        The previous production version moves to the front of ``previous`` (at most ``keep``
        remembered), so :meth:`rollback` can return to it.
        """
        if version not in self.list_versions(key):
            raise VersionNotFoundError(
                f"no complete version {version} of {key!r}; its versions: "
                f"turbomode models versions {key!r}"
            )
        self.verify(key, version)
        old = self._read_pointer(key)
        current = None if old is None else old["version"]
        if current == version:
            return
        chain = [] if old is None else [current, *old.get("previous", [])]
        previous = list(dict.fromkeys(v for v in chain if v != version))[: self.keep]
        event = {"action": "promote", "version": version, "from": current, "at": _now()}
        self._write_pointer(key, version, previous, event, old)
        log.info("promoted %s %s (was %s)", key, version, current)
        try:
            self.prune(key)
        except Exception:  # the promotion stands; pruning retries after the next one
            log.warning("pruning %s failed after promoting %s", key, version, exc_info=True)

    def restore(self, key: str, version: str | None) -> None:
        """Put production of ``key`` back to ``version`` as recorded earlier (None: it had no
        production then). What an interrupted retrain calls to leave production exactly as it
        was; a no-op when the pointer already says so."""
        old = self._read_pointer(key)
        current = None if old is None else str(old["version"])
        if current == version:
            return
        if version is None:
            self.fs.rm_file(self._pointer_path(key))
            log.info("restored %s to no production version (was %s)", key, current)
            return
        if version not in self.list_versions(key):
            raise VersionNotFoundError(f"cannot restore {key!r} to {version}: it is gone")
        self.verify(key, version)
        chain = [] if old is None else [current, *old.get("previous", [])]
        previous = list(dict.fromkeys(v for v in chain if v and v != version))[: self.keep]
        event = {"action": "restore", "version": version, "from": current, "at": _now()}
        self._write_pointer(key, version, previous, event, old)
        log.info("restored %s to %s (was %s)", key, version, current)

    def rollback(self, key: str) -> str:
        """Step production back to the previous version; return that version."""
        old = self._read_pointer(key)
        if old is None:
            raise NoProductionVersionError(f"{key!r} has no production version to roll back")
        previous = list(old.get("previous", []))
        if not previous:
            raise NoPreviousVersionError(
                f"{key!r} has no previous production version to roll back to "
                f"(production is {old['version']})"
            )
        target = previous[0]
        self.verify(key, target)
        event = {"action": "rollback", "version": target, "from": old["version"], "at": _now()}
        self._write_pointer(key, target, previous[1:], event, old)
        log.info("rolled back %s from %s to %s", key, old["version"], target)
        return str(target)

    def prune(self, key: str) -> list[str]:
        """Delete versions outside the newest ``keep`` and the pointer's history; return them.

        A manifest goes first, so a half-deleted version is invisible rather than corrupt.
        Incomplete versions are removed only when over a day old (a writer may still be busy).
        """
        complete = self.list_versions(key)
        pointer = self._read_pointer(key) or {}
        protected = set(complete[-self.keep :]) | set(pointer.get("previous", []))
        if "version" in pointer:
            protected.add(pointer["version"])
        removed = []
        cutoff = datetime.now(UTC) - STALE_INCOMPLETE
        done = set(complete)
        for version in self._all_version_dirs(key):
            if version in protected:
                continue
            if version not in done:
                born = _version_time(version)
                if born is None or born > cutoff:
                    continue
            vdir = self._version_dir(key, version)
            if version in done:
                self.fs.rm_file(f"{vdir}/{MANIFEST}")
            self.fs.rm(vdir, recursive=True)
            removed.append(version)
        if removed:
            log.info("pruned %s: %s", key, ", ".join(removed))
        return removed


def _chunks(content: Path | str | bytes) -> Iterator[bytes]:
    if isinstance(content, bytes | bytearray | memoryview):
        yield bytes(content)
        return
    with Path(content).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _sha256_stream(fh: Any) -> str:
    digest = hashlib.sha256()
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _verify_local(key: str, version: str, directory: Path, meta: Mapping[str, Any]) -> None:
    for name, info in meta["files"].items():
        path = directory / name
        if not path.is_file():
            raise ChecksumError(key, version, name, info["sha256"], None)
        with path.open("rb") as fh:
            actual = _sha256_stream(fh)
        if actual != info["sha256"]:
            raise ChecksumError(key, version, name, info["sha256"], actual)


def _version_time(version: str) -> datetime | None:
    try:
        return datetime.strptime(version.split("-", 1)[0], _VERSION_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None
