"""Alert routing end to end: a pushed metric → a real Prometheus with the project's rules → a
real Alertmanager with the project's ``monitoring/alertmanager/alertmanager.yml`` → its
receivers (the webhook, Slack and email, each a local server here). The routing and the
inhibition are the file's; the test only points the receivers at its servers, hands them their
credentials as files, and shortens the waits (the rules' ``for`` and the group timers), as
tests/signals/test_drift.py does.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.monitoring import (
    ALERTMANAGER_CONFIG,
    CONFIG,
    Posted,
    alertmanager,
    http_receiver,
    prometheus,
    pushgateway,
    smtp_server,
)
from turbomode.job_metrics import JobMetrics, job_metrics

pytestmark = pytest.mark.integration

FIRING_AT_ONCE = ("TurboModeNightlyScanStale", "TurboModeSignalHitRateLow", "TurboModeJobFailed")
SMTP_USER, SMTP_PASSWORD = "turbomode-alerts@example.com", "smtp-secret-in-a-file"
WEBHOOK_TOKEN = "webhook-token-in-a-file"


def _rules(work: Path) -> Path:
    """The plain rules with the chosen alerts' ``for`` at 0 s, in ``work``."""
    rules = yaml.safe_load((CONFIG.parent / "turbomode-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") in FIRING_AT_ONCE:
                rule["for"] = "0s"
    work.mkdir()
    (work / "turbomode-rules.yml").write_text(yaml.safe_dump(rules))
    return work


def _routing(tmp_path: Path, hooks: str, smtp: str) -> dict[str, Any]:
    """The project's Alertmanager file with its receivers pointed here and 1 s group timers."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "smtp-password").write_text(SMTP_PASSWORD)
    (secrets / "slack-webhook-url").write_text(f"{hooks}/slack")
    (secrets / "webhook-token").write_text(WEBHOOK_TOKEN)
    glob = config["global"]
    assert glob["smtp_auth_username"] == SMTP_USER
    glob["smtp_smarthost"] = smtp
    glob["smtp_require_tls"] = False  # a local server without TLS
    glob["smtp_auth_password_file"] = str(secrets / "smtp-password")
    glob["slack_api_url_file"] = str(secrets / "slack-webhook-url")
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{hooks}/webhook"
            hook["http_config"]["authorization"]["credentials_file"] = str(
                secrets / "webhook-token"
            )
    config["route"].update(group_wait="1s", group_interval="1s")
    return config


def _alerts(posts: list[Posted]) -> list[dict[str, str]]:
    return [a["labels"] for p in posts for a in p.json()["alerts"] if a["status"] == "firing"]


def test_alerts_reach_the_receivers_and_a_stale_scan_inhibits_the_hit_rate(
    tmp_path: Path,
) -> None:
    rules = _rules(tmp_path / "rules")
    with (
        http_receiver() as hooks,
        smtp_server(SMTP_USER, SMTP_PASSWORD) as mail,
        pushgateway(tmp_path) as gw,
        alertmanager(tmp_path, _routing(tmp_path, hooks.url, f"{mail.host}:{mail.port}")) as am,
    ):
        address = gw.url.removeprefix("http://")
        # The last successful scan was four days ago (critical), the rolling 1-day hit rate is
        # low over enough outcomes (a warning the stale scan inhibits), and the last retrain
        # failed (a warning of its own job, not inhibited).
        scan = JobMetrics("scan")
        scan.success.set(1)
        scan.last_success.set(time.time() - 4 * 86400)
        assert scan.push(address)
        with job_metrics("outcomes", address) as m:
            m.gauge("turbomode_signal_hit_rate").labels(horizon="1").set(0.2)
            m.gauge("turbomode_signal_outcomes_window").labels(horizon="1").set(40)
        with pytest.raises(RuntimeError), job_metrics("retrain", address):
            raise RuntimeError("the retrain failed")
        with prometheus(tmp_path, "127.0.0.1:9", address, rules, am.url[7:]) as prom:
            for name in FIRING_AT_ONCE:
                prom.wait_for(f'ALERTS{{alertname="{name}",alertstate="firing"}}')
            suppressed = _wait_suppressed(am.url, "TurboModeSignalHitRateLow")
            assert suppressed["status"]["inhibitedBy"]

            webhook = [p for p in hooks.wait(2) if p.path == "/webhook"]
            deadline = time.monotonic() + 30
            while {a["alertname"] for a in _alerts(webhook)} != {
                "TurboModeNightlyScanStale",
                "TurboModeJobFailed",
            }:
                assert time.monotonic() < deadline, _alerts(webhook)
                time.sleep(0.5)
                webhook = [p for p in hooks.posted if p.path == "/webhook"]
            time.sleep(3)  # three more group intervals: the inhibited alert stays away
            webhook = [p for p in hooks.posted if p.path == "/webhook"]
            alerts = _alerts(webhook)
            assert "TurboModeSignalHitRateLow" not in {a["alertname"] for a in alerts}
            assert all(p.headers["Authorization"] == f"Bearer {WEBHOOK_TOKEN}" for p in webhook)
            stale_alert = next(a for a in alerts if a["alertname"] == "TurboModeNightlyScanStale")
            assert (stale_alert["job"], stale_alert["severity"]) == ("turbomode_scan", "critical")
            failed = next(a for a in alerts if a["alertname"] == "TurboModeJobFailed")
            assert (failed["job"], failed["severity"]) == ("turbomode_retrain", "warning")
            receivers = {p.json()["receiver"]: p.json()["commonLabels"] for p in webhook}
            assert receivers["turbomode-critical"]["alertname"] == "TurboModeNightlyScanStale"
            assert receivers["turbomode-warning"]["alertname"] == "TurboModeJobFailed"

            # Slack gets both; only the critical one is mailed, with the password from its file.
            slack = [p.json() for p in hooks.wait(4) if p.path == "/slack"]
            titles = {a["title"] for s in slack for a in s["attachments"]}
            assert titles >= {
                "FIRING: TurboModeNightlyScanStale",
                "FIRING: TurboModeJobFailed",
            }, titles
            (message,) = mail.wait(1)
            assert "TurboModeNightlyScanStale" in message["Subject"]
            assert message["To"] == "trading-desk@example.com"
            assert mail.logins == [(SMTP_USER, SMTP_PASSWORD)]


def _wait_suppressed(url: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """The alert ``name`` once the Alertmanager holds it as suppressed."""
    deadline = time.monotonic() + timeout
    while True:
        alerts = requests.get(f"{url}/api/v2/alerts", timeout=10).json()
        for alert in alerts:
            if alert["labels"]["alertname"] == name and alert["status"]["state"] == "suppressed":
                return dict(alert)
        assert time.monotonic() < deadline, f"{name} not suppressed: {alerts}"
        time.sleep(0.5)
