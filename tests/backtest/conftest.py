"""The synthetic market the walk-forward and end-to-end backtest tests share (1-day labels,
small models), ingested once per session."""

from __future__ import annotations

import pytest

from tests.outcomes.test_replay import SMALL
from turbomode.config import Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.data.sources.base import MarketData


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, MarketData]:
    tmp = tmp_path_factory.mktemp("wf")
    s = Settings(
        data={"data_dir": tmp},
        labels={"horizons": [1]},
        models=SMALL.model_dump(),
        signals={"threshold_mode": "quantile"},
    )
    ingest(s)
    return s, load_clean(s)
