"""Progress output: bars on a terminal, JSON lines otherwise."""

from __future__ import annotations

import json
import os
import pty
import subprocess

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Catalog, Simulator, Track, User

MIB = 1024 * 1024


@pytest.fixture
def sim():
    catalog = Catalog([User(id=5, permalink="band-one", username="Band", tracks=[
        Track(id=51, title="Rehearsal take 3", size=12 * MIB)])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


def test_terminal_gets_progress_bars(sim, make_agent):
    agent = make_agent(sim)
    controller, terminal = pty.openpty()
    process = subprocess.Popen([str(AGENT_BIN), "mirror", "--once", "--config",
                                str(agent.config_path)], env={**agent.env, "COLUMNS": "160"},
                               stdout=terminal, stderr=subprocess.DEVNULL)
    os.close(terminal)
    output = b""
    while True:
        try:
            data = os.read(controller, 65536)
        except OSError:  # EIO once the child closed the terminal
            break
        if not data:
            break
        output += data
    assert process.wait(timeout=120) == 0
    text = output.decode(errors="replace")
    assert "Rehearsal take 3" in text and "overall" in text
    assert "12.6 MB" in text  # rich's byte counter for the finished track


def test_pipe_gets_json_progress_lines(sim, make_agent):
    result = make_agent(sim).run("mirror", "--once")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    final = [e for e in events if e["event"] == "progress" and e["finished"]]
    assert len(final) == 1
    assert final[0]["bytes"] == final[0]["total_bytes"] == 12 * MIB
    assert final[0]["item"] == "Rehearsal take 3" and final[0]["rate_bytes_per_s"] > 0
