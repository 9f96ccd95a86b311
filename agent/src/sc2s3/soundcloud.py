"""sc2s3.soundcloud
~~~~~~~~~~~~~~~~~~~

Client for the SoundCloud public API (contract: docs/soundcloud.md, from
developers.soundcloud.com and github.com/soundcloud/api ``openapi/api.yaml``).

- OAuth 2.1 client credentials at ``{auth_url}/oauth/token``; the token is cached in memory and in
  ``state_dir/token.json`` (tokens are rate limited: 50 per 12 h per app), renewed with the
  single-use refresh token shortly before it expires, and sent as ``Authorization: OAuth <token>``.
- ``/resolve`` for permalinks, cursor pagination of ``/users/{urn}/tracks`` with ``limit=200``.
- Originals: ``/tracks/{urn}/download`` answers 302 to a signed CDN URL that expires in minutes.
- Transcodings: ``/tracks/{urn}/streams`` -> ``hls_aac_160_url`` -> HLS media playlist -> segments.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import m3u8
import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .config import SoundCloudConfig
from .errors import OwnerAuthorizationError, TemporaryError, UpstreamError, UpstreamUnavailable
from .logs import log
from .ratelimit import RateLimited, retry_at
from .state import write_atomic

USER_URN = re.compile(r"^soundcloud:users:[0-9]+$")
TRACK_URN = re.compile(r"^soundcloud:tracks:[0-9]+$")
PLAYLIST_URN = re.compile(r"^soundcloud:playlists:[0-9]+$")
SECRET_TOKEN = re.compile(r"s-[A-Za-z0-9_-]{1,64}")
# Listings leave blocked tracks out unless asked (reference 2.13): ask, so that a track that
# cannot be archived is listed with its reason instead of missing silently.
ALL_ACCESS = "playable,preview,blocked"
PAGE_LIMIT = 200  # the API's maximum page size
TOKEN_RENEW_MARGIN_S = 300
CONNECT_TIMEOUT_S = 10
# Seconds without a byte before a download counts as stalled (it is then resumed).
READ_TIMEOUT_S = float(os.environ.get("SC2S3_READ_TIMEOUT_S", "60"))
CREATED_AT_FORMAT = "%Y/%m/%d %H:%M:%S %z"  # created_at of API objects
HLS_PRESETS = ("hls_aac_160_url", "hls_aac_96_url", "hls_mp3_128_url")


class Track(BaseModel):
    """The fields of an API track object the mirror relies on; the full JSON is kept in ``raw``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    urn: str = Field(pattern=TRACK_URN.pattern)
    title: str = ""
    downloadable: bool = False
    download_url: str | None = None
    permalink_url: str | None = None
    sharing: str = "public"
    access: str = "playable"
    artwork_url: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def private(self) -> bool:
        return self.sharing == "private"

    @property
    def secret_token(self) -> str | None:
        """A private track's share token: the ``secret_token`` query parameter of its
        ``secret_uri`` (reference 2.13: a parameter of ``/tracks/{urn}`` and ``/streams``, not
        a field), or None."""
        return secret_token_of(self.raw.get("secret_uri"))

    @property
    def unarchivable(self) -> str | None:
        """Why SoundCloud serves this track's audio to no one (``access``), or None: a
        ``preview`` track has only a 30 s excerpt, a ``blocked`` one nothing."""
        if self.access == "preview":
            return "preview only: SoundCloud serves a 30 s excerpt, not the track (access=preview)"
        if self.access == "blocked":
            return "blocked: SoundCloud serves no audio for it (access=blocked)"
        return None

    def api_url(self, api_url: str, suffix: str = "") -> str:
        """``{api_url}/tracks/{urn}{suffix}``, with the private track's ``secret_token``."""
        return self.with_secret(f"{api_url}/tracks/{self.urn}{suffix}")

    def with_secret(self, url: str) -> str:
        """``url`` with the private track's ``secret_token`` added (when it has none yet)."""
        token = self.secret_token
        if not token or "secret_token" in parse_qs(urlsplit(url).query):
            return url
        return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode({'secret_token': token})}"

    @property
    def created_epoch(self) -> float | None:
        """Unix seconds of ``created_at`` (API format ``2019/01/15 15:40:49 +0000``), or None
        when it is missing or not in that format."""
        try:
            return datetime.strptime(self.raw["created_at"], CREATED_AT_FORMAT).timestamp()
        except (KeyError, TypeError, ValueError):
            return None

    @classmethod
    def from_api(cls, data: Any) -> Track:
        """Validate one track object. :raises UpstreamError: when it breaks the contract."""
        try:
            if isinstance(data, dict) and "urn" not in data and isinstance(data.get("id"), int):
                data = {**data, "urn": f"soundcloud:tracks:{data['id']}"}
            return cls.model_validate({**data, "raw": data})
        except (ValidationError, TypeError) as exc:
            raise UpstreamError(f"track object breaks the API contract: {exc}") from exc


class User(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    urn: str = Field(pattern=USER_URN.pattern)
    permalink: str = ""
    username: str = ""
    raw: dict[str, Any] = Field(default_factory=dict, exclude=True, repr=False)


@dataclass
class _Token:
    access_token: str
    refresh_token: str | None
    expires_at: float  # epoch seconds

    def fresh(self, now: float) -> bool:
        return now < self.expires_at - TOKEN_RENEW_MARGIN_S


@dataclass(frozen=True)
class TokenGrant:
    """What the token endpoint granted: an access token valid ``expires_in`` seconds from the
    answer, and the refresh token that renews it (single-use: each use returns a new one)."""

    access_token: str
    refresh_token: str | None
    expires_in: float

    def __repr__(self) -> str:  # never the tokens
        return f"TokenGrant(expires_in={self.expires_in!r})"


class InvalidGrant(OwnerAuthorizationError):
    """The token endpoint answered 400 ``invalid_grant``: an authorization code that is unknown,
    used, expired or bound to another verifier or redirect, or a refresh token that was used
    already (they are single-use) or revoked by the owner."""


class _Retry(Retry):
    # urllib3 would also retry a 429 that has Retry-After, ignoring the body's later reset_time.
    RETRY_AFTER_STATUS_CODES = frozenset({503})


def _retrying_session() -> requests.Session:
    # urllib3 retries idempotent requests on 5xx and honours Retry-After; 401 and 403 are handled
    # by the caller because they need a new token or a new signed URL, not the same request again,
    # and 429 because its wait (reset_time) can be hours: it blocks new plays instead.
    retry = _Retry(
        total=5,
        connect=5,
        read=3,
        backoff_factor=1.0,
        backoff_jitter=0.5,
        status_forcelist=(500, 502, 503, 504),  # 429s are the play budget's (ratelimit.py)
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["Accept-Encoding"] = "identity"  # byte counts must match Content-Length
    return session


class SoundCloudClient:
    """A thread-safe client for one SoundCloud app.

    >>> client = SoundCloudClient(config.soundcloud, budget, state_dir=Path("/var/lib/sc2s3"))
    >>> user = client.resolve_user("band-one")
    >>> for track in client.iter_tracks(user.urn): ...

    :param budget: the app's play budget (:class:`~sc2s3.plays.FleetPlayBudget`): every play is
        spent from it, and a 429 blocks it for the whole fleet.
    """

    def __init__(self, config: SoundCloudConfig, budget, state_dir: Path | None = None):
        self.config, self.budget = config, budget
        self.session = _retrying_session()
        self._token_file = state_dir / "token.json" if state_dir else None
        self._token: _Token | None = None
        self._token_lock = threading.Lock()

    # -- OAuth ---------------------------------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token, renewing or fetching one only when needed."""
        with self._token_lock:
            now = time.time()
            if self._token is None:
                self._token = self._load_token()
            if self._token is None or not self._token.fresh(now):
                self._token = self._renew(self._token)
                self._save_token(self._token)
            return self._token.access_token

    def invalidate_token(self, token: str) -> None:
        """Forget ``token`` after the API rejected it (401), so the next call renews it."""
        with self._token_lock:
            if self._token and self._token.access_token == token:
                self._token = _Token(token, self._token.refresh_token, 0)

    def _renew(self, old: _Token | None) -> _Token:
        if old and old.refresh_token:
            token = self._token_request({"grant_type": "refresh_token",
                                         "refresh_token": old.refresh_token}, quiet=True)
            if token:
                return token
        token = self._token_request({"grant_type": "client_credentials"})
        assert token is not None
        return token

    def _token_request(self, form: dict, quiet: bool = False) -> _Token | None:
        response = self._token_post(form)
        if response.status_code == 400 and quiet:
            log.info("refresh token refused; fetching a new token", status=400)
            return None
        grant = self._grant_of(response)
        return _Token(grant.access_token, grant.refresh_token, time.time() + grant.expires_in)

    def owner_grant(self, form: dict, credentials_in_form: bool = False) -> TokenGrant:
        """POST a grant of the owner's Authorization Code flow (reference 2.13) to
        ``{auth_url}/oauth/token``: ``authorization_code`` (``code``, ``redirect_uri``,
        ``code_verifier``) or ``refresh_token``. Never retried: a refresh token is single-use.

        :param credentials_in_form: send ``client_id`` and ``client_secret`` as form fields (the
            code exchange as documented) instead of HTTP Basic (how the app's own token goes).
        :raises InvalidGrant: 400 ``invalid_grant``.
        :raises UpstreamError: any other refusal (another 400, client credentials refused).
        :raises UpstreamUnavailable: unreachable, 5xx, or 429 (:class:`RateLimited`).
        """
        if credentials_in_form:
            form = {**form, "client_id": self.config.client_id,
                    "client_secret": self.config.read_client_secret()}
        response = self._token_post(form, basic_auth=not credentials_in_form)
        if response.status_code == 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            body = body if isinstance(body, dict) else {}
            error, message = str(body.get("error") or ""), str(body.get("message") or "")
            if error == "invalid_grant" or "invalid_grant" in message:
                detail = str(body.get("error_description") or "")[:200]
                raise InvalidGrant("invalid_grant" + (f": {detail}" if detail not in (
                    "", "invalid_grant") else ""))
            raise UpstreamError(f"SoundCloud token endpoint refused the {form.get('grant_type')} "
                                f"grant (HTTP 400 {(error or message)[:100]})")
        return self._grant_of(response)

    def _token_post(self, form: dict, basic_auth: bool = True) -> requests.Response:
        url = f"{self.config.auth_url}/oauth/token"
        auth = (self.config.client_id, self.config.read_client_secret()) if basic_auth else None
        try:
            return self.session.post(url, data=form, auth=auth,
                                     timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as exc:
            raise UpstreamUnavailable(f"SoundCloud token endpoint unreachable: {exc}") from exc

    def _grant_of(self, response: requests.Response) -> TokenGrant:
        """The grant of a token endpoint answer, or the error its status means."""
        if response.status_code in (401, 403):
            raise UpstreamError(f"SoundCloud refused the client credentials (HTTP "
                                f"{response.status_code}); check soundcloud.client_id and the secret")
        if response.status_code == 429:
            raise RateLimited("SoundCloud token endpoint answered HTTP 429",
                              retry_at(response, self.budget.now() if self.budget else None))
        if response.status_code != 200:
            raise UpstreamUnavailable(f"SoundCloud token endpoint answered HTTP {response.status_code}")
        body = _json(response)
        try:
            refresh = body.get("refresh_token")
            return TokenGrant(str(body["access_token"]), str(refresh) if refresh else None,
                              float(body.get("expires_in", 3599)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise UpstreamError("token response lacks access_token/expires_in") from exc

    def _load_token(self) -> _Token | None:
        if not self._token_file or not self._token_file.exists():
            return None
        try:
            data = json.loads(self._token_file.read_text())
            return _Token(str(data["access_token"]), data.get("refresh_token"),
                          float(data["expires_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable token cache", path=str(self._token_file))
            return None

    def _save_token(self, token: _Token) -> None:
        # Written atomically before the refresh token can be used again: it is single-use.
        if self._token_file:
            write_atomic(self._token_file, json.dumps(token.__dict__).encode())

    # -- API calls -----------------------------------------------------------------------------

    def get(self, url: str, play: bool = False, owner_token: str | None = None,
            **kwargs) -> requests.Response:
        """GET ``url``, with the OAuth header when it is on the API origin; renews the app's
        token once on 401.

        :param play: the request counts against the play budget (``/download``, ``/streams``).
        :param owner_token: send the account owner's access token (Authorization Code, reference
            2.13) instead of the app's; a 401 then raises :class:`OwnerAuthorizationError`.
        :raises RateLimited: HTTP 429 (new plays are blocked until its reset), or no budget left.
        :raises UpstreamUnavailable: network failure or 5xx after retries.
        :raises UpstreamError: any other non-2xx/3xx answer.
        """
        if play:
            self.budget.spend()
        authorized = self._api_origin(url)
        for attempt in (1, 2):
            headers = {"Accept": "application/json"}
            if authorized:
                token = owner_token or self.access_token()
                headers["Authorization"] = f"OAuth {token}"
            try:
                response = self.session.get(url, headers=headers,
                                            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S), **kwargs)
            except requests.RequestException as exc:
                raise UpstreamUnavailable(f"SoundCloud unreachable: {scrub_url(url)}: {exc}") from exc
            if response.status_code == 401 and authorized and owner_token:
                raise OwnerAuthorizationError(f"SoundCloud refused the owner's token (HTTP 401) "
                                              f"for {scrub_url(url)}")
            if response.status_code == 401 and authorized and attempt == 1:
                self.invalidate_token(token)
                continue
            break
        if response.status_code == 429:
            until = retry_at(response, self.budget.now())
            self.budget.block_until(until)
            raise RateLimited(f"SoundCloud answered HTTP 429 for {scrub_url(url)}", until)
        if response.status_code >= 500:
            raise UpstreamUnavailable(f"SoundCloud answered HTTP {response.status_code} for {scrub_url(url)}")
        if response.status_code >= 400:
            raise UpstreamError(f"SoundCloud answered HTTP {response.status_code} for {scrub_url(url)}")
        return response

    def _api_origin(self, url: str) -> bool:
        """True when ``url`` is on the configured ``api_url`` origin (scheme, host, port): only
        there does the OAuth token go, never to a CDN, a playlist host, a ``next_href`` or
        ``download_url`` elsewhere, nor over plain http when ``api_url`` is https. (requests
        already drops the header on a redirect to another host.)"""
        return _origin(url) == _origin(self.config.api_url)

    def resolve_user(self, account: str) -> User:
        """The user for a permalink (``band-one``) or a user URN (``soundcloud:users:1``)."""
        if USER_URN.fullmatch(account):
            url = f"{self.config.api_url}/users/{account}"
        else:
            profile = f"https://soundcloud.com/{quote(account, safe='')}"
            url = f"{self.config.api_url}/resolve?url={quote(profile, safe='')}"
        data = _json(self.get(url))
        try:
            return User.model_validate({**data, "raw": data})
        except (ValidationError, TypeError) as exc:
            raise UpstreamError(f"account {account!r} did not resolve to a user: {exc}") from exc

    def me(self, owner_token: str) -> dict:
        """``GET /me`` with the owner's token: the user object, with ``track_count`` (public)
        and ``private_tracks_count`` (reference 2.13).

        :raises OwnerAuthorizationError: the token was refused. :raises UpstreamError: the answer
            is not a user object."""
        data = _json(self.get(f"{self.config.api_url}/me", owner_token=owner_token))
        if not isinstance(data, dict) or not USER_URN.fullmatch(str(data.get("urn", ""))):
            raise UpstreamError("/me did not answer a user object with a user URN")
        return data

    def iter_tracks(self, user_urn: str, malformed: list[str] | None = None,
                    owner_token: str | None = None):
        """Yield every :class:`Track` of the user, following ``next_href`` cursors: with the
        owner's token ``/me/tracks`` (private tracks included), else ``/users/{urn}/tracks``;
        both with ``access=playable,preview,blocked`` (tracks that cannot be archived are listed
        too).

        :param malformed: where a track object that breaks the contract is reported (its error
            text) and skipped, so one bad item does not stall the account; None: raise.
        :raises UpstreamError: a page is not a track page, or a ``next_href`` repeats (a loop).
        :raises OwnerAuthorizationError: the owner's token was refused.
        """
        path = "/me/tracks" if owner_token else f"/users/{user_urn}/tracks"
        url = (f"{self.config.api_url}{path}?linked_partitioning=true&limit={PAGE_LIMIT}"
               f"&access={quote(ALL_ACCESS, safe='')}")
        for item in self.iter_collection(url, "track", owner_token=owner_token):
            try:
                track = Track.from_api(item)
            except UpstreamError as exc:
                if malformed is None:
                    raise
                malformed.append(str(exc))
                continue
            yield track

    def iter_collection(self, url: str, kind: str, owner_token: str | None = None):
        """Yield the raw items of a paged ``collection``, following ``next_href`` until it is
        absent: never stopping on a short or empty page (pages count items the token cannot
        see, reference 2.13).

        :param kind: what the items are, for error messages (``track``, ``playlist``).
        :raises UpstreamError: a page lacks its ``collection`` list, or a ``next_href`` repeats
            (a loop) or is not an http(s) URL.
        """
        fetched: set[str] = set()
        while url:
            if url in fetched:
                raise UpstreamError(f"{kind} pages loop: next_href repeats {scrub_url(url)}")
            fetched.add(url)
            page = _json(self.get(url, owner_token=owner_token))
            collection = page.get("collection") if isinstance(page, dict) else None
            if not isinstance(collection, list):
                raise UpstreamError(f"{kind} page lacks a 'collection' list")
            yield from collection
            url = page.get("next_href") or None
            if url is not None and not str(url).startswith(("http://", "https://")):
                raise UpstreamError(f"{kind} page has a next_href that is not an http(s) URL")

    def signed_download_url(self, track: Track) -> str:
        """Follow ``/tracks/{urn}/download`` to its short-lived signed CDN URL (not followed)."""
        url = track.with_secret(track.download_url) if track.download_url \
            else track.api_url(self.config.api_url, "/download")
        response = self.get(url, play=True, allow_redirects=False)
        location = response.headers.get("Location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            raise UpstreamError(f"download of {track.urn} did not redirect to the CDN")
        return requests.compat.urljoin(url, location)

    def cdn_identity(self, track: Track) -> tuple[str | None, int | None]:
        """``(ETag, Content-Length in bytes)`` of the original on the CDN, by HEAD (costs one
        play); either is None when the CDN does not say.

        :raises RateLimited: plays are blocked. :raises TemporaryError: the CDN or SoundCloud is
            unreachable or failing. :raises UpstreamError: ``/download`` did not redirect.
        """
        url = self.signed_download_url(track)
        try:
            response = self.session.head(url, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
        except requests.RequestException as exc:
            raise TemporaryError(f"CDN unreachable: {exc}") from exc
        if response.status_code != 200:
            raise TemporaryError(f"CDN answered HEAD with HTTP {response.status_code}")
        length = response.headers.get("Content-Length", "")
        return response.headers.get("ETag"), \
            int(length) if length.isascii() and length.isdigit() else None

    def hls_playlist_url(self, track: Track) -> tuple[str, str]:
        """``(preset, url)`` of the best HLS transcoding from ``/tracks/{urn}/streams`` (a play).

        The URL is either an API URL that redirects to a freshly signed CDN playlist (it can be
        fetched again later), or a signed CDN playlist URL that expires in minutes."""
        streams = _json(self.get(track.api_url(self.config.api_url, "/streams"), play=True))
        for field in HLS_PRESETS:
            url = streams.get(field) if isinstance(streams, dict) else None
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                return field.removesuffix("_url"), url
        raise UpstreamError(f"{track.urn} has no HLS transcoding in /streams")

    def hls_parts(self, playlist_url: str, _master: str | None = None) -> list[HlsPart]:
        """What to fetch, in order, to archive the HLS rendition at ``playlist_url`` (after its
        redirect to the CDN; a master playlist leads to its highest-bandwidth rendition): each
        ``EXT-X-MAP`` init section just before the first segment it applies to, and every media
        segment, with its ``EXT-X-BYTERANGE`` made explicit.

        :raises SignedUrlRefused: the CDN refused the (signed) playlist URL: it expired.
        :raises UpstreamError: no segments, encrypted, a byte range without a start, or a master
            playlist whose rendition is itself a master playlist (or names itself): an error,
            not a loop.
        """
        response = self._hls_get(playlist_url)
        try:
            playlist = m3u8.loads(response.text, uri=response.url)
        except Exception as exc:  # the parser raises several unrelated types on garbage
            raise UpstreamError(f"unreadable HLS playlist {scrub_url(playlist_url)}: {exc}") from exc
        if playlist.is_variant:
            if _master is not None:
                raise UpstreamError(f"HLS master playlist {scrub_url(_master)} leads to another "
                                    f"master playlist, {scrub_url(playlist_url)}")
            if not playlist.playlists:
                raise UpstreamError(f"HLS master playlist {scrub_url(playlist_url)} has no rendition")
            # A master playlist: take the highest-bandwidth rendition.
            best = max(playlist.playlists, key=lambda p: p.stream_info.bandwidth or 0)
            return self.hls_parts(best.absolute_uri, _master=playlist_url)
        if not playlist.segments:
            raise UpstreamError("HLS playlist has no segments")
        if any(segment.key and segment.key.method not in (None, "NONE")
               for segment in playlist.segments):
            raise UpstreamError("HLS playlist is encrypted; cannot archive it")
        parts: list[HlsPart] = []
        current_map: tuple[str, tuple[int, int] | None] | None = None
        previous: tuple[str, int] | None = None  # (URI, end) of the last media sub-range
        for segment in playlist.segments:
            init = segment.init_section
            if init is not None and init.uri:
                url = _absolute(init.absolute_uri, init.uri, response.url)
                this_map = (url, _byterange(init.byterange, None, url, init=True))
                if this_map != current_map:
                    parts.append(HlsPart(url, None, this_map[1], init=True))
                    current_map = this_map
            url = _absolute(segment.absolute_uri, segment.uri, response.url)
            byterange = _byterange(segment.byterange, previous, url)
            # The same resource even if each line carries its own signature.
            previous = (scrub_url(url), byterange[0] + byterange[1]) if byterange else None
            parts.append(HlsPart(url, segment.duration, byterange))
        return parts

    def _hls_get(self, url: str) -> requests.Response:
        """GET an HLS playlist (the OAuth header only on the API origin; a redirect to the CDN
        is followed without it). A 403, from the CDN or the redirect's start, means a signed URL
        expired: :class:`SignedUrlRefused`, not an :class:`UpstreamError`."""
        return self.get(url, hooks={"response": _refuse_expired})


def _refuse_expired(response: requests.Response, *args, **kwargs) -> None:
    """A requests response hook (it sees every response of a redirect chain): 403 raises
    :class:`SignedUrlRefused`."""
    if response.status_code == 403:
        response.close()
        raise SignedUrlRefused(f"CDN refused the signed playlist URL {scrub_url(response.url)} "
                               "(HTTP 403; expired?)")


class SignedUrlRefused(TemporaryError):
    """The CDN refused a signed URL (HTTP 403): it expired (they last minutes) or its key was
    rotated. A fresh one is needed, not the same request again."""


@dataclass(frozen=True)
class HlsPart:
    """One request of an HLS rendition: an ``EXT-X-MAP`` init section (``init``) or a media
    segment (``duration`` in seconds), the whole resource at ``url`` or the sub-range
    ``byterange`` = ``(offset, length)`` of it.

    ``shape`` is what stays the same when the playlist is fetched again: everything but the
    URLs' query strings, where the CDN's signatures are. ``byterange`` is in bytes."""

    url: str
    duration: float | None
    byterange: tuple[int, int] | None = None
    init: bool = False

    @property
    def shape(self) -> tuple[str, bool, float | None, tuple[int, int] | None]:
        resource = urlsplit(self.url)
        return (f"{resource.scheme}://{resource.netloc}{resource.path}", self.init,
                self.duration, self.byterange)


def _absolute(absolute_uri: str | None, uri: str, base: str) -> str:
    return absolute_uri or requests.compat.urljoin(base, uri)


def _byterange(value: str | None, previous: tuple[str, int] | None, url: str,
               init: bool = False) -> tuple[int, int] | None:
    """``(offset, length)`` of an ``EXT-X-BYTERANGE`` / ``BYTERANGE`` value ``n[@o]``. Without
    ``o``, a segment's range starts where the previous media segment's range of the same URI
    ended (RFC 8216 §4.3.2.2; ``previous`` is its URI and end), an init section's at 0."""
    if not value:
        return None
    length, _, offset = str(value).strip().partition("@")
    if not length.isdigit() or (offset and not offset.isdigit()):
        raise UpstreamError(f"HLS playlist has a malformed byte range {value!r}")
    if offset:
        return int(offset), int(length)
    if init:
        return 0, int(length)
    if previous is None or previous[0] != scrub_url(url):
        raise UpstreamError(f"HLS byte range {value!r} has no start: no previous sub-range of "
                            "the same resource")
    return previous[1], int(length)


def secret_token_of(url: object) -> str | None:
    """The ``secret_token`` query parameter of a ``secret_uri`` (``s-`` and letters), or None."""
    if not isinstance(url, str):
        return None
    values = parse_qs(urlsplit(url).query).get("secret_token", [])
    token = values[-1] if values else ""
    return token if SECRET_TOKEN.fullmatch(token) else None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise UpstreamError(f"non-JSON answer from {scrub_url(response.url)}") from exc


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"https": 443, "http": 80}.get(scheme)
    except ValueError:  # a port that is not a number: matches nothing
        return scheme, "", -1
    return scheme, (parts.hostname or "").lower(), port


def scrub_url(url: str) -> str:
    """``url`` without its query string (it may carry a signature), for logs and messages."""
    return url.split("?", 1)[0]
