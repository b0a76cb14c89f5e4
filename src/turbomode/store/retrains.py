"""The retrain runs repository: one row per retrain, opened as running with the production
pointers it may change (what a crash restores) and closed with its outcome and report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from turbomode.store.engine import StoreBase, jsonable, to_frame, utc_now
from turbomode.store.tables import retrain_runs

RETRAIN_COLUMNS: tuple[str, ...] = tuple(c.name for c in retrain_runs.columns)


class RetrainRepository(StoreBase):
    """Records retrain runs and reads them back."""

    def start_retrain(
        self, pointers_before: Mapping[str, str | None], n_new_samples: int, max_sample_id: int
    ) -> int:
        """Record a retrain as running, with the production pointers it may change."""
        with self._write() as conn:
            res = conn.execute(
                retrain_runs.insert().values(
                    started_at=utc_now(),
                    status="running",
                    n_new_samples=int(n_new_samples),
                    max_sample_id=int(max_sample_id),
                    pointers_before=dict(pointers_before),
                    report={},
                )
            )
            assert res.inserted_primary_key is not None
            return int(res.inserted_primary_key[0])

    def finish_retrain(self, run_id: int, status: str, report: Mapping[str, Any]) -> None:
        """Close a retrain run with its outcome and report."""
        with self._write() as conn:
            conn.execute(
                retrain_runs.update()
                .where(retrain_runs.c.id == int(run_id))
                .values(status=status, finished_at=utc_now(), report=jsonable(report, "report"))
            )

    def retrain_runs(self) -> pd.DataFrame:
        """Every retrain run, oldest first."""
        q = sa.select(*[retrain_runs.c[c] for c in RETRAIN_COLUMNS]).order_by(retrain_runs.c.id)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q).mappings())
        return to_frame(rows, RETRAIN_COLUMNS, timestamps=("started_at", "finished_at"))
