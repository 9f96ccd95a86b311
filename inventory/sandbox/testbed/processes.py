"""The background servers as processes: started detached, found again by PID and command
line, stopped with SIGTERM and, when they linger, SIGKILL to their process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import psutil

from .paths import LOG_DIR, REPO
from .shell import log


def start_detached(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a server in its own session (it outlives this command) with its output in
    `.sandbox/logs/NAME.log`; returns its PID, which is also its process group."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    if log_path.exists():
        log_path.replace(log_path.with_suffix(".log.1"))  # one log per run; keep the previous
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def find(pid: int | None, marker: str) -> psutil.Process | None:
    """The live process `pid` if its command line contains `marker` (PIDs get reused)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc if marker in " ".join(proc.cmdline()) else None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def pid_alive(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line contains `marker`."""
    return find(pid, marker) is not None


def terminate(pids: dict[str, int], markers: dict[str, str]) -> dict[str, psutil.Process]:
    """SIGTERM every live server (without waiting); returns those that were signalled."""
    live = {}
    for name, pid in pids.items():
        proc = find(pid, markers.get(name, "?"))
        if proc is not None:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()  # psutil checks it is still the same process first
                live[name] = proc
    return live


def wait_gone(live: dict[str, psutil.Process], timeout_s: float = 90.0) -> None:
    """Wait up to timeout_s seconds for signalled servers to exit; SIGKILL the process group
    of one that lingers (SeaweedFS's launcher and its `weed` child share one)."""
    names = {proc.pid: name for name, proc in live.items()}
    _, lingering = psutil.wait_procs(list(live.values()), timeout=timeout_s)
    for proc in lingering:
        log(f"{names[proc.pid]} (pid {proc.pid}) ignored SIGTERM; killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
