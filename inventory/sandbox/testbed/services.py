"""The sandbox's servers, all on 127.0.0.1: SeaweedFS (S3), the SoundCloud simulator and
moto (the AWS control plane), with the ports they use and how to tell they are ready."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from support.ports import free_loopback_ports, port_is_free, wait_for_listen

from .loopback import LOOPBACK
from .paths import AGENT_TESTS, LOG_DIR, SEAWEEDFS_DATA
from .processes import pid_alive, start_detached
from .shell import log
from .state import credentials, save_state

BUCKET = "sc2s3-demo"
REGION = "us-east-1"
# Preferred ports (kept in state.json once chosen; a taken one is replaced by a free one).
# Not 8765: that is the redirect port of the owners' authorization (sc2s3 authorize listens there).
PREFERRED_PORTS = {"seaweedfs": 8333, "soundcloud": 8766, "moto": 5000}
# A marker in each server's command line: a PID from state.json counts only if it matches.
MARKERS = {"seaweedfs": "support.seaweedfs", "soundcloud": "soundcloud_sim", "moto": "moto_server"}


def choose_ports(state: dict[str, Any]) -> dict[str, int]:
    """Per server: a running one keeps its port; otherwise the preferred port, else last
    run's, else a free one. Kept in state.json."""
    previous = state.get("ports") or {}
    pids = state.get("pids") or {}
    chosen = {}
    for name, preferred in PREFERRED_PORTS.items():
        if name in previous and pid_alive(pids.get(name), MARKERS[name]):
            chosen[name] = previous[name]
            continue
        candidates = [preferred, previous.get(name)]
        free = [port for port in candidates if port and port_is_free(port)]
        chosen[name] = free[0] if free else free_loopback_ports(1)[0]
    state["ports"] = chosen
    return chosen


def has_ports(state: dict[str, Any]) -> bool:
    """True once `up` chose the servers' ports (before that there is nothing to show)."""
    return PREFERRED_PORTS.keys() <= state.get("ports", {}).keys()


def service_specs(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> argv, env, port and the command-line marker that identifies its PID."""
    ports, creds = state["ports"], credentials(state)
    python = sys.executable
    on_tests_path = {"PYTHONPATH": str(AGENT_TESTS)}
    return {
        "seaweedfs": {
            "marker": MARKERS["seaweedfs"],
            "port": ports["seaweedfs"],
            "env": on_tests_path,
            "argv": [
                python, "-m", "support.seaweedfs",
                "--data", str(SEAWEEDFS_DATA),
                "--port", str(ports["seaweedfs"]),
                # --opt=value: a random secret may start with "-", which argparse would
                # otherwise take for an option.
                f"--access-key={creds['s3_access_key_id']}",
                f"--secret-key={creds['s3_secret_access_key']}",
                "--bucket", BUCKET,
            ],
        },
        "soundcloud": {
            "marker": MARKERS["soundcloud"],
            "port": ports["soundcloud"],
            "env": on_tests_path,
            "argv": [
                python, "-m", "soundcloud_sim", "--demo",
                "--host", LOOPBACK,
                "--port", str(ports["soundcloud"]),
                f"--client-id={creds['soundcloud_client_id']}",
                f"--client-secret={creds['soundcloud_client_secret']}",
            ],
        },
        "moto": {
            "marker": MARKERS["moto"],
            "port": ports["moto"],
            "env": {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
            "argv": [
                str(Path(python).parent / "moto_server"), "-H", LOOPBACK, "-p", str(ports["moto"]),
            ],
        },
    }  # fmt: skip


def start_services(state: dict[str, Any]) -> None:
    """Start the servers not already running, then wait until each is ready."""
    pids = state.setdefault("pids", {})
    specs = service_specs(state)
    for name, spec in specs.items():
        if not pid_alive(pids.get(name), spec["marker"]):
            pids[name] = start_detached(name, spec["argv"], spec["env"])
            log(f"started {name} (pid {pids[name]}, port {spec['port']})")
    save_state(state)  # PIDs first, so `down` can clean up a half-started sandbox
    wait_for_seaweedfs(pids["seaweedfs"])
    for name in ("soundcloud", "moto"):
        port = specs[name]["port"]
        if not wait_for_listen(port, timeout_s=60):
            alive = "running" if pid_alive(pids[name], specs[name]["marker"]) else "exited"
            raise SystemExit(
                f"sandbox: {name} (pid {pids[name]}, {alive}) not listening on port {port}; "
                f"see {LOG_DIR / name}.log"
            )


def wait_for_seaweedfs(pid: int, timeout_s: float = 180.0) -> None:
    """Poll the launcher's log: it prints a JSON line once a real S3 PUT/GET works and the
    bucket exists (an open port alone is not ready: the first GETs can still fail)."""
    log_path = LOG_DIR / "seaweedfs.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if '"endpoint_url"' in log_path.read_text(errors="replace"):
            return
        if not pid_alive(pid, MARKERS["seaweedfs"]):
            raise SystemExit(f"sandbox: SeaweedFS exited; see {log_path}")
        time.sleep(0.5)  # poll interval
    raise SystemExit(f"sandbox: SeaweedFS not ready after {timeout_s:.0f} s; see {log_path}")
