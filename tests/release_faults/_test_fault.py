"""sc2s3._test_fault: copied into a *bad* test release only (see tests/sys_releases.py).

Never part of the agent's source: the rollout tests build a bad release from a copy of
``agent/``, write this module into it with ``FAULT`` set, and insert a call to :func:`apply` at the
start of the copy's ``run_daemon``. Rolling back to a good release leaves the fault behind.

``FAULT`` values:

- ``"crash-at-start"``: raise before anything is served; supervisor sees the process exit
  within ``startsecs`` and gives up after ``startretries`` (a spawn error).
- ``"never-healthy"``: serve ``/healthz`` with 503 ``{"status": "unhealthy", ...}`` forever and
  never mirror; SIGTERM (default action) ends the process.
"""

from __future__ import annotations

import threading

from .config import Config
from .health import HealthServer, HealthState
from .logs import log

FAULTS = ("crash-at-start", "never-healthy")
FAULT = "set by the test release builder"


class TestFaultError(RuntimeError):
    """The crash a ``crash-at-start`` release is built to have."""


def apply(config: Config) -> None:
    """Act out this release's test fault.

    :raises TestFaultError: for ``crash-at-start`` (and for an unknown fault name).
    Never returns for ``never-healthy``.
    """
    fault = FAULT
    if fault not in FAULTS:
        raise TestFaultError(f"unknown test fault {fault!r}; expected one of {FAULTS}")
    log.warning("test fault switch on", fault=fault)
    if fault == "crash-at-start":
        raise TestFaultError("test fault: crash at start")
    state = HealthState()
    state.set_check("config", "ok")
    state.set_check("test_fault", "error: this release is built never to become healthy")
    HealthServer(state, config.agent.health_address).start()
    threading.Event().wait()
