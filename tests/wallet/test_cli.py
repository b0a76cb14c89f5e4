"""``turbomode wallet`` commands end to end on a small synthetic clean store and a SQLite
signals store: create, run (entries from the previous night's scan, catch-up, refusals),
report and list. Mounted on a small app the way the main CLI mounts it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from turbomode.cli.wallet import wallet_app
from turbomode.config import Settings
from turbomode.data.ingest import ingest, load_clean
from turbomode.records.signals import Signal
from turbomode.store import SignalStore

root = typer.Typer()


@root.callback()
def _main(
    config: str | None = typer.Option(None, "--config"),
    data_dir: str | None = typer.Option(None, "--data-dir"),
) -> None:
    """Stands in for the main app: the options ``settings_from`` reads."""


root.add_typer(wallet_app, name="wallet")
runner = CliRunner()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[date], Settings]:
    """A synthetic clean store (11 symbols, 300 days) and a signals store with one scan."""
    url = f"sqlite:///{tmp_path}/signals.db"
    monkeypatch.setenv("TURBOMODE_STORES__SIGNALS_URL", url)
    monkeypatch.setenv("TURBOMODE_SYNTHETIC__N_SYMBOLS", "11")
    monkeypatch.setenv("TURBOMODE_SYNTHETIC__N_DAYS", "300")
    monkeypatch.delenv("TURBOMODE_STORES__PUSHGATEWAY_URL", raising=False)
    settings = Settings(data={"data_dir": tmp_path / "data"})
    ingest(settings)
    md = load_clean(settings)
    calendar = sorted(pd.to_datetime(md.prices["date"]).dt.date.unique())
    night = calendar[-3]
    closes = md.prices[pd.to_datetime(md.prices["date"]).dt.date == night].set_index("symbol")
    members = md.universe.members.set_index("symbol")
    signals = []
    for sym in ("CS01", "EN01"):
        close = float(closes.loc[sym, "close"])
        signals.append(
            Signal(
                symbol=sym,
                sector=str(members.loc[sym, "sector"]),
                cap_class="large",
                horizon=5,
                side="BUY",
                signal_date=night,
                p_buy=0.7,
                p_hold=0.2,
                p_sell=0.1,
                confidence=0.7,
                close=close,
                atr=0.02 * close,
                entry_low=0.9 * close,
                entry_high=1.1 * close,
                stop=0.97 * close,
                target=1.075 * close,
                stop_distance=0.03 * close,
                model_version="test-v1",
            )
        )
    store = SignalStore(url)
    store.migrate()
    store.write_scan(night, signals, n_symbols=11)
    store.dispose()
    return tmp_path / "data", calendar, settings


def wallet(data: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(root, ["--data-dir", str(data), "wallet", *args])
    return result.exit_code, result.output


def test_wallet_commands(world: tuple[Path, list[date], Settings]) -> None:
    data, calendar, settings = world
    last2, last1, last = calendar[-3], calendar[-2], calendar[-1]

    code, out = wallet(data, "create", "paper", "--rules", "atr", "--cash", "50000")
    assert code == 0 and "created wallet paper (atr rules, cash 50,000.00)" in out
    code, out = wallet(data, "create", "paper", "--rules", "atr")
    assert code == 2 and "exists already" in out
    code, out = wallet(data, "create", "x", "--rules", "momentum")
    assert code == 2 and "--rules must be atr or smart" in out

    code, out = wallet(data, "run", "paper", "--date", str(last1))
    assert code == 0, out
    assert f"{last1}: opened 2" in out and "'CS01', 'EN01'" in out
    code, out = wallet(data, "run", "paper", "--date", str(last1))  # same day again: replaced
    assert code == 0 and f"{last1} (re-run): opened 2" in out
    store = SignalStore(settings.stores.signals_url)
    assert len(store.wallet_fills("paper")) == 2

    code, out = wallet(data, "run", "paper")  # the newest bar: its night has no scan
    assert code == 2 and f"no scan for the night before {last} ({last1})" in out
    code, out = wallet(data, "run", "paper", "--date", str(last2))
    assert code == 2 and "before the wallet's last run" in out
    code, out = wallet(data, "run", "ghost")
    assert code == 2 and "no wallet named 'ghost'" in out
    code, out = wallet(data, "run", "paper", "--date", "2019-13-01")
    assert code == 2 and "YYYY-MM-DD" in out

    code, out = wallet(data, "run", "paper", "--manage-only")
    assert code == 0 and f"{last}: opened 0" in out
    assert store.wallet("paper").last_date == last

    code, out = wallet(data, "report", "paper")
    assert code == 0, out
    assert "Wallet paper (atr rules)" in out and "realized P&L" in out
    rep_equity = store.wallet_equity("paper")["equity"].iloc[-1]
    assert f"{rep_equity:,.2f}" in out
    assert "CS01" in out and str(last1) in out

    # a Smart wallet; and a wallet that missed a day catches up in order
    code, out = wallet(data, "create", "smart", "--rules", "smart")
    assert code == 0
    code, out = wallet(data, "run", "smart", "--date", str(last1))
    assert code == 0 and f"{last1}: opened 2" in out, out
    assert set(store.wallet_positions("smart")["tier"]) == {"Average"}

    code, _ = wallet(data, "create", "late", "--rules", "atr")
    code, out = wallet(data, "run", "late", "--date", str(last2), "--manage-only")
    assert code == 0 and f"{last2}: opened 0" in out
    store.write_scan(last1, [], n_symbols=11)  # the night before the newest bar, no calls
    code, out = wallet(data, "run", "late")
    assert code == 0, out
    assert f"{last1}: opened 2" in out and f"{last}: opened 0" in out
    assert store.wallet_equity("late")["date"].dt.date.tolist() == [last2, last1, last]

    code, out = wallet(data, "list")
    assert code == 0
    for name in ("paper", "smart", "late"):
        assert name in out
    store.dispose()


def test_list_without_wallets_and_report_of_unknown(
    world: tuple[Path, list[date], Settings],
) -> None:
    data, _, _ = world
    code, out = wallet(data, "list")
    assert code == 0 and "no wallets" in out
    code, out = wallet(data, "report", "nope")
    assert code == 2 and "no wallet named 'nope'" in out
