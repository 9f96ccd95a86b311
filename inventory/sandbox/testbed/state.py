"""`.sandbox/state.json` (PIDs, ports, hosts, credentials) and the lock that serializes the
commands which change the sandbox (a test run and a person may overlap)."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

from filelock import FileLock, Timeout

from .paths import LOCK_PATH, SANDBOX, STATE_PATH
from .shell import log


@contextlib.contextmanager
def sandbox_lock(timeout_s: float = 900.0) -> Iterator[None]:
    """Hold `.sandbox/.lock` (an flock) for the block; give up after timeout_s seconds."""
    SANDBOX.mkdir(exist_ok=True)
    lock = FileLock(LOCK_PATH)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log("waiting for another sandbox.py command to finish")
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise SystemExit("sandbox: another sandbox.py holds .sandbox/.lock") from None
    try:
        yield
    finally:
        lock.release()


def load_state() -> dict[str, Any]:
    if STATE_PATH.exists():
        return json.loads(STATE_PATH.read_text())
    return {}


def save_state(state: dict[str, Any]) -> None:
    """Write state.json readable by root only (it holds the sandbox credentials)."""
    SANDBOX.mkdir(exist_ok=True)
    STATE_PATH.write_text(json.dumps(state, indent=2) + "\n")
    STATE_PATH.chmod(0o600)


def credentials(state: dict[str, Any]) -> dict[str, str]:
    """Sandbox-only secrets, made once and kept in state.json across up/down."""
    if "credentials" not in state:
        state["credentials"] = {
            "s3_access_key_id": "sandbox-" + secrets.token_hex(6),
            "s3_secret_access_key": secrets.token_urlsafe(24),
            "soundcloud_client_id": "sandbox-client-" + secrets.token_hex(4),
            "soundcloud_client_secret": secrets.token_urlsafe(24),
            "moto_access_key_id": "testing",
            "moto_secret_access_key": "testing",
        }
    return state["credentials"]
