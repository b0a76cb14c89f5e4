"""The layers of ``turbomode`` run downward: a module imports only its own layer or lower ones.

Every module under ``src/turbomode`` is parsed with :mod:`ast`; every ``import`` and
``from … import`` counts, at module level, inside functions and inside ``TYPE_CHECKING``
blocks alike. The order is the one README.md's "Where each part lives" states.
"""

from __future__ import annotations

import ast
from pathlib import Path

import turbomode

SRC = Path(turbomode.__file__).resolve().parent

# Lowest first. Packages in one tuple form one layer and may import each other; a layer
# imports only its own and lower layers. Keys are the first name under ``turbomode``
# (a package or a top-level module); ``turbomode`` itself is the package's ``__init__``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("turbomode", "errors", "redaction", "jobs"),
    ("io", "logs"),
    ("job_metrics",),
    ("config", "workspace", "cluster"),
    ("records",),
    ("store",),
    ("data",),
    ("features",),
    ("feature_store", "feast_ray"),
    ("labels",),
    ("models",),
    ("risk",),
    ("signals",),
    ("outcomes", "research", "smart"),
    ("backtest",),
    ("wallet",),
    ("status",),
    ("reports",),
    ("serving", "pipelines"),
    ("cli", "__main__"),
)

# Upward imports not yet removed, each as (importing module, imported module) with the reason.
# The list may only shrink: an entry that no longer occurs fails the test too.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = ("turbomode", *path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer_key(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "turbomode"
    head = parts[1]
    # cli.py, cli_*.py and a cli/ package are all the command line.
    return "cli" if head == "cli" or head.startswith("cli_") else head


def _rank(key: str) -> int:
    for i, layer in enumerate(LAYERS):
        if key in layer:
            return i
    raise AssertionError(f"turbomode.{key} has no layer: add it to LAYERS and README.md")


def _imports(path: Path, module: str) -> list[tuple[str, int]]:
    """Every ``turbomode`` module ``path`` imports, with its line."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "turbomode":
                # ``from turbomode import x``: x is a submodule or a name of the package itself.
                found += [
                    (
                        f"turbomode.{a.name}"
                        if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file()
                        else "turbomode",
                        node.lineno,
                    )
                    for a in node.names
                ]
            else:
                found.append((target, node.lineno))
    return [(name, line) for name, line in found if name.split(".")[0] == "turbomode"]


def upward_imports() -> dict[tuple[str, str], str]:
    """(importing module, imported module) → where, for every import of a higher layer."""
    upward: dict[tuple[str, str], str] = {}
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        mine = _rank(_layer_key(module))
        for target, line in _imports(path, module):
            if _rank(_layer_key(target)) > mine:
                upward.setdefault((module, target), f"{path.relative_to(SRC.parent)}:{line}")
    return upward


def test_every_package_has_a_layer() -> None:
    keys = {_layer_key(_module_name(p)) for p in SRC.rglob("*.py")}
    for key in sorted(keys):
        _rank(key)
    listed = [key for layer in LAYERS for key in layer]
    assert len(listed) == len(set(listed)), "a key is in two layers"


def test_no_lower_layer_imports_a_higher_one() -> None:
    upward = upward_imports()
    new = {pair: where for pair, where in upward.items() if pair not in KNOWN_EXCEPTIONS}
    assert not new, "lower layer imports a higher one:\n" + "\n".join(
        f"  {where}: {importer} ({_layer_key(importer)}) imports {imported} "
        f"({_layer_key(imported)})"
        for (importer, imported), where in sorted(new.items())
    )
    gone = sorted(set(KNOWN_EXCEPTIONS) - set(upward))
    assert not gone, f"known exceptions no longer occur; remove them from the list: {gone}"
