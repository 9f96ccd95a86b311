"""The test hosts: podman containers `sc2s3-th1..N`, each running one Debian release, with
supervisord as PID 1 and sshd on 127.0.0.1:220N (they share the controller's network)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from support.ports import port_is_free

from .image import ensure_images
from .loopback import LOOPBACK, check_loopback_only
from .paths import SSH_KEY
from .podman import podman
from .shell import log, run

CONTAINER_PREFIX = "sc2s3-th"
SSH_BASE_PORT = 2200  # host N listens on 127.0.0.1:2200+N
RELEASE_LABEL = "sc2s3-sandbox.debian-release"


def ensure_ssh_key() -> Path:
    """The sandbox keypair (`.sandbox/ssh/id_ed25519`), made once; returns the private key."""
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "sc2s3-sandbox", "-f", str(SSH_KEY)])
    return SSH_KEY


def container_name(index: int) -> str:
    return f"{CONTAINER_PREFIX}{index}"


def ssh_port(index: int) -> int:
    return SSH_BASE_PORT + index


def host_record(index: int, release: int) -> dict[str, Any]:
    """What state.json keeps per host; `inventory_host` is its name in inventory/sandbox/hosts.yml."""
    name = container_name(index)
    return {
        "name": name,
        "hostname": name,
        "inventory_host": f"th{index}",
        "ssh_port": ssh_port(index),
        "debian_release": release,
    }


def existing_containers() -> list[str]:
    """Names of sandbox test-host containers that exist (running or not)."""
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in names if re.fullmatch(rf"{CONTAINER_PREFIX}\d+", n))


def container_running(name: str) -> bool:
    state = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.returncode == 0 and state.stdout.strip() == "true"


def container_alive(name: str) -> bool:
    """Running and able to exec: after a reboot or a killed session podman's stored state can
    still say "running" for a container whose processes are gone."""
    return container_running(name) and podman("exec", name, "true", check=False).returncode == 0


def container_release(name: str) -> int:
    """The Debian release a container was started with (containers from before the label: 12)."""
    label = podman(
        "inspect", "--format", f'{{{{index .Config.Labels "{RELEASE_LABEL}"}}}}', name, check=False
    ).stdout.strip()
    return int(label) if label.isdigit() else 12


def hosts_up(releases: list[int]) -> list[dict[str, Any]]:
    """Start sc2s3-th1..N, host i on Debian `releases[i-1]`, and wait until each answers SSH.

    A running host of the right release is reused; one of another release is replaced.
    """
    tags = ensure_images(releases)
    public_key = ensure_ssh_key().with_suffix(".pub")
    started = time.monotonic()
    count = len(releases)
    extra = [n for n in existing_containers() if int(n.removeprefix(CONTAINER_PREFIX)) > count]
    hosts_down(extra)  # left from a larger sandbox; `down` would not know about them
    hosts = []
    for index, release in enumerate(releases, start=1):
        name, port = container_name(index), ssh_port(index)
        if not (container_alive(name) and container_release(name) == release):
            remove_stale_container(name)
            if not port_is_free(port):
                raise SystemExit(f"sandbox: port {port} for {name} is taken by another process")
            run_container(tags[release], name, port, public_key, release)
        hosts.append(host_record(index, release))
    for host in hosts:
        wait_for_ssh(host["name"], host["ssh_port"])
    check_loopback_only([container_pid(h["name"]) for h in hosts])
    log(f"{count} test hosts answer SSH after {time.monotonic() - started:.1f} s")
    return hosts


def remove_stale_container(name: str) -> None:
    """`podman rm -f`, twice if need be: with its processes gone, the first attempt times out
    waiting for an exit file but marks the container exited, so the second one removes it."""
    for _ in range(2):
        if podman("rm", "-f", "-t", "2", name, check=False).returncode == 0:
            return
        if podman("container", "exists", name, check=False).returncode != 0:
            return


def run_container(tag: str, name: str, port: int, public_key: Path, release: int) -> None:
    """One test host in the controller's network namespace (to reach its loopback servers)."""
    podman(
        "run",
        "-d",
        "--runtime",
        "runc",
        "--name",
        name,
        "--hostname",
        name,
        # The host network keeps the controller's /etc/hosts; sudo wants its own name there.
        "--add-host",
        f"{name}:{LOOPBACK}",
        "--network",
        "host",
        "--label",
        "sc2s3-sandbox=testhost",
        "--label",
        f"{RELEASE_LABEL}={release}",
        "-e",
        f"SSH_PORT={port}",
        "-v",
        f"{public_key}:/root/.ssh/authorized_keys:ro",
        tag,
    )


def container_pid(name: str) -> int:
    """The host PID of the container's PID 1 (supervisord)."""
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())


def ssh_command(port: int, *remote: str) -> list[str]:
    """`ssh root@127.0.0.1 -p PORT REMOTE...` with the sandbox key, non-interactive."""
    return [
        "ssh",
        "-i",
        str(SSH_KEY),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "-p",
        str(port),
        f"root@{LOOPBACK}",
        *remote,
    ]


def wait_for_ssh(name: str, port: int, timeout_s: float = 60.0) -> None:
    """Poll until `ssh root@127.0.0.1 -p PORT true` succeeds; on timeout, exit with what the
    container, its supervisor and sshd said (the only clues when this fails on a CI machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        probe = subprocess.run(ssh_command(port, "true"), capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)  # poll interval: sshd gives no readiness signal to wait on
    state = podman(
        "ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}", check=False
    ).stdout.strip()
    logs = podman("logs", "--tail", "15", name, check=False)
    sshd = podman("exec", name, "tail", "-n", "15", "/var/log/supervisor/sshd.log", check=False)
    raise SystemExit(
        f"sandbox: no SSH answer on {LOOPBACK}:{port} after {timeout_s:.0f} s\n"
        f"ssh: {probe.stderr.strip()}\ncontainer: {state}\n"
        f"container log:\n{logs.stdout}{logs.stderr}\nsshd log:\n{sshd.stdout}{sshd.stderr}"
    )


def hosts_down(names: list[str] | None = None) -> None:
    """Remove the named test-host containers (default: every sc2s3-thN that exists)."""
    names = existing_containers() if names is None else names
    if not names:
        return
    if podman("rm", "-f", "-t", "5", *names, check=False).returncode != 0:
        for name in names:  # one whose processes died under podman needs a second try
            remove_stale_container(name)
    log(f"removed {' '.join(names)}")
