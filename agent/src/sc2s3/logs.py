"""sc2s3.logs
~~~~~~~~~~~~~

Structured logging: one JSON object per line on stdout (supervisor captures it).

Secrets never reach the output: a processor scrubs OAuth tokens, client secrets and CDN URL
signatures from every event before it is rendered.
"""

from __future__ import annotations

import logging
import re
import sys

import structlog

_SECRET_PATTERNS = [
    (re.compile(r"(?i)(Signature|Policy|Key-Pair-Id|X-Amz-Signature|X-Amz-Credential)=[^&\s\"']+"),
     r"\1=REDACTED"),
    (re.compile(r"(?i)(OAuth|Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 REDACTED"),
    (re.compile(r"(?i)(access_token|refresh_token|client_secret)([\"']?\s*[:=]\s*[\"']?)[^&\s\"',}]+"),
     r"\1\2REDACTED"),
]
_SECRET_KEYS = {"access_token", "refresh_token", "client_secret", "authorization", "token"}


def redact(text: str) -> str:
    """``text`` with tokens, secrets and URL signatures replaced by ``REDACTED``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def scrub(value):
    """``value`` with secrets redacted at any depth: strings by :func:`redact`, values under a
    secret-named key (``token``, ``authorization``…) replaced, dicts, lists and tuples walked,
    anything else (numbers, None) as it is."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: "REDACTED" if str(key).lower() in _SECRET_KEYS else scrub(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


def _redact_event(_logger, _name, event_dict: dict) -> dict:
    return scrub(event_dict)


def configure_logging(level: int = logging.INFO) -> None:
    """Send structlog and stdlib logging (botocore, urllib3 at WARNING) to stdout as JSON lines."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_event,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("sc2s3").setLevel(level)


log = structlog.get_logger("sc2s3")
