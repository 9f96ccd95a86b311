"""`sandbox.py status`: one line per server and per test host, from state.json."""

from __future__ import annotations

from typing import Any

from .hosts import container_running
from .loopback import LOOPBACK
from .paths import REPO, VARS_PATH
from .podman import available as podman_available
from .processes import pid_alive
from .releases import describe
from .services import has_ports, service_specs


def print_status(state: dict[str, Any]) -> None:
    specs = service_specs(state) if has_ports(state) else {}
    for name, spec in specs.items():
        pid = state.get("pids", {}).get(name)
        alive = "running" if pid_alive(pid, spec["marker"]) else "stopped"
        print(f"{name:<12} {alive:<8} pid={pid} http://{LOOPBACK}:{spec['port']}")
    for host in state.get("hosts", []):
        alive = "running" if podman_available() and container_running(host["name"]) else "stopped"
        release = describe(host.get("debian_release", 12))  # state from before releases: 12
        print(f"{host['name']:<12} {alive:<8} ssh root@{LOOPBACK} -p {host['ssh_port']}  debian {release}")
    if VARS_PATH.exists():
        print(f"ansible vars: -e @{VARS_PATH.relative_to(REPO)}")
