"""The shared Ray session: a Ray Client connection is tried again after a failed server start;
a driver connection is not, and a session this module started is stopped after."""

from __future__ import annotations

from typing import Any

import pytest

from turbomode import cluster


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import ray

    state: dict[str, Any] = {"calls": [], "fail": 0, "up": False, "stopped": 0}

    def init(**kwargs: Any) -> None:
        state["calls"].append(kwargs.get("address"))
        if state["fail"]:
            state["fail"] -= 1
            raise ConnectionAbortedError("Starting Ray client server failed")
        state["up"] = True

    def shutdown() -> None:
        state["up"] = False
        state["stopped"] += 1

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setattr(ray, "is_initialized", lambda: state["up"])
    monkeypatch.setattr("time.sleep", lambda s: None)
    return state


def test_a_client_connection_is_tried_again(fake_ray: dict[str, Any]) -> None:
    fake_ray["fail"] = 2
    with cluster.joined("ray://head:10001"):
        assert fake_ray["up"]
    assert fake_ray["calls"] == ["ray://head:10001"] * 3
    assert not fake_ray["up"]  # started here, stopped here


def test_a_client_gives_up_after_its_attempts(fake_ray: dict[str, Any]) -> None:
    fake_ray["fail"] = cluster.CLIENT_ATTEMPTS
    with pytest.raises(ConnectionError), cluster.joined("ray://head:10001"):
        pass
    assert len(fake_ray["calls"]) == cluster.CLIENT_ATTEMPTS


def test_a_driver_connection_fails_at_once_and_a_running_session_is_kept(
    fake_ray: dict[str, Any],
) -> None:
    fake_ray["fail"] = 1
    with pytest.raises(ConnectionError), cluster.joined("10.0.0.1:6379"):
        pass
    assert fake_ray["calls"] == ["10.0.0.1:6379"]
    fake_ray["up"] = True  # the caller's own session: used, not stopped
    with cluster.joined("10.0.0.1:6379"):
        pass
    assert fake_ray["up"] and fake_ray["calls"] == ["10.0.0.1:6379"]
