"""sc2s3.fault_switch
~~~~~~~~~~~~~~~~~~~~~

Test-only fault injection, so the rollout tests can deploy *bad releases* of the real agent.

Off by default and in every release built from this repository: a fault is switched on only
when the installed package contains a module ``sc2s3._test_fault`` defining ``FAULT``. The rollout
tests write that module into a temporary copy of the source before building the release's wheel,
so the fault travels inside that one release: rolling back to a good release leaves it behind,
and nothing in the environment or the config can switch it on.

``FAULT`` values:

- ``"crash-at-start"``: raise before anything is served; supervisor sees the process exit
  within ``startsecs`` and gives up after ``startretries`` (a spawn error).
- ``"never-healthy"``: serve ``/healthz`` with 503 ``{"status": "unhealthy", ...}`` forever and
  never mirror; SIGTERM (default action) ends the process.
"""

from __future__ import annotations

import importlib.util
import threading

from .config import Config
from .health import HealthServer, HealthState
from .logs import log

FAULTS = ("crash-at-start", "never-healthy")


class TestFaultError(RuntimeError):
    """The crash a ``crash-at-start`` release is built to have."""


def active_fault() -> str | None:
    """The fault this release was built with, or None (every normal release)."""
    if importlib.util.find_spec(f"{__package__}._test_fault") is None:
        return None
    module = importlib.import_module(f"{__package__}._test_fault")
    fault = getattr(module, "FAULT", None)
    if fault not in FAULTS:
        raise TestFaultError(f"unknown test fault {fault!r}; expected one of {FAULTS}")
    return fault


def apply(config: Config) -> None:
    """Act out this release's test fault, if it has one; returns at once otherwise.

    :raises TestFaultError: for ``crash-at-start`` (and for an unknown fault name).
    Never returns for ``never-healthy``.
    """
    fault = active_fault()
    if fault is None:
        return
    log.warning("test fault switch on", fault=fault)
    if fault == "crash-at-start":
        raise TestFaultError("test fault: crash at start")
    state = HealthState()
    state.set_check("config", "ok")
    state.set_check("test_fault", "error: this release is built never to become healthy")
    HealthServer(state, config.agent.health_address).start()
    threading.Event().wait()
