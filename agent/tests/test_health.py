"""``/healthz`` under SoundCloud trouble: an outage, a 429 or accounts that all fail make the
agent ``degraded`` (200, with the reasons), never unhealthy (503), so a rolling update's health
gate cannot roll back a good release because of SoundCloud; ``proven`` tells the gate when the
release has shown it works."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User
from support.ports import free_loopback_ports
from test_daemon import get, wait_for

MIB = 1024 * 1024
WAIT_S = 60


@pytest.fixture
def sim():
    catalog = Catalog([User(id=1, permalink="band-one", username="Band One", tracks=[
        Track(id=11, title="one", size=1 * MIB)])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


class RunningAgent:
    """``sc2s3 run`` in the background, stopped with SIGTERM on exit."""

    def __init__(self, agent, port: int):
        self.agent, self.port = agent, port

    def __enter__(self) -> RunningAgent:
        self.process = subprocess.Popen(
            [str(AGENT_BIN), "run", "--config", str(self.agent.config_path)],
            env=self.agent.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.send_signal(signal.SIGTERM)
        _out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err[-3000:]

    def health(self) -> tuple[int, dict]:
        status, body = get(f"http://127.0.0.1:{self.port}/healthz")
        return status, (json.loads(body) if status else {})

    def wait_health(self, predicate, what: str) -> dict:
        def answer():
            status, body = self.health()
            return status and predicate(status, body) and body
        return wait_for(answer, WAIT_S, what)


def running(make_agent, sim, **options) -> RunningAgent:
    (port,) = free_loopback_ports(1)
    agent = make_agent(sim, extra_agent=f'health_listen = "127.0.0.1:{port}"', **options)
    return RunningAgent(agent, port)


def test_a_soundcloud_outage_from_the_start_is_degraded_not_unhealthy(sim, make_agent, s3,
                                                                     bucket):
    token = sim.faults.fail_next("token", 503, times=None)
    with running(make_agent, sim) as agent:
        agent.wait_health(lambda status, body: (body.get("last_cycle") or {}).get(
            "upstream_unavailable"), "a cycle of the account under the outage")
        status, health = agent.health()
        assert status == 200 and health["status"] == "ok", health
        assert health["degraded"] is True and health["proven"] is True
        assert health["checks"]["soundcloud"].startswith("unavailable: "), health["checks"]
        assert health["last_cycle"]["result"] == "partial"
        assert any(r.startswith("SoundCloud unavailable for band-one")
                   for r in health["degraded_reasons"]), health["degraded_reasons"]
        assert token.fired >= 1
        sim.faults.clear()  # SoundCloud is back: the next cycles mirror and the flag clears
        agent.wait_health(lambda status, body: status == 200 and not body["degraded"]
                          and body["last_cycle"]["mirrored"] == 1, "a healthy cycle")
        assert agent.health()[1]["checks"]["soundcloud"] == "ok"
    assert s3.list_objects_v2(Bucket=bucket, Prefix="archive/").get("KeyCount", 0) >= 4


def test_a_429_on_resolve_is_degraded_not_unhealthy(sim, make_agent):
    sim.faults.fail_next("resolve", 429, times=None)
    with running(make_agent, sim) as agent:
        agent.wait_health(lambda status, body: (body.get("last_cycle") or {}).get(
            "upstream_unavailable"), "a cycle of the account")
        status, health = agent.health()
        assert status == 200 and health["status"] == "ok" and health["degraded"], health
        assert any(r.startswith("plays blocked until") for r in health["degraded_reasons"])


def test_an_agent_whose_every_account_fails_is_degraded(sim, make_agent):
    with running(make_agent, sim, accounts=("no-such-band", "nor-this-one")) as agent:
        agent.wait_health(lambda status, body: (body.get("last_cycle") or {}).get(
            "account_errors"), "a cycle of the accounts")
        status, health = agent.health()
        assert status == 200 and health["degraded"] is True, health
        failed = [r for r in health["degraded_reasons"] if r.startswith("account failed: ")]
        assert len(failed) == 2, health["degraded_reasons"]
        assert health["last_cycle"]["result"] == "partial"
        # Nothing listed, every account failed: a health gate must not take this as proof.
        assert health["proven"] is False


def test_a_healthy_agent_is_proven_and_not_degraded(sim, make_agent):
    with running(make_agent, sim) as agent:
        health = agent.wait_health(lambda status, body: (body.get("last_cycle") or {}).get(
            "mirrored"), "a cycle that mirrors the track")
        assert health["proven"] is True and health["degraded"] is False, health
        assert health["degraded_reasons"] == []
