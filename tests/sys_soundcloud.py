"""What the SoundCloud side (the simulator in the sandbox) says an account's tracks are.

Read through the public API contract (OAuth client credentials, /resolve, cursor pages), the
same way the agent reads it, so the tests compare the archive with the upstream truth.
"""

from __future__ import annotations

from urllib.parse import urljoin

import requests

TIMEOUT_S = 10


def _token(auth_url: str, client_id: str, client_secret: str) -> str:
    resp = requests.post(
        f"{auth_url}/oauth/token",
        auth=(client_id, client_secret),
        data={"grant_type": "client_credentials"},
        timeout=TIMEOUT_S,
    )
    resp.raise_for_status()
    return resp.json()["access_token"]


def _get(session: requests.Session, url: str) -> requests.Response:
    """GET following redirects by hand, so the OAuth header is sent to every hop."""
    for _ in range(5):
        resp = session.get(url, allow_redirects=False, timeout=TIMEOUT_S)
        if resp.status_code not in (301, 302, 303, 307, 308):
            resp.raise_for_status()
            return resp
        url = urljoin(url, resp.headers["Location"])
    raise AssertionError(f"too many redirects from {url}")


def playable_tracks(
    api_url: str, auth_url: str, client_id: str, client_secret: str, accounts: list[str]
) -> dict[str, str]:
    """Track URN -> user URN of the accounts' tracks whose full audio is available (access
    "playable").

    One token for all accounts: the API allows few client-credentials tokens per hour.
    """
    session = requests.Session()
    session.headers["Authorization"] = f"OAuth {_token(auth_url, client_id, client_secret)}"
    tracks: dict[str, str] = {}
    for account in accounts:
        tracks |= _account_tracks(session, api_url, account)
    return tracks


def _account_tracks(session: requests.Session, api_url: str, account: str) -> dict[str, str]:
    user = _get(session, f"{api_url}/resolve?url=https://soundcloud.com/{account}").json()
    url: str | None = (
        f"{api_url}/users/{user['urn']}/tracks?linked_partitioning=true&limit=200"
    )
    tracks: dict[str, str] = {}
    while url:
        page = _get(session, url).json()
        tracks.update(
            (t["urn"], user["urn"])
            for t in page["collection"]
            if t.get("access", "playable") == "playable"
        )
        url = page.get("next_href")
    return tracks
