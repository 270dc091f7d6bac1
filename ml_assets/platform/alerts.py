"""Alerts: a JSON POST to ML_ALERT_WEBHOOK_URL when it is set (the failed run is the other
channel, so a webhook that is down is logged, never raised)."""

from __future__ import annotations

import logging
import os
from typing import Any

import httpx

WEBHOOK_ENV = "ML_ALERT_WEBHOOK_URL"


def send_alert(payload: dict[str, Any], log: Any = None, timeout_s: float = 10.0) -> bool:
    """POST `payload`; True when a webhook is configured and accepted it."""
    url = os.environ.get(WEBHOOK_ENV)
    if not url:
        return False
    try:
        httpx.post(url, json=payload, timeout=timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        (log or logging.getLogger(__name__)).warning(f"alert webhook {url} failed: {exc}")
        return False
    return True
