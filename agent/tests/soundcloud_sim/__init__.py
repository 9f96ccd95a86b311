"""A SoundCloud simulator: a real HTTP server implementing the public API contract
(docs/soundcloud.md) for tests, benchmarks and the sandbox.

    from soundcloud_sim import Simulator, demo_catalog
    with Simulator(demo_catalog(), client_id="cid", client_secret="csecret") as sim:
        sim.base_url   # API, OAuth and CDN all live here
        sim.counters   # {"token": 1, "download": 2, "cdn_bytes": ..., "http_429": ...}

Knobs (Simulator keyword arguments): token_ttl_s, url_ttl_s (signed CDN URL lifetime),
range_supported, page_size_max (limit above it is clamped), rate_limit_429_shape
("errors" | "spam"), play_budget / play_window_s (plays = /download and /streams calls),
token_limit_app / token_limit_ip ((count, window_s)), hls_segment_urls ("relative" |
"absolute"), stream_urls ("redirect" | "signed"), last_page_next_href ("null" | "absent"),
retry_after_s, log_requests, redirect_uri (the app's registered redirect), signed_in (the user
who approves /authorize; default the first), short_pages ("private" | "all" | "off": pages are
cut before private, or also access-filtered, items are hidden, so they can be short or empty
and still carry next_href).
Owner authorization (reference 2.13): GET /authorize with PKCE (S256) and state redirects to
redirect_uri with a code; POST /oauth/token grant_type=authorization_code exchanges it (with
code_verifier); refresh tokens are single-use and rotate (a reuse is 400 invalid_grant); /me and
/me/tracks need the owner's token; private tracks (Track sharing="private") show only there, or
with their secret_token.
Sets (Playlist, User.playlists): /me/playlists (owner token), /users/{urn}/playlists (public
sets only), /playlists/{urn} and /playlists/{urn}/tracks (a private set: owner token or
secret_token). Artwork and avatars (Track/Playlist artwork, User avatar: None | "jpg" | "png" |
"no-original", and *_revision) are served by /cdn/images/... without a token (images.py).
Per track (Track fields): hls_init_maps, hls_byteranges, cdn_identity, artwork, artwork_revision.
Test controls: clock.advance(s), fail_next(route, status, kind=..., ...), faults,
expire_tokens(), rotate_url_key(), issue_token(user=None), revoke(user), consent,
reset_counters(), request_log.
"""

from .catalog import Catalog, Playlist, Track, User
from .content import HLS_SEGMENT_LEN, track_bytes, track_sha256
from .demo import demo_catalog
from .faults import Fault, FaultPlan
from .hls import HLS_INIT_LEN
from .renditions import hls_bytes, hls_sha256, hls_size, original_sha256, preview_sha256
from .simulator import Simulator

__all__ = [
    "HLS_INIT_LEN",
    "HLS_SEGMENT_LEN",
    "Catalog",
    "Fault",
    "FaultPlan",
    "Playlist",
    "Simulator",
    "Track",
    "User",
    "demo_catalog",
    "hls_bytes",
    "hls_sha256",
    "hls_size",
    "original_sha256",
    "preview_sha256",
    "track_bytes",
    "track_sha256",
]
