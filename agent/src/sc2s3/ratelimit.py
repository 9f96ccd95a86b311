"""sc2s3.ratelimit
~~~~~~~~~~~~~~~~~~

SoundCloud's play budget and its 429 answers (contract: docs/soundcloud.md,
"Rate limits": 15,000 plays per 24 h per app, where a play is a ``/tracks/{urn}/download`` or
``/tracks/{urn}/streams`` request; 429 bodies come in two shapes, ``{"errors": [{"meta":
{"reset_time": "yyyy/MM/dd HH:mm:ss Z"}}]}`` and ``{"code": 429, "spam_warning_urn": ...}``, with or
without a ``Retry-After`` header).

The budget itself is the fleet's ledger in the bucket (:mod:`sc2s3.plays`).
"""

from __future__ import annotations

import contextlib
import time
from datetime import datetime
from email.utils import parsedate_to_datetime

import requests

from .errors import UpstreamUnavailable

RESET_TIME_FORMAT = "%Y/%m/%d %H:%M:%S %z"
DEFAULT_WAIT_S = 60.0  # a 429 that names no time: wait this long before the next play


class RateLimited(UpstreamUnavailable):
    """SoundCloud said 429, or the fleet's play budget is spent; ``until`` is epoch seconds."""

    def __init__(self, message: str, until: float):
        super().__init__(message)
        self.until = until


def retry_at(response: requests.Response, now: float | None = None) -> float:
    """Epoch seconds after which a 429 may be retried: the later of the body's ``reset_time`` and
    the ``Retry-After`` header (seconds or an HTTP date); ``now + DEFAULT_WAIT_S`` if neither."""
    now = time.time() if now is None else now
    candidates = []
    try:
        body = response.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors if isinstance(errors, list) else []:
        reset = (error.get("meta") or {}).get("reset_time") if isinstance(error, dict) else None
        try:
            candidates.append(datetime.strptime(str(reset), RESET_TIME_FORMAT).timestamp())
        except ValueError:
            continue
    header = response.headers.get("Retry-After", "").strip()
    if header.isascii() and header.isdigit():
        candidates.append(now + int(header))
    elif header:
        with contextlib.suppress(TypeError, ValueError):
            candidates.append(parsedate_to_datetime(header).timestamp())
    return max(candidates) if candidates else now + DEFAULT_WAIT_S
