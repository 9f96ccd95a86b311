"""sc2s3.health
~~~~~~~~~~~~~~~

The health endpoint (contract: docs/commands.md, "Health endpoint"): ``GET /healthz`` answers 200 with
``{"status": "ok", "version": ..., "degraded": bool, "failing_tracks": n, "play_budget": {...},
"checks": {...}, "last_cycle": {...}}`` only when every startup check passed and the last cycle did
not fail outright, 503 with the same shape otherwise;
``GET /metrics`` answers Prometheus text.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import __version__
from .metrics import REGISTRY


class HealthState:
    """Thread-safe health facts: startup ``checks`` (name -> ``ok`` or error text) and
    ``last_cycle``. Healthy only once every one of ``required`` checks is ``ok``."""

    def __init__(self, required: tuple[str, ...] = ("config", "s3", "soundcloud")):
        self._lock = threading.Lock()
        self.required = required
        self.checks: dict[str, str] = {}
        self.last_cycle: dict | None = None
        self.failing_tracks = 0
        self.play_budget: dict | None = None

    def set_check(self, name: str, outcome: str) -> None:
        with self._lock:
            self.checks[name] = outcome

    def set_cycle(self, summary: dict, failing_tracks: int = 0,
                  play_budget: dict | None = None) -> None:
        """After a cycle: its summary, how many tracks keep failing, the play budget snapshot."""
        with self._lock:
            self.last_cycle = summary
            self.failing_tracks, self.play_budget = failing_tracks, play_budget

    def snapshot(self) -> tuple[bool, dict]:
        with self._lock:
            checks_ok = all(self.checks.get(name) == "ok" for name in self.required)
            cycle_ok = self.last_cycle is None or self.last_cycle.get("result") != "error"
            healthy = checks_ok and cycle_ok
            failing = any(v != "ok" for v in self.checks.values())
            status = "ok" if healthy else ("unhealthy" if failing or not cycle_ok else "starting")
            # Degraded is still healthy (200): failing tracks or a spent play budget are the
            # archive's problem to report, not a reason for a rollout to roll back.
            blocked = bool(self.play_budget and self.play_budget.get("blocked_until"))
            return healthy, {"status": status, "version": __version__,
                             "degraded": self.failing_tracks > 0 or blocked,
                             "failing_tracks": self.failing_tracks,
                             "play_budget": self.play_budget,
                             "checks": dict(self.checks), "last_cycle": self.last_cycle}


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
