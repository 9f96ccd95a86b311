"""Bring the sandbox (test hosts, SeaweedFS, SoundCloud simulator, moto) up and down.

The sandbox is owned by inventory/sandbox/sandbox.py; this module only drives its CLI with
bounded timeouts and decides whether the test session owns it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess

import yaml
from sys_paths import PYTHON, REPO, SANDBOX_SCRIPT, SANDBOX_VARS, TEST_HOSTS

# Includes building the host images on a cold cache: one per Debian release, 60-120 s each
# measured (Debian 12 and 13 together: 206 s for `up --hosts 2 --debian 12,13`).
UP_TIMEOUT_S = 600
DOWN_TIMEOUT_S = 180  # SeaweedFS alone takes ~30 s to stop on SIGTERM


def sandbox_cli(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run `sandbox.py ARGS...`; asserts exit 0 and returns the finished process."""
    proc = subprocess.run(
        [PYTHON, str(SANDBOX_SCRIPT), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert proc.returncode == 0, (
        f"sandbox.py {' '.join(args)} -> {proc.returncode}\n{proc.stdout[-2000:]}\n"
        f"{proc.stderr[-4000:]}"
    )
    return proc


def _accepts_tcp(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def sandbox_is_up() -> bool:
    """True when a sandbox already runs: its vars file exists and every test host's SSH answers."""
    return SANDBOX_VARS.exists() and all(_accepts_tcp(port) for port, _ in TEST_HOSTS.values())


def read_sandbox_vars() -> dict:
    """The variables sandbox.py wrote for the playbooks (endpoints, credentials, bucket)."""
    return yaml.safe_load(SANDBOX_VARS.read_text(encoding="utf-8"))


def sandbox_debian_releases() -> dict[str, int]:
    """Inventory host -> Debian release (12, 13) of the running sandbox's test hosts."""
    return read_sandbox_vars().get("sandbox_debian_releases", {})
