"""Where a report goes: always into the data directory (``reports/<kind>/<date>.txt|.html``,
what was sent stays readable), and with ``send``, by SMTP (plain text and HTML in one
message) and to the webhook (JSON: subject, text, html and the headline figures), each when
:class:`turbomode.config.NotifySettings` configures it.

A channel that fails raises :class:`turbomode.errors.TurboModeError` naming it, after the
others were tried: a report the desk does not receive must fail its job, not pass quietly.
"""

from __future__ import annotations

import os
import smtplib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests

from turbomode.errors import TurboModeError
from turbomode.redaction import redact
from turbomode.workspace import Workspace

if TYPE_CHECKING:
    from turbomode.config import NotifySettings, Settings
    from turbomode.reports.build import Report


@dataclass
class Delivery:
    """Where the report went: the files written, and each channel it was sent through."""

    files: list[Path]
    sent: list[str] = field(default_factory=list)


def deliver(report: Report, settings: Settings, send: bool = False) -> Delivery:
    """Write ``report`` under the data directory; with ``send``, send it through every
    configured channel."""
    folder = Workspace.of(settings).reports_dir / report.kind
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{report.day}" if report.kind != "retrain" else f"{report.day}-run{_run_id(report)}"
    files = [folder / f"{stem}.txt", folder / f"{stem}.html"]
    files[0].write_text(report.text(), encoding="utf-8")
    files[1].write_text(report.html(), encoding="utf-8")
    delivery = Delivery(files)
    if not send:
        return delivery
    notify = settings.notify
    errors = []
    if notify.smtp_host:
        try:
            send_mail(report, notify)
            delivery.sent.append(f"email to {notify.smtp_to}")
        except (OSError, smtplib.SMTPException, TurboModeError) as exc:
            errors.append(f"email via {notify.smtp_host}:{notify.smtp_port}: {exc}")
    if notify.webhook_url:
        try:
            post_webhook(report, notify)
            delivery.sent.append("webhook")
        except (requests.RequestException, TurboModeError) as exc:
            errors.append(f"webhook: {redact(str(exc))}")
    if errors:
        done = f" (sent: {', '.join(delivery.sent)})" if delivery.sent else ""
        raise TurboModeError(f"report not delivered by {'; '.join(errors)}{done}")
    return delivery


def _run_id(report: Report) -> Any:
    return (report.retrain or {}).get("id")


def send_mail(report: Report, notify: NotifySettings) -> None:
    """One multipart message (text, then HTML) through ``notify.smtp_host``."""
    if not notify.smtp_from or not notify.smtp_to:
        raise TurboModeError("notify.smtp_from and notify.smtp_to are needed to send email")
    message = EmailMessage()
    message["Subject"] = report.subject
    message["From"] = notify.smtp_from
    message["To"] = notify.smtp_to
    message.set_content(report.text())
    message.add_alternative(report.html(), subtype="html")
    assert notify.smtp_host is not None
    with smtplib.SMTP(notify.smtp_host, notify.smtp_port, timeout=notify.timeout_s) as smtp:
        if notify.smtp_starttls:
            smtp.starttls()
        if notify.smtp_username:
            password = os.environ.get(notify.smtp_password_env)
            if not password:
                raise TurboModeError(
                    f"notify.smtp_username is set but ${notify.smtp_password_env} is empty"
                )
            smtp.login(notify.smtp_username, password)
        smtp.send_message(message)


def webhook_payload(report: Report) -> dict[str, Any]:
    """What the webhook receives: the rendered report and its headline figures."""
    rate = report.period_hit_rate
    return {
        "kind": report.kind,
        "date": str(report.day),
        "start": str(report.start),
        "subject": report.subject,
        "text": report.text(),
        "html": report.html(),
        "signals": {f"{c} {s}": n for (c, s), n in sorted(report.counts.items())},
        "resolved": len(report.resolved),
        "hit_rate": rate,
        "rolling_hit_rate": {
            str(h): {"n": int(r["n"]), "hit_rate": None if r["n"] == 0 else float(r["hit_rate"])}
            for h, r in report.rolling.iterrows()
        },
        "attention": [c.part for c in report.attention],
    }


def post_webhook(report: Report, notify: NotifySettings) -> None:
    assert notify.webhook_url is not None
    response = requests.post(
        notify.webhook_url, json=webhook_payload(report), timeout=notify.timeout_s
    )
    if response.status_code >= 300:
        raise TurboModeError(f"the webhook answered HTTP {response.status_code}")
