"""sc2s3.leases
~~~~~~~~~~~~~~~

Leases: how the hosts of a fleet agree, through the bucket alone, that one process at a time
writes for an account. One vocabulary, used by every module::

                  take: PutObject IfNoneMatch='*' (no lease yet)
                        or IfMatch=<ETag seen> (a released or expired lease)
        +--------+ ----------------------------------------------------> +--------+
        |  free  |                                                       |  held  | --+ renew: PutObject
        +--------+ <---------------------------------------------------- +--------+ <-+ IfMatch=<holder's
          ^    ^     release: PutObject IfMatch=<holder's ETag>             |  |          last ETag>
          |    |     (SIGTERM, rebalancing, end of ``mirror --once``)       |  |
          |    +------------------------------------------------------------+  |
          |          expire: no renewal for ``ttl_s`` by S3's clock            |
          |          (or its holder is a dead process of this very host)       |
          |                                                                    |
          +---- lost: the holder's conditional write answers 412 --------------+
                (somebody took it after it expired); the holder stops writing for the account

A lease object lives at ``{prefix}state/leases/accounts/<account>.json``; ``account`` is the
configured name (permalink or user URN), the same on every host. Its age is judged by S3's clock
only: the object's ``LastModified`` against the ``Date`` of the answer that read it, so a host
whose clock is off neither takes a live lease nor keeps a dead one.

*Fencing.* Every bookkeeping write a lease guards (the lease itself, the account's resume states,
its catalog) is conditional on the ETag its writer last saw, and :meth:`Lease.fence` is called
first: past its own deadline (measured on the boot-time clock from when the last renewal was
sent, less a safety margin) the holder renews before it writes, and a refused renewal makes the
write raise :class:`LeaseLost`. A process that was stalled past ``ttl_s`` therefore writes nothing
for an account it lost.

*Tracks.* A track has no lease of its own: its account's lease covers its resume state
(:mod:`sc2s3.resume`), whose upload is *open* while it has an upload id (in flight, or parked by a
failure or a shutdown for whoever holds the account next) and *closed* once it carries an
outcome (completed, discarded).

*Holders.* A holder is one process: hostname, the host id kept in ``state_dir/host_id``, the pid
and the process's start time, so a ``mirror --once`` beside the daemon is a different holder, and
a restarted agent knows the leases left by its own dead predecessor and takes them back at once.

S3 API: PutObject ``If-None-Match``/``If-Match`` ("Conditional writes", 412 Precondition Failed,
409 ConditionalRequestConflict), GetObject, ListObjectsV2.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError

from .errors import Sc2s3Error, TemporaryError
from .logs import log
from .s3 import get_json_changed, get_json_object
from .state import write_atomic

LEASE_FORMAT = "sc2s3-lease/1"
HOST_ID_FILE = "host_id"


class LeaseHeld(Sc2s3Error):
    """Another live holder has the lease; try again later."""


class LeaseLost(Sc2s3Error):
    """This holder's lease was taken by another holder: stop writing for what it guards."""


def s3_date(answer: dict) -> float | None:
    """S3's clock (epoch seconds) from the ``Date`` header of a boto3 answer or error response."""
    header = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(header).timestamp() if header else None
    except (TypeError, ValueError):
        return None


def is_conflict(exc: ClientError) -> bool:
    """True for the answers of a lost conditional write (412, or 409 for a concurrent one)."""
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (409, 412)


class S3Clock:
    """The host's estimate of S3's clock: the local clock plus the offset last seen in a ``Date``
    header (1 s resolution). Plays and 429 blocks are timed by it, so a skewed host agrees with
    the fleet."""

    def __init__(self):
        self._offset = 0.0

    def observe(self, answer: dict) -> None:
        date = s3_date(answer)
        if date is not None:
            # Date is truncated to the second: +0.5 is its midpoint.
            self._offset = date + 0.5 - time.time()

    def now(self) -> float:
        return time.time() + self._offset


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def _runs(pid: int, started: str) -> bool:
    """False only when process ``pid`` (started at ``started``) certainly no longer runs here."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    current = _process_start(pid)
    return not current or current == started  # unreadable (hidepid): assume it is the one


def clock() -> float:
    """Seconds on a clock that keeps counting while the host is suspended (a lease does too)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") \
        else time.monotonic()


@dataclass(frozen=True)
class Holder:
    """One agent process, as leases and heartbeats name it."""

    host: str
    host_id: str
    pid: int
    started: str

    @classmethod
    def this_process(cls, state_dir: Path) -> Holder:
        """This process; the host id is created in ``state_dir`` on first use."""
        path = Path(state_dir) / HOST_ID_FILE
        try:
            host_id = path.read_text().strip()
        except OSError:
            host_id = ""
        if not host_id:
            host_id = uuid.uuid4().hex[:12]
            try:
                write_atomic(path, host_id.encode(), mode=0o644)
            except OSError:  # e.g. `sc2s3 status` by a user who cannot write state_dir
                log.debug("host id not persisted", path=str(path))
        return cls(socket.gethostname(), host_id, os.getpid(), _process_start(os.getpid()))

    @property
    def id(self) -> str:
        return f"{self.host}:{self.host_id}:{self.pid}:{self.started}"

    def as_dict(self) -> dict:
        return {"holder": self.id, "host": self.host, "host_id": self.host_id, "pid": self.pid}

    def knows_dead(self, holder_id: str) -> bool:
        """True when ``holder_id`` is a process of this host (same hostname and host id) that
        certainly no longer runs."""
        parts = holder_id.split(":")
        if len(parts) != 4 or (parts[0], parts[1]) != (self.host, self.host_id) \
                or holder_id == self.id or not parts[2].isdigit():
            return False
        if not parts[3] or not Path("/proc/self/stat").exists():
            return False  # no way to tell here: wait for the lease to expire
        return not _runs(int(parts[2]), parts[3])


@dataclass
class LeaseView:
    """A lease object as read: ``holder`` id ('' when none), ``released``, its ``etag``, its
    ``age_s`` by S3's clock, and the ``ttl_s`` its holder promised to renew within."""

    name: str
    holder: str
    released: bool
    etag: str | None
    age_s: float
    ttl_s: float
    body: dict

    @property
    def expired(self) -> bool:
        return self.age_s > self.ttl_s

    def free_for(self, holder: Holder) -> bool:
        return (self.etag is None or self.released or not self.holder or self.expired
                or holder.knows_dead(self.holder))


class Lease:
    """A lease this process holds; thread-safe. Renewed by :meth:`LeaseStore.renew`."""

    def __init__(self, store: LeaseStore, name: str, etag: str, sent_at: float):
        self.store, self.name = store, name
        self.etag, self.deadline = etag, sent_at + store.ttl_s - store.margin_s
        self.lost = False
        self.lock = threading.Lock()

    def fence(self) -> None:
        """Call before any write the lease guards.

        :raises LeaseLost: the lease was taken over (the write must not happen).
        :raises TemporaryError: it could not be renewed in time (S3 unreachable).
        """
        if self.lost:
            raise LeaseLost(f"lease of {self.name} was lost")
        if clock() >= self.deadline:
            self.store.renew(self)


class LeaseStore:
    """Account leases under ``{prefix}state/leases/accounts/`` for ``holder``.

    :param ttl_s: seconds a lease stays held without a renewal (``[agent] lease_ttl_s``).
    """

    def __init__(self, s3, bucket: str, prefix: str, holder: Holder, ttl_s: float,
                 clock: S3Clock | None = None, version: str = ""):
        self.s3, self.bucket, self.holder, self.ttl_s = s3, bucket, holder, ttl_s
        self.folder = f"{prefix}state/leases/accounts/"
        # LastModified and Date have 1 s resolution: stop writing 2 s early at least.
        self.margin_s = max(2.0, ttl_s / 10)
        self.clock, self.version = clock or S3Clock(), version
        self._bodies: dict[str, tuple[str, dict]] = {}  # key -> (ETag, body): GET only on change

    def key(self, name: str) -> str:
        return f"{self.folder}{quote(name, safe='')}.json"

    def scan(self) -> dict[str, LeaseView]:
        """Every lease object, by account name (one LIST, a GET per lease that changed).

        :raises TemporaryError: S3 unreachable.
        """
        views: dict[str, LeaseView] = {}
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.folder):
                now = s3_date(page) or self.clock.now()
                self.clock.observe(page)
                for item in page.get("Contents", []):
                    body = get_json_changed(self.s3, self.bucket, item["Key"], item["ETag"],
                                            self._bodies)
                    if body is None:
                        continue
                    age = now - item["LastModified"].timestamp()
                    view = _view(body, item["ETag"], age)
                    views[view.name] = view
        except (ClientError, BotoCoreError) as exc:
            raise TemporaryError(f"cannot list leases: {exc}") from exc
        return views

    def read(self, name: str) -> LeaseView:
        """The lease of ``name`` as S3 holds it now. :raises TemporaryError: S3 unreachable."""
        got = get_json_object(self.s3, self.bucket, self.key(name))
        if got is None:
            return LeaseView(name, "", True, None, 0.0, self.ttl_s, {})
        body, answer = got
        self.clock.observe(answer)
        now = s3_date(answer) or self.clock.now()
        return _view({"name": name, **(body or {})}, answer["ETag"],
                     now - answer["LastModified"].timestamp())

    def take(self, name: str, seen: LeaseView | None = None) -> Lease:
        """Take the lease of ``name`` (``seen``: its state as last read, to save a GET).

        :raises LeaseHeld: a live holder has it, or another process took it first.
        :raises TemporaryError: S3 unreachable.
        """
        seen = seen or self.read(name)
        if not seen.free_for(self.holder):
            raise LeaseHeld(f"{name} is held by {seen.body.get('host') or seen.holder}")
        condition = {"IfMatch": seen.etag} if seen.etag else {"IfNoneMatch": "*"}
        try:
            lease = self._write(name, condition, released=False)
        except LeaseLost as exc:
            raise LeaseHeld(f"{name} was just taken by another host") from exc
        why = ("new" if not seen.etag else "released" if seen.released or not seen.holder
               else "expired" if seen.expired else "its holder died on this host")
        log.info("lease taken", account=name, previous=seen.holder or None, why=why)
        return lease

    def renew(self, lease: Lease) -> None:
        """Renew ``lease`` (conditional on the holder's last ETag).

        :raises LeaseLost: it was taken over; :raises TemporaryError: S3 unreachable.
        """
        with lease.lock:
            if lease.lost:
                raise LeaseLost(f"lease of {lease.name} was lost")
            sent_at = clock()
            try:
                renewed = self._write(lease.name, {"IfMatch": lease.etag}, released=False)
            except LeaseLost:
                # A retried PUT whose first attempt had landed also answers 412: still ours?
                view = self.read(lease.name)
                if view.holder == self.holder.id and not view.released:
                    lease.etag = view.etag
                    lease.deadline = sent_at + self.ttl_s - self.margin_s
                    return
                lease.lost = True
                log.warning("lease lost: another host holds the account now; "
                            "no more writes for it", account=lease.name)
                raise
            lease.etag, lease.deadline = renewed.etag, renewed.deadline

    def release(self, lease: Lease) -> None:
        """Give ``lease`` up so any host may take it at once; a failure is logged (it expires)."""
        with lease.lock:
            if lease.lost:
                return
            try:
                self._write(lease.name, {"IfMatch": lease.etag}, released=True)
                log.info("lease released", account=lease.name)
            except (LeaseLost, TemporaryError) as exc:
                log.warning("could not release the lease; it expires", account=lease.name,
                            error=str(exc))
            lease.lost = True  # released: this process no longer writes for the account

    def _write(self, name: str, condition: dict, released: bool) -> Lease:
        body = {"format": LEASE_FORMAT, "name": name, **self.holder.as_dict(),
                "version": self.version, "ttl_s": self.ttl_s, "released": released,
                "written_at": datetime.now().astimezone().isoformat(timespec="seconds")}
        sent_at = clock()
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=self.key(name),
                                        Body=json.dumps(body).encode(),
                                        ContentType="application/json", **condition)
        except ClientError as exc:
            if is_conflict(exc):
                raise LeaseLost(f"lease of {name}: conditional write refused") from exc
            raise TemporaryError(f"cannot write the lease of {name}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot write the lease of {name}: {exc}") from exc
        self.clock.observe(answer)
        return Lease(self, name, answer["ETag"], sent_at)


def _view(body: dict, etag: str, age_s: float) -> LeaseView:
    try:
        ttl = float(body.get("ttl_s") or 0)
    except (TypeError, ValueError):
        ttl = 0.0
    return LeaseView(name=str(body.get("name", "")), holder=str(body.get("holder") or ""),
                     released=bool(body.get("released")), etag=etag, age_s=age_s,
                     ttl_s=ttl, body=body)
