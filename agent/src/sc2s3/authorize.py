"""sc2s3.authorize
~~~~~~~~~~~~~~~~~~

``sc2s3 authorize --account A``: the account owner's one-time consent, so that the fleet mirrors
the account's private tracks too (reference 2.13; docs/owner-authorization.md).

OAuth 2.1 Authorization Code with PKCE (RFC 7636, S256) and a random ``state``:

1. a callback server listens on ``[soundcloud] redirect_uri`` (a loopback http URL with its port,
   the one registered for the app; on a host, reached from the owner's browser through
   ``ssh -L 8765:127.0.0.1:8765``);
2. the owner opens ``{auth_url}/authorize?client_id&redirect_uri&response_type=code
   &code_challenge&code_challenge_method=S256&state`` and consents;
3. SoundCloud redirects the browser to the callback with ``code`` and ``state``; a ``state``
   other than ours is refused before anything else (a forged or stale answer);
4. the code is exchanged at ``{auth_url}/oauth/token`` with the verifier, ``/me`` with the new
   token must be account A's user, and the chain is stored for the fleet
   (:meth:`~sc2s3.owners.OwnerTokens.store_new_chain`).

``--refresh-token-file PATH`` seeds the chain from an owner's refresh token instead (Ansible, from
the vault), but only when no working chain is stored: the token is single-use, so the vault's copy
is stale after its first use and the fleet keeps the chain from then on.

Exit codes: 0 done (or already authorized), 1 refused (consent denied, wrong ``state``, a token
of another account, ``invalid_grant``), 2 usage, 75 temporary (timeout, port busy, unreachable),
78 invalid config. No token is ever printed or logged.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import queue
import secrets
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from .config import Config
from .errors import (
    EXIT_USAGE,
    ConfigError,
    OwnerAuthorizationError,
    Sc2s3Error,
    TemporaryError,
    UpstreamError,
)
from .logs import log
from .owners import OwnerTokens
from .soundcloud import USER_URN, InvalidGrant, SoundCloudClient, TokenGrant, User

DEFAULT_TIMEOUT_S = 300.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CALLBACK_READ_TIMEOUT_S = 10  # a browser's idle pre-connection must not hold the server


class UsageError(Sc2s3Error):
    """The command line names something it cannot (exit 2)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class Redirect:
    """Where the callback server listens: the redirect URI's loopback host, port and path."""

    uri: str
    host: str
    port: int
    path: str


def loopback_redirect(config: Config) -> Redirect:
    """``[soundcloud] redirect_uri`` as a place to listen on this machine.

    :raises ConfigError: not a loopback http URL with an explicit port.
    """
    uri = config.soundcloud.redirect_uri
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or parts.hostname not in LOOPBACK_HOSTS or not port \
            or parts.fragment:
        raise ConfigError(
            f"soundcloud.redirect_uri: {uri} cannot receive the consent here; `sc2s3 authorize` "
            f"needs a loopback http URL with an explicit port, e.g. "
            f"http://127.0.0.1:8765/callback (the one registered for the SoundCloud app)")
    return Redirect(uri, parts.hostname, port, parts.path or "/")


def new_verifier() -> str:
    """A PKCE code verifier: 86 characters of the unreserved set (RFC 7636: 43 to 128)."""
    return secrets.token_urlsafe(64)


def code_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)) without padding (RFC 7636, 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(config: Config, challenge: str, state: str) -> str:
    """The consent page's URL for the owner's browser."""
    query = {"client_id": config.soundcloud.client_id,
             "redirect_uri": config.soundcloud.redirect_uri, "response_type": "code",
             "code_challenge": challenge, "code_challenge_method": "S256", "state": state}
    return f"{config.soundcloud.auth_url}/authorize?{urlencode(query)}"


def exchange_code(soundcloud: SoundCloudClient, config: Config, code: str,
                  verifier: str) -> TokenGrant:
    """Exchange an authorization code for the owner's tokens (``authorization_code`` with the
    PKCE verifier, client credentials in the form).

    :raises InvalidGrant: SoundCloud refused the code (used, expired, another verifier...).
    """
    return soundcloud.owner_grant({"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": config.soundcloud.redirect_uri,
                                   "code_verifier": verifier}, credentials_in_form=True)


def read_refresh_token(path: str) -> str:
    """The refresh token in the file at ``path`` (``-``: stdin), stripped.

    :raises UsageError: unreadable, empty, or more than one word.
    """
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--refresh-token-file {path}: cannot read it "
                         f"({getattr(exc, 'strerror', None) or exc})") from exc
    token = text.strip()
    if not token or len(token.split()) != 1:
        raise UsageError(f"--refresh-token-file {path}: it must hold one refresh token (got "
                         f"{'nothing' if not token else 'several words'})")
    return token


class _NoPlays:
    """The play budget of a command that plays nothing (it only resolves and asks /me)."""

    def spend(self) -> None:
        raise AssertionError("sc2s3 authorize plays nothing")

    def now(self) -> float:
        return time.time()

    def block_until(self, until: float) -> None:
        pass


def soundcloud_client(config: Config) -> SoundCloudClient:
    """A client for the command: it shares the agent's app-token cache when it may write it
    (on a host, as the agent's user), else keeps its token in memory (a workstation)."""
    state_dir = Path(config.agent.state_dir)
    usable = state_dir.is_dir() and os.access(state_dir, os.W_OK | os.X_OK)
    return SoundCloudClient(config.soundcloud, _NoPlays(), state_dir if usable else None)


def authorize_account(config: Config, s3, account: str, *, no_browser: bool = False,
                      timeout_s: float = DEFAULT_TIMEOUT_S, refresh_token: str | None = None,
                      echo: Callable[[str], None] = print,
                      open_browser: Callable[[str], bool] = webbrowser.open,
                      soundcloud: SoundCloudClient | None = None) -> str:
    """Run ``sc2s3 authorize`` for ``account``; the line that says what was done.

    :param refresh_token: seed from this refresh token instead of the browser (unless a working
        chain is stored already: it is then not used).
    :raises UsageError: ``account`` is not one of ``[soundcloud] accounts``.
    :raises ConfigError: ``redirect_uri`` is not a loopback http URL with a port.
    :raises OwnerAuthorizationError: the authorization was refused (nothing stored).
    :raises TemporaryError: timed out, the port is busy, S3 or SoundCloud unreachable.
    """
    redirect = loopback_redirect(config) if refresh_token is None else None
    soundcloud = soundcloud or soundcloud_client(config)
    owners = OwnerTokens(soundcloud, s3, config.s3.bucket, config.s3.prefix)
    user = configured_user(config, soundcloud, account)
    name = f"{user.permalink or account} ({user.urn})"
    if refresh_token is not None:
        return _seed(config, s3, soundcloud, owners, user, account, name, refresh_token)
    assert redirect is not None
    verifier, state = new_verifier(), secrets.token_urlsafe(32)
    url = authorize_url(config, code_challenge(verifier), state)
    with CallbackServer(redirect, state) as server:
        if no_browser:
            echo(f"Open this URL in a browser: {url}")
        else:
            opened = False
            try:
                opened = open_browser(url)
            except Exception as exc:  # webbrowser raises several types; the URL is printed anyway
                log.info("could not open a browser", error=str(exc))
            echo(("Opening your browser. If it did not open, open this URL in a browser: "
                  if opened else "Open this URL in a browser: ") + url)
        echo(f"Waiting up to {timeout_s:g} s for SoundCloud's answer at {redirect.uri} "
             f"(sign in as the owner of {account} and allow access)...")
        answer = server.wait(timeout_s)
    if answer is None:
        raise TemporaryError(f"no answer from the browser within {timeout_s:g} s; nothing was "
                             f"stored; run sc2s3 authorize --account {account} again")
    code = _code_of(answer, state, account)
    try:
        grant = exchange_code(soundcloud, config, code, verifier)
    except InvalidGrant as exc:
        raise OwnerAuthorizationError(
            f"refused: SoundCloud did not exchange the authorization code ({exc}); nothing was "
            f"stored; run sc2s3 authorize --account {account} again") from exc
    _check_owner(soundcloud, grant, user, account)
    owners.store_new_chain(user.urn, user.permalink, grant)
    log.info("owner authorized", account=user.urn)
    return f"authorized {name}: its private tracks will be mirrored from the next pass"


def configured_user(config: Config, soundcloud: SoundCloudClient, account: str) -> User:
    """The user of ``account``, which must be one of ``[soundcloud] accounts``: as written there,
    or the permalink or URN of one written the other way.

    :raises UsageError: it is none of them.
    """
    accounts = config.soundcloud.accounts
    listed = account in accounts
    not_configured = UsageError(
        f"--account {account}: not one of the configured accounts ({', '.join(accounts)}); "
        f"name one of them, or add it to soundcloud.accounts first")
    is_urn = USER_URN.fullmatch(account) is not None
    if not listed and all((USER_URN.fullmatch(a) is not None) == is_urn for a in accounts):
        raise not_configured  # written like every configured account: it cannot be an alias
    try:
        user = soundcloud.resolve_user(account)
    except UpstreamError as exc:
        if listed:
            raise
        raise not_configured from exc
    if listed or user.urn in accounts or user.permalink in accounts:
        return user
    raise not_configured


def _code_of(answer: dict[str, str], state: str, account: str) -> str:
    """The authorization code of the callback's query. :raises OwnerAuthorizationError: a
    ``state`` that is not ours, an error (consent denied), or no code."""
    again = f"run sc2s3 authorize --account {account} again"
    if not secrets.compare_digest(answer.get("state", ""), state):
        raise OwnerAuthorizationError(
            "refused: the answer at the redirect URI does not carry the state this run sent "
            f"(forged, or from an earlier run); nothing was exchanged or stored; {again}")
    error = answer.get("error")
    if error == "access_denied":
        raise OwnerAuthorizationError(
            f"refused: the owner denied access on SoundCloud (access_denied); nothing was stored; "
            f"to mirror {account}'s private tracks, {again} and allow access")
    if error:
        detail = answer.get("error_description", "")
        raise OwnerAuthorizationError(
            f"refused: SoundCloud answered {error}{f' ({detail[:200]})' if detail else ''}; "
            f"nothing was stored; check soundcloud.client_id and soundcloud.redirect_uri (it "
            f"must be the app's registered one), then {again}")
    code = answer.get("code", "")
    if not code:
        raise OwnerAuthorizationError(f"refused: SoundCloud's answer carries no code; {again}")
    return code


def _check_owner(soundcloud: SoundCloudClient, grant: TokenGrant, user: User,
                 account: str) -> None:
    """``/me`` with the new token must be ``user``. :raises OwnerAuthorizationError: it is
    another SoundCloud user (the token is dropped), or the token was refused."""
    try:
        me = soundcloud.me(grant.access_token)
    except OwnerAuthorizationError as exc:
        raise OwnerAuthorizationError(
            f"refused: SoundCloud refused the new token at /me ({exc}); nothing was stored; run "
            f"sc2s3 authorize --account {account} again") from exc
    if me["urn"] != user.urn:
        who = f"{me.get('permalink') or me['urn']} ({me['urn']})"
        raise OwnerAuthorizationError(
            f"refused: the token is {who}'s, not {account}'s ({user.urn}); nothing was stored; "
            f"sign in to SoundCloud as {account}'s owner, then run sc2s3 authorize --account "
            f"{account} again")


def _seed(config: Config, s3, soundcloud: SoundCloudClient, owners: OwnerTokens, user: User,
          account: str, name: str, refresh_token: str) -> str:
    """Seed the chain from ``refresh_token`` unless a working chain is stored."""
    current = owners.describe(user.urn)
    already = f"already authorized {name}: the stored token chain works; the given refresh " \
              f"token was not used"
    if current is not None and not current["broken"]:
        return already
    try:
        grant = soundcloud.owner_grant({"grant_type": "refresh_token",
                                        "refresh_token": refresh_token})
    except InvalidGrant as exc:
        # Another host may have seeded the chain with this very token a moment ago.
        fresh = OwnerTokens(soundcloud, s3, config.s3.bucket, config.s3.prefix)
        current = fresh.describe(user.urn)
        if current is not None and not current["broken"]:
            return already
        raise OwnerAuthorizationError(
            f"refused: SoundCloud answered {exc} to the refresh token given for {account}: it "
            f"was used already (refresh tokens are single-use) or revoked; nothing was stored; "
            f"run: sc2s3 authorize --account {account}") from exc
    _check_owner(soundcloud, grant, user, account)
    owners.store_new_chain(user.urn, user.permalink, grant)
    log.info("owner token chain seeded", account=user.urn)
    return f"authorized {name} from the given refresh token: its private tracks will be " \
           f"mirrored from the next pass"


class CallbackServer:
    """The redirect URI's loopback listener: takes the first request to its path (query
    parameters, e.g. ``code`` and ``state``) and answers the browser a small page.

    :raises TemporaryError: the port cannot be bound (busy, or not allowed).
    """

    def __init__(self, redirect: Redirect, state: str):
        self.redirect, self.state = redirect, state
        self.answers: queue.Queue[dict[str, str]] = queue.Queue(maxsize=1)
        self._taken, self._taken_lock = False, threading.Lock()
        host = "127.0.0.1" if redirect.host == "localhost" else redirect.host
        server_class = _Server6 if ":" in host else _Server
        try:
            self.httpd = server_class((host, redirect.port), _CallbackHandler)
        except OSError as exc:
            raise TemporaryError(
                f"cannot listen on {redirect.host}:{redirect.port} for SoundCloud's answer "
                f"(soundcloud.redirect_uri {redirect.uri}): {exc.strerror or exc}; another "
                f"program uses the port (an earlier sc2s3 authorize, or an ssh tunnel's local "
                f"end on this machine?); free it and run again") from exc
        self.httpd.callback = self
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        kwargs={"poll_interval": 0.2}, name="authorize-callback",
                                        daemon=True)

    def __enter__(self) -> CallbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def wait(self, timeout_s: float) -> dict[str, str] | None:
        """The first callback's query parameters, or None after ``timeout_s``."""
        try:
            return self.answers.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def offer(self, params: dict[str, str]) -> tuple[int, str, str]:
        """Take a callback (the first one only); the page to answer: status, title, text. The
        answer is handed on by :meth:`publish`, once the page is sent: the command may exit as
        soon as it has its answer, and the browser must get its page first."""
        with self._taken_lock:
            if self._taken:
                return 409, "Already answered", "sc2s3 has its answer already; see the terminal."
            self._taken = True
        if not secrets.compare_digest(params.get("state", ""), self.state):
            return 400, "Refused", ("This answer does not belong to the authorization sc2s3 "
                                    "started (its state differs). Nothing was stored.")
        if params.get("error"):
            return 200, "Not authorized", (f"SoundCloud answered {params['error']}. Nothing was "
                                           "stored. See the terminal.")
        return 200, "Consent received", ("sc2s3 now completes the authorization; see the "
                                         "terminal for the result. You can close this window.")

    def publish(self, params: dict[str, str]) -> None:
        self.answers.put_nowait(params)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    callback: CallbackServer


class _Server6(_Server):
    address_family = socket.AF_INET6


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _Server
    timeout = CALLBACK_READ_TIMEOUT_S
    server_version = "sc2s3-authorize"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != self.server.callback.redirect.path:
            self._page(404, "Not found", "This is sc2s3's authorization callback.")
            return
        params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        status, title, text = self.server.callback.offer(params)
        try:
            self._page(status, title, text)
            self.wfile.flush()
        finally:
            if status != 409:  # the first callback: its answer goes on, page sent or not
                self.server.callback.publish(params)

    def _page(self, status: int, title: str, text: str) -> None:
        body = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>sc2s3: "
                f"{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
                f"<p>{html.escape(text)}</p></body></html>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Referrer-Policy", "no-referrer")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the request line carries the authorization code: never logged
