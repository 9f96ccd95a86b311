"""CloudFront-style signed CDN URLs: `?Policy=...&Signature=...&Key-Pair-Id=...`.

The policy names the resource path and an expiry (`DateLessThan`); the signature is an HMAC over
the encoded policy. A URL is refused (403) when tampered with, expired, or signed by a rotated key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from urllib.parse import urlencode

KEY_PAIR_ID = "APKASOUNDCLOUDSIM"


def _b64(data: bytes) -> str:
    # CloudFront's URL-safe base64 variant
    return base64.b64encode(data).decode().translate(str.maketrans("+=/", "-_~"))


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.translate(str.maketrans("-_~", "+=/")))


class UrlSigner:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def rotate(self) -> None:
        """Invalidate every URL issued so far (answers 403 from now on)."""
        self._key = secrets.token_bytes(32)

    def query(self, path: str, expires_at: float) -> str:
        """The query string that signs `path` until `expires_at` (epoch seconds)."""
        policy = json.dumps(
            {
                "Statement": [
                    {
                        "Resource": path,
                        "Condition": {"DateLessThan": {"AWS:EpochTime": int(expires_at)}},
                    }
                ]
            },
            separators=(",", ":"),
        )
        encoded = _b64(policy.encode())
        return urlencode(
            {"Policy": encoded, "Signature": self._sign(encoded), "Key-Pair-Id": KEY_PAIR_ID}
        )

    def check(self, path: str, params: dict[str, str], now: float) -> str | None:
        """None when `params` validly sign `path` at `now`; otherwise the reason for a 403."""
        encoded = params.get("Policy", "")
        signature = params.get("Signature", "")
        if not encoded or not signature or params.get("Key-Pair-Id") != KEY_PAIR_ID:
            return "MissingKey"
        if not hmac.compare_digest(signature, self._sign(encoded)):
            return "InvalidSignature"
        try:
            statement = json.loads(_unb64(encoded))["Statement"][0]
            resource = statement["Resource"]
            expires_at = statement["Condition"]["DateLessThan"]["AWS:EpochTime"]
        except (ValueError, KeyError, IndexError, TypeError):
            return "MalformedPolicy"
        if resource != path:
            return "AccessDenied"
        if now >= expires_at:
            return "AccessDenied: Request has expired"
        return None

    def _sign(self, encoded_policy: str) -> str:
        return _b64(hmac.new(self._key, encoded_policy.encode(), hashlib.sha256).digest())
