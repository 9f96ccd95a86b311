"""Run commands on the sandbox test hosts over real SSH (as the deploy does)."""

from __future__ import annotations

import subprocess

from sys_paths import SSH_KEY, TEST_HOSTS


def ssh(host: str, command: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `command` as root on test host `host` (th1..th3); returns the finished process."""
    port, _ = TEST_HOSTS[host]
    return subprocess.run(
        [
            "ssh",
            "-i", str(SSH_KEY),
            "-p", str(port),
            "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10",
            "root@127.0.0.1",
            command,
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def ssh_ok(host: str, command: str, timeout_s: float = 30) -> str:
    """Like ssh() but asserts exit 0 and returns stdout, stripped."""
    proc = ssh(host, command, timeout_s)
    assert proc.returncode == 0, f"{host}: {command!r} -> {proc.returncode}: {proc.stderr}"
    return proc.stdout.strip()
