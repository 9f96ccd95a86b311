"""``sc2s3 authorize``: the owner's consent (Authorization Code + PKCE + state) run for real as a
command against the SoundCloud simulator and a real S3 server. The "browser" is requests: it
opens the printed URL at the simulator and follows its 302 to the command's callback server."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from support.ports import free_loopback_ports

from sc2s3.authorize import authorize_account, code_challenge, exchange_code, new_verifier
from sc2s3.config import load_config
from sc2s3.errors import OwnerAuthorizationError
from sc2s3.s3 import make_s3_client
from sc2s3.soundcloud import InvalidGrant

URN = "soundcloud:users:948745750"
KEY = f"archive/state/owners/{URN}.json"
DONE = f"authorized band-one ({URN}): its private tracks will be mirrored from the next pass"
URL_LINE = "Open this URL in a browser: "


def catalog() -> Catalog:
    return Catalog([
        User(id=948745750, permalink="band-one", username="Band One", tracks=[
            Track(id=1, title="Rehearsal", size=1000, sharing="private")]),
        User(id=6, permalink="other", username="Other", tracks=[Track(id=61, title="x", size=10)]),
    ])


@pytest.fixture
def redirect_uri():
    return f"http://127.0.0.1:{free_loopback_ports(1)[0]}/callback"


@pytest.fixture
def sim(redirect_uri, request):
    options = getattr(request, "param", {})
    with Simulator(catalog(), CLIENT_ID, CLIENT_SECRET, redirect_uri=redirect_uri,
                   **options) as server:
        yield server


@pytest.fixture
def agent(sim, make_agent, redirect_uri):
    return make_agent(sim, extra_soundcloud=f'redirect_uri = "{redirect_uri}"')


class Run:
    """``sc2s3 authorize --no-browser`` running: the URL it printed, then its outcome."""

    def __init__(self, agent, *args: str):
        self.process = subprocess.Popen(
            [str(AGENT_BIN), "authorize", "--config", str(agent.config_path), *args],
            env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.printed: list[str] = []

    def url(self) -> str:
        """Read stdout up to the line with the URL to open (blocks until it is printed)."""
        while line := self.process.stdout.readline():
            self.printed.append(line)
            if line.startswith(URL_LINE):
                return line.removeprefix(URL_LINE).strip()
        raise AssertionError(f"no URL printed: {''.join(self.printed)}"
                             f"{self.process.stderr.read()}")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.stdout.read(), self.process.stderr.read()
        code = self.process.wait(timeout=120)
        return code, "".join(self.printed) + out, err


def browse(url: str) -> requests.Response:
    """The owner's browser: open the consent page, follow its redirect to the callback."""
    return requests.get(url, allow_redirects=True, timeout=60)


def stored(s3, bucket) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=KEY)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def me(sim: Simulator, token: str) -> requests.Response:
    return requests.get(f"{sim.base_url}/me", headers={"Authorization": f"OAuth {token}"},
                        timeout=30)


def test_the_owner_consents_and_the_chain_is_stored_without_a_token_in_any_output(
        agent, sim, s3, bucket, redirect_uri):
    run = Run(agent, "--account", "band-one", "--no-browser")
    url = run.url()
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{sim.base_url}/authorize?")
    assert query["redirect_uri"] == [redirect_uri] and query["response_type"] == ["code"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32
    page = browse(url)
    assert page.status_code == 200 and "Consent received" in page.text
    assert page.url.startswith(redirect_uri)
    code, out, err = run.finish()
    assert code == 0, out + err
    assert out.strip().splitlines()[-1] == DONE
    chain = stored(s3, bucket)
    assert chain["format"] == "sc2s3-owner/1"
    assert (chain["user_urn"], chain["permalink"], chain["broken"]) == (URN, "band-one", None)
    assert chain["authorized_at"] == chain["refreshed_at"] and chain["expires_at"] > 0
    assert me(sim, chain["access_token"]).json()["urn"] == URN
    secrets_ = (chain["access_token"], chain["refresh_token"],
                parse_qs(urlsplit(page.url).query)["code"][0], CLIENT_SECRET)
    for secret in secrets_:
        assert secret not in out and secret not in err  # the logs go to stdout
    assert sim.counters["token_authorization_code"] == 1


def test_a_forged_callback_with_another_state_is_refused_before_any_exchange(
        agent, sim, s3, bucket, redirect_uri):
    run = Run(agent, "--account", "band-one", "--no-browser")
    run.url()
    forged = requests.get(f"{redirect_uri}?{urlencode({'code': 'stolen', 'state': 'not-ours'})}",
                          timeout=30)
    assert forged.status_code == 400 and "Refused" in forged.text
    code, out, err = run.finish()
    assert code == 1, out + err
    assert len(err.strip().splitlines()) == 1 and "state" in err
    assert "sc2s3 authorize --account band-one" in err
    assert sim.counters["token_authorization_code"] == 0
    assert sim.counters["token_invalid_grant"] == 0  # nothing was exchanged
    assert stored(s3, bucket) is None


def test_a_code_exchanged_with_another_verifier_is_refused(agent, sim):
    config = load_config(agent.config_path)
    from sc2s3.authorize import soundcloud_client

    soundcloud = soundcloud_client(config)
    verifier = new_verifier()
    assert 43 <= len(verifier) <= 128
    consent = requests.get(f"{sim.base_url}/authorize?" + urlencode({
        "client_id": CLIENT_ID, "redirect_uri": config.soundcloud.redirect_uri,
        "response_type": "code", "code_challenge": code_challenge(verifier),
        "code_challenge_method": "S256", "state": "s"}), allow_redirects=False, timeout=30)
    code = parse_qs(urlsplit(consent.headers["Location"]).query)["code"][0]
    with pytest.raises(InvalidGrant):
        exchange_code(soundcloud, config, code, new_verifier())
    assert sim.counters["token_invalid_grant"] == 1


@pytest.mark.parametrize("sim", [{"signed_in": "other"}], indirect=True)
def test_a_token_of_another_account_is_refused_and_nothing_stored(agent, sim, s3, bucket):
    run = Run(agent, "--account", "band-one", "--no-browser")
    browse(run.url())
    code, out, err = run.finish()
    assert code == 1, out + err
    assert len(err.strip().splitlines()) == 1
    assert "other" in err and "not band-one's" in err and "sc2s3 authorize --account band-one" in err
    assert sim.counters["token_authorization_code"] == 1  # exchanged, then dropped
    assert stored(s3, bucket) is None


def test_a_denied_consent_is_refused(agent, sim, s3, bucket):
    sim.consent = False
    run = Run(agent, "--account", "band-one", "--no-browser")
    page = browse(run.url())
    assert "access_denied" in page.text
    code, out, err = run.finish()
    assert code == 1, out + err
    assert "access_denied" in err and len(err.strip().splitlines()) == 1
    assert sim.counters["token_authorization_code"] == 0
    assert stored(s3, bucket) is None


def test_the_browser_is_opened_without_no_browser(agent, sim, s3, bucket):
    """In-process, with ``webbrowser.open`` replaced by a browser that opens the URL."""
    config = load_config(agent.config_path)
    opened: list[str] = []
    printed: list[str] = []

    def open_browser(url: str) -> bool:
        opened.append(url)
        threading.Thread(target=browse, args=(url,), daemon=True).start()
        return True

    line = authorize_account(config, make_s3_client(config), URN, open_browser=open_browser,
                             echo=printed.append)
    assert line == DONE
    assert len(opened) == 1 and any(opened[0] in text for text in printed)
    assert stored(s3, bucket)["user_urn"] == URN


def test_a_refresh_token_file_seeds_the_chain_once(agent, sim, s3, bucket, tmp_path):
    seed_file = tmp_path / "refresh_token"
    first = sim.tokens.issue(sim.clock.now(), 948745750)
    seed_file.write_text(first.refresh_token + "\n")
    result = agent.run("authorize", "--account", "band-one", "--refresh-token-file",
                       str(seed_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith(f"authorized band-one ({URN}) from")
    chain = stored(s3, bucket)
    assert chain["broken"] is None and me(sim, chain["access_token"]).json()["urn"] == URN
    assert first.refresh_token not in result.stdout + result.stderr
    assert chain["refresh_token"] not in result.stdout + result.stderr
    # Already authorized: the next token (over stdin) is left unused.
    second = sim.tokens.issue(sim.clock.now(), 948745750)
    again = subprocess.run([str(AGENT_BIN), "authorize", "--config", str(agent.config_path),
                            "--account", "band-one", "--refresh-token-file", "-"],
                           input=second.refresh_token, env=agent.env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already authorized band-one" in again.stdout
    assert stored(s3, bucket) == chain
    assert sim.counters["token_refresh_token"] == 1
    unused = requests.post(f"{sim.base_url}/oauth/token", auth=(CLIENT_ID, CLIENT_SECRET), data={
        "grant_type": "refresh_token", "refresh_token": second.refresh_token}, timeout=30)
    assert unused.status_code == 200


def test_a_spent_refresh_token_is_refused_when_there_is_no_chain(agent, sim, s3, bucket, tmp_path):
    seed_file = tmp_path / "refresh_token"
    seed_file.write_text("spent-or-made-up")
    result = agent.run("authorize", "--account", "band-one", "--refresh-token-file",
                       str(seed_file))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "invalid_grant" in result.stderr and "single-use" in result.stderr
    assert "spent-or-made-up" not in result.stdout + result.stderr
    assert stored(s3, bucket) is None


def test_an_account_missing_from_the_config_is_a_usage_error(agent, sim):
    result = agent.run("authorize", "--account", "other", "--no-browser")
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--account other" in result.stderr
    # The URN of the configured permalink is the same account: accepted (here: it times out).
    result = agent.run("authorize", "--account", URN, "--no-browser", "--timeout-s", "0.2")
    assert result.returncode == 75, result.stdout + result.stderr
    # Another user's URN is not.
    result = agent.run("authorize", "--account", "soundcloud:users:6", "--no-browser")
    assert result.returncode == 2, result.stdout + result.stderr


def test_no_answer_within_the_timeout_exits_75(agent, s3, bucket):
    result = agent.run("authorize", "--account", "band-one", "--no-browser", "--timeout-s", "0.2")
    assert result.returncode == 75, result.stdout + result.stderr
    assert "no answer from the browser within 0.2 s" in result.stderr
    assert stored(s3, bucket) is None


def test_a_busy_redirect_port_exits_75_naming_it(agent, redirect_uri):
    port = urlsplit(redirect_uri).port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        result = agent.run("authorize", "--account", "band-one", "--no-browser")
    assert result.returncode == 75, result.stdout + result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("uri", ["https://127.0.0.1:8765/callback", "http://example.com:8765/cb",
                                 "http://127.0.0.1/callback"])
def test_a_redirect_uri_that_cannot_be_served_here_is_an_invalid_config(sim, make_agent, uri):
    agent = make_agent(sim, extra_soundcloud=f'redirect_uri = "{uri}"')
    result = agent.run("authorize", "--account", "band-one", "--no-browser")
    assert result.returncode == 78, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "soundcloud.redirect_uri" in result.stderr


def test_a_redirect_uri_that_is_not_a_url_fails_check_config(sim, make_agent):
    agent = make_agent(sim, extra_soundcloud='redirect_uri = "127.0.0.1:8765/callback"')
    result = agent.run("check-config")
    assert result.returncode == 78 and "soundcloud.redirect_uri" in result.stderr


def test_refusals_are_owner_authorization_errors():
    assert issubclass(InvalidGrant, OwnerAuthorizationError)
    assert OwnerAuthorizationError.exit_code == 1
