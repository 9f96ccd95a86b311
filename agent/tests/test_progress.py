"""Progress output: bars on a terminal, JSON lines otherwise."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess

import pytest
from conftest import AGENT_BIN, CLIENT_ID, CLIENT_SECRET
from rich.console import Console
from soundcloud_sim import Catalog, Simulator, Track, User

from sc2s3.progress import RichReporter

MIB = 1024 * 1024
HOSTILE_TITLE = "[/x] hostile[bold][link=x]{y}[/]\\[b]:+1:"  # 40 at most: names are cut there
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def sim():
    catalog = Catalog([User(id=5, permalink="band-one", username="Band", tracks=[
        Track(id=51, title="Rehearsal take 3", size=12 * MIB)])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        yield server


def run_on_terminal(agent, *args: str) -> tuple[int, str]:
    """Run ``sc2s3 *args`` with a terminal as stdout: its exit code and what it drew."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([str(AGENT_BIN), *args, "--config", str(agent.config_path)],
                               env={**agent.env, "COLUMNS": "160"},
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
    os.close(controller)
    return process.wait(timeout=120), output.decode(errors="replace")


def test_terminal_gets_progress_bars(sim, make_agent):
    code, text = run_on_terminal(make_agent(sim), "mirror", "--once")
    assert code == 0
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


# --- item names are text, never rich markup ----------------------------------------------------

def test_hostile_title_is_drawn_literally():
    """A title that is invalid (or valid) rich markup is neither an error nor interpreted."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=200)
    assert console.is_terminal
    reporter = RichReporter(console=console)
    handle = reporter.start(HOSTILE_TITLE, 1000)
    reporter.advance(handle, 400)
    reporter.close()  # draws the final frame
    text = ANSI_ESCAPE.sub("", out.getvalue())
    assert HOSTILE_TITLE in text
    assert "\x1b]8;" not in out.getvalue()  # no hyperlink was made of [link=...]


def test_terminal_mirror_of_a_hostile_title_does_not_crash(make_agent):
    catalog = Catalog([User(id=6, permalink="band-one", username="Band", tracks=[
        Track(id=61, title=HOSTILE_TITLE, size=2 * MIB)])])
    with Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as server:
        code, text = run_on_terminal(make_agent(server), "mirror", "--once")
    assert code == 0, text[-2000:]
    assert HOSTILE_TITLE in ANSI_ESCAPE.sub("", text)


def test_status_prints_upstream_error_texts_literally(sim, make_agent, tmp_path):
    """Error texts in the last cycle and the failure ledger come from upstream answers: status
    on a terminal prints them as they are, never as rich markup (which would crash it)."""
    from sc2s3.status import write_last_cycle

    agent = make_agent(sim)
    assert agent.run("mirror", "--once").returncode == 0
    hostile = f"band-one: SoundCloud answered {HOSTILE_TITLE}"
    write_last_cycle(tmp_path / "state", {"result": "partial", "account_errors": [hostile]})
    code, drawn = run_on_terminal(agent, "status")
    assert code == 0, drawn[-2000:]
    assert "[/x] hostile[bold][link=x]" in ANSI_ESCAPE.sub("", drawn).replace("\r\n", "")
