"""The baseline scores on a hand example: per symbol, over its own bars, no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from turbomode.errors import SchemaError
from turbomode.research import scores

D = pd.bdate_range("2024-01-01", periods=5)


def _prices() -> pd.DataFrame:
    a = pd.DataFrame({"symbol": "A", "date": D, "close": [10.0, 11.0, 12.0, 9.0, 13.5]})
    b = pd.DataFrame({"symbol": "B", "date": D[:3], "close": [50.0, 40.0, 60.0]})
    return pd.concat([a, b]).sample(frac=1.0, random_state=0)


def test_momentum_and_reversal_by_hand() -> None:
    mom = scores.momentum(_prices(), days=2).set_index(["symbol", "date"])["score"]
    assert np.isnan(mom[("A", D[1])])  # warming up
    assert mom[("A", D[2])] == pytest.approx(12 / 10 - 1)
    assert mom[("A", D[4])] == pytest.approx(13.5 / 12 - 1)
    assert mom[("B", D[2])] == pytest.approx(60 / 50 - 1)
    rev = scores.reversal(_prices(), days=2).set_index(["symbol", "date"])["score"]
    assert rev[("A", D[3])] == pytest.approx(-(9 / 11 - 1))
    with pytest.raises(ValueError, match="days"):
        scores.reversal(_prices(), days=0)


def test_feature_score() -> None:
    feats = pd.DataFrame({"symbol": ["A", "B"], "date": D[:2], "rsi": [30.0, np.nan]})
    out = scores.feature_score(feats, "rsi")
    assert out.to_dict("list") == {"symbol": ["A"], "date": [D[0]], "score": [30.0]}
    with pytest.raises(SchemaError, match="macd"):
        scores.feature_score(feats, "macd")
