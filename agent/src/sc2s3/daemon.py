"""sc2s3.daemon
~~~~~~~~~~~~~~~

``sc2s3 run``: the long-running agent that supervisor starts. It serves ``/healthz`` and
``/metrics``, runs its startup self-checks until they pass, then mirrors every
``poll_interval_s`` seconds over the accounts it holds in the fleet (:mod:`sc2s3.fleet`), and at
once when it takes an account. After each cycle it runs the restore drill's round when one is due
(:mod:`sc2s3.drill`) and reports the cycle: ``/healthz``, ``/metrics``, ``state_dir`` (for
``status``) and CloudWatch (:mod:`sc2s3.cloudwatch`, when configured).

SIGTERM (supervisor's stopsignal) stops it cleanly: no new track starts, transfers park at the next
part boundary (parts in flight finish and are recorded in the resume state), and the host's leases
are released, so the rest of the fleet continues them without waiting for ``lease_ttl_s``.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from . import __version__
from .cloudwatch import CloudWatchPublisher, CycleFigures
from .config import Config
from .drill import Drill, DrillRound, drill_summary
from .errors import Sc2s3Error, TemporaryError, UpstreamUnavailable
from .fleet import Fleet, join
from .health import CHECK_OK, UNAVAILABLE, HealthServer, HealthState
from .logs import log
from .metrics import (
    ACCOUNTS_HELD,
    ACCOUNTS_WITHOUT_HOLDER,
    LIVE_HOSTS,
    OLDEST_UNARCHIVED_AGE,
    PLAYS_BLOCKED,
    PLAYS_REMAINING,
    TRACKS_FAILING,
)
from .mirror import CycleResult, Mirror
from .s3 import make_s3_client
from .soundcloud import SoundCloudClient
from .status import write_last_cycle

CHECK_RETRY_S = (5, 10, 30, 60)


def run_daemon(config: Config, stop: threading.Event | None = None) -> int:
    """Run until ``stop`` is set (SIGTERM/SIGINT set it). Returns the exit code (0)."""
    stop = stop or threading.Event()
    wake = threading.Event()  # a stop, or accounts taken: the next cycle starts at once

    def request_stop(*_args) -> None:
        stop.set()
        wake.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    state = HealthState()
    server = HealthServer(state, config.agent.health_address).start()
    log.info("agent started", version=__version__, health=config.agent.health_listen)
    state_dir = Path(config.agent.state_dir)
    s3 = make_s3_client(config)
    fleet, budget = join(config, s3, member=True, wake=wake)
    soundcloud = SoundCloudClient(config.soundcloud, budget, state_dir)
    drill = Drill(config, s3, state_dir)
    publisher = CloudWatchPublisher.from_config(config, fleet.holder.host)
    try:
        attempt = 0
        while not stop.is_set() and not _self_checks(config, s3, soundcloud, fleet, state):
            stop.wait(CHECK_RETRY_S[min(attempt, len(CHECK_RETRY_S) - 1)])
            attempt += 1
        if stop.is_set():
            return 0
        with Mirror(config, soundcloud, s3, fleet, stop=stop,
                    on_account_listed=state.mark_proven) as mirror:
            fleet.in_flight = lambda: mirror.in_flight
            fleet.start()
            while not stop.is_set():
                wake.clear()
                started = datetime.now(UTC).isoformat(timespec="seconds")
                result = mirror.run_cycle()
                summary = {"started_at": started, **result.summary(),
                           "finished_at": datetime.now(UTC).isoformat(timespec="seconds")}
                budget_now = budget.snapshot()
                failing = len(mirror.failures.snapshot())
                state.set_cycle(summary, failing_tracks=failing, play_budget=budget_now)
                write_last_cycle(state_dir, summary)
                drilled = _drill_round(drill, fleet) if not stop.is_set() else None
                state.set_drill(drill_summary(state_dir))
                figures = _figures(result, failing, budget_now, fleet, drilled)
                _set_gauges(figures, fleet)
                if publisher is not None:
                    publisher.publish(figures)
                if (not summary["accounts"] and fleet.balanced.is_set()
                        and not fleet.held_count()):
                    state.mark_proven()  # its share of the fleet's accounts is none
                if state.check("soundcloud") != CHECK_OK:
                    _check_soundcloud(soundcloud, state)
                wake.wait(config.agent.poll_interval_s)
    finally:
        # Uploads are parked by now (Mirror's exit joined them): the leases go back at once.
        fleet.stop()
        server.stop()
        log.info("agent stopped")
    return 0


def _drill_round(drill: Drill, fleet: Fleet) -> DrillRound | None:
    """The drill's round if one is due; S3 trouble leaves it owed for the next cycle. Whatever
    goes wrong in it is logged: the drill never stops the mirror."""
    try:
        return drill.run_due(fleet.live_hosts())
    except TemporaryError as exc:
        log.warning("restore drill postponed: S3 unreachable", error=str(exc))
    except Exception as exc:  # a bug in the drill must not crash-loop the daemon
        log.error("restore drill failed", error=str(exc), exc_info=not isinstance(exc, Sc2s3Error))
    return None


def _figures(result: CycleResult, failing: int, budget_now: dict, fleet: Fleet,
             drilled: DrillRound | None) -> CycleFigures:
    blocked = budget_now["remaining"] <= 0 or bool(budget_now["blocked_until"])
    oldest = result.oldest_unarchived
    return CycleFigures(
        cycles_succeeded=int(result.succeeded), tracks_archived=result.mirrored,
        bytes_archived=result.bytes, tracks_failing=failing,
        play_budget_remaining=budget_now["remaining"], play_budget_blocked=int(blocked),
        accounts_without_holder=fleet.accounts_without_holder(),
        oldest_unarchived_age_s=max(0.0, time.time() - oldest) if oldest is not None else 0.0,
        drill_revisions=drilled.checked if drilled else 0,
        drill_failures=drilled.damaged if drilled else 0)


def _set_gauges(figures: CycleFigures, fleet: Fleet) -> None:
    TRACKS_FAILING.set(figures.tracks_failing)
    PLAYS_REMAINING.set(figures.play_budget_remaining)
    PLAYS_BLOCKED.set(figures.play_budget_blocked)
    ACCOUNTS_WITHOUT_HOLDER.set(figures.accounts_without_holder)
    OLDEST_UNARCHIVED_AGE.set(figures.oldest_unarchived_age_s)
    ACCOUNTS_HELD.set(fleet.held_count())
    LIVE_HOSTS.set(fleet.live_hosts())


def _self_checks(config: Config, s3, soundcloud: SoundCloudClient, fleet: Fleet,
                 state: HealthState) -> bool:
    """Config is valid (it loaded); S3 reachable and writable under the prefix; a SoundCloud
    token obtainable.

    Writability is proven by writing this host's heartbeat (:mod:`sc2s3.fleet`, outside the
    archive's user folders), because a listing succeeds with read-only credentials.
    """
    state.set_check("config", "ok")
    ok = True
    try:
        # A listing under the prefix, not HeadBucket: it is what the IAM policy grants (ListBucket
        # with an s3:prefix condition), so the check proves the permissions the mirror needs.
        s3.list_objects_v2(Bucket=config.s3.bucket, Prefix=config.s3.prefix, MaxKeys=1)
        fleet.heartbeat(ready=False)
        state.set_check("s3", "ok")
    except (ClientError, BotoCoreError, TemporaryError) as exc:
        state.set_check("s3", f"error: {exc}")
        ok = False
    ok = _check_soundcloud(soundcloud, state) and ok
    if not ok:
        log.warning("startup self-checks failed; retrying", checks=state.snapshot()[1]["checks"])
    return ok


def _check_soundcloud(soundcloud: SoundCloudClient, state: HealthState) -> bool:
    """A token is obtainable. SoundCloud down or rate-limiting passes, as ``unavailable``
    (degraded): the agent starts and keeps trying; refused credentials do not."""
    try:
        soundcloud.access_token()
        state.set_check("soundcloud", CHECK_OK)
    except UpstreamUnavailable as exc:
        state.set_check("soundcloud", f"{UNAVAILABLE}{exc}")
    except Sc2s3Error as exc:
        state.set_check("soundcloud", f"error: {exc}")
        return False
    return True
