"""sc2s3.daemon
~~~~~~~~~~~~~~~

``sc2s3 run``: the long-running agent that supervisor starts. It serves ``/healthz`` and
``/metrics``, runs its startup self-checks until they pass, then mirrors every
``poll_interval_s`` seconds. SIGTERM (supervisor's stopsignal) stops it cleanly: no new track
starts, and transfers park at the next part boundary (parts in flight finish and are recorded in
the resume state; the next start continues them).
"""

from __future__ import annotations

import json
import signal
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from . import __version__, fault_switch
from .config import Config
from .errors import Sc2s3Error
from .health import HealthServer, HealthState
from .logs import log
from .metrics import PLAYS_REMAINING, TRACKS_FAILING
from .mirror import Mirror
from .s3 import make_s3_client
from .soundcloud import SoundCloudClient
from .status import write_last_cycle

CHECK_RETRY_S = (5, 10, 30, 60)


def run_daemon(config: Config, stop: threading.Event | None = None) -> int:
    """Run until ``stop`` is set (SIGTERM/SIGINT set it). Returns the exit code (0)."""
    fault_switch.apply(config)  # test-only bad releases; a no-op in every normal release
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    state = HealthState()
    server = HealthServer(state, config.agent.health_address).start()
    log.info("agent started", version=__version__, health=config.agent.health_listen)
    state_dir = Path(config.agent.state_dir)
    s3 = make_s3_client(config)
    soundcloud = SoundCloudClient(config.soundcloud, state_dir)
    try:
        attempt = 0
        while not stop.is_set() and not _self_checks(config, s3, soundcloud, state):
            stop.wait(CHECK_RETRY_S[min(attempt, len(CHECK_RETRY_S) - 1)])
            attempt += 1
        with Mirror(config, soundcloud, s3, stop=stop) as mirror:
            while not stop.is_set():
                started = datetime.now(UTC).isoformat(timespec="seconds")
                summary = {"started_at": started, **mirror.run_cycle().summary(),
                           "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
                budget = soundcloud.budget.snapshot()
                failing = len(mirror.failures.snapshot())
                state.set_cycle(summary, failing_tracks=failing, play_budget=budget)
                TRACKS_FAILING.set(failing)
                PLAYS_REMAINING.set(budget["remaining"])
                write_last_cycle(state_dir, summary)
                stop.wait(config.agent.poll_interval_s)
    finally:
        server.stop()
        log.info("agent stopped")
    return 0


def _self_checks(config: Config, s3, soundcloud: SoundCloudClient, state: HealthState) -> bool:
    """Config is valid (it loaded); S3 reachable and writable under the prefix; a SoundCloud
    token obtainable.

    Writability is proven with a small PutObject of this host's heartbeat,
    ``{prefix}state/hosts/<hostname>.json`` (outside the archive's user folders; overwritten on
    every start, never deleted), because a listing succeeds with read-only credentials.
    """
    state.set_check("config", "ok")
    ok = True
    host = socket.gethostname()
    heartbeat = json.dumps({"host": host, "version": __version__,
                            "started_at": datetime.now(UTC).isoformat(timespec="seconds")})
    try:
        # A listing under the prefix, not HeadBucket: it is what the IAM policy grants (ListBucket
        # with an s3:prefix condition), so the check proves the permissions the mirror needs.
        s3.list_objects_v2(Bucket=config.s3.bucket, Prefix=config.s3.prefix, MaxKeys=1)
        s3.put_object(Bucket=config.s3.bucket, Key=f"{config.s3.prefix}state/hosts/{host}.json",
                      Body=heartbeat.encode(), ContentType="application/json")
        state.set_check("s3", "ok")
    except (ClientError, BotoCoreError) as exc:
        state.set_check("s3", f"error: {exc}")
        ok = False
    try:
        soundcloud.access_token()
        state.set_check("soundcloud", "ok")
    except Sc2s3Error as exc:
        state.set_check("soundcloud", f"error: {exc}")
        ok = False
    if not ok:
        log.warning("startup self-checks failed; retrying", checks=state.snapshot()[1]["checks"])
    return ok
