"""The owners' token chains (sc2s3.owners) against the SoundCloud simulator over HTTP and a real
S3 server: single-use refresh tokens that rotate, refreshed by whoever holds the account, raced
by two hosts, broken by a revocation, and kept in memory when S3 fails at the wrong moment."""

from __future__ import annotations

import json
import threading
import time

import pytest
from botocore.exceptions import EndpointConnectionError
from soundcloud_sim import Catalog, Simulator, Track, User
from support.clients import CountingBudget

from sc2s3 import owners as owners_module
from sc2s3.config import SoundCloudConfig
from sc2s3.errors import OwnerAuthorizationError, TemporaryError
from sc2s3.owners import OwnerTokens
from sc2s3.soundcloud import SoundCloudClient, TokenGrant

CLIENT = ("cid-owners", "csecret-owners")
URN = "soundcloud:users:948745750"
PREFIX = "archive/"
KEY = f"{PREFIX}state/owners/{URN}.json"
ROUNDS = 24



class RoundClock:
    """Epoch seconds, moved one token lifetime ahead per round: every chain stored in an
    earlier round is stale now, every one stored in this round fresh."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def next_round(self) -> None:
        self.offset += 3600


class RacingClient(SoundCloudClient):
    """A host's client whose token requests wait at ``gate`` for the other host's: both redeem
    the same refresh token at the same moment, every round."""

    def __init__(self, config: SoundCloudConfig, gate: threading.Barrier | None = None):
        super().__init__(config, CountingBudget())
        self.gate = gate

    def owner_grant(self, form: dict, credentials_in_form: bool = False) -> TokenGrant:
        if self.gate is not None:
            self.gate.wait(timeout=60)
        return super().owner_grant(form, credentials_in_form)


class FlakyS3:
    """The S3 client, with PutObject failing while ``failing`` is set (a network error), and
    optionally held at ``hold`` until ``release`` is set."""

    def __init__(self, s3) -> None:
        self._s3 = s3
        self.failing = False
        self.puts = 0
        self.hold: threading.Event | None = None
        self.release = threading.Event()

    def put_object(self, **kwargs):
        self.puts += 1
        if self.hold is not None:
            self.hold.set()
            assert self.release.wait(timeout=60)
        if self.failing:
            raise EndpointConnectionError(endpoint_url="http://s3.invalid")
        return self._s3.put_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._s3, name)


@pytest.fixture
def sim():
    catalog = Catalog([
        User(id=948745750, permalink="band-one", username="Band One", tracks=[
            Track(id=1, title="Rehearsal", size=1000, sharing="private")]),
        User(id=6, permalink="other", username="Other", tracks=[Track(id=61, title="x", size=10)]),
    ])
    with Simulator(catalog, *CLIENT) as server:
        yield server


@pytest.fixture(autouse=True)
def no_waits(monkeypatch):
    """Retries and settling re-reads without the production pauses (the races below are lined
    up by barriers and events, not by timing)."""
    monkeypatch.setattr(owners_module, "WRITE_RETRY_WAITS_S", (0.0, 0.0))
    monkeypatch.setattr(owners_module, "SETTLE_WAITS_S", (0.0, 0.05, 0.1, 0.2, 0.4, 0.8))


def config_of(sim: Simulator) -> SoundCloudConfig:
    return SoundCloudConfig(api_url=sim.base_url, auth_url=sim.base_url, client_id=CLIENT[0],
                            client_secret=CLIENT[1], accounts=["band-one"])


def host(sim, s3, bucket, clock=time.time, gate=None) -> OwnerTokens:
    """One host's view: its own SoundCloud client and its own memory."""
    return OwnerTokens(RacingClient(config_of(sim), gate), s3, bucket, PREFIX, clock=clock)


def seed(sim: Simulator, owners: OwnerTokens, user: str = "band-one") -> TokenGrant:
    """The chain `sc2s3 authorize` would store (the consent round trip is test_authorize's)."""
    grant = sim.tokens.issue(sim.clock.now(), sim.catalog.user(user).id)
    token = TokenGrant(grant.access_token, grant.refresh_token, grant.expires_in)
    owners.store_new_chain(URN, "band-one", token)
    return token


def stored(s3, bucket) -> dict:
    return json.loads(s3.get_object(Bucket=bucket, Key=KEY)["Body"].read())


def me(sim: Simulator, token: str) -> str:
    return RacingClient(config_of(sim)).me(token)["urn"]


def token_requests(sim: Simulator) -> int:
    return sim.counters["token_refresh_token"] + sim.counters["token_invalid_grant"]


def test_two_hosts_and_one_owner_token_chain_across_20_refreshes_under_contention_never_break(
        sim, s3, bucket):
    """Every round both hosts hold the account (may_refresh), both see a stale token, and both
    redeem the same refresh token at once (a barrier before each token request): SoundCloud
    grants one and refuses the other; the loser takes the winner's stored chain."""
    clock = RoundClock()
    rounds = threading.Barrier(2, action=clock.next_round, timeout=60)
    gate = threading.Barrier(2, timeout=60)
    hosts = [host(sim, s3, bucket, clock, gate) for _ in range(2)]
    seed(sim, hosts[0])
    returned: list[list[str | None]] = [[], []]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            for _ in range(ROUNDS):
                rounds.wait()
                returned[index].append(hosts[index].access_token(URN, may_refresh=True))
        except BaseException as exc:
            errors.append(exc)
            rounds.abort()
            gate.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    # One refresh per round, and one refused redemption per round: the race was real each time.
    assert sim.counters["token_refresh_token"] == ROUNDS
    assert sim.counters["token_invalid_grant"] == ROUNDS
    chain = stored(s3, bucket)
    assert chain["broken"] is None and chain["broken_at"] is None
    for round_tokens in zip(*returned, strict=True):
        assert None not in round_tokens
        assert round_tokens[0] == round_tokens[1]  # both hosts use the one stored chain
    assert len({tokens[0] for tokens in zip(*returned, strict=True)}) == ROUNDS
    for token in {t for tokens in returned for t in tokens}:
        assert me(sim, token) == URN
    # The chain still refreshes: a third host, a round later, alone.
    clock.next_round()
    later = host(sim, s3, bucket, clock).access_token(URN, may_refresh=True)
    assert later == stored(s3, bucket)["access_token"] and me(sim, later) == URN
    assert sim.counters["token_refresh_token"] == ROUNDS + 1


def test_the_race_winner_repairs_a_chain_the_loser_marked_broken(sim, s3, bucket, monkeypatch):
    """The loser's refusal arrives before the winner's write lands, and the loser gives up at
    once (no settling): it marks the chain broken. The winner's conditional write then answers
    412, but the stored chain still carries the refresh token the winner redeemed: its new
    chain is the only live one, and it is written over the broken mark."""
    monkeypatch.setattr(owners_module, "SETTLE_WAITS_S", (0.0,))
    clock = RoundClock()
    flaky = FlakyS3(s3)
    winner = OwnerTokens(RacingClient(config_of(sim)), flaky, bucket, PREFIX, clock=clock)
    loser = host(sim, s3, bucket, clock)
    seed(sim, loser)
    assert loser.access_token(URN, may_refresh=True)  # it has the chain in memory, fresh
    clock.next_round()
    flaky.hold = threading.Event()
    result: list = []
    thread = threading.Thread(target=lambda: result.append(
        winner.access_token(URN, may_refresh=True)))
    thread.start()
    assert flaky.hold.wait(timeout=60)  # refreshed; its write of the new chain is held
    with pytest.raises(OwnerAuthorizationError):
        loser.access_token(URN, may_refresh=True)
    assert stored(s3, bucket)["broken"]
    flaky.hold = None
    flaky.release.set()
    thread.join(timeout=60)
    chain = stored(s3, bucket)
    assert chain["broken"] is None and result == [chain["access_token"]]
    assert me(sim, result[0]) == URN
    assert sim.counters["token_refresh_token"] == 1


def test_a_revoked_owner_breaks_the_chain_once_and_no_host_asks_for_tokens_again(sim, s3, bucket,
                                                                                 monkeypatch):
    monkeypatch.setattr(owners_module, "SETTLE_WAITS_S", (0.0, 0.0))
    clock = RoundClock()
    owners = host(sim, s3, bucket, clock)
    seed(sim, owners)
    sim.revoke("band-one")
    clock.next_round()
    with pytest.raises(OwnerAuthorizationError) as refused:
        owners.access_token(URN, may_refresh=True)
    message = str(refused.value)
    assert "invalid_grant" in message and message.endswith("run: sc2s3 authorize --account band-one")
    chain = stored(s3, bucket)
    assert "invalid_grant" in chain["broken"] and chain["broken_at"]
    assert sim.counters["token_invalid_grant"] == 1
    before = token_requests(sim)
    # This host again, another host (an empty memory), and a non-holder: no token request.
    with pytest.raises(OwnerAuthorizationError, match="sc2s3 authorize --account band-one"):
        owners.access_token(URN, may_refresh=True)
    with pytest.raises(OwnerAuthorizationError, match="sc2s3 authorize --account band-one"):
        host(sim, s3, bucket, clock).access_token(URN, may_refresh=True)
    with pytest.raises(OwnerAuthorizationError):
        host(sim, s3, bucket, clock).access_token(URN, may_refresh=False)
    assert token_requests(sim) == before
    described = host(sim, s3, bucket, clock).describe(URN)
    assert set(described) == {"authorized_at", "refreshed_at", "expires_at", "broken", "broken_at"}
    assert described["broken"] == chain["broken"]
    # `sc2s3 authorize` writes a new chain: it works again, on every host.
    fresh = seed(sim, host(sim, s3, bucket, clock))
    assert host(sim, s3, bucket, clock).access_token(URN, may_refresh=True) == fresh.access_token


def test_a_non_holder_with_a_stale_token_gets_none_and_makes_no_token_request(sim, s3, bucket):
    clock = RoundClock()
    holder = host(sim, s3, bucket, clock)
    grant = seed(sim, holder)
    other = host(sim, s3, bucket, clock)
    assert other.access_token(URN, may_refresh=False) == grant.access_token  # fresh: used
    clock.next_round()
    assert other.access_token(URN, may_refresh=False) is None
    assert token_requests(sim) == 0
    # Once the holder has refreshed, the non-holder reads the new token (a stale cache is re-read).
    refreshed = holder.access_token(URN, may_refresh=True)
    assert refreshed != grant.access_token
    assert other.access_token(URN, may_refresh=False) == refreshed
    assert sim.counters["token_refresh_token"] == 1


def test_never_authorized_is_none_and_a_fresh_token_costs_no_request(sim, s3, bucket):
    owners = host(sim, s3, bucket)
    assert owners.access_token(URN, may_refresh=True) is None
    assert owners.describe(URN) is None
    owners2 = host(sim, s3, bucket)
    grant = seed(sim, owners2)
    assert owners2.access_token(URN, may_refresh=True) == grant.access_token
    assert token_requests(sim) == 0
    described = owners2.describe(URN)
    assert described["broken"] is None and described["authorized_at"]
    assert grant.access_token not in json.dumps(described)


def test_a_refreshed_chain_that_s3_refused_is_kept_and_stored_by_the_next_call(sim, s3, bucket):
    clock = RoundClock()
    flaky = FlakyS3(s3)
    owners = OwnerTokens(RacingClient(config_of(sim)), flaky, bucket, PREFIX, clock=clock)
    seed(sim, owners)
    clock.next_round()
    flaky.failing, flaky.puts = True, 0
    with pytest.raises(TemporaryError, match="refreshed but could not be stored"):
        owners.access_token(URN, may_refresh=True)
    assert flaky.puts == 3  # the first try and two retries
    assert stored(s3, bucket)["refresh_token"]  # still the spent one
    flaky.failing = False
    token = owners.access_token(URN, may_refresh=True)
    assert sim.counters["token_refresh_token"] == 1  # no second refresh: the kept chain is stored
    chain = stored(s3, bucket)
    assert chain["access_token"] == token and chain["broken"] is None
    assert me(sim, token) == URN
    clock.next_round()
    assert me(sim, host(sim, s3, bucket, clock).access_token(URN, may_refresh=True)) == URN


def test_mark_broken_is_conditional_on_the_token_handed_out(sim, s3, bucket):
    clock = RoundClock()
    first, second = host(sim, s3, bucket, clock), host(sim, s3, bucket, clock)
    seed(sim, first)
    assert first.access_token(URN, may_refresh=True)
    clock.next_round()
    assert second.access_token(URN, may_refresh=True)  # refreshed by the other host
    # A 401 for the token `first` handed out before the refresh: not the stored chain's.
    first.mark_broken(URN, "SoundCloud refused the owner's token (HTTP 401)")
    assert stored(s3, bucket)["broken"] is None
    # A token that had expired by the time it was refused is not a broken chain either.
    clock.next_round()
    second.mark_broken(URN, "SoundCloud refused the owner's token (HTTP 401)")
    assert stored(s3, bucket)["broken"] is None
    # The current, fresh token refused: broken, with the reason; the fix is named once.
    token = second.access_token(URN, may_refresh=True)
    second.mark_broken(URN, "the stored owner token is other's; run: sc2s3 authorize --account x")
    chain = stored(s3, bucket)
    assert chain["broken"] == "the stored owner token is other's"  # status adds the fix
    with pytest.raises(OwnerAuthorizationError) as refused:
        second.access_token(URN, may_refresh=True)
    assert str(refused.value).count("run: sc2s3 authorize") == 1
    assert token not in str(refused.value)
