"""Ctrl-C on ``sc2s3 mirror --once`` in a terminal: transfers stop at their next part boundary
and park (the next run resumes them), instead of running to the end of a two-hour file."""

from __future__ import annotations

import signal
import subprocess

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Simulator, Track
from test_daemon import wait_for
from test_resume import assert_archived_intact, audio_key, one_track_catalog

MIB = 1024 * 1024
EXIT_INTERRUPTED = 130
STALL_AT = 12 * MIB  # past two 5 MiB parts: the upload exists and has parts


@pytest.mark.timeout(240)
def test_ctrl_c_parks_the_upload_and_the_next_run_resumes_it(make_agent, s3, bucket):
    track = Track(id=95, title="interrupted", size=60 * MIB + 7)
    with Simulator(one_track_catalog(track), client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET) as sim:
        # The CDN pauses mid-file: the Ctrl-C lands while the track is in flight.
        sim.faults.fail_next("cdn", kind="stall", after_bytes=STALL_AT, stall_s=5)
        agent = make_agent(sim, accounts=("band-seven",))
        process = subprocess.Popen(
            [str(AGENT_BIN), "mirror", "--once", "--config", str(agent.config_path)],
            env=agent.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: sim.counters["cdn_bytes"] >= STALL_AT, 60, "the stall")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert process.returncode == EXIT_INTERRUPTED, err[-3000:]
        assert "upload parked" in out, out[-3000:]
        # It stopped at a part boundary after the stall, not at the end of the file.
        assert sim.counters["cdn_bytes"] < track.size
        assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=audio_key(track))
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert len(uploads) == 1, uploads
        resumed = agent.run("mirror", "--once")
        assert resumed.returncode == 0, resumed.stdout[-3000:]
        assert "resuming a parked upload" in resumed.stdout
    assert_archived_intact(s3, bucket, track)
