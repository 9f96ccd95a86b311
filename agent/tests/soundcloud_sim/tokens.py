"""OAuth token state: access tokens with expiry, single-use refresh tokens that rotate, and
authorization codes bound to a PKCE challenge (docs: reference 2.2 and 2.13).

A token of the Authorization Code flow belongs to the user who consented (``user_id``); a
Client Credentials token to nobody (``None``). Refreshing keeps the owner."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass

CODE_TTL_S = 600.0  # an authorization code not exchanged within this is refused


@dataclass
class Grant:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds
    user_id: int | None = None


@dataclass
class _Code:
    user_id: int
    challenge: str
    redirect_uri: str
    expires_at: float


class TokenStore:
    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._access: dict[str, tuple[float, int | None]] = {}  # token -> (expiry, owner)
        self._refresh: dict[str, int | None] = {}  # unused refresh token -> owner
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()

    def issue(self, now: float, user_id: int | None = None) -> Grant:
        grant = Grant(secrets.token_urlsafe(24), secrets.token_urlsafe(24), self.ttl_s, user_id)
        with self._lock:
            self._access[grant.access_token] = (now + self.ttl_s, user_id)
            self._refresh[grant.refresh_token] = user_id
        return grant

    def redeem_refresh(self, refresh_token: str) -> tuple[bool, int | None]:
        """Consume a refresh token: ``(True, its owner)``, or ``(False, None)`` when unknown or
        already used (single-use: a chain whose old token is replayed is broken there)."""
        with self._lock:
            if refresh_token not in self._refresh:
                return False, None
            return True, self._refresh.pop(refresh_token)

    def is_valid(self, access_token: str, now: float) -> bool:
        with self._lock:
            expiry, _owner = self._access.get(access_token, (None, None))
            return expiry is not None and now < expiry

    def owner(self, access_token: str, now: float) -> int | None:
        """The user a live access token belongs to (None: expired, unknown or no user's)."""
        with self._lock:
            expiry, owner = self._access.get(access_token, (None, None))
            return owner if expiry is not None and now < expiry else None

    def expire_all(self) -> None:
        """Make every issued access token expired (refresh tokens stay usable)."""
        with self._lock:
            self._access = {token: (0.0, owner) for token, (_, owner) in self._access.items()}

    def revoke_user(self, user_id: int) -> None:
        """The owner revoked the app: their access and refresh tokens stop working."""
        with self._lock:
            self._access = {t: v for t, v in self._access.items() if v[1] != user_id}
            self._refresh = {t: o for t, o in self._refresh.items() if o != user_id}

    # --- authorization codes ---------------------------------------------------------------

    def create_code(self, user_id: int, challenge: str, redirect_uri: str, now: float) -> str:
        code = secrets.token_urlsafe(18)
        with self._lock:
            self._codes[code] = _Code(user_id, challenge, redirect_uri, now + CODE_TTL_S)
        return code

    def redeem_code(self, code: str, verifier: str, redirect_uri: str, now: float) -> int | str:
        """The consenting user's id, or why the exchange is refused (an ``error_description``).
        A code is single-use, even when the exchange fails."""
        with self._lock:
            found = self._codes.pop(code, None)
        if found is None or now >= found.expires_at:
            return "authorization code unknown, used or expired"
        if redirect_uri != found.redirect_uri:
            return "redirect_uri differs from the authorization request's"
        if pkce_challenge(verifier) != found.challenge:
            return "code_verifier does not match the code_challenge"
        return found.user_id


def pkce_challenge(verifier: str) -> str:
    """S256: BASE64URL(SHA256(verifier)) without padding (RFC 7636, 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
