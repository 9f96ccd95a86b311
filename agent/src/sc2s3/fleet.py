"""sc2s3.fleet
~~~~~~~~~~~~~~

The fleet: every host gets the same accounts, and each account is mirrored by one live process at
a time, through the account leases of :mod:`sc2s3.leases`. The bucket is the only coordination
point::

    {prefix}state/hosts/<hostname>-<host id>.json     a daemon's heartbeat (rewritten every tick)
    {prefix}state/leases/accounts/<account>.json      who holds the account (sc2s3.leases)
    {prefix}state/plays.json                          the app's play budget (sc2s3.plays)

A daemon's :class:`Fleet` keeper thread ticks every ``min(lease_ttl_s / 3, poll_interval_s)``:
it writes the heartbeat, renews the leases it holds, and balances. With ``H`` live hosts (a
heartbeat younger than its ``ttl_s``, not marked stopped) and ``A`` accounts, every host aims at
``floor(A/H)`` to ``ceil(A/H)`` accounts:

- it takes free accounts (never held, released, or expired) while it holds fewer than ``ceil``,
  unless another live host holds fewer than ``floor`` and it does not (that host goes first);
- it gives one account up when it holds more than ``ceil``, or when some host holds fewer than
  ``floor`` and it is the host holding the most (ties: the lowest holder id). An account being
  mirrored is given up at a track boundary: no new track starts, the tracks in flight finish,
  then the lease is released (never mid-upload).

Free accounts are tried in an order hashed from the holder id and the account (rendezvous
hashing), so hosts starting together rarely race for the same one; a lost race is just a 412.
A ``mirror --once`` process is not a member: it takes the leases of the accounts it mirrors (if
free), renews them while it runs and releases them at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from . import __version__
from .config import Config
from .errors import TemporaryError
from .leases import Holder, Lease, LeaseHeld, LeaseLost, LeaseStore, LeaseView, S3Clock, s3_date
from .logs import log
from .plays import FleetPlayBudget
from .s3 import get_json_changed

JOIN_SETTLE_S = 3.0  # a starting daemon heartbeats, then waits this long to see its peers


def tick_seconds(ttl_s: float, poll_interval_s: float) -> float:
    """How often a daemon heartbeats, renews and balances: three renewals per lease TTL, and at
    least once per poll interval, so a host that joins gets its share within two intervals."""
    return max(1.0, min(ttl_s / 3, poll_interval_s))


def _rank(holder_id: str, account: str) -> str:
    return hashlib.sha256(f"{holder_id}|{account}".encode()).hexdigest()


class Fleet:
    """This process's place in the fleet; thread-safe.

    :param accounts: the configured accounts (lease names).
    :param member: a daemon (heartbeats and balances) rather than a ``mirror --once`` run.
    :param wake: set whenever this process takes an account (the daemon's loop waits on it).
    :param in_flight: a callable giving the tracks in flight, for the heartbeat.
    """

    def __init__(self, s3, bucket: str, prefix: str, accounts: list[str], holder: Holder, *,
                 ttl_s: float, tick_s: float, version: str, play_budget: int, member: bool,
                 clock: S3Clock | None = None, wake: threading.Event | None = None,
                 in_flight: Callable[[], int] = lambda: 0):
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self.accounts, self.holder, self.member = list(dict.fromkeys(accounts)), holder, member
        self.ttl_s, self.tick_s, self.version = ttl_s, tick_s, version
        self.play_budget, self.in_flight = play_budget, in_flight
        self.clock = clock or S3Clock()
        self.leases = LeaseStore(s3, bucket, prefix, holder, ttl_s, self.clock, version)
        self.wake = wake or threading.Event()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self._held: dict[str, Lease] = {}
        self._yielding: set[str] = set()
        self._busy: dict[str, int] = {}
        self._live_hosts = 1
        self._unheld = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeats: dict[str, tuple[str, dict]] = {}
        # Set once this member has balanced with the fleet: what it holds now is its share.
        self.balanced = threading.Event()

    # -- what the mirror asks ------------------------------------------------------------------

    def accounts_to_mirror(self) -> list[str]:
        """The accounts this process holds and keeps, in configured order."""
        with self._lock:
            return [a for a in self.accounts if self.keeps(a)]

    def keeps(self, account: str) -> bool:
        """True while this process holds ``account`` and is not handing it over."""
        with self._lock:
            lease = self._held.get(account)
            return lease is not None and not lease.lost and account not in self._yielding

    def held_count(self) -> int:
        with self._lock:
            return len(self._held)

    def live_hosts(self) -> int:
        return self._live_hosts

    def accounts_without_holder(self) -> int:
        """Configured accounts no live process held at the last balance (member only)."""
        return self._unheld

    @contextlib.contextmanager
    def working(self, account: str) -> Iterator[Lease]:
        """Mark ``account`` as being mirrored (a hand-over waits for the end of the block).

        :raises LeaseHeld: this process does not hold it.
        """
        with self._lock:
            lease = self._held.get(account)
            if lease is None or lease.lost:
                raise LeaseHeld(f"{account} is not held by this process")
            self._busy[account] = self._busy.get(account, 0) + 1
        try:
            yield lease
        finally:
            with self._lock:
                self._busy[account] -= 1
                if account in self._yielding and not self._busy[account]:
                    self._release(account)

    def take(self, account: str) -> Lease:
        """Take ``account``'s lease now (``mirror --once``).

        :raises LeaseHeld: a live process holds it. :raises TemporaryError: S3 unreachable.
        """
        lease = self.leases.take(account)
        with self._lock:
            self._held[account] = lease
        return lease

    # -- the keeper ------------------------------------------------------------------------------

    def start(self) -> Fleet:
        """Start the keeper thread (renewals; for a member also heartbeats and balancing)."""
        self._thread = threading.Thread(target=self._run, name="fleet", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the keeper, release every lease held (the fleet carries on without waiting for
        the TTL) and, for a member, write a last heartbeat marked stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            for account in list(self._held):
                self._release(account)
        if self.member:
            with contextlib.suppress(TemporaryError):
                self.heartbeat(stopped=True)

    def _run(self) -> None:
        if self.member:
            with contextlib.suppress(TemporaryError):
                self.heartbeat()
            self._stop.wait(min(JOIN_SETTLE_S, self.tick_s))
        while not self._stop.is_set():
            try:
                self.tick()
            except TemporaryError as exc:
                log.warning("fleet tick failed; retrying next tick", error=str(exc))
            except Exception as exc:  # the keeper must outlive any one bad answer
                log.error("fleet tick failed", error=str(exc), exc_info=True)
            self._stop.wait(self.tick_s)

    def tick(self) -> None:
        """Heartbeat, renew, balance (member); renew only otherwise.

        :raises TemporaryError: S3 unreachable.
        """
        if self.member:
            try:
                self.heartbeat()
            except TemporaryError as exc:  # renewals matter more: they still go out
                log.warning("heartbeat failed", error=str(exc))
        self._renew_all()
        if self.member:
            self._balance()
            if not self.balanced.is_set():
                self.balanced.set()
                self.wake.set()  # a cycle at once: what it holds now is its share

    def _renew_all(self) -> None:
        with self._lock:
            held = list(self._held.items())
        for account, lease in held:
            try:
                self.leases.renew(lease)
            except LeaseLost:
                with self._lock:
                    self._held.pop(account, None)
                    self._yielding.discard(account)
            except TemporaryError as exc:
                log.warning("lease renewal failed", account=account, error=str(exc))

    def _balance(self) -> None:
        views = self.leases.scan()
        me = self.holder.id
        live = sorted({body["holder"] for body in self._live_heartbeats()} | {me})
        self._live_hosts = len(live)
        counts = dict.fromkeys(live, 0)
        for account in self.accounts:
            view = views.get(account)
            if view is not None and not view.free_for(self.holder) and view.holder in counts:
                counts[view.holder] += 1
        with self._lock:
            mine = [a for a in self.accounts if self.keeps(a)]
        counts[me] = len(mine)
        floor, cap = len(self.accounts) // len(live), math.ceil(len(self.accounts) / len(live))
        starving = [h for h in live if counts[h] < floor]
        excess = len(mine) - cap
        if excess <= 0 and len(mine) > floor and starving:
            richest = min(live, key=lambda h: (-counts[h], h))
            excess = 1 if richest == me else 0
        # Idle accounts first: a busy one is handed over only after its tracks in flight.
        for account in sorted(mine, key=lambda a: (bool(self._busy.get(a)),
                                                   _rank(me, a)))[:max(0, excess)]:
            self._yield(account)
        room = cap - len(mine) if len(mine) < floor or not [h for h in starving if h != me] else 0
        with self._lock:
            free = [a for a in self.accounts if a not in self._held
                    and (a not in views or views[a].free_for(self.holder))]
        taken = 0
        for account in sorted(free, key=lambda a: _rank(me, a)):
            if taken >= room:
                break
            if self._take(account, views.get(account)):
                taken += 1
        self._unheld = len(free) - taken
        if taken:
            self.wake.set()

    def _take(self, account: str, seen: LeaseView | None) -> bool:
        try:
            lease = self.leases.take(account, seen)
        except LeaseHeld:
            return False
        with self._lock:
            self._held[account] = lease
        return True

    def _yield(self, account: str) -> None:
        with self._lock:
            self._yielding.add(account)
            log.info("handing an account over to the fleet", account=account,
                     busy=bool(self._busy.get(account)))
            if not self._busy.get(account):
                self._release(account)

    def _release(self, account: str) -> None:
        lease = self._held.pop(account, None)
        self._yielding.discard(account)
        if lease is not None:
            self.leases.release(lease)

    # -- heartbeats ------------------------------------------------------------------------------

    def heartbeat_key(self) -> str:
        return f"{self.prefix}state/hosts/{quote(self.holder.host, safe='')}-{self.holder.host_id}.json"

    def heartbeat(self, stopped: bool = False, ready: bool = True) -> None:
        """Write this host's heartbeat (its own object: a plain overwrite). Only a ``ready``
        heartbeat (the keeper's, not a start-up check's) counts the host into the fleet: a daemon
        stuck in its self-checks must not be given accounts.

        :raises TemporaryError: S3 unreachable or not writable.
        """
        with self._lock:
            held = sorted(self._held)
        body = {"format": "sc2s3-host/1", **self.holder.as_dict(), "version": self.version,
                "started_at": self.started_at, "ttl_s": self.ttl_s, "stopped": stopped,
                "ready": ready,
                "accounts": held, "tracks_in_flight": self.in_flight(),
                "play_budget": self.play_budget,
                "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=self.heartbeat_key(),
                                        Body=json.dumps(body).encode(),
                                        ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"cannot write the heartbeat: {exc}") from exc
        self.clock.observe(answer)

    def _live_heartbeats(self) -> list[dict]:
        return [h for h in read_heartbeats(self.s3, self.bucket, self.prefix, self._heartbeats)
                if h["live"]]


def read_heartbeats(s3, bucket: str, prefix: str,
                    cache: dict[str, tuple[str, dict]] | None = None) -> list[dict]:
    """Every daemon heartbeat under ``{prefix}state/hosts/``, each with ``age_s`` (S3's clock),
    ``last_heartbeat`` and ``live`` (younger than its ``ttl_s``, ready and not stopped) added.

    :raises TemporaryError: S3 unreachable.
    """
    cache = {} if cache is None else cache
    found = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}state/hosts/"):
            now = s3_date(page) or time.time()
            for item in page.get("Contents", []):
                body = get_json_changed(s3, bucket, item["Key"], item["ETag"], cache)
                if body is None:
                    continue  # deleted between the listing and the read
                if not body.get("holder"):
                    continue  # sc2s3 0.3 wrote a start marker here, not a heartbeat
                age = now - item["LastModified"].timestamp()
                try:
                    ttl = float(body.get("ttl_s") or 0)
                except (TypeError, ValueError):
                    ttl = 0.0
                found.append({**body, "age_s": round(age, 1),
                              "last_heartbeat": item["LastModified"].isoformat(),
                              "live": age <= ttl and body.get("ready", True)
                              and not body.get("stopped")})
    except ClientError as exc:
        raise TemporaryError(f"cannot read heartbeats: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read heartbeats: {exc}") from exc
    return found


def fleet_report(s3, bucket: str, prefix: str, accounts: list[str], holder: Holder,
                 ttl_s: float) -> dict:
    """The fleet as the bucket shows it: ``{"hosts": [...], "accounts": [...], "unheld": [...]}``.

    ``hosts``: every heartbeat (``host``, ``holder``, ``version``, ``last_heartbeat``, ``age_s``,
    ``live``, ``accounts``, ``tracks_in_flight``); ``accounts``: per configured account its
    ``holder``/``host`` (None when free), ``state`` (held, released, expired, none) and
    ``age_s``; ``unheld``: the accounts no live process holds.

    :raises TemporaryError: S3 unreachable.
    """
    hosts = sorted(read_heartbeats(s3, bucket, prefix), key=lambda h: (not h["live"], h["host"]))
    views = LeaseStore(s3, bucket, prefix, holder, ttl_s).scan()
    rows, unheld = [], []
    for account in dict.fromkeys(accounts):
        view = views.get(account)
        if view is None:
            state = "none"
        else:
            state = "released" if view.released else "expired" if view.expired else "held"
        live = state == "held"
        rows.append({"account": account, "state": state,
                     "holder": view.holder if live else None,
                     "host": view.body.get("host") if live else None,
                     "age_s": round(view.age_s, 1) if view else None})
        if not live:
            unheld.append(account)
    return {"hosts": hosts, "accounts": rows, "unheld": unheld}


def join(config: Config, s3, *, member: bool,
         wake: threading.Event | None = None) -> tuple[Fleet, FleetPlayBudget]:
    """This process's :class:`Fleet` and the fleet's play budget, sharing one S3 clock.
    ``member``: a daemon (heartbeats and balancing), not a ``mirror --once`` run."""
    holder = Holder.this_process(Path(config.agent.state_dir))
    clock = S3Clock()
    agent = config.agent
    fleet = Fleet(s3, config.s3.bucket, config.s3.prefix, config.soundcloud.accounts, holder,
                  ttl_s=agent.lease_ttl_s, tick_s=tick_seconds(agent.lease_ttl_s,
                                                               agent.poll_interval_s),
                  version=__version__, play_budget=config.soundcloud.play_budget,
                  member=member, clock=clock, wake=wake)
    # Near the budget (its last 1 %) no new track starts; tracks in flight may still resume.
    budget = FleetPlayBudget(s3, config.s3.bucket, config.s3.prefix,
                             config.soundcloud.play_budget, holder, clock,
                             headroom=config.soundcloud.play_budget // 100,
                             hosts=fleet.live_hosts)
    return fleet, budget
