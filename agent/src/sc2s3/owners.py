"""sc2s3.owners
~~~~~~~~~~~~~~~

The owners' token chains. An account whose owner consented (``sc2s3 authorize``: Authorization
Code + PKCE, reference 2.13) has its private tracks mirrored with the owner's access token. The
fleet keeps one chain per account in the bucket, at ``{prefix}state/owners/<user_urn>.json``::

    {"format": "sc2s3-owner/1", "user_urn": "soundcloud:users:948745750", "permalink": "band-one",
     "access_token": "…", "refresh_token": "…", "expires_at": 1767225600,
     "authorized_at": "2026-01-01T00:00:00Z", "refreshed_at": "2026-01-01T00:00:00Z",
     "broken": null, "broken_at": null}

SoundCloud's refresh tokens are single-use and rotate: each refresh answers a new refresh token,
and the old one then answers ``400 invalid_grant``. A chain is therefore only as good as its
custody, and the rules are:

- *Who refreshes.* Only the holder of the account's lease (``may_refresh``), and only within
  :data:`REFRESH_MARGIN_S` of the access token's expiry. Anyone else uses the stored access token
  while it is fresh, else lists the account's public tracks for that pass.
- *How.* On the chain as just read, with its ETag: POST ``grant_type=refresh_token``, then write
  the new chain with ``If-Match: <that ETag>`` *before* the new access token is handed out.
- *A lost race (412).* Whatever the conditional write found is re-read and used; no second
  refresh. One refinement: a refresh that succeeded proves that nobody else rotated from the same
  refresh token (it is single-use), so if the stored chain still carries the token this process
  redeemed (another host's refresh of it was refused meanwhile and it marked the chain broken),
  the new chain is its only live successor and is written over it.
- *invalid_grant.* The chain is re-read (a few times over a few seconds: the winner of a race
  writes within milliseconds). A changed chain (another host won, or ``authorize`` wrote a new
  one) is used; an unchanged one is dead: it is stored as broken and
  :class:`~sc2s3.errors.OwnerAuthorizationError` names the fix, ``sc2s3 authorize``.
- *Broken is final.* A chain stored as broken makes no token request on any host until
  ``authorize`` writes a new one (no retry storm), and each host reads it at most once per
  :data:`CACHE_TTL_S`.
- *Between the refresh and the write* the only live refresh token exists in this process's
  memory. A failed write is retried a few times, and the new chain is kept in the process so that
  the next call stores it before anything else. If the process dies first, the chain is lost: the
  stored refresh token was spent, the next refresh is refused, the chain is marked broken and the
  owner has to run ``sc2s3 authorize`` again. The same holds when SoundCloud's answer to the
  refresh itself is lost on the way (the POST is never retried: it would spend the token twice).

Tokens live only in that object (encrypted at rest by the bucket's default encryption) and in
memory; logs and messages name the user URN and the outcome only.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from .archive import utc_stamp
from .errors import OwnerAuthorizationError, TemporaryError, UpstreamError
from .logs import log, redact
from .s3 import get_json_object
from .soundcloud import USER_URN, InvalidGrant, SoundCloudClient, TokenGrant

OWNER_FORMAT = "sc2s3-owner/1"
REFRESH_MARGIN_S = 300.0  # refresh when the access token expires within this
CACHE_TTL_S = 60.0  # a chain read from the bucket is trusted in memory this long (monotonic)
# Waits between attempts to store a chain when S3 fails (botocore retried each attempt already).
WRITE_RETRY_WAITS_S: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
# Re-reads after an invalid_grant before the chain is judged dead: the host that won a refresh
# race stores its new chain within milliseconds; this leaves it a few seconds.
SETTLE_WAITS_S: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.8, 1.5)
CONFLICT_ATTEMPTS = 6  # conditional writes refused in a row before giving up for this call
DESCRIBED = ("authorized_at", "refreshed_at", "expires_at", "broken", "broken_at")
_FIX = re.compile(r"[;:,.\s]*run:\s*sc2s3 authorize\b.*$", re.IGNORECASE | re.DOTALL)


class _Conflict(Exception):
    """A conditional write of a chain was refused (412, 409, or 404 for If-Match on a vanished
    object): somebody else wrote it since it was read."""


@dataclass(frozen=True)
class _Chain:
    """A chain as stored: its ETag and document, and when it was read (monotonic seconds)."""

    etag: str
    body: dict
    read_at: float

    @property
    def access_token(self) -> str:
        return str(self.body.get("access_token") or "")

    @property
    def refresh_token(self) -> str:
        return str(self.body.get("refresh_token") or "")

    @property
    def expires_at(self) -> float:
        try:
            return float(self.body.get("expires_at") or 0)
        except (TypeError, ValueError):
            return 0.0

    @property
    def problem(self) -> str | None:
        """Why the chain cannot be used: stored as broken, or not a chain this release reads."""
        if self.body.get("broken"):
            return str(self.body["broken"])
        if self.body.get("format") != OWNER_FORMAT:
            return f"the stored chain is not in format {OWNER_FORMAT} (got {self.body.get('format')!r})"
        if not self.access_token or not self.refresh_token:
            return "the stored chain lacks its tokens"
        return None


@dataclass
class _Unsaved:
    """A chain refreshed by this process but not stored yet: ``consumed`` is the refresh token
    redeemed for it (now dead at SoundCloud), ``etag`` the version it replaces."""

    consumed: str
    etag: str | None
    body: dict


_MISS = object()  # nothing usable in the cache


class OwnerTokens:
    """The owners' token chains of one bucket, for this process; thread-safe.

    >>> owners = OwnerTokens(soundcloud, s3, config.s3.bucket, config.s3.prefix)
    >>> token = owners.access_token(user.urn, may_refresh=True)  # None: list public tracks

    :param clock: epoch seconds, for the tokens' expiry (``expires_at``) and the stamps.
    """

    def __init__(self, soundcloud: SoundCloudClient, s3, bucket: str, prefix: str,
                 clock: Callable[[], float] = time.time):
        self.soundcloud, self.s3, self.bucket = soundcloud, s3, bucket
        self.folder = f"{prefix}state/owners/"
        self.clock = clock
        self._cache: dict[str, _Chain | tuple[float]] = {}
        self._unsaved: dict[str, _Unsaved] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def key(self, user_urn: str) -> str:
        """The chain's key: ``{prefix}state/owners/<user_urn>.json``."""
        if not USER_URN.fullmatch(user_urn):
            raise ValueError(f"not a user URN: {user_urn!r}")
        return f"{self.folder}{user_urn}.json"

    # -- what the mirror asks ------------------------------------------------------------------

    def access_token(self, user_urn: str, may_refresh: bool) -> str | None:
        """The owner's access token for user_urn, or None when no chain is stored (never
        authorized). A token returned is valid for :data:`REFRESH_MARGIN_S` more at least: ask
        again for each pass (it costs no request while the token is fresh and the chain was read
        less than :data:`CACHE_TTL_S` ago; a stale one is re-read before anything else).

        :param may_refresh: this process holds the account's lease (only the holder refreshes).
            Not the holder and the stored token is stale: None (the caller lists public tracks
            this pass).
        :raises OwnerAuthorizationError: the chain is broken (stored as broken, or invalid_grant
            now); the message ends with the fix ``run: sc2s3 authorize --account <permalink or
            urn>``.
        :raises TemporaryError: S3 or the token endpoint unreachable (UpstreamUnavailable for
            SoundCloud), or a refreshed chain could not be stored yet (kept in memory: the next
            call stores it first).
        """
        key = self.key(user_urn)
        with self._lock(user_urn):
            if user_urn in self._unsaved:
                return self._store_refreshed(user_urn, key)
            chain = self._cached(user_urn)
            if chain is _MISS or (isinstance(chain, _Chain) and chain.problem is None
                                  and not self._fresh(chain)):
                chain = self._read(user_urn, key)  # stale: maybe refreshed elsewhere since
            if chain is None:
                return None
            assert isinstance(chain, _Chain)
            if chain.problem is not None:
                raise self._broken(user_urn, chain)
            if self._fresh(chain):
                return chain.access_token
            if not may_refresh:
                log.debug("owner token stale; the account's lease holder refreshes it",
                          account=user_urn)
                return None
            return self._refresh(user_urn, key, chain)

    def refused(self, user_urn: str, may_refresh: bool) -> str | None:
        """SoundCloud answered 401 to the owner's access token before its expiry: as the lease
        holder (``may_refresh``), refresh the chain now and give the new access token; else
        None (the caller lists public tracks this pass). A revoked authorization then ends in
        ``invalid_grant``, which breaks the chain.

        :raises OwnerAuthorizationError: the chain is broken (now, or stored so).
        :raises TemporaryError: S3 or the token endpoint unreachable.
        """
        key = self.key(user_urn)
        with self._lock(user_urn):
            if user_urn in self._unsaved:
                return self._store_refreshed(user_urn, key)
            chain = self._read(user_urn, key)
            if chain is None or not may_refresh:
                return None
            if chain.problem is not None:
                raise self._broken(user_urn, chain)
            return self._refresh(user_urn, key, chain)

    def mark_broken(self, user_urn: str, reason: str) -> None:
        """Store the chain as broken (e.g. SoundCloud answered 401 to the owner's token, or
        ``/me`` named another user), conditional on the version whose token this process handed
        out last: if the chain changed since (refreshed elsewhere, authorized anew), the refusal
        concerned an older token and nothing is written. A token that had expired by the time it
        was refused (a long pass, a skewed clock) is not a broken chain either: it is forgotten
        and refreshed on the next call.

        :raises TemporaryError: S3 unreachable.
        """
        key = self.key(user_urn)
        with self._lock(user_urn):
            chain = self._cache.get(user_urn)
            if not isinstance(chain, _Chain):
                chain = self._read(user_urn, key)
            if chain is None or chain.problem is not None:
                return  # nothing to mark, broken already, or a chain this release cannot read
            if self.clock() >= chain.expires_at:
                log.info("owner token refused after it expired; it is refreshed next time",
                         account=user_urn)
                self._cache.pop(user_urn, None)
                return
            try:
                self._write_broken(user_urn, key, chain, reason)
            except _Conflict:
                log.info("owner token chain changed since its token was refused; not marked "
                         "broken", account=user_urn)
                self._cache.pop(user_urn, None)

    def describe(self, user_urn: str) -> dict | None:
        """For ``status``: ``{"authorized_at", "refreshed_at", "expires_at", "broken",
        "broken_at"}`` of the stored chain, never its tokens; None when not authorized.

        :raises TemporaryError: S3 unreachable.
        """
        key = self.key(user_urn)
        with self._lock(user_urn):
            chain = self._cached(user_urn)
            if chain is _MISS:
                chain = self._read(user_urn, key)
            if chain is None:
                return None
            assert isinstance(chain, _Chain)
            described = {name: chain.body.get(name) for name in DESCRIBED}
            if described["broken"] is None and chain.problem is not None:
                described["broken"] = chain.problem
            return described

    # -- what `sc2s3 authorize` does --------------------------------------------------------------

    def store_new_chain(self, user_urn: str, permalink: str, grant: TokenGrant) -> None:
        """Store a chain the owner just granted (``grant``: :meth:`SoundCloudClient.owner_grant`'s
        answer) over whatever is stored, broken or not: conditional on the ETag read (or
        ``If-None-Match: *`` when there is none), read again and retried on a 412.

        :raises UpstreamError: the grant has no refresh token (nothing to keep a chain with).
        :raises TemporaryError: S3 unreachable (the grant is then lost: authorize again).
        """
        key = self.key(user_urn)
        if not grant.refresh_token:
            raise UpstreamError("SoundCloud granted no refresh token; nothing to keep a chain with")
        now = self.clock()
        body = {"format": OWNER_FORMAT, "user_urn": user_urn, "permalink": permalink,
                "access_token": grant.access_token, "refresh_token": grant.refresh_token,
                "expires_at": int(now + grant.expires_in), "authorized_at": utc_stamp(now),
                "refreshed_at": utc_stamp(now), "broken": None, "broken_at": None}
        with self._lock(user_urn):
            self._with_s3_retries(user_urn, lambda: self._overwrite(user_urn, key, body))
            self._unsaved.pop(user_urn, None)  # superseded: the owner authorized anew
            log.info("owner token chain stored", account=user_urn)

    # -- refreshing ------------------------------------------------------------------------------

    def _refresh(self, user_urn: str, key: str, chain: _Chain) -> str | None:
        try:
            grant = self.soundcloud.owner_grant({"grant_type": "refresh_token",
                                                 "refresh_token": chain.refresh_token})
        except InvalidGrant as exc:
            return self._after_invalid_grant(user_urn, key, chain, exc)
        now = self.clock()
        body = {**chain.body, "access_token": grant.access_token,
                "refresh_token": grant.refresh_token or chain.refresh_token,
                "expires_at": int(now + grant.expires_in), "refreshed_at": utc_stamp(now),
                "broken": None, "broken_at": None}
        # From here until the write lands, the chain's only live refresh token is in memory.
        self._unsaved[user_urn] = _Unsaved(chain.refresh_token, chain.etag, body)
        return self._store_refreshed(user_urn, key)

    def _store_refreshed(self, user_urn: str, key: str) -> str | None:
        """Store this process's refreshed chain; its access token, or the stored chain's when a
        newer one won. :raises TemporaryError: not stored (kept for the next call)."""
        pending = self._unsaved[user_urn]
        try:
            return self._with_s3_retries(user_urn, lambda: self._try_store(user_urn, key, pending))
        except TemporaryError as exc:
            log.error("owner token refreshed but not stored; kept in memory and stored on the next "
                      "call (if this process stops first, the owner must authorize again)",
                      account=user_urn, error=str(exc))
            raise TemporaryError(f"the owner token chain of {user_urn} was refreshed but could "
                                 f"not be stored ({exc}); retried on the next pass") from exc

    def _try_store(self, user_urn: str, key: str, pending: _Unsaved) -> str | None:
        etag = pending.etag
        for _attempt in range(CONFLICT_ATTEMPTS):
            try:
                stored = _Chain(self._put(key, pending.body, etag), pending.body, time.monotonic())
            except _Conflict:
                found = self._read(user_urn, key)
                if found is None:
                    etag = None  # removed meanwhile: create it again
                    continue
                if found.refresh_token == pending.body["refresh_token"]:
                    stored = found  # our write had landed (an S3 retry answered 412)
                elif found.refresh_token == pending.consumed:
                    # Still the chain this process rotated (marked broken by a host whose refresh
                    # of it was refused meanwhile): the new chain is its only live successor.
                    etag = found.etag
                    continue
                else:
                    del self._unsaved[user_urn]
                    log.info("owner token chain replaced meanwhile; using the stored one",
                             account=user_urn)
                    return self._use(user_urn, found)
            del self._unsaved[user_urn]
            self._cache[user_urn] = stored
            log.info("owner token refreshed", account=user_urn)
            return stored.access_token
        raise TemporaryError(f"the owner token chain of {user_urn} keeps changing under "
                             f"conditional writes")

    def _after_invalid_grant(self, user_urn: str, key: str, chain: _Chain,
                             exc: InvalidGrant) -> str | None:
        found: _Chain | None = chain
        for wait in SETTLE_WAITS_S:
            if wait:
                time.sleep(wait)
            found = self._read(user_urn, key)
            if found is None:
                return None  # removed meanwhile: not authorized
            if found.etag != chain.etag and (found.problem is not None
                                             or found.refresh_token != chain.refresh_token):
                log.info("owner token refreshed elsewhere meanwhile; using the stored one",
                         account=user_urn)
                return self._use(user_urn, found)
        assert found is not None
        reason = (f"SoundCloud refused the refresh token ({exc}): it was used already (refresh "
                  f"tokens are single-use) or the owner revoked the app")
        try:
            found = self._write_broken(user_urn, key, found, reason)
        except _Conflict:
            found = self._read(user_urn, key)
            if found is None:
                return None
            if found.problem is None and found.refresh_token != chain.refresh_token:
                return self._use(user_urn, found)
            if found.problem is None:
                raise TemporaryError(f"the owner token chain of {user_urn} changed while it was "
                                     f"marked broken; tried again next pass") from exc
        raise self._broken(user_urn, found) from exc

    def _use(self, user_urn: str, chain: _Chain) -> str | None:
        """The access token of a chain another writer stored: raises if it is broken; None if it
        has expired already by this host's clock (a skewed clock: the pass lists public tracks)."""
        self._cache[user_urn] = chain
        if chain.problem is not None:
            raise self._broken(user_urn, chain)
        if self.clock() >= chain.expires_at:
            log.warning("the owner token stored by another host has expired by this host's clock",
                        account=user_urn)
            return None
        return chain.access_token

    # -- the bucket --------------------------------------------------------------------------------

    def _cached(self, user_urn: str):
        entry = self._cache.get(user_urn, _MISS)
        if entry is _MISS:
            return _MISS
        read_at = entry.read_at if isinstance(entry, _Chain) else entry[0]
        if time.monotonic() - read_at >= CACHE_TTL_S:
            return _MISS
        return entry if isinstance(entry, _Chain) else None

    def _read(self, user_urn: str, key: str) -> _Chain | None:
        """The chain as stored now (and cached). :raises TemporaryError: S3 unreachable."""
        got = get_json_object(self.s3, self.bucket, key)
        if got is None:
            self._cache[user_urn] = (time.monotonic(),)
            return None
        document, answer = got
        chain = _Chain(answer["ETag"], document or {}, time.monotonic())
        self._cache[user_urn] = chain
        return chain

    def _put(self, key: str, body: dict, etag: str | None) -> str:
        """Write ``body`` at ``key`` if its ETag is still ``etag`` (None: if there is no object);
        the new ETag. :raises _Conflict: refused. :raises TemporaryError: S3 unreachable."""
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=key, ContentType="application/json",
                                        Body=json.dumps(body, indent=1).encode(), **condition)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412) or (status == 404 and etag):
                raise _Conflict(key) from exc
            code = exc.response.get("Error", {}).get("Code", status)
            raise TemporaryError(f"cannot write {key}: S3 answered {code}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot write {key}: {exc}") from exc
        return answer["ETag"]

    def _overwrite(self, user_urn: str, key: str, body: dict) -> None:
        for _attempt in range(CONFLICT_ATTEMPTS):
            found = self._read(user_urn, key)
            try:
                etag = self._put(key, body, found.etag if found else None)
            except _Conflict:
                continue
            self._cache[user_urn] = _Chain(etag, body, time.monotonic())
            return
        raise TemporaryError(f"the owner token chain of {user_urn} keeps changing under "
                             f"conditional writes")

    def _write_broken(self, user_urn: str, key: str, chain: _Chain, reason: str) -> _Chain:
        now = self.clock()
        # Stored without a trailing "run: sc2s3 authorize …": status and errors add the fix.
        reason = _FIX.sub("", redact(" ".join(str(reason).split()))).strip()[:500]
        body = {**chain.body, "broken": reason or "refused by SoundCloud",
                "broken_at": utc_stamp(now)}
        broken = _Chain(self._put(key, body, chain.etag), body, time.monotonic())
        self._cache[user_urn] = broken
        log.warning("owner authorization marked broken; no token request until the owner "
                    "authorizes again", account=user_urn)
        return broken

    def _with_s3_retries(self, user_urn: str, attempt: Callable):
        waits = iter(WRITE_RETRY_WAITS_S)
        while True:
            try:
                return attempt()
            except TemporaryError as exc:
                wait = next(waits, None)
                if wait is None:
                    raise
                log.warning("cannot store the owner token chain; retrying", account=user_urn,
                            error=str(exc), wait_s=wait)
                time.sleep(wait)

    # -- helpers -----------------------------------------------------------------------------------

    def _fresh(self, chain: _Chain) -> bool:
        return self.clock() < chain.expires_at - REFRESH_MARGIN_S

    def _lock(self, user_urn: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(user_urn, threading.Lock())

    def _broken(self, user_urn: str, chain: _Chain) -> OwnerAuthorizationError:
        name = str(chain.body.get("permalink") or user_urn)
        reason = _FIX.sub("", chain.problem or "").strip() or "refused by SoundCloud"
        since = f" since {chain.body['broken_at']}" if chain.body.get("broken_at") else ""
        return OwnerAuthorizationError(
            f"the owner authorization of {name} ({user_urn}) is broken{since}: {reason}; "
            f"its private tracks are not mirrored until the owner authorizes again; "
            f"run: sc2s3 authorize --account {name}")
