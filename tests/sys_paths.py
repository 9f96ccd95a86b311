"""Paths of the repository and of the sandbox the system tests run against."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SANDBOX_DIR = REPO / ".sandbox"
SANDBOX_VARS = SANDBOX_DIR / "sandbox_vars.yml"
SSH_KEY = SANDBOX_DIR / "ssh" / "id_ed25519"
SANDBOX_SCRIPT = REPO / "inventory" / "sandbox" / "sandbox.py"
SANDBOX_INVENTORY = REPO / "inventory" / "sandbox" / "hosts.yml"

# The controller's tools live next to the interpreter running pytest (the project venv).
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable

# The system tests run a mixed fleet: `sandbox.py up --debian 12,13` gives th1 and th3 Debian 12
# (CPython 3.11), th2 Debian 13 (CPython 3.13), so every deploy and rollout crosses both.
SANDBOX_DEBIAN = "12,13"
TEST_HOST_DEBIAN = {"th1": 12, "th2": 13, "th3": 12}

# The sandbox hosts: name -> (SSH port, health address), as in inventory/sandbox/hosts.yml.
TEST_HOSTS = {
    "th1": (2201, "127.0.0.1:9461"),
    "th2": (2202, "127.0.0.1:9462"),
    "th3": (2203, "127.0.0.1:9463"),
}
