"""Where the sandbox keeps things: everything it makes lives in `.sandbox/` at the repository
root, except the per-host inventory vars, which Ansible only finds next to the inventory."""

from pathlib import Path

SANDBOX_SOURCES = Path(__file__).resolve().parents[1]  # inventory/sandbox
REPO = SANDBOX_SOURCES.parents[1]
AGENT_TESTS = REPO / "agent" / "tests"
IMAGE_DIR = SANDBOX_SOURCES / "image"  # the test-host image recipe's files
HOST_VARS_DIR = SANDBOX_SOURCES / "host_vars"

SANDBOX = REPO / ".sandbox"
STATE_PATH = SANDBOX / "state.json"
VARS_PATH = SANDBOX / "sandbox_vars.yml"
LOCK_PATH = SANDBOX / ".lock"
LOG_DIR = SANDBOX / "logs"
SSH_KEY = SANDBOX / "ssh" / "id_ed25519"
SEAWEEDFS_DATA = SANDBOX / "seaweedfs"
