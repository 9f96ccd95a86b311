"""The controller's podman: installed with the other host tools, configured, and called."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from .shell import log, run

HOST_TOOLS = {  # command -> the apt package that provides it
    "podman": "podman",
    "debootstrap": "debootstrap",
    "runc": "runc",
    "ssh": "openssh-client",
}
CONTAINERS_CONF = Path("/etc/containers/containers.conf")


def ensure_host_tools() -> None:
    """Install podman, debootstrap, runc and ssh with apt when missing (one apt-get update)."""
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if missing:
        log(f"installing {' '.join(missing)} with apt")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", *missing], env=env)
    ensure_containers_conf()


def ensure_containers_conf() -> None:
    """Empty podman's default ulimits: on this kind of machine the defaults make runc fail."""
    text = CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists() else ""
    if re.search(r"^\s*default_ulimits\s*=", text, re.MULTILINE):
        return
    if re.search(r"^\s*\[containers\]\s*$", text, re.MULTILINE):
        text = re.sub(
            r"^(\s*\[containers\]\s*)$",
            r"\1\ndefault_ulimits = []",
            text,
            count=1,
            flags=re.MULTILINE,
        )
    else:
        text += "\n[containers]\ndefault_ulimits = []\n"
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(text)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`podman ARGS`; with check, a non-zero exit ends the command with podman's output."""
    argv = ["podman", *args]
    if check:
        return run(argv)
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def available() -> bool:
    """podman is installed (status and down must work on a machine that never ran `up`)."""
    return shutil.which("podman") is not None
