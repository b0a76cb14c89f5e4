"""The one list of features: name, group, description and the market series each one needs.

The model's feature list, the Feast definitions and the engine's output columns all come from
here, so a feature is added or renamed in exactly one place. Each family module registers its
specs at import time and its compute function must return exactly those names (the engine
checks this on every build).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

from turbomode.errors import TurboModeError

GROUPS: tuple[str, ...] = (
    "trend",
    "oscillator",
    "volatility",
    "volume",
    "cross_sectional",
    "market",
    "temporal",
    "macro",
)
MACRO_GROUP = "macro"
"""Macro context (turbomode.features.macro): in the models' feature list only when asked
(:func:`model_feature_names`)."""

SECTOR_ETF = "SECTOR_ETF"
"""Pseudo market series in ``FeatureSpec.needs``: the sector ETF of the row's own symbol."""


class UnknownFeatureError(TurboModeError, KeyError):
    """One or more requested feature names are not in the registry."""

    def __init__(self, names: list[str], known: Iterable[str]) -> None:
        self.names = sorted(names)
        known_list = list(known)
        hints = []
        for n in self.names[:10]:
            close = difflib.get_close_matches(n, known_list, n=2)
            if close:
                hints.append(f"{n!r} → did you mean {close}?")
        msg = f"{len(self.names)} unknown feature(s): {self.names[:20]}"
        if hints:
            msg += "; " + "; ".join(hints)
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0])


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column name, group, a one-line description and the market series
    (``SPY``, ``^VIX``, ``QQQ``, ``IWM`` or :data:`SECTOR_ETF`) or macro series
    (``macro:<role>``) it cannot be computed without."""

    name: str
    group: str
    description: str
    needs: tuple[str, ...] = ()


class FeatureRegistry:
    """Ordered, name-unique collection of :class:`FeatureSpec`."""

    def __init__(self) -> None:
        self._specs: dict[str, FeatureSpec] = {}

    def register(self, spec: FeatureSpec) -> FeatureSpec:
        if spec.group not in GROUPS:
            raise ValueError(f"feature {spec.name!r}: unknown group {spec.group!r}; use {GROUPS}")
        if spec.name in self._specs:
            raise ValueError(f"feature {spec.name!r} registered twice")
        self._specs[spec.name] = spec
        return spec

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._ordered())

    def _ordered(self) -> list[FeatureSpec]:
        # Group order first (GROUPS), registration order within a group: stable column order
        # whatever order the family modules happened to be imported in.
        rank = {g: i for i, g in enumerate(GROUPS)}
        return sorted(self._specs.values(), key=lambda s: rank[s.group])

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __getitem__(self, name: str) -> FeatureSpec:
        if name not in self._specs:
            raise UnknownFeatureError([name], self._specs)
        return self._specs[name]

    def names(self, group: str | None = None) -> list[str]:
        """Feature names in registry order, optionally of one group."""
        if group is not None and group not in GROUPS:
            raise ValueError(f"unknown group {group!r}; use one of {GROUPS}")
        return [s.name for s in self._ordered() if group is None or s.group == group]

    def select(self, names: Iterable[str] | None = None) -> list[FeatureSpec]:
        """Specs for ``names`` in the order given (all when None); unknown names raise
        :class:`UnknownFeatureError` naming every one of them."""
        if names is None:
            return self._ordered()
        wanted = list(dict.fromkeys(names))
        unknown = [n for n in wanted if n not in self._specs]
        if unknown:
            raise UnknownFeatureError(unknown, self._specs)
        return [self._specs[n] for n in wanted]

    def needing(self, series: str) -> list[str]:
        """Names of the features that need one market series."""
        return [s.name for s in self._ordered() if series in s.needs]

    def counts(self) -> dict[str, int]:
        """Number of features per group, in group order."""
        c = Counter(s.group for s in self._specs.values())
        return {g: c[g] for g in GROUPS if c[g]}

    def to_frame(self) -> pd.DataFrame:
        """The registry as a table (name, group, description, needs)."""
        return pd.DataFrame(
            [(s.name, s.group, s.description, ",".join(s.needs)) for s in self],
            columns=["name", "group", "description", "needs"],
        )


REGISTRY = FeatureRegistry()


def feature(name: str, group: str, description: str, needs: tuple[str, ...] = ()) -> str:
    """Register a feature in :data:`REGISTRY` and return its name."""
    return REGISTRY.register(FeatureSpec(name, group, description, needs)).name


def select_features(names: Iterable[str] | None = None) -> list[str]:
    """Validated feature names (all registered ones when None)."""
    _ensure_loaded()
    return [s.name for s in REGISTRY.select(names)]


def model_feature_names(macro: bool = False) -> list[str]:
    """The models' feature list: every registered feature in registry order, the macro group
    only when ``macro`` (``settings.macro.in_models``). Kept out by default so that data
    without macro history trains exactly the models it trained before the group existed."""
    _ensure_loaded()
    return [s.name for s in REGISTRY.select() if macro or s.group != MACRO_GROUP]


def _ensure_loaded() -> None:
    # The family modules register on import; importing the package is enough.
    import turbomode.features  # noqa: F401
