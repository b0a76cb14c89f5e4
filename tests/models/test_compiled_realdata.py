"""The compiled ensemble equals the native one on real features, for every (sector, horizon).

A full 33-key production training takes hours on two cores, so this trains its own: for each
GICS sector, the first three index members (by symbol) with prices, features from 2020 on,
and one stacked ensemble per (sector, horizon) with the production shapes (depths, leaves,
feature sampling, missing-value handling) and fewer rounds. Every row of the sector is then
scored both ways — warm-up rows full of NaN and the newest, unlabelled rows included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from turbomode.config import GICS_SECTORS, LabelSettings
from turbomode.data.sources.files import read_frames
from turbomode.features import build_features
from turbomode.labels import make_labels
from turbomode.models.compiled import TOLERANCE
from turbomode.models.ensemble import StackedEnsemble
from turbomode.models.loading import load_ensemble

from .test_compiled import SMALL

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # all-NaN warm-up columns
]
PER_SECTOR = 3


@pytest.fixture(scope="module")
def real_rows(shared_data_dir: Path) -> tuple[pd.DataFrame, list[str], list[int]]:
    cons = pd.read_csv(shared_data_dir / "constituents.csv")
    cons = cons[cons["in_prices"].astype(bool)].sort_values("symbol")
    symbols = [s for _, g in cons.groupby("sector") for s in g["symbol"].head(PER_SECTOR)]
    px, mk, sectors = read_frames(shared_data_dir, "2020-01-01", "2018-01-01", symbols)
    features = build_features(px, mk, sectors).frame
    labels = make_labels(px, LabelSettings(), sectors=sectors)
    cols = [c for c in features.columns if c not in ("symbol", "date")]
    data = features.merge(labels, on=["symbol", "date"], how="left")
    data["sector"] = data["symbol"].map(sectors)
    return data, cols, list(LabelSettings().horizons)


def test_every_sector_and_horizon(real_rows, tmp_path: Path) -> None:
    data, cols, horizons = real_rows
    assert set(data["sector"]) == set(GICS_SECTORS)
    worst: dict[str, float] = {}
    for sector in GICS_SECTORS:
        rows = data[data["sector"] == sector].sort_values("date")
        X = rows[cols].to_numpy(dtype=np.float32)
        assert np.isnan(X).any()  # warm-up rows: the NaN rules are exercised
        for h in horizons:
            train = rows[rows[f"label_{h}"].notna()]
            ens = StackedEnsemble(cols, h, SMALL).fit(
                train[cols], train[f"label_{h}"].astype(int), train["date"].to_numpy()
            )
            key = f"{sector}/{h}d"
            ens.save(tmp_path / key)
            loaded = load_ensemble(tmp_path / key)  # the stored compiled form
            assert isinstance(loaded, StackedEnsemble) and loaded.compiled_ is not None
            native = ens.predict_proba_native(X)
            worst[key] = float(np.abs(loaded.compiled_.predict_proba(X) - native).max())
    assert len(worst) == len(GICS_SECTORS) * len(horizons)
    assert {k: v for k, v in worst.items() if v > TOLERANCE} == {}
