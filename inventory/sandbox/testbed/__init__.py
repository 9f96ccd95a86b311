"""The local sandbox behind `inventory/sandbox/sandbox.py`, one module per job.

- `paths`: where the sandbox keeps its files; `shell`: log lines and checked commands
- `releases`: the Debian releases a test host can run (`--debian 12,13`)
- `podman`: the controller's podman (installed, configured, called)
- `image`: build and cache one test-host image per Debian release
- `hosts`: start, probe and remove the test-host containers
- `processes`: start, find and stop the background servers (psutil)
- `services`: the three servers (SeaweedFS, the SoundCloud simulator, moto) and their ports
- `loopback`: the check that nothing the sandbox runs listens beyond 127.0.0.1
- `state`: `.sandbox/state.json`, credentials and the cross-process lock
- `handoff`: the files a deploy reads (`sandbox_vars.yml`, per-host inventory vars)
- `status`, `show`: what runs, and what the agents archived
- `cli`: the commands and their options
"""

import sys

from .paths import AGENT_TESTS

# The support package (SeaweedFS launcher, port helpers) and the simulator live in agent/tests.
if str(AGENT_TESTS) not in sys.path:
    sys.path.insert(0, str(AGENT_TESTS))
