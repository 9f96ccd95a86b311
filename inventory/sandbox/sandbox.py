#!/usr/bin/env python3
"""The local sandbox: podman test hosts, SeaweedFS, the SoundCloud simulator and moto.

Run it with the project venv's Python from anywhere; everything it makes lives in `.sandbox/`
at the repository root, and every server it starts listens on 127.0.0.1 only.

    sandbox.py image [--debian 12,13]   build the test-host image(s) once (cached by recipe hash)
    sandbox.py hosts-up --count N [--debian 12,13]
                                        start test hosts sc2s3-th1..N (SSH on 127.0.0.1:220N)
    sandbox.py hosts-down               remove those containers
    sandbox.py up [--hosts N] [--debian 12,13]
                                        everything above plus the servers; writes the handoff files
    sandbox.py down [--keep-data]       stop what `up` started (by PID and container name)
    sandbox.py status                   what runs
    sandbox.py show [--wait]            table of the archived demo tracks in the bucket

`--debian` is a comma list of Debian releases given to the hosts in order, cycling: with
`--hosts 3 --debian 12,13` th1 and th3 run Debian 12 (bookworm), th2 Debian 13 (trixie).
The default is 12 for every host.

Handoff files: `.sandbox/state.json` (PIDs, ports, hosts, credentials), `.sandbox/sandbox_vars.yml`
(the Ansible extra vars: `-e @.sandbox/sandbox_vars.yml`) and `inventory/sandbox/host_vars/thN.yml`
(each host's `sandbox_debian_release`). The code is the `testbed` package next to this file.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed.cli import main

if __name__ == "__main__":
    sys.exit(main())
