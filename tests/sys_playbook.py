"""Run ansible-playbook from the repository root and read its PLAY RECAP."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sys_paths import REPO, VENV_BIN

RECAP_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)"
    r"(?:\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+))?",
    re.MULTILINE,
)


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit code, combined output, wall time in seconds."""

    rc: int
    output: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP counters per host, e.g. {"th1": {"ok": 30, "changed": 0, "rescued": 0, ...}}.

        With several plays (deploy.yml) Ansible prints one recap with every host in it.
        """
        recap_start = self.output.rfind("PLAY RECAP")
        assert recap_start >= 0, f"no PLAY RECAP in output:\n{self.output[-3000:]}"
        return {
            m["host"]: {k: int(v) for k, v in m.groupdict().items() if k != "host" and v}
            for m in RECAP_LINE.finditer(self.output[recap_start:])
        }


def run_playbook(*args: str, timeout_s: float = 600, roles_path: Path | None = None) -> PlaybookRun:
    """Run `ansible-playbook ARGS...` in the repository root (so ansible.cfg applies).

    :param roles_path: roles to use instead of the repository's (a test's modified copy).
    """
    # The provision play only ever talks to moto here (the sandbox's or a test's own), which takes
    # any credentials; callers that need particular ones set them in the environment first.
    moto_defaults = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1"}
    env = {
        **moto_defaults,
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        **({"ANSIBLE_ROLES_PATH": str(roles_path)} if roles_path else {}),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [str(VENV_BIN / "ansible-playbook"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def rollout_reports(output: str) -> list[list[str]]:
    """The rollout reports of a run, in order (one per batch): lists of per-host lines.

    Each report is the debug task's result, a JSON object printed over several lines and closed
    by a "}" at the start of a line; its lines may contain brackets and quotes of their own.
    """
    reports = []
    for task in re.finditer(r"^TASK \[Rollout report\]", output, re.MULTILINE):
        result = re.compile(r"=> (\{\n.*?\n\})$", re.MULTILINE | re.DOTALL).search(output, task.end())
        if result:
            reports.append(json.loads(result.group(1))["msg"])
    return reports
