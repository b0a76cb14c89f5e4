"""``turbomode report`` on a signals store filled by hand: two scans of the hand-made prices of
tests/outcomes/test_track.py, their outcomes tracked by the real tracker, a paper wallet's marks
and a retrain run written through the store's own API. The reports' figures are checked
against the store (signal counts, resolved outcomes, hit rates, P&L), then the report is sent
to a real SMTP server (aiosmtpd) and a local webhook, and the CLI writes it under the data
directory when nothing is configured.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.monitoring import http_receiver, smtp_server
from tests.outcomes.test_track import DAYS, SECTORS, prices, signal
from turbomode.config import Settings
from turbomode.errors import TurboModeError
from turbomode.outcomes.track import track_outcomes
from turbomode.reports import build_report, deliver
from turbomode.reports.deliver import webhook_payload
from turbomode.store import SignalStore
from turbomode.workspace import with_data_dir

FIRST, SECOND = DAYS[20].date(), DAYS[24].date()
SETTINGS = {"outcomes": {"rule": "legacy", "legacy_hold_days": 3}}
# A hand-written wallet: its marks at the close of the two scan days.
MARKS = {FIRST: 100_500.0, SECOND: 101_200.0}
SMTP_USER, SMTP_PASSWORD = "reports@example.com", "from-the-environment"


def _mark(equity: float) -> dict[str, object]:
    return {
        "cash": equity,
        "long_value": 0.0,
        "short_value": 0.0,
        "market_value": 0.0,
        "equity": equity,
        "n_open": 2,
        "n_opened": 0,
        "n_closed": 0,
        "commission": 0.0,
        "summary": {},
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Scan 1 (day 20): AAA BUY and BBB SELL (large), CCC BUY (mid); tracked on day 23, AAA
    and BBB resolve (legacy rule: BBB right, AAA wrong), CCC waits for prices. Scan 2 (day 24):
    DDD BUY (mid), AAA SELL and BBB SELL (large), CCC carried."""
    settings = with_data_dir(Settings(**SETTINGS), tmp_path / "data")
    settings.data.data_dir.mkdir(parents=True)
    store = SignalStore(settings.stores.signals_url)
    store.migrate()
    ccc = dataclasses.replace(signal("CCC", "BUY", 20, 40.0, 60.0), cap_class="mid")
    store.write_scan(
        FIRST,
        [
            signal("AAA", "BUY", 20, stop=119.0, target=123.5),
            signal("BBB", "SELL", 20, stop=164.0, target=150.0),
            ccc,
        ],
    )
    track_outcomes(settings, store, prices(), SECTORS, as_of=DAYS[23].date())
    ddd = dataclasses.replace(signal("DDD", "BUY", 24, 70.0, 90.0), cap_class="mid")
    store.write_scan(
        SECOND,
        [
            dataclasses.replace(signal("AAA", "SELL", 24, 130.0, 110.0), confidence=0.9),
            signal("BBB", "SELL", 24, 160.0, 140.0),
            ccc,
            ddd,
        ],
    )
    store.create_wallet("paper", "atr", 100_000.0)
    for day, equity in MARKS.items():
        version = store.wallet_book("paper", day).wallet.version
        store.write_wallet_day(
            "paper", day, version=version, positions=[], fills=[], equity=_mark(equity)
        )
    run = store.start_retrain({}, 120, 0)
    store.finish_retrain(
        run,
        "kept",
        {
            "promoted": [],
            "refused": ["Energy/1d"],
            "decisions": {"Energy/1d": {"decision": "keep", "rule": "did not beat production"}},
        },
    )
    store.dispose()
    return settings


def test_the_daily_report_has_the_stores_figures(settings: Settings) -> None:
    report = build_report(settings, "daily", SECOND)
    store = SignalStore(settings.stores.signals_url)
    history = store.signal_history()
    outcomes = store.outcomes()
    store.dispose()
    tonight = history[history["scan_date"] == pd.Timestamp(SECOND)]
    assert report.counts == tonight.groupby(["cap_class", "side"]).size().to_dict()
    assert report.counts == {("large", "SELL"): 2, ("mid", "BUY"): 2}
    assert list(report.signals["symbol"]) == ["AAA", "BBB", "CCC", "DDD"]  # by confidence

    # The exits since the last scan: AAA (wrong) and BBB (right) on day 23.
    assert report.start == DAYS[21].date()
    done = outcomes[outcomes["status"] == "resolved"]
    assert sorted(report.resolved["symbol"]) == sorted(done["symbol"]) == ["AAA", "BBB"]
    assert report.period_hit_rate == done["correct"].astype(float).mean() == 0.5
    assert report.rolling.loc[1, "n"] == 2 and report.rolling.loc[1, "hit_rate"] == 0.5

    (wallet,) = report.wallets
    assert (wallet.as_of, wallet.equity) == (SECOND, MARKS[SECOND])
    assert wallet.period_pnl == pytest.approx(MARKS[SECOND] - MARKS[FIRST])
    assert wallet.total_pnl == pytest.approx(MARKS[SECOND] - 100_000.0)
    assert report.retrain is not None and report.retrain["refused"] == ["Energy/1d"]
    # No market data or model in this data directory: status's checks say so.
    assert {c.part for c in report.attention} >= {"clean store", "models"}

    text = report.text()
    assert "Outcomes resolved 2024-01-30 to 2024-02-02: 2, hit rate 50.0%" in text
    assert re.search(r"large\s+SELL\s+2\n", text) and re.search(r"mid\s+BUY\s+2\n", text)
    assert "+700.00" in text and "+1,200.00" in text
    assert "<td>DDD</td>" in report.html()


def test_the_weekly_report_counts_the_weeks_fresh_calls(settings: Settings) -> None:
    report = build_report(settings, "weekly", SECOND)
    assert report.start == date(2024, 1, 27)
    # Fresh calls: 3 on day 20; on day 24 AAA flips to SELL, BBB and DDD are new (CCC carried).
    assert report.counts == {("large", "BUY"): 1, ("large", "SELL"): 3, ("mid", "BUY"): 2}
    (wallet,) = report.wallets
    assert wallet.period_pnl == pytest.approx(MARKS[SECOND] - 100_000.0)


def test_the_drift_section_lists_the_scans_most_drifted_models(settings: Settings) -> None:
    """A scan's drift summary (what run_scan stores): the report shows the five models with
    the most unusual features over 20 days, most first, with their score PSI."""
    drift = [
        {"key": f"{sector}/1d", "version": "v1", "unusual_20d": n, "score_psi_20d": psi}
        for sector, n, psi in [
            ("Energy", 3, 0.05),
            ("Materials", 11, 0.31),
            ("Financials", 0, 0.01),
            ("Utilities", 7, 0.12),
            ("Industrials", 5, 0.08),
            ("Real Estate", 9, 0.27),
        ]
    ]
    third = DAYS[25].date()
    store = SignalStore(settings.stores.signals_url)
    store.write_scan(third, [signal("AAA", "BUY", 25, 100.0, 140.0)], summary={"drift": drift})
    store.dispose()

    report = build_report(settings, "daily", third)
    assert [d["key"] for d in report.drift] == [
        "Materials/1d",
        "Real Estate/1d",
        "Utilities/1d",
        "Industrials/1d",
        "Energy/1d",
    ]
    sections = {title: rows for title, _columns, rows in report.sections()}
    assert sections["Drift (20 trading days)"][:2] == [
        ["Materials/1d", "11", "0.310"],
        ["Real Estate/1d", "9", "0.270"],
    ]
    assert "Financials/1d" not in report.text()
    assert "<td>Materials/1d</td><td>11</td><td>0.310</td>" in report.html()
    # A scan without drift figures (the fixture's) has no drift section at all.
    titles = [title for title, _c, _r in build_report(settings, "daily", SECOND).sections()]
    assert "Drift (20 trading days)" not in titles


def test_sent_by_email_with_the_password_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", SMTP_PASSWORD)
    report = build_report(settings, "daily", SECOND)
    with smtp_server(SMTP_USER, SMTP_PASSWORD) as mail:
        settings.notify = settings.notify.model_copy(
            update={
                "smtp_host": mail.host,
                "smtp_port": mail.port,
                "smtp_starttls": False,  # a local server without TLS
                "smtp_username": SMTP_USER,
                "smtp_from": SMTP_USER,
                "smtp_to": "desk@example.com, risk@example.com",
            }
        )
        delivery = deliver(report, settings, send=True)
        (message,) = mail.wait(1)
        monkeypatch.delenv("SMTP_PASSWORD")
        with pytest.raises(TurboModeError, match=r"\$SMTP_PASSWORD is empty"):
            deliver(report, settings, send=True)
    assert delivery.sent == ["email to desk@example.com, risk@example.com"]
    assert mail.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert message["Subject"] == report.subject
    assert message["Subject"].startswith("TurboMode daily report, 2024-02-02: 4 signals")
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if not p.is_multipart()
    }
    assert "hit rate 50.0%" in parts["text/plain"]
    assert "<td>+700.00</td>" in parts["text/html"]


def test_sent_to_the_webhook(settings: Settings) -> None:
    report = build_report(settings, "daily", SECOND)
    with http_receiver() as hook:
        settings.notify.webhook_url = f"{hook.url}/reports"
        delivery = deliver(report, settings, send=True)
        (post,) = hook.wait(1)
    assert delivery.sent == ["webhook"] and post.path == "/reports"
    body = post.json()
    assert body == json.loads(json.dumps(webhook_payload(report)))
    assert body["signals"] == {"large SELL": 2, "mid BUY": 2}
    assert (body["resolved"], body["hit_rate"]) == (2, 0.5)
    assert body["rolling_hit_rate"]["1"] == {"n": 2, "hit_rate": 0.5}

    settings.notify.webhook_url = f"{hook.url}/gone"  # the server has stopped
    with pytest.raises(TurboModeError, match="report not delivered by webhook"):
        deliver(report, settings, send=True)


def test_the_cli_writes_under_the_data_dir_and_refuses_bad_input(
    settings: Settings, tmp_path: Path
) -> None:
    from turbomode.cli.main import app

    config = tmp_path / "turbomode.yaml"
    config.write_text(yaml.safe_dump(SETTINGS))
    base = ["--config", str(config), "--data-dir", str(settings.data.data_dir), "report"]
    runner = CliRunner()
    out = runner.invoke(app, [*base, "daily", "--send"])
    assert out.exit_code == 0, out.output
    assert "hit rate 50.0%" in out.stdout
    assert "sent: nowhere" in out.stderr
    written = settings.data.data_dir / "reports" / "daily" / f"{SECOND}.txt"
    assert written.read_text() == out.stdout
    retrain = runner.invoke(app, [*base, "retrain"])
    assert retrain.exit_code == 0, retrain.output
    assert "kept" in retrain.stdout and "did not beat production" in retrain.stdout
    for args, message in (
        (["daily", "--date", "2024-01-31"], "no scan on 2024-01-31; the newest is 2024-02-02"),
        (["monthly"], "unknown report 'monthly': one of daily, weekly, retrain"),
        (["daily", "--date", "tomorrow"], "--date must be a date YYYY-MM-DD"),
    ):
        bad = runner.invoke(app, [*base, *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
        assert "Traceback" not in bad.output
