"""Test releases of the agent, built from this repository's own source.

A test release is a copy of ``agent/`` (pyproject.toml and src/) with ``__version__`` replaced,
so the role builds, installs and runs the real agent under that version. A *bad* release also
carries ``sc2s3/_test_fault.py`` (from ``tests/release_faults/``) and a call to it at the start of
its ``run_daemon``: the fault ships inside that release's wheel only, so rolling back to a good
release leaves it behind, and no release built from ``agent/`` has any of it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sys_paths import REPO

AGENT_SOURCE = REPO / "agent"
# Versions no real release uses, so a test release is never mistaken for one.
ROLLOUT_V1 = "90.1.0"
ROLLOUT_V2 = "90.2.0"

VERSION_LINE = re.compile(r'^__version__\s*=\s*["\'][^"\']+["\']$', re.MULTILINE)


@dataclass(frozen=True)
class AgentRelease:
    """A buildable agent source tree (``source_dir``) whose ``__version__`` is ``version``."""

    version: str
    source_dir: Path
    fault: str | None = None
    new_key: str | None = None


# An [agent] key no release of this repository has: only a test release with it accepts it.
NEW_AGENT_KEY = "rollout_test_marker"
LEASE_TTL_LINE = re.compile(r"^    lease_ttl_s: .*$", re.MULTILINE)
FAULTS_DIR = Path(__file__).resolve().parent / "release_faults"
WHEELHOUSE_BUILDER = REPO / "roles" / "sc2s3_agent" / "files" / "wheelhouse.py"
FAULT_LINE = re.compile(r"^FAULT = .*$", re.MULTILINE)
# run_daemon's signature and one-line docstring: a bad release acts out its fault right after.
RUN_DAEMON_BODY = re.compile(r'^def run_daemon\(.*\n    """.*"""\n', re.MULTILINE)


def make_release(
    root: Path, version: str, fault: str | None = None, new_key: str | None = None
) -> AgentRelease:
    """Copy the agent source under ``root/<version>/`` with ``__version__ = version``.

    :param fault: a ``FAULTS`` name of ``tests/release_faults/_test_fault.py``, or None for a
        good release.
    :param new_key: an ``[agent]`` config key (an int, default 0) this release accepts on top
        of the real ones.
    """
    source = root / version
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "requirements.lock"):
        shutil.copy2(AGENT_SOURCE / name, source / name)
    shutil.copytree(
        AGENT_SOURCE / "src", source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    init = source / "src" / "sc2s3" / "__init__.py"
    text, count = VERSION_LINE.subn(f'__version__ = "{version}"', init.read_text())
    assert count == 1, f"no __version__ line in {init}"
    init.write_text(text)
    if fault is not None:
        package = source / "src" / "sc2s3"
        module = (FAULTS_DIR / "_test_fault.py").read_text()
        module, count = FAULT_LINE.subn(f'FAULT = "{fault}"', module)
        assert count == 1, "no FAULT line in the fault module"
        (package / "_test_fault.py").write_text(module)
        daemon = package / "daemon.py"
        text, count = RUN_DAEMON_BODY.subn(
            lambda m: f"{m.group(0)}    from . import _test_fault\n    _test_fault.apply(config)\n",
            daemon.read_text())
        assert count == 1, f"no run_daemon docstring in {daemon} to patch after"
        daemon.write_text(text)
    if new_key is not None:
        config = source / "src" / "sc2s3" / "config.py"
        text, count = LEASE_TTL_LINE.subn(
            lambda m: f"{m.group(0)}\n    {new_key}: int = 0", config.read_text()
        )
        assert count == 1, f"no lease_ttl_s field in {config}"
        config.write_text(text)
    return AgentRelease(version, source, fault, new_key)


def roles_with_new_key(root: Path, key: str) -> Path:
    """A copy of the repository's roles whose config template sets ``[agent] <key> = 1``."""
    roles = root / "roles"
    shutil.rmtree(roles, ignore_errors=True)
    shutil.copytree(REPO / "roles", roles)
    template = roles / "sc2s3_agent" / "templates" / "config.toml.j2"
    # In the [agent] section, after its lease_ttl_s line (other sections may follow it).
    text, count = re.subn(r"^lease_ttl_s = .*$", lambda m: f"{m.group(0)}\n{key} = 1",
                          template.read_text(), flags=re.MULTILINE)
    assert count == 1, f"no lease_ttl_s line in {template}"
    template.write_text(text)
    return roles


def build_wheelhouse(source: Path, version: str, target: str, out: Path | str,
                     timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run the role's own wheelhouse builder on this controller, as a deploy would."""
    return subprocess.run(
        [sys.executable, str(WHEELHOUSE_BUILDER), "--source", str(source), "--version", version,
         "--target", target, "--out", str(out)],
        capture_output=True, text=True, timeout=timeout_s, check=False,
    )
