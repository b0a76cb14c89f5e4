"""The API's signal against the platform's: :class:`SignalOut` is :class:`Signal` aged as of
the scan date, so a field the record gains, loses or retypes fails here before the service's
OpenAPI document drifts from what the scan writes."""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from typing import get_args, get_type_hints

from turbomode.config import SignalSettings
from turbomode.records.signals import Signal
from turbomode.serving.schemas import SignalOut
from turbomode.signals.rules import AGE_BUCKETS, signals_to_frame


def test_signal_out_is_the_signal_record_with_its_age() -> None:
    record = get_type_hints(Signal)
    api = {name: f.annotation for name, f in SignalOut.model_fields.items()}
    # What the scan document adds to each record: signals_to_frame's columns beyond Signal's.
    frame = signals_to_frame([], date(2024, 3, 15), SignalSettings())
    aged = [c for c in frame.columns if c not in record]
    # and scan_document adds each signal's explanation (turbomode.signals.explain)
    assert sorted(api) == sorted([*record, *aged, "explanation"])
    assert {name: api[name] for name in record} == record
    assert [name for name in api if name in record] == [f.name for f in fields(Signal)]
    assert (api["age_days"], api["effective_confidence"]) == (int, float)
    assert get_args(api["age_bucket"]) == AGE_BUCKETS
