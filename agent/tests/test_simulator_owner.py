"""The simulator's owner authorization (reference 2.13) over real HTTP: Authorization Code with
PKCE and state, rotating single-use refresh tokens, /me, /me/tracks and private tracks."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from soundcloud_sim import Catalog, Simulator, Track, User
from test_simulator import CLIENT, get, post

REDIRECT = "http://127.0.0.1:8765/callback"


def owner_catalog() -> Catalog:
    return Catalog([
        User(id=5, permalink="band", username="Band", tracks=[
            Track(id=51, title="Single", size=1000),
            Track(id=52, title="Rehearsal", size=2000, sharing="private"),
            Track(id=53, title="Demo", size=3000, sharing="private", downloadable=False)]),
        User(id=6, permalink="other", username="Other", tracks=[Track(id=61, title="x", size=10)]),
    ])


@pytest.fixture
def sim():
    with Simulator(owner_catalog(), *CLIENT) as server:
        yield server


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize(sim: Simulator, verifier: str, **overrides: str) -> dict[str, str]:
    """The consent page's answer: the query of the redirect (code, state or error)."""
    query = {"client_id": CLIENT[0], "redirect_uri": REDIRECT, "response_type": "code",
             "code_challenge": challenge_of(verifier), "code_challenge_method": "S256",
             "state": "st-1", **overrides}
    answer = get(f"{sim.base_url}/authorize?{urlencode(query)}", allow_redirects=False)
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[-1] for k, v in parse_qs(location.query).items()}


def exchange(sim: Simulator, code: str, verifier: str, redirect_uri: str = REDIRECT):
    return post(f"{sim.base_url}/oauth/token", auth=CLIENT, data={
        "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
        "redirect_uri": redirect_uri})


def refresh(sim: Simulator, refresh_token: str):
    return post(f"{sim.base_url}/oauth/token", auth=CLIENT, data={
        "grant_type": "refresh_token", "refresh_token": refresh_token})


def api(sim: Simulator, path: str, token: str, **params: str):
    return get(f"{sim.base_url}{path}", params=params,
               headers={"Authorization": f"OAuth {token}"}, allow_redirects=False)


def test_code_with_pkce_gives_the_owner_a_token_that_lists_private_tracks(sim):
    verifier = secrets.token_urlsafe(48)
    answer = authorize(sim, verifier)
    assert answer["state"] == "st-1" and "code" in answer
    token = exchange(sim, answer["code"], verifier)
    assert token.status_code == 200, token.text
    owner = token.json()["access_token"]
    me = api(sim, "/me", owner).json()
    assert (me["urn"], me["track_count"], me["private_tracks_count"]) == ("soundcloud:users:5", 1, 2)
    listed = api(sim, "/me/tracks", owner, linked_partitioning="true", limit="2").json()
    second = get(listed["next_href"], headers={"Authorization": f"OAuth {owner}"}).json()
    tracks = {t["id"]: t for t in listed["collection"] + second["collection"]}
    assert sorted(tracks) == [51, 52, 53]
    private = tracks[52]
    assert private["sharing"] == "private"
    secret = private["secret_uri"].split("secret_token=")[1]
    assert secret.startswith("s-") and private["permalink_url"].endswith(f"/{secret}")
    assert api(sim, "/tracks/52/download", owner).status_code == 302


def test_public_listings_and_other_tokens_never_show_private_tracks(sim):
    public = sim.issue_token()
    listed = api(sim, "/users/soundcloud:users:5/tracks", public, linked_partitioning="true").json()
    assert [t["id"] for t in listed["collection"]] == [51]
    assert api(sim, "/tracks/52", public).status_code == 404
    assert api(sim, "/tracks/52/download", public).status_code == 404
    assert api(sim, "/tracks/52/streams", public).status_code == 404
    assert api(sim, "/me", public).status_code == 401  # no user behind client credentials
    assert api(sim, "/tracks/52", sim.issue_token(user="other")).status_code == 404
    secret = api(sim, "/tracks/52", sim.issue_token(user="band")).json()["secret_uri"]
    assert api(sim, "/tracks/52", public, secret_token=secret.split("=")[1]).status_code == 200


@pytest.mark.parametrize(("overrides", "error"), [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
def test_authorize_refuses_what_oauth_2_1_forbids(sim, overrides, error):
    answer = authorize(sim, secrets.token_urlsafe(48), **overrides)
    assert answer == {"state": "st-1", "error": error}


def test_authorize_never_redirects_to_an_unregistered_uri(sim):
    query = {"client_id": CLIENT[0], "redirect_uri": "http://127.0.0.1:9999/cb",
             "response_type": "code", "code_challenge": challenge_of("v" * 43),
             "code_challenge_method": "S256", "state": "s"}
    answer = get(f"{sim.base_url}/authorize?{urlencode(query)}", allow_redirects=False)
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_a_denied_consent_redirects_with_access_denied(sim):
    sim.consent = False
    assert authorize(sim, secrets.token_urlsafe(48)) == {"state": "st-1", "error": "access_denied"}


def test_a_code_is_bound_to_its_verifier_and_redirect_and_used_once(sim):
    verifier = secrets.token_urlsafe(48)
    code = authorize(sim, verifier)["code"]
    wrong = exchange(sim, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    code = authorize(sim, verifier)["code"]
    assert exchange(sim, code, verifier, redirect_uri="http://127.0.0.1:1/x").status_code == 400
    code = authorize(sim, verifier)["code"]
    assert exchange(sim, code, verifier).status_code == 200
    assert exchange(sim, code, verifier).status_code == 400  # single-use


def test_refresh_tokens_rotate_keep_the_owner_and_break_on_reuse(sim):
    verifier = secrets.token_urlsafe(48)
    first = exchange(sim, authorize(sim, verifier)["code"], verifier).json()
    second = refresh(sim, first["refresh_token"])
    assert second.status_code == 200
    assert second.json()["refresh_token"] != first["refresh_token"]
    assert api(sim, "/me", second.json()["access_token"]).json()["id"] == 5
    reuse = refresh(sim, first["refresh_token"])
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    sim.revoke("band")
    assert refresh(sim, second.json()["refresh_token"]).json()["error"] == "invalid_grant"
    assert api(sim, "/me", second.json()["access_token"]).status_code == 401
