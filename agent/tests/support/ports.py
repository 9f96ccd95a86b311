"""Loopback TCP port helpers."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
# Ports are picked below the kernel's ephemeral range: a port picked there could be handed to
# any outgoing connection (an S3 or simulator client) before the server meant for it binds it.
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PICK_FLOOR = 10_000
_draw = random.Random()  # its own generator: a test seeding `random` does not repeat picks


def free_loopback_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports that were free on 127.0.0.1 a moment ago.

    They lie below the ephemeral range, so no outgoing connection is given one meanwhile; all
    sockets are held open together so the ports are distinct. Another test server could still
    pick the same port before the caller binds it (rare: the draw is random over ~20,000).
    """
    ceiling = _ephemeral_floor()
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            port = _draw.randrange(PICK_FLOOR, ceiling)
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            ports.append(port)
        return ports


def _ephemeral_floor() -> int:
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    return max(low, PICK_FLOOR + 1000)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on host:port and we may bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers do: connections of a stopped server lingering in TIME_WAIT don't count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_listen(port: int, host: str = LOOPBACK, timeout_s: float = 30.0) -> bool:
    """Poll until a TCP connect to host:port succeeds; False after timeout_s seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return True
        time.sleep(0.1)
    return False
