"""OAuth token state: access tokens with expiry, single-use refresh tokens."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass


@dataclass
class Grant:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds


class TokenStore:
    def __init__(self, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self._access: dict[str, float] = {}  # token -> expiry (epoch seconds)
        self._refresh: set[str] = set()  # unused refresh tokens
        self._lock = threading.Lock()

    def issue(self, now: float) -> Grant:
        grant = Grant(secrets.token_urlsafe(24), secrets.token_urlsafe(24), self.ttl_s)
        with self._lock:
            self._access[grant.access_token] = now + self.ttl_s
            self._refresh.add(grant.refresh_token)
        return grant

    def redeem_refresh(self, refresh_token: str) -> bool:
        """Consume a refresh token; False when unknown or already used (single-use)."""
        with self._lock:
            if refresh_token not in self._refresh:
                return False
            self._refresh.remove(refresh_token)
            return True

    def is_valid(self, access_token: str, now: float) -> bool:
        with self._lock:
            expiry = self._access.get(access_token)
            return expiry is not None and now < expiry

    def expire_all(self) -> None:
        """Make every issued access token expired (refresh tokens stay usable)."""
        with self._lock:
            self._access = dict.fromkeys(self._access, 0.0)
