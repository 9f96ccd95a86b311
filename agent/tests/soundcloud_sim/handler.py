"""HTTP request handling: routing, OAuth checks, API JSON, redirects, CDN byte streams and images."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import socket
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from . import images, listing, render
from .catalog import Playlist, Track, User
from .content import (
    HLS_PRESETS,
    hls_seed,
    original_seed,
    preview_seed,
    stream_views,
)
from .faults import Fault
from .hls import file_name, piece_named, playlist_text
from .renditions import hls_size, preview_size

if TYPE_CHECKING:
    from .simulator import Simulator

JSON_TYPE = "application/json; charset=utf-8"
# An S256 code_challenge: 43 characters of base64url (RFC 7636, 4.2).
_PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
_STREAM_NS = uuid.UUID("6f1c7f52-56c3-4a59-9c1b-5e0b8f9a3c11")

# (methods, path pattern, route name, handler method)
ROUTES: list[tuple[frozenset[str], re.Pattern[str], str, str]] = [
    (frozenset({"POST"}), re.compile(r"/oauth2?/token"), "token", "_token"),
    (frozenset({"GET"}), re.compile(r"/authorize"), "authorize", "_authorize"),
    (frozenset({"GET"}), re.compile(r"/me"), "me", "_me"),
    (frozenset({"GET"}), re.compile(r"/me/tracks"), "me_tracks", "_me_tracks"),
    (frozenset({"GET"}), re.compile(r"/me/playlists"), "me_playlists", "_me_playlists"),
    (frozenset({"GET"}), re.compile(r"/resolve"), "resolve", "_resolve"),
    (frozenset({"GET"}), re.compile(r"/users/(?P<key>[^/]+)"), "user", "_user"),
    (frozenset({"GET"}), re.compile(r"/users/(?P<key>[^/]+)/tracks"), "tracks_page", "_tracks"),
    (
        frozenset({"GET"}),
        re.compile(r"/users/(?P<key>[^/]+)/playlists"),
        "user_playlists",
        "_user_playlists",
    ),
    (frozenset({"GET"}), re.compile(r"/playlists/(?P<key>[^/]+)"), "playlist", "_playlist"),
    (
        frozenset({"GET"}),
        re.compile(r"/playlists/(?P<key>[^/]+)/tracks"),
        "playlist_tracks",
        "_playlist_tracks",
    ),
    (frozenset({"GET"}), re.compile(r"/tracks/(?P<key>[^/]+)"), "track", "_track"),
    (frozenset({"GET"}), re.compile(r"/tracks/(?P<key>[^/]+)/download"), "download", "_download"),
    (frozenset({"GET"}), re.compile(r"/tracks/(?P<key>[^/]+)/streams"), "streams", "_streams"),
    (
        frozenset({"GET", "HEAD"}),
        re.compile(r"/tracks/(?P<key>[^/]+)/streams/(?P<uuid>[0-9a-f-]+)/hls"),
        "hls",
        "_hls_redirect",
    ),
    (
        frozenset({"GET", "HEAD"}),
        re.compile(r"/tracks/(?P<key>[^/]+)/streams/(?P<uuid>[0-9a-f-]+)/preview"),
        "preview",
        "_preview_redirect",
    ),
    (frozenset({"GET", "HEAD"}), re.compile(r"/cdn/original/(?P<key>\d+)"), "cdn", "_cdn_original"),
    (
        frozenset({"GET", "HEAD"}),
        re.compile(r"/cdn/hls/(?P<preset>[a-z0-9_]+)/(?P<key>\d+)/playlist\.m3u8"),
        "cdn_playlist",
        "_cdn_playlist",
    ),
    (
        frozenset({"GET", "HEAD"}),
        re.compile(
            r"/cdn/hls/(?P<preset>[a-z0-9_]+)/(?P<key>\d+)/"
            r"(?P<name>\d+\.(?:aac|m4s)|media\.(?:aac|mp4))"
        ),
        "cdn_segment",
        "_cdn_segment",
    ),
    (
        frozenset({"GET", "HEAD"}),
        re.compile(r"/cdn/hls/(?P<preset>[a-z0-9_]+)/(?P<key>\d+)/(?P<name>init-\d+\.mp4)"),
        "cdn_init",
        "_cdn_segment",
    ),
    (
        frozenset({"GET", "HEAD"}),
        re.compile(r"/cdn/preview/(?P<key>\d+)\.mp3"),
        "cdn_preview",
        "_cdn_preview",
    ),
    # artwork and avatars: a public image CDN (no Authorization, not plays, not `cdn_*` counted)
    (frozenset({"GET", "HEAD"}), images.PATH, "image", "_image"),
    (frozenset({"GET"}), re.compile(r"/_sim/health"), "sim_health", "_sim_health"),
    (frozenset({"GET"}), re.compile(r"/_sim/counters"), "sim_counters", "_sim_counters"),
]


def stream_uuid(track_id: int, preset: str) -> str:
    """The stable `<uuid>` in a track's /streams URLs, one per preset."""
    return str(uuid.uuid5(_STREAM_NS, f"{track_id}:{preset}"))


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients pool connections
    server_version = "soundcloud-sim"
    disable_nagle_algorithm = True  # small JSON answers must not wait for delayed ACKs
    timeout = 120  # an idle keep-alive connection frees its thread after this

    sim: Simulator
    route = "unknown"
    params: dict[str, list[str]]
    body: bytes = b""
    fault: Fault | None = None

    def version_string(self) -> str:
        return self.server_version

    # --- dispatch -------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        self.sim = self.server.sim  # type: ignore[attr-defined]
        self.route, self.fault, self.owner = "unknown", None, None
        split = urlsplit(self.path)
        path = unquote(split.path)
        self.params = parse_qs(split.query, keep_blank_values=True)
        self.body = self._read_body()
        self.sim.counters.incr("requests")
        for methods, pattern, route, method_name in ROUTES:
            match = pattern.fullmatch(path)
            if not match:
                continue
            self.route = route
            if self.command not in methods and not (self.command == "HEAD" and "GET" in methods):
                self._send_json(405, render.error_json(405))
                return
            self.sim.counters.incr(route)
            if route.startswith("cdn"):
                self.sim.counters.incr("cdn_requests")
            named_user = route.startswith(("user", "tracks_"))
            key = match.groupdict().get("key")
            about_track = not named_user and not route.startswith("playlist") and (
                route != "image" or match.group("kind") == "artworks")
            self.fault = self.sim.faults.take(route, _track_id_of(key) if about_track else None,
                                              unquote(key) if named_user and key else None)
            if self.fault:
                self.sim.counters.incr("faults_fired")
                if self.fault.kind == "status":
                    self._send_fault_status(self.fault)
                    return
                if self.fault.kind == "expire":
                    # Time passes before this request: its signed URL (and every URL issued
                    # as long ago) has expired by the time the CDN checks it.
                    advance = self.fault.advance_s
                    self.sim.clock.advance(self.sim.url_ttl_s + 1 if advance is None else advance)
            getattr(self, method_name)(**match.groupdict())
            return
        self._send_json(404, render.error_json(404))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # --- OAuth ----------------------------------------------------------------------------

    def _token(self) -> None:
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type not in ("", "application/x-www-form-urlencoded"):
            self._send_json(400, render.oauth_error_json(400, "invalid_request", "form body"))
            return
        form = {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}
        client_id, client_secret = _basic_credentials(self.headers.get("Authorization", ""))
        client_id = client_id or form.get("client_id")
        client_secret = client_secret or form.get("client_secret")
        if (client_id, client_secret) != (self.sim.client_id, self.sim.client_secret):
            self._send_json(401, render.oauth_error_json(401, "invalid_client"))
            return
        grant_type = form.get("grant_type", "")
        now = self.sim.clock.now()
        if grant_type == "client_credentials":
            if not (
                self.sim.token_limit_app.allow(client_id, now)
                and self.sim.token_limit_ip.allow(self.client_address[0], now)
            ):
                self.sim.counters.incr("token_rate_limited")
                message = "Rate limit for client credentials tokens exceeded"
                self._send_json(429, render.error_json(429, message, render.RATE_LIMIT_LINK))
                return
            owner = None
        elif grant_type == "refresh_token":
            redeemed, owner = self.sim.tokens.redeem_refresh(form.get("refresh_token", ""))
            if not redeemed:
                self.sim.counters.incr("token_invalid_grant")
                self._send_json(400, render.oauth_error_json(400, "invalid_grant"))
                return
        elif grant_type == "authorization_code":
            owner = self.sim.tokens.redeem_code(
                form.get("code", ""), form.get("code_verifier", ""), form.get("redirect_uri", ""),
                now)
            if isinstance(owner, str):
                self.sim.counters.incr("token_invalid_grant")
                self._send_json(400, render.oauth_error_json(400, "invalid_grant", owner))
                return
        else:
            self._send_json(400, render.oauth_error_json(400, "unsupported_grant"))
            return
        self.sim.counters.incr(f"token_{grant_type}")
        grant = self.sim.tokens.issue(now, owner)
        body = {
            "access_token": grant.access_token,
            "expires_in": grant.expires_in,
            "refresh_token": grant.refresh_token,
            "token_type": "bearer",
            "scope": "",
        }
        self._send_json(200, body, {"Cache-Control": "no-store"})

    def _authorize(self) -> None:
        """The consent page (reference 2.13), approved at once by the signed-in user (the
        simulator's `signed_in`) unless `consent` is False: a 302 to the registered
        redirect_uri with `code` and `state`. A wrong client or redirect_uri is an error page,
        never a redirect."""
        query = {k: v[-1] for k, v in self.params.items()}
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.sim.client_id:
            self._send_json(400, render.oauth_error_json(400, "invalid_client"))
            return
        if redirect_uri != self.sim.redirect_uri:
            self._send_json(400, render.oauth_error_json(
                400, "invalid_request", "redirect_uri is not the one registered for the app"))
            return
        answer = {"state": query["state"]} if "state" in query else {}
        challenge = query.get("code_challenge", "")
        user = self.sim.signed_in_user()
        if query.get("response_type") != "code":
            answer["error"] = "unsupported_response_type"
        elif query.get("code_challenge_method") != "S256" or not _PKCE_CHALLENGE.fullmatch(
                challenge):
            answer["error"] = "invalid_request"  # OAuth 2.1: PKCE with S256 is required
        elif user is None or not self.sim.consent:
            answer["error"] = "access_denied"
        else:
            answer["code"] = self.sim.tokens.create_code(user.id, challenge, redirect_uri,
                                                         self.sim.clock.now())
        self._send_redirect(f"{redirect_uri}?{urlencode(answer)}")

    def _authorized(self) -> bool:
        """True when the request carries a live `Authorization: OAuth <token>`; else sends 401.
        Sets `self.owner`: the user the token belongs to (None for Client Credentials)."""
        self.owner = None
        header = self.headers.get("Authorization")
        if not header:
            # ?client_id= and ?oauth_token= no longer authenticate anything
            self._send_unauthorized(render.MISSING_AUTH_MESSAGE)
            return False
        scheme, _, token = header.partition(" ")
        if scheme != "OAuth" or not self.sim.tokens.is_valid(token.strip(), self.sim.clock.now()):
            self._send_unauthorized("")
            return False
        self.owner = self.sim.tokens.owner(token.strip(), self.sim.clock.now())
        return True

    def _may_see(self, user: User, track: Track) -> bool:
        """A private track shows to its owner's token, or with its `secret_token`."""
        return (track.sharing != "private" or self.owner == user.id
                or self._param("secret_token") == track.secret_token)

    def _may_see_playlist(self, user: User, playlist: Playlist) -> bool:
        """A private set shows to its owner's token, or with its `secret_token`."""
        return (playlist.sharing != "private" or self.owner == user.id
                or self._param("secret_token") == playlist.secret_token)

    def _may_see_in_set(self, user: User, playlist: Playlist, track_owner: User,
                        track: Track) -> bool:
        """A track inside a set: public ones show; a private track of the set's owner shows
        with the owner's token or the set's `secret_token`; other private tracks never."""
        if track.sharing != "private":
            return True
        return track_owner.id == user.id and (
            self.owner == user.id
            or (playlist.secret_token is not None
                and self._param("secret_token") == playlist.secret_token))

    def _owner_user(self) -> User | None:
        """The user of an owner token (sends 401 for any other request and returns None)."""
        if not self._authorized():
            return None
        user = self.sim.catalog.user(self.owner) if self.owner is not None else None
        if user is None:
            self._send_unauthorized("this resource needs a token of the user (Authorization Code)")
        return user

    def _send_unauthorized(self, message: str) -> None:
        self.sim.counters.incr("unauthorized")
        headers = {"WWW-Authenticate": 'OAuth realm="SoundCloud", error="invalid_token"'}
        self._send_json(401, render.error_json(401, message), headers)

    def _take_play(self) -> bool:
        """Count a play against the budget; over budget sends 429 and returns False."""
        now = self.sim.clock.now()
        if self.sim.play_budget.take(now):
            self.sim.counters.incr("plays")
            return True
        self.sim.counters.incr("plays_refused")
        self._send_rate_limited(self.sim.rate_limit_429_shape, self.sim.retry_after_s)
        return False

    def _send_rate_limited(self, shape: str, retry_after_s: int | None) -> None:
        now = self.sim.clock.now()
        budget = self.sim.play_budget
        body = render.rate_limit_json(
            shape, "plays", budget.max_plays, budget.window_s, budget.reset_time(now)
        )
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
        self._send_json(429, body, headers, content_type="application/json")

    # --- API ------------------------------------------------------------------------------

    def _resolve(self) -> None:
        if not self._authorized():
            return
        target = self._resolve_target((self.params.get("url") or [""])[-1])
        if target is None:
            self._send_json(404, render.error_json(404))
            return
        self._send_redirect(self.sim.base_url + target)

    def _resolve_target(self, url: str) -> str | None:
        """API path of a soundcloud.com user or track URL, or None."""
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or split.hostname not in (
            "soundcloud.com",
            "www.soundcloud.com",
            "m.soundcloud.com",
        ):
            return None
        parts = [unquote(p) for p in split.path.split("/") if p]
        user = self.sim.catalog.user(parts[0]) if parts else None
        if user is not None and len(parts) in (3, 4) and parts[1] == "sets":
            return self._resolve_set(user, parts[2], parts[3] if len(parts) == 4 else None)
        if user is None or len(parts) > 2:
            return None
        if len(parts) == 1:
            return f"/users/{user.urn}"
        for track in self.sim.catalog.tracks_of(user):
            if render.track_slug(track.title) == parts[1]:
                return f"/tracks/{track.urn}"
        return None

    def _resolve_set(self, user: User, slug: str, secret: str | None) -> str | None:
        """API path of a set's URL (`/<user>/sets/<slug>[/<s-token>]`), or None."""
        for playlist in self.sim.catalog.playlists_of(user):
            if render.track_slug(playlist.title) != slug:
                continue
            if secret is not None and secret == playlist.secret_token:
                return f"/playlists/{playlist.urn}?{urlencode({'secret_token': secret})}"
            if playlist.sharing != "private" or self.owner == user.id:
                return f"/playlists/{playlist.urn}"
        return None

    def _named_user(self, key: str) -> User | None:
        """The user of a `/users/{id|urn}` path; sends 404 and returns None when unknown."""
        user = self.sim.catalog.user(key) if key.isdigit() or key.startswith("soundcloud:") else None
        if user is None:
            self._send_json(404, render.error_json(404))
        return user

    def _user(self, key: str) -> None:
        if not self._authorized():
            return
        user = self._named_user(key)
        if user is None:
            return
        tracks = sum(t.sharing != "private" for t in self.sim.catalog.tracks_of(user))
        sets = sum(p.sharing != "private" for p in self.sim.catalog.playlists_of(user))
        self._send_json(200, render.user_json(self.sim.base_url, user, tracks, playlist_count=sets))

    def _tracks(self, key: str) -> None:
        if not self._authorized():
            return
        user = self._named_user(key)
        if user is not None:
            self._list_tracks(user, f"/users/{user.urn}/tracks", public_only=True)

    def _me(self) -> None:
        user = self._owner_user()
        if user is not None:
            tracks = self.sim.catalog.tracks_of(user)
            private = sum(t.sharing == "private" for t in tracks)
            sets = self.sim.catalog.playlists_of(user)
            private_sets = sum(p.sharing == "private" for p in sets)
            self._send_json(200, render.user_json(
                self.sim.base_url, user, len(tracks) - private,
                private_tracks_count=private + self.sim.me_private_tracks_extra,
                playlist_count=len(sets) - private_sets, private_playlists_count=private_sets))

    def _me_tracks(self) -> None:
        user = self._owner_user()
        if user is not None:
            self._list_tracks(user, "/me/tracks", public_only=False)

    def _counted(self, shown: Callable[[Any], bool], in_access: Callable[[Any], bool]
                 ) -> Callable[[Any], bool]:
        """What a page counts (see listing's short pages and the simulator's `short_pages`)."""
        mode = self.sim.short_pages
        if mode == "off":
            return shown
        if mode == "private":
            return in_access
        return lambda _: True

    def _paging(self) -> tuple[set[str], int, bool] | None:
        """(access, limit, descending) of a listing request; sends 400 and returns None when
        a parameter is bad."""
        try:
            access = listing.parse_access(self.params.get("access", []))
            size = self._param("page_size") or self._param("limit")
            limit = listing.parse_limit(size, self.sim.page_size_max)
            order = self._param("sort") or self._param("direction") or self._param("order")
            return access, limit, listing.parse_descending(order)
        except listing.ListingError as exc:
            self._send_json(400, render.error_json(400, str(exc)))
            return None

    def _list_tracks(self, user: User, path: str, public_only: bool) -> None:
        """A user's tracks, newest first, paged over all of them (private ones included) and
        then filtered: public listings leave private tracks out, so pages can be short."""
        paging = self._paging()
        if paging is None:
            return
        access, limit, descending = paging

        def in_access(track: Track) -> bool:
            return track.access in access

        def shown(track: Track) -> bool:
            return in_access(track) and not (public_only and track.sharing == "private")

        try:
            items, last = listing.page(
                self.sim.catalog.tracks_of(user), limit, descending, self._param("cursor"),
                counted=self._counted(shown, in_access), shown=shown)
        except listing.ListingError as exc:
            self._send_json(400, render.error_json(400, str(exc)))
            return
        collection = [render.track_json(self.sim.base_url, user, t) for t in items]
        cursor = listing.encode_cursor(last) if last is not None else None
        self._send_page(collection, cursor, path, limit, access)

    def _send_page(self, collection: list[dict[str, Any]], cursor: str | None, path: str,
                   limit: int, access: set[str]) -> None:
        """`{collection, next_href}` (the deprecated bare array without linked_partitioning)."""
        if self._param("linked_partitioning") not in ("true", "1"):
            self._send_json(200, collection)  # the deprecated bare-array form
            return
        body: dict[str, Any] = {"collection": collection}
        if cursor is not None:
            query = {k: v[-1] for k, v in self.params.items() if k not in ("cursor", "limit")}
            query.update(page_size=str(limit), cursor=cursor)
            if "access" in query:
                query["access"] = ",".join(sorted(access))
            query["linked_partitioning"] = "true"
            body["next_href"] = f"{self.sim.base_url}{path}?{urlencode(query)}"
        elif self.sim.last_page_next_href == "null":
            body["next_href"] = None
        self._send_json(200, body)

    # --- playlists (sets) -----------------------------------------------------------------

    def _playlist_json(self, user: User, playlist: Playlist, access: set[str]) -> dict[str, Any]:
        """A set's JSON with the tracks the caller may see embedded (unless show_tracks=false)."""
        inside = self.sim.catalog.playlist_tracks(playlist)
        embedded = None
        if self._param("show_tracks") != "false":
            embedded = [
                render.track_json(self.sim.base_url, owner, track)
                for _, owner, track in inside
                if track.access in access and self._may_see_in_set(user, playlist, owner, track)
            ]
        duration = sum(track.duration_ms or 0 for _, _, track in inside)
        return render.playlist_json(self.sim.base_url, user, playlist, len(inside), duration,
                                    embedded)

    def _list_playlists(self, user: User, path: str, public_only: bool) -> None:
        """A user's sets, newest first, paged over all of them (private ones included) and then
        filtered: public listings never show private sets, so pages can be short."""
        paging = self._paging()
        if paging is None:
            return
        access, limit, descending = paging

        def shown(playlist: Playlist) -> bool:
            return not (public_only and playlist.sharing == "private")

        try:
            items, last = listing.page(
                self.sim.catalog.playlists_of(user), limit, descending, self._param("cursor"),
                counted=self._counted(shown, lambda _: True), shown=shown, kind="playlists")
        except listing.ListingError as exc:
            self._send_json(400, render.error_json(400, str(exc)))
            return
        collection = [self._playlist_json(user, p, access) for p in items]
        cursor = listing.encode_cursor(last, "playlists") if last is not None else None
        self._send_page(collection, cursor, path, limit, access)

    def _me_playlists(self) -> None:
        user = self._owner_user()
        if user is not None:
            self._list_playlists(user, "/me/playlists", public_only=False)

    def _user_playlists(self, key: str) -> None:
        if not self._authorized():
            return
        user = self._named_user(key)
        if user is not None:
            self._list_playlists(user, f"/users/{user.urn}/playlists", public_only=True)

    def _visible_playlist(self, key: str) -> tuple[User, Playlist] | None:
        """The set of a `/playlists/{id|urn}` path if the caller may see it; else sends 404."""
        found = self.sim.catalog.playlist(key)
        if found is None or not self._may_see_playlist(*found):
            self._send_json(404, render.error_json(404))
            return None
        return found

    def _playlist(self, key: str) -> None:
        if not self._authorized():
            return
        found = self._visible_playlist(key)
        if found is None:
            return
        try:
            access = listing.parse_access(self.params.get("access", []))
        except listing.ListingError as exc:
            self._send_json(400, render.error_json(400, str(exc)))
            return
        self._send_json(200, self._playlist_json(*found, access))

    def _playlist_tracks(self, key: str) -> None:
        """The set's tracks in the set's order, paged over all of them (private and, with
        short_pages="all", access-filtered ones included) and then filtered."""
        if not self._authorized():
            return
        found = self._visible_playlist(key)
        paging = self._paging() if found is not None else None
        if found is None or paging is None:
            return
        user, playlist = found
        access, limit, _ = paging

        def in_access(item: tuple[User, Track]) -> bool:
            return item[1].access in access

        def shown(item: tuple[User, Track]) -> bool:
            return in_access(item) and self._may_see_in_set(user, playlist, *item)

        inside = [(pos, (owner, track))
                  for pos, owner, track in self.sim.catalog.playlist_tracks(playlist)]
        try:
            items, cursor = listing.page_in_order(
                inside, limit, self._param("cursor"),
                counted=self._counted(shown, in_access), shown=shown)
        except listing.ListingError as exc:
            self._send_json(400, render.error_json(400, str(exc)))
            return
        collection = [render.track_json(self.sim.base_url, *item) for item in items]
        self._send_page(collection, cursor, f"/playlists/{playlist.urn}/tracks", limit, access)

    def _track(self, key: str) -> None:
        if not self._authorized():
            return
        found = self.sim.catalog.track(key)
        if found is None or not self._may_see(*found):
            self._send_json(404, render.error_json(404))
            return
        self._send_json(200, render.track_json(self.sim.base_url, *found))

    def _download(self, key: str) -> None:
        if not self._authorized():
            return
        found = self.sim.catalog.track(key)
        if (found is None or not self._may_see(*found) or not found[1].downloadable
                or found[1].access != "playable"):
            self._send_json(404, render.error_json(404))
            return
        if self._take_play():
            self._send_redirect(self.sim.signed_url(f"/cdn/original/{found[1].id}"))

    def _streams(self, key: str) -> None:
        if not self._authorized():
            return
        found = self.sim.catalog.track(key)
        if found is None or not self._may_see(*found) or found[1].access == "blocked":
            self._send_json(404, render.error_json(404))
            return
        if not self._take_play():
            return
        track = found[1]
        base = f"{self.sim.base_url}/tracks/{quote(track.urn, safe=':')}/streams"
        hls_allowed = track.access == "playable"
        signed = self.sim.stream_urls == "signed"

        def hls_url(preset: str) -> str | None:
            if not hls_allowed:
                return None
            if signed:  # the CDN playlist itself, signed (it expires like a segment)
                return self.sim.signed_url(f"/cdn/hls/{preset}/{track.id}/playlist.m3u8")
            return f"{base}/{stream_uuid(track.id, preset)}/hls"

        preview = (
            self.sim.signed_url(f"/cdn/preview/{track.id}.mp3")
            if signed
            else f"{base}/{stream_uuid(track.id, 'preview_mp3_128')}/preview"
        )
        body = {
            "hls_aac_160_url": hls_url("hls_aac_160"),
            "hls_aac_96_url": hls_url("hls_aac_96"),
            "preview_mp3_128_url": preview,
        }
        self._send_json(200, body)

    def _hls_redirect(self, key: str, uuid: str) -> None:
        if not self._authorized():
            return
        found = self.sim.catalog.track(key)
        track = found[1] if found and found[1].access == "playable" else None
        preset = next(
            (p for p in HLS_PRESETS if track and stream_uuid(track.id, p) == uuid), None
        )
        if track is None or preset is None:
            self._send_json(404, render.error_json(404))
            return
        self._send_redirect(self.sim.signed_url(f"/cdn/hls/{preset}/{track.id}/playlist.m3u8"))

    def _preview_redirect(self, key: str, uuid: str) -> None:
        if not self._authorized():
            return
        found = self.sim.catalog.track(key)
        if found is None or stream_uuid(found[1].id, "preview_mp3_128") != uuid:
            self._send_json(404, render.error_json(404))
            return
        self._send_redirect(self.sim.signed_url(f"/cdn/preview/{found[1].id}.mp3"))

    # --- images (artwork, avatars) ---------------------------------------------------------

    def _image(self, kind: str, key: str, rev: str, size: str, ext: str) -> None:
        """An artwork or avatar size (images.py). Public: no Authorization, not a play. Only
        the object's current revision and the sizes its `artwork`/`avatar` has exist."""
        self.sim.counters.incr("image_requests")
        self.sim.counters.incr(f"image_requests_{size}")
        item: Track | Playlist | User | None
        if kind == "artworks":
            found = self.sim.catalog.track(key)
            item = found[1] if found else None
        elif kind == "artworks-playlists":
            found_set = self.sim.catalog.playlist(key)
            item = found_set[1] if found_set else None
        else:
            item = self.sim.catalog.user(int(key))
        if isinstance(item, User):
            artwork, revision = item.avatar, item.avatar_revision
        elif item is not None:
            artwork, revision = item.artwork, item.artwork_revision
        if item is None or rev != str(revision) or not images.exists(artwork, size, ext):
            self._send_bytes(404, b"Not Found\n", "text/plain")
            return
        payload = images.image_bytes(kind, int(key), revision, size, ext)
        etag = '"' + hashlib.md5(payload, usedforsecurity=False).hexdigest() + '"'
        headers = {"ETag": etag, "Cache-Control": "max-age=31536000"}
        self._send_bytes(200, payload, images.CONTENT_TYPES[ext], headers)

    # --- CDN ------------------------------------------------------------------------------

    def _cdn_track(self, key: str) -> Track | None:
        """The track a signed CDN request is for; sends 403/404 and returns None otherwise."""
        path = unquote(urlsplit(self.path).path)
        params = {k: v[-1] for k, v in self.params.items()}
        reason = self.sim.signer.check(path, params, self.sim.clock.now())
        if reason is not None:
            self.sim.counters.incr("cdn_denied")
            xml = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>AccessDenied</Code><Message>{reason}</Message></Error>\n"
            )
            self._send_bytes(403, xml.encode(), "text/xml")
            return None
        found = self.sim.catalog.track(key)
        if found is None:
            self._send_bytes(404, b"Not Found\n", "text/plain")
            return None
        return found[1]

    def _cdn_original(self, key: str) -> None:
        track = self._cdn_track(key)
        if track is not None:
            seed = original_seed(track.id, track.revision)
            self._serve_object(seed, track.size, track.content_type, track, track.cdn_identity)

    def _cdn_preview(self, key: str) -> None:
        track = self._cdn_track(key)
        if track is not None:
            seed = preview_seed(track.id, track.revision)
            self._serve_object(seed, preview_size(track), "audio/mpeg", track)

    def _cdn_playlist(self, key: str, preset: str) -> None:
        track = self._cdn_track(key)
        if track is None:
            return
        if preset not in HLS_PRESETS:
            self._send_bytes(404, b"Not Found\n", "text/plain")
            return
        folder = f"/cdn/hls/{preset}/{track.id}"
        signed_once: dict[str, str] = {}

        def segment_uri(name: str) -> str:
            if name not in signed_once:  # a byte-range file is signed once per playlist
                signed_once[name] = self.sim.signed_url(f"{folder}/{name}")
            signed = signed_once[name]
            return signed if self.sim.hls_segment_urls == "absolute" else signed.rsplit("/", 1)[1]

        text = playlist_text(track, preset, segment_uri)
        self._send_bytes(200, text.encode(), "application/vnd.apple.mpegurl")

    def _cdn_segment(self, key: str, preset: str, name: str) -> None:
        """A media segment or an init section; or, for a byte-range rendition, its one file."""
        track = self._cdn_track(key)
        if track is None:
            return
        if preset not in HLS_PRESETS:
            self._send_bytes(404, b"Not Found\n", "text/plain")
            return
        size = hls_size(track, preset)
        seed = hls_seed(track.id, preset, track.revision)
        content_type = "audio/mp4" if track.hls_init_maps else "audio/aac"
        if track.hls_byteranges and name == file_name(track):
            self._serve_object(seed, size, content_type, track)
            return
        piece = piece_named(track, preset, name)
        if piece is None:
            self._send_bytes(404, b"Not Found\n", "text/plain")
            return
        views = stream_views(seed, size, piece.start, piece.end)
        self._serve_views(200, {"Content-Type": content_type}, views, piece.length)

    def _serve_object(
        self, seed: str, size: int, content_type: str, track: Track, identity: bool = True
    ) -> None:
        """A progressive file with ETag, Last-Modified and (when enabled) Range/If-Range.

        Without `identity` the file has no ETag and no Content-Length (a GET body is chunked)
        and Range is ignored: nothing tells a client what it would resume.
        """
        last_modified = formatdate(track.created_at.timestamp(), usegmt=True)
        if not identity:
            headers = {"Content-Type": content_type, "Last-Modified": last_modified}
            self._serve_views(200, headers, stream_views(seed, size), None)
            return
        etag = '"' + hashlib.sha1(f"{seed}:{size}".encode(), usedforsecurity=False).hexdigest() + '"'
        headers = {"Content-Type": content_type, "ETag": etag, "Last-Modified": last_modified}
        if self.sim.range_supported:
            headers["Accept-Ranges"] = "bytes"
        wanted = self._wanted_range(size, etag, last_modified)
        if wanted == "unsatisfiable":
            headers["Content-Range"] = f"bytes */{size}"
            self._send_bytes(416, b"", "text/plain", headers)
            return
        status, start, end = (200, 0, size) if wanted is None else (206, *wanted)
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._serve_views(status, headers, stream_views(seed, size, start, end), end - start)

    def _wanted_range(
        self, size: int, etag: str, last_modified: str
    ) -> tuple[int, int] | str | None:
        """[start, end) asked for by a single-range `Range`, None for the whole file."""
        header = self.headers.get("Range")
        if not header or not self.sim.range_supported:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() not in (etag, last_modified):
            return None  # the file changed since the client's partial copy: send it all
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
        if not match or match.group(1) == match.group(2) == "":
            return None  # multi-range or malformed: ignoring Range is allowed
        first, last = match.groups()
        if first == "":  # suffix: the last N bytes
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = size if last == "" else min(size, int(last) + 1)
        if start >= size or end <= start:
            return "unsatisfiable"
        return start, end

    # --- simulator introspection (not SoundCloud; for the sandbox and benchmarks) ----------

    def _sim_health(self) -> None:
        self._send_json(200, {"status": "ok", "base_url": self.sim.base_url})

    def _sim_counters(self) -> None:
        self._send_json(200, self.sim.counters.snapshot())

    # --- responses ------------------------------------------------------------------------

    def _param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None

    def _send_redirect(self, location: str) -> None:
        self._send_json(
            302, {"status": "302 - Found", "location": location}, {"Location": location}
        )

    def _send_fault_status(self, fault: Fault) -> None:
        status = fault.status
        if status == 429:
            self._send_rate_limited(fault.shape or self.sim.rate_limit_429_shape, fault.retry_after_s)
            return
        headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else {}
        if status == 401:
            self._send_unauthorized("")
        elif status == 502:
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n"
            self._send_bytes(502, page, "text/html", headers)
        else:
            self._send_json(status, render.error_json(status), headers)

    def _send_json(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = JSON_TYPE,
    ) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        self._send_bytes(status, payload, content_type, headers)

    def _send_bytes(
        self,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        all_headers = {"Content-Type": content_type, **(headers or {})}
        self._serve_views(status, all_headers, [memoryview(payload)], len(payload))

    def _serve_views(
        self,
        status: int,
        headers: dict[str, str],
        views: Iterable[memoryview],
        length: int | None,
    ) -> None:
        """Send status, headers and `length` body bytes (none for HEAD), applying body faults.
        `length` None: no Content-Length; a GET body goes out with chunked transfer coding."""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if length is not None:
            self.send_header("Content-Length", str(length))
        elif self.command != "HEAD":
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return
        cdn = self.route.startswith("cdn")
        if cdn:
            self.sim.counters.set_max("cdn_inflight_max", self.sim.counters.incr("cdn_inflight"))
        try:
            self._write_views(views, cdn, chunked=length is None)
        except OSError:
            # client went away (broken pipe, reset, write timeout): nothing left to answer
            self.sim.counters.incr("client_aborts")
            self.close_connection = True
        finally:
            if cdn:
                self.sim.counters.incr("cdn_inflight", -1)

    def _write_views(self, views: Iterable[memoryview], cdn: bool, chunked: bool = False) -> None:
        body_fault = self.fault and self.fault.kind in ("reset", "truncate", "stall")
        fault = self.fault if body_fault else None
        sent = 0
        for view in _split_at(views, fault.after_bytes if fault else None):
            if fault is not None and sent == fault.after_bytes:
                if fault.kind == "reset":
                    self._reset_connection()
                    return
                if fault.kind == "truncate":
                    self.close_connection = True
                    return
                if fault.release is not None:
                    fault.release.wait(fault.stall_s)
                else:
                    self.sim.stopping.wait(fault.stall_s)
                fault = None
            if chunked:
                self.wfile.write(b"%x\r\n" % len(view))
            self.wfile.write(view)
            if chunked:
                self.wfile.write(b"\r\n")
            sent += len(view)
            if cdn:
                self.sim.counters.incr("cdn_bytes", len(view))
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _reset_connection(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashed CDN edge would."""
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the socket closes for real only when its file objects are gone
        self.connection.close()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if str(code).isdigit() else 0
        headers = getattr(self, "headers", None)
        wanted = headers.get("Range") if headers is not None else None
        self.sim.record(self.command, self.path, status, self.route, wanted)
        if status >= 400:
            self.sim.counters.incr(f"http_{status}")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are logged by Simulator.record


def _split_at(views: Iterable[memoryview], offset: int | None) -> Iterator[memoryview]:
    """The same bytes, with a chunk boundary exactly at `offset` (where a fault strikes)."""
    sent = 0
    for view in views:
        if offset is not None and sent < offset < sent + len(view):
            cut = offset - sent
            yield view[:cut]
            view = view[cut:]
            sent += cut
        yield view
        sent += len(view)


def _track_id_of(key: str | None) -> int | None:
    if not key:
        return None
    key = key.removeprefix("soundcloud:tracks:")
    return int(key) if key.isdigit() else None


def _basic_credentials(header: str) -> tuple[str | None, str | None]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, _, password = base64.b64decode(encoded.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    return user, password
