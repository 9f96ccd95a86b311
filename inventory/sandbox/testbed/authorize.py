"""`sandbox.py authorize`: a demo account's owner authorizes the app, as on an admin's workstation.

The controller's own agent (the repo's venv) runs `sc2s3 authorize --no-browser` against the
sandbox's simulator and S3; the "browser" here is a plain GET of the printed URL, which the
simulator's consent page approves at once as the signed-in demo user (band-one) and redirects to
the agent's loopback callback. The token chain lands in the bucket, where the fleet picks it up.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import requests

from .loopback import LOOPBACK
from .paths import REPO, SANDBOX
from .services import BUCKET, REGION
from .shell import log
from .state import credentials

AGENT = REPO / ".venv" / "bin" / "sc2s3"
URL_LINE = re.compile(r"(https?://\S+/authorize\?\S+)")
TIMEOUT_S = 60


def write_config(state: dict[str, Any], prefix: str) -> Path:
    """A config like the agents' own, for the controller (written under .sandbox/)."""
    ports, creds = state["ports"], credentials(state)
    folder = SANDBOX / "authorize"
    folder.mkdir(mode=0o700, exist_ok=True)
    secret = folder / "client_secret"
    secret.write_text(creds["soundcloud_client_secret"] + "\n")
    secret.chmod(0o600)
    soundcloud = f"http://{LOOPBACK}:{ports['soundcloud']}"
    path = folder / "config.toml"
    path.write_text(f"""\
[soundcloud]
api_url = "{soundcloud}"
auth_url = "{soundcloud}"
client_id = "{creds['soundcloud_client_id']}"
client_secret_file = "{secret}"
accounts = ["band-one", "band-two"]

[s3]
bucket = "{BUCKET}"
prefix = "{prefix}"
region = "{REGION}"
endpoint_url = "http://{LOOPBACK}:{ports['seaweedfs']}"

[agent]
state_dir = "{folder / 'state'}"
""")
    return path


def authorize(state: dict[str, Any], account: str, prefix: str) -> int:
    """Run the owner's consent for ``account``; the agent's exit code."""
    creds = credentials(state)
    config = write_config(state, prefix)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": creds["s3_access_key_id"],
           "AWS_SECRET_ACCESS_KEY": creds["s3_secret_access_key"]}
    agent = subprocess.Popen(
        [str(AGENT), "authorize", "--account", account, "--no-browser",
         "--timeout-s", str(TIMEOUT_S), "--config", str(config)],
        env=env, stdout=subprocess.PIPE, text=True)
    opened = threading.Event()

    def browse() -> None:
        assert agent.stdout is not None
        for line in agent.stdout:
            found = URL_LINE.search(line)
            if found and not opened.is_set():
                opened.set()
                # The consent page answers 302 to the agent's callback, which requests follows.
                requests.get(found.group(1), timeout=TIMEOUT_S)
            elif not found:
                print(line, end="")

    reader = threading.Thread(target=browse, daemon=True)
    reader.start()
    code = agent.wait(timeout=TIMEOUT_S + 30)
    reader.join(timeout=5)
    log(f"sc2s3 authorize --account {account}: exit {code}")
    return code
