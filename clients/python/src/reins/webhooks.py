"""Checking a Reins webhook on the receiving side.

Reins signs each webhook as Standard Webhooks do: `webhook-signature` holds `v1,` and the base64
HMAC-SHA256 of `"{webhook-id}.{webhook-timestamp}.{body}"` under the hook's secret (`whsec_` and
base64, or raw text). Check the signature over the exact bytes received, before parsing them, and
refuse old timestamps, which is what stops a captured request from being replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping


def signing_key(secret: str) -> bytes:
    """The key a hook's secret file holds."""
    secret = secret.strip()
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """Whether `body` with these headers is a webhook Reins signed with `secret`, sent within
    `tolerance` seconds of `now`."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
        signatures = lower["webhook-signature"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    expected = "v1," + base64.b64encode(mac.digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in signatures.split())
