"""sc2s3.health
~~~~~~~~~~~~~~~

The health endpoint (contract: docs/commands.md, "Health endpoint"): ``GET /healthz`` answers 200
with ``{"status": "ok", "version": ..., "proven": bool, "degraded": bool, "degraded_reasons":
[...], "failing_tracks": n, "play_budget": {...}, "drill": {...}, "checks": {...},
"last_cycle": {...}}`` only when every startup check passed and the last cycle did not fail
outright (the archive unreachable), 503 with the same shape otherwise; ``GET /metrics`` answers
Prometheus text.

SoundCloud trouble (an outage, 5xx, a 429, a spent play budget), failing tracks, failing accounts
and damaged revisions found by the restore drill are ``degraded``: still 200, because they are the
archive's problem to report, not a reason for a rolling update to roll back a good release.
``proven`` turns true once this process has read an account's listing to its end (its startup
checks wrote to the archive), or finished a cycle over its accounts in which no track and no
account failed, or holds no account once it has balanced with the fleet (more hosts than accounts):
the health gate of a rolling update waits for it.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__
from .metrics import REGISTRY

CHECK_OK = "ok"
UNAVAILABLE = "unavailable: "  # a check's outcome when SoundCloud, not this agent, is failing


class HealthState:
    """Thread-safe health facts: startup ``checks`` (name -> ``ok``, ``unavailable: <why>`` or
    ``error: <why>``) and ``last_cycle``. Healthy only once every one of ``required`` checks is
    ``ok`` or ``unavailable`` (degraded)."""

    def __init__(self, required: tuple[str, ...] = ("config", "s3", "soundcloud")):
        self._lock = threading.Lock()
        self.required = required
        self.checks: dict[str, str] = {}
        self.last_cycle: dict | None = None
        self.failing_tracks = 0
        self.play_budget: dict | None = None
        self.drill: dict | None = None
        self.proven = False

    def check(self, name: str) -> str | None:
        """The outcome of check ``name`` (None before it ran)."""
        with self._lock:
            return self.checks.get(name)

    def mark_proven(self) -> None:
        """This process has listed an account (its startup checks wrote to the archive)."""
        with self._lock:
            self.proven = True

    def set_check(self, name: str, outcome: str) -> None:
        with self._lock:
            self.checks[name] = outcome

    def set_cycle(self, summary: dict, failing_tracks: int = 0,
                  play_budget: dict | None = None) -> None:
        """After a cycle: its summary, how many tracks keep failing, the play budget snapshot."""
        with self._lock:
            self.last_cycle = summary
            self.failing_tracks, self.play_budget = failing_tracks, play_budget
            # A cycle proves the release unless it failed on its own account: the archive
            # unreachable, tracks failing or accounts failing. SoundCloud being unavailable is
            # not the release's doing, so it proves nothing against it.
            self.proven = self.proven or (bool(summary.get("accounts"))
                                          and summary.get("result") != "error"
                                          and not summary.get("failed")
                                          and not summary.get("account_errors"))

    def set_drill(self, summary: dict) -> None:
        """The restore drill's last 24 h (:func:`sc2s3.drill.drill_summary`)."""
        with self._lock:
            self.drill = summary

    def snapshot(self) -> tuple[bool, dict]:
        with self._lock:
            passed = {name: outcome for name, outcome in self.checks.items()
                      if outcome == CHECK_OK or outcome.startswith(UNAVAILABLE)}
            checks_ok = all(name in passed for name in self.required)
            cycle_ok = self.last_cycle is None or self.last_cycle.get("result") != "error"
            healthy = checks_ok and cycle_ok
            failing = len(passed) < len(self.checks)
            status = "ok" if healthy else ("unhealthy" if failing or not cycle_ok else "starting")
            reasons = self._degraded_reasons()
            return healthy, {"status": status, "version": __version__, "proven": self.proven,
                             "degraded": bool(reasons), "degraded_reasons": reasons,
                             "failing_tracks": self.failing_tracks,
                             "play_budget": self.play_budget, "drill": self.drill,
                             "checks": dict(self.checks), "last_cycle": self.last_cycle}

    def _degraded_reasons(self) -> list[str]:
        reasons = [f"{name}: {outcome}" for name, outcome in self.checks.items()
                   if outcome.startswith(UNAVAILABLE)]
        if self.failing_tracks:
            reasons.append(f"{self.failing_tracks} tracks keep failing (sc2s3 status)")
        if self.play_budget and self.play_budget.get("blocked_until"):
            until = datetime.fromtimestamp(self.play_budget["blocked_until"], UTC)
            reasons.append(f"plays blocked until {until.isoformat(timespec='seconds')}")
        if self.drill and self.drill.get("damaged"):
            reasons.append(f"the restore drill found {self.drill['damaged']} damaged or missing "
                           f"revisions in the last 24 h (sc2s3 status names them; sc2s3 verify)")
        cycle = self.last_cycle or {}
        reasons += [f"SoundCloud unavailable for {text}"
                    for text in cycle.get("upstream_unavailable", [])]
        reasons += [f"account failed: {text}" for text in cycle.get("account_errors", [])]
        reasons += [f"owner authorization: {text}" for text in cycle.get("owner_problems", [])]
        return reasons


def _handler(state: HealthState):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                healthy, body = state.snapshot()
                self._send(200 if healthy else 503, "application/json",
                           json.dumps(body).encode())
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # probes every few seconds would flood the log
            pass

    return Handler


class HealthServer:
    """Serves ``state`` on ``(host, port)`` from a daemon thread; ``port`` 0 picks a free one."""

    def __init__(self, state: HealthState, address: tuple[str, int]):
        self.httpd = ThreadingHTTPServer(address, _handler(state))
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="health",
                                        daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
