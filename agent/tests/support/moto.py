"""A private moto_server (AWS control-plane mock) on a free loopback port, stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .ports import LOOPBACK, free_loopback_ports, wait_for_listen

START_TIMEOUT_S = 30
MOTO_SERVER = Path(sys.executable).with_name("moto_server")


@contextmanager
def moto_server_url(env: dict[str, str] | None = None) -> Iterator[str]:
    """Start moto_server (with ``env`` added to the environment); yield its URL; stop it."""
    (port,) = free_loopback_ports(1)
    process = subprocess.Popen([str(MOTO_SERVER), "-H", LOOPBACK, "-p", str(port)],
                               env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_for_listen(port, timeout_s=START_TIMEOUT_S):
            raise RuntimeError("moto_server did not start")
        yield f"http://{LOOPBACK}:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
