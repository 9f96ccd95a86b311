"""The Simulator: SoundCloud's API, OAuth and CDN hosts as one threaded HTTP server on loopback."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import sys
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer
from typing import Any

from .catalog import Catalog
from .clock import Clock
from .counters import Counters
from .faults import Fault, FaultPlan
from .handler import SimHandler
from .limits import PlayBudget, SlidingWindowLimit
from .listing import SHORT_PAGES
from .signing import UrlSigner
from .tokens import TokenStore

RATE_LIMIT_SHAPES = ("errors", "spam")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, SimHandler)

    def server_bind(self) -> None:
        # skip HTTPServer's reverse-DNS lookup of the bind address
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Wake handler threads blocked on idle keep-alive connections so they exit."""
        with self._open_lock:
            for conn in list(self._open):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class Simulator:
    """A running fake of SoundCloud. `base_url` serves the API, the OAuth token endpoint and the
    CDN. See the package docstring for the knobs; all times are seconds."""

    def __init__(
        self,
        catalog: Catalog,
        client_id: str,
        client_secret: str,
        host: str = "127.0.0.1",
        port: int = 0,
        token_ttl_s: int = 3599,
        url_ttl_s: int = 300,
        range_supported: bool = True,
        page_size_max: int = 200,
        rate_limit_429_shape: str = "errors",
        play_budget: int = 15_000,
        play_window_s: float = 86_400,
        token_limit_app: tuple[int, float] = (50, 12 * 3600),
        token_limit_ip: tuple[int, float] = (30, 3600),
        hls_segment_urls: str = "relative",
        stream_urls: str = "redirect",
        last_page_next_href: str = "null",
        retry_after_s: int | None = None,
        log_requests: bool = False,
        redirect_uri: str = "http://127.0.0.1:8765/callback",
        signed_in: str | int | None = None,
        short_pages: str = "private",
    ) -> None:
        if rate_limit_429_shape not in RATE_LIMIT_SHAPES:
            raise ValueError(f"rate_limit_429_shape must be one of {RATE_LIMIT_SHAPES}")
        if hls_segment_urls not in ("relative", "absolute"):
            raise ValueError("hls_segment_urls must be relative or absolute")
        if stream_urls not in ("redirect", "signed"):
            raise ValueError("stream_urls must be redirect or signed")
        if last_page_next_href not in ("null", "absent"):
            raise ValueError("last_page_next_href must be null or absent")
        if short_pages not in SHORT_PAGES:
            raise ValueError(f"short_pages must be one of {SHORT_PAGES}")
        self.catalog = catalog
        self.client_id = client_id
        self.client_secret = client_secret
        self.host, self.port = host, port
        self.url_ttl_s = url_ttl_s
        self.range_supported = range_supported
        self.page_size_max = page_size_max
        self.rate_limit_429_shape = rate_limit_429_shape
        self.hls_segment_urls = hls_segment_urls
        self.stream_urls = stream_urls
        self.last_page_next_href = last_page_next_href
        # What a listing page counts before hiding what the caller may not see (listing.py):
        # "private" (default, as SoundCloud: private items count), "all" (access-filtered
        # items count too) or "off" (full pages of visible items only).
        self.short_pages = short_pages
        self.retry_after_s = retry_after_s
        self.log_requests = log_requests
        # The app's registered redirect, and who is signed in on the consent page (None: the
        # catalog's first user); `consent = False` makes them deny it.
        self.redirect_uri = redirect_uri
        self.signed_in = signed_in
        self.consent = True
        # /me counts this many more private tracks than /me/tracks lists (SoundCloud's counts
        # and listings disagree at times: reference 2.13).
        self.me_private_tracks_extra = 0
        self.clock = Clock()
        self.counters = Counters()
        self.faults = FaultPlan()
        self.tokens = TokenStore(token_ttl_s)
        self.signer = UrlSigner()
        self.play_budget = PlayBudget(play_budget, play_window_s)
        self.token_limit_app = SlidingWindowLimit(*token_limit_app)
        self.token_limit_ip = SlidingWindowLimit(*token_limit_ip)
        self.request_log: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Simulator:
        self.stopping.clear()
        self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.stopping.set()  # releases stalled-body faults
        self._server.shutdown()
        self._server.close_open_connections()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.base_url

    @property
    def auth_url(self) -> str:
        return self.base_url

    def signed_url(self, path: str, ttl_s: float | None = None) -> str:
        """Absolute CDN URL for `path`, valid for `ttl_s` (default url_ttl_s) from now."""
        ttl = self.url_ttl_s if ttl_s is None else ttl_s
        return f"{self.base_url}{path}?{self.signer.query(path, self.clock.now() + ttl)}"

    # --- test controls --------------------------------------------------------------------

    def reset_counters(self) -> None:
        self.counters.reset()

    def fail_next(self, route: str, status: int = 503, **options: Any) -> Fault:
        """One-shot fault on the next request to `route`; see faults.Fault for the options."""
        return self.faults.fail_next(route, status, **options)

    def issue_token(self, user: str | int | None = None) -> str:
        """An access token without an HTTP round trip (not counted against token limits); with
        ``user``, that user's own (as the Authorization Code flow gives it)."""
        owner = self.catalog.user(user).id if user is not None else None
        return self.tokens.issue(self.clock.now(), owner).access_token

    def signed_in_user(self):
        """The user who approves the consent page (see ``signed_in``), or None."""
        if self.signed_in is not None:
            return self.catalog.user(self.signed_in)
        return self.catalog.users[0] if self.catalog.users else None

    def revoke(self, user: str | int) -> None:
        """The user revokes the app: their tokens answer 401, their refresh tokens invalid_grant."""
        self.tokens.revoke_user(self.catalog.user(user).id)

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        self.tokens.expire_all()

    def rotate_url_key(self) -> None:
        """Every signed CDN URL issued so far answers 403 from now on."""
        self.signer.rotate()

    def record(
        self, method: str, path: str, status: int, route: str, range_header: str | None = None
    ) -> None:
        """Called once per response: keeps the request log and prints it when asked to."""
        self.request_log.append(
            {
                "method": method,
                "path": path,
                "status": status,
                "route": route,
                "range": range_header,
                "at": time.time(),
            }
        )
        if self.log_requests:
            shown = path.split("?Policy=")[0]  # signatures are long and say nothing
            print(f"{method} {shown} {status} route={route}", file=sys.stderr, flush=True)
