"""``sc2s3 run`` as supervisor runs it: health endpoint, metrics, cycles, clean SIGTERM."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User, original_sha256
from support.ports import free_loopback_ports
from test_resume import SOCKET_BUFFERS

from sc2s3 import __version__
from sc2s3.mirror import PARTS_IN_FLIGHT_PER_TRACK

MIB = 1024 * 1024
CONCURRENCY, PART_MIB = 2, 5  # conftest.write_config's defaults


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback only)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture
def sim():
    catalog = Catalog([User(id=1, permalink="band-one", username="Band One", tracks=[
        Track(id=11, title="one", size=2 * MIB), Track(id=12, title="two", size=6 * MIB)])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


def test_run_serves_health_mirrors_and_stops_on_sigterm(sim, make_agent, s3, bucket):
    (port,) = free_loopback_ports(1)
    agent = make_agent(sim, extra_agent=f'health_listen = "127.0.0.1:{port}"')
    process = subprocess.Popen([str(AGENT_BIN), "run", "--config", str(agent.config_path)],
                               env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        def healthy():
            status, body = get(f"http://127.0.0.1:{port}/healthz")
            return status == 200 and json.loads(body)
        health = wait_for(healthy, 60, "/healthz 200")
        assert health["status"] == "ok" and health["version"] == __version__
        assert health["checks"] == {"config": "ok", "s3": "ok", "soundcloud": "ok"}

        def mirrored():
            return s3.list_objects_v2(Bucket=bucket, Prefix="archive/").get("KeyCount", 0) >= 6
        wait_for(mirrored, 60, "both tracks archived")
        wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[1].count('"mirrored": 2'), 30,
                 "a cycle summary in /healthz")
        status, metrics = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert "sc2s3_uploaded_bytes_total 8.388608e+06" in metrics
        assert 'sc2s3_tracks_mirrored_total{source="original"} 2.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert '"event": "agent stopped"' in out
    assert get(f"http://127.0.0.1:{port}/healthz")[0] == 0  # the listener is gone


def test_health_is_503_until_s3_is_reachable(sim, make_agent, tmp_path):
    health_port, dead_port = free_loopback_ports(2)
    agent = make_agent(sim, extra_agent=f'health_listen = "127.0.0.1:{health_port}"')
    text = agent.config_path.read_text()
    start = text.index('endpoint_url = "') + len('endpoint_url = "')
    end = text.index('"', start)
    agent.config_path.write_text(text[:start] + f"http://127.0.0.1:{dead_port}" + text[end:])
    process = subprocess.Popen([str(AGENT_BIN), "run", "--config", str(agent.config_path)],
                               env=agent.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def answered():
            status, body = get(f"http://127.0.0.1:{health_port}/healthz")
            return status and (status, json.loads(body))
        status, body = wait_for(answered, 60, "/healthz to answer")
        assert status == 503 and body["status"] != "ok" and body["proven"] is False
        wait_for(lambda: "error" in get(f"http://127.0.0.1:{health_port}/healthz")[1], 60,
                 "the failed S3 check")
        assert json.loads(get(f"http://127.0.0.1:{health_port}/healthz")[1])["checks"]["s3"] \
            .startswith("error")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    assert process.returncode == 0


def test_sigterm_parks_the_upload_and_the_next_start_resumes_it(make_agent, s3, bucket):
    big = Track(id=31, title="two-hour rehearsal", size=400 * MIB + 12345)
    catalog = Catalog([User(id=3, permalink="band-three", username="Band", tracks=[big])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        (port,) = free_loopback_ports(1)
        agent = make_agent(sim, accounts=("band-three",),
                           extra_agent=f'health_listen = "127.0.0.1:{port}"')
        process = subprocess.Popen([str(AGENT_BIN), "run", "--config", str(agent.config_path)],
                                   env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        try:
            wait_for(lambda: sim.counters["cdn_bytes"] > 100 * MIB, 60, "the transfer to start")
        finally:
            process.send_signal(signal.SIGTERM)
            _out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        sent_before = sim.counters["cdn_bytes"]
        assert sent_before < big.size, "SIGTERM came too late to test anything"
        # Parked: no object under the archive key yet, the multipart upload and its state kept.
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert not [k for k in keys if "/audio." in k], keys
        assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
        state = json.loads(s3.get_object(
            Bucket=bucket, Key="archive/state/uploads/soundcloud:tracks:31.json")["Body"].read())
        assert state["upload_id"] and len(state["parts"]) >= 10, state

        finished = agent.run("mirror", "--once")
        assert finished.returncode == 0, finished.stderr[-3000:]
        resent = sim.counters["cdn_bytes"] - sent_before
        assert "resuming a parked upload" in finished.stdout
    # As in test_resume: the parts a lone track may hold (concurrency 2, at most
    # PARTS_IN_FLIGHT_PER_TRACK), one part finished behind a gap, and what the loopback socket's
    # buffers held (the simulator counts bytes as sent when they enter them).
    in_flight = (min(CONCURRENCY, PARTS_IN_FLIGHT_PER_TRACK) + 1) * PART_MIB * MIB + SOCKET_BUFFERS
    assert resent <= big.size - sent_before + in_flight, (resent, sent_before)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    key = "archive/soundcloud:users:3/soundcloud:tracks:31/r1/audio.mp3"
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert len(body) == big.size and hashlib.sha256(body).hexdigest() == original_sha256(big)
    catalog_json = json.loads(s3.get_object(
        Bucket=bucket, Key="archive/soundcloud:users:3/catalog.json")["Body"].read())
    assert catalog_json["tracks"]["soundcloud:tracks:31"]["revisions"][0]["sha256"] == \
        original_sha256(big)
