"""Test releases of the agent, built from this repository's own source.

A test release is a copy of ``agent/`` (pyproject.toml and src/) with ``__version__`` replaced,
so the role builds, installs and runs the real agent under that version. A *bad* release also
carries ``sc2s3/_test_fault.py`` (see ``sc2s3.fault_switch``): the fault ships inside that
release's wheel only, so rolling back to a good release leaves it behind.
"""

from __future__ import annotations

import re
import shutil
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


def make_release(root: Path, version: str, fault: str | None = None) -> AgentRelease:
    """Copy the agent source under ``root/<version>/`` with ``__version__ = version``.

    :param fault: a ``sc2s3.fault_switch.FAULTS`` name, or None for a good release.
    """
    source = root / version
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    shutil.copy2(AGENT_SOURCE / "pyproject.toml", source / "pyproject.toml")
    shutil.copytree(
        AGENT_SOURCE / "src", source / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "_test_fault.py"),
    )
    init = source / "src" / "sc2s3" / "__init__.py"
    text, count = VERSION_LINE.subn(f'__version__ = "{version}"', init.read_text())
    assert count == 1, f"no __version__ line in {init}"
    init.write_text(text)
    if fault is not None:
        (source / "src" / "sc2s3" / "_test_fault.py").write_text(
            f'"""Test-only: this release is built to fail ({fault})."""\n\nFAULT = "{fault}"\n'
        )
    return AgentRelease(version, source, fault)
