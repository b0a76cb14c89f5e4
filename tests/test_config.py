"""Settings: defaults, YAML file, environment, and errors that name the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from turbomode.config import Settings, load_settings


def test_defaults_are_the_local_embedded_setup() -> None:
    s = Settings()
    assert s.data.source == "synthetic"
    assert s.labels.horizons == [1, 2, 5]
    assert s.stores.signals_url.startswith("sqlite:///")
    assert s.compute.device == "cpu"
    assert s.signals.entry_probability == 0.60
    assert (s.signals.threshold_mode, s.signals.threshold_quantile) == ("quantile", 0.95)
    assert s.schedules.nightly_scan == "0 23 * * 1-5"
    assert s.data.clean_dir == Path("data/clean")


def test_yaml_file_then_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "turbomode.yaml"
    cfg.write_text("synthetic:\n  seed: 11\n  n_symbols: 40\nuniverse:\n  large_cap_min: 2.0e11\n")
    s = load_settings(cfg)
    assert (s.synthetic.seed, s.synthetic.n_symbols, s.universe.large_cap_min) == (11, 40, 2e11)
    monkeypatch.setenv("TURBOMODE_SYNTHETIC__SEED", "99")
    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", "postgresql+psycopg://x@db/signals")
    s = load_settings(cfg)
    assert s.synthetic.seed == 99  # environment beats the file
    assert s.synthetic.n_symbols == 40  # the file still fills what env does not set
    assert s.stores.signals_url == "postgresql+psycopg://x@db/signals"
    assert load_settings(cfg, synthetic={"seed": 5}).synthetic.seed == 5  # explicit beats all


def test_bad_values_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="mid_cap_min"):
        Settings(universe={"large_cap_min": 1e9, "mid_cap_min": 5e9})
    with pytest.raises(ValidationError, match="horizons"):
        Settings(labels={"horizons": [3]})
    with pytest.raises(ValidationError, match="no_such_section"):
        Settings(no_such_section={})
    with pytest.raises(FileNotFoundError, match=r"missing\.yaml"):
        load_settings(tmp_path / "missing.yaml")


def test_horizons_sorted_and_unique() -> None:
    assert Settings(labels={"horizons": [5, 1, 5]}).labels.horizons == [1, 5]


def test_one_default_horizon_for_the_single_horizon_jobs() -> None:
    assert Settings().horizon_or_default() == 5
    moved = Settings(backtest={"default_horizon": 2})
    assert (moved.horizon_or_default(), moved.horizon_or_default(None)) == (2, 2)
    assert moved.horizon_or_default(1) == 1  # a horizon given is kept
