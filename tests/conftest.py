"""Session fixtures of the system tests: one sandbox for the whole session.

If a sandbox is already running (e.g. `make demo`), the tests use it and leave it running;
otherwise they start one and stop it at the end. Only what the session started is torn down.
Test timeouts are func_only: the sandbox's start (image build included) is bounded by
sys_sandbox.UP_TIMEOUT_S instead, so a cold cache does not fail the first test.
"""

from __future__ import annotations

import pytest
from sys_paths import SANDBOX_DEBIAN, TEST_HOST_DEBIAN
from sys_releases import NEW_AGENT_KEY, ROLLOUT_V1, ROLLOUT_V2, make_release, roles_with_new_key
from sys_sandbox import (
    DOWN_TIMEOUT_S,
    UP_TIMEOUT_S,
    read_sandbox_vars,
    sandbox_cli,
    sandbox_debian_releases,
    sandbox_is_up,
)


@pytest.fixture(scope="session")
def sandbox_vars():
    """The running sandbox's variables (dict from .sandbox/sandbox_vars.yml)."""
    started_here = not sandbox_is_up()
    if started_here:
        try:
            sandbox_cli("up", "--hosts", "3", "--debian", SANDBOX_DEBIAN, timeout_s=UP_TIMEOUT_S)
        except BaseException:
            # A half-started sandbox is still ours to clean up.
            sandbox_cli("down", timeout_s=DOWN_TIMEOUT_S)
            raise
    else:
        # Someone's own sandbox (make demo) is used as it is, never stopped: it must be the fleet
        # the tests expect.
        releases = {host: int(r) for host, r in sandbox_debian_releases().items() if host in TEST_HOST_DEBIAN}
        if releases != TEST_HOST_DEBIAN:
            pytest.exit(f"the running sandbox's hosts run Debian {releases}, the system tests need "
                        f"{TEST_HOST_DEBIAN}: stop it (make demo-down) or start it with "
                        f"`sandbox.py up --hosts 3 --debian {SANDBOX_DEBIAN}`", returncode=2)
    try:
        yield read_sandbox_vars()
    finally:
        if started_here:
            sandbox_cli("down", timeout_s=DOWN_TIMEOUT_S)


@pytest.fixture(scope="session")
def agent_releases(tmp_path_factory):
    """Test releases built from this repository's agent source (see sys_releases), and one
    wheelhouse directory for all of them, so each is built once per session.

    Returns a dict: ``v1``, ``v2`` (good; v2 adds a config key), ``crash``, ``unhealthy`` (bad),
    ``tampered`` (good code, a wheel changed on the way) -> AgentRelease; ``v2_roles`` -> the
    roles that render v2's key (Path); ``wheelhouse`` -> str.
    """
    root = tmp_path_factory.mktemp("releases")
    return {
        "v1": make_release(root, ROLLOUT_V1),
        "v2": make_release(root, ROLLOUT_V2, new_key=NEW_AGENT_KEY),
        "v2_roles": roles_with_new_key(root, NEW_AGENT_KEY),
        "crash": make_release(root, "90.3.0+crash", fault="crash-at-start"),
        "unhealthy": make_release(root, "90.3.0+unhealthy", fault="never-healthy"),
        "tampered": make_release(root, "90.4.0+tampered"),
        "wheelhouse": str(tmp_path_factory.mktemp("rollout-wheelhouse")),
    }
