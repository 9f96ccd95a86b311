"""Bad role inputs fail fast, before anything on the host changes, naming the input to fix, and
the rollout report says so (no made-up versions).

These run playbooks/agents.yml on its own, where the role's first stage is the check; deploy.yml
stops the same inputs earlier, in its pre-flight on the controller (tests/test_preflight.py)."""

from __future__ import annotations

import json

import pytest
from sys_paths import SANDBOX_INVENTORY, SANDBOX_VARS
from sys_playbook import PlaybookRun, rollout_reports, run_playbook

FAIL_FAST_S = 60

CASES = {
    "part size below the S3 minimum": (
        ["-e", "sc2s3_part_size_mib=2"],
        ["sc2s3_part_size_mib must be between 5 and 5120"],
    ),
    "no accounts": (
        ["-e", json.dumps({"sc2s3_accounts": []})],
        ["sc2s3_accounts must list at least one"],
    ),
    "concurrency 0": (
        ["-e", "sc2s3_concurrency=0"],
        ["sc2s3_concurrency must be at least 1 (got 0)"],
    ),
    "accounts as a string": (
        ["-e", "sc2s3_accounts=band-one"],
        ["sc2s3_accounts must be a list", "not the string 'band-one'"],
    ),
    "accounts as [] on the command line (a string)": (
        ["-e", "sc2s3_accounts=[]"],
        ["sc2s3_accounts must be a list", "not the string '[]'"],
    ),
    "concurrency not a number": (
        ["-e", "sc2s3_concurrency=many"],
        ["sc2s3_concurrency", "int"],
    ),
    "health endpoint off loopback": (
        ["-e", "sc2s3_health_listen=0.0.0.0:9464"],
        ["sc2s3_health_listen must be a loopback host:port"],
    ),
    "lease TTL below 10 s": (
        ["-e", "sc2s3_lease_ttl_s=5"],
        ["sc2s3_lease_ttl_s at least 10 seconds"],
    ),
    "play budget not a number": (
        ["-e", "sc2s3_play_budget=lots"],
        ["sc2s3_play_budget", "int"],
    ),
    "S3 endpoint not a URL": (
        ["-e", "sc2s3_s3_endpoint_url=seaweedfs:8333"],
        ["sc2s3_s3_endpoint_url must be empty (AWS) or an http(s) URL"],
    ),
}


@pytest.mark.timeout(FAIL_FAST_S + 30, func_only=True)
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_fast_with_a_clear_message(sandbox_vars, case):
    extra, messages = CASES[case]
    run = run_playbook(
        "playbooks/agents.yml",
        "-i", str(SANDBOX_INVENTORY),
        "--limit", "th1",
        "-e", f"@{SANDBOX_VARS}",
        *extra,
        timeout_s=FAIL_FAST_S,
    )
    assert run.rc != 0, run.output[-3000:]
    for message in messages:
        assert message in run.output, run.output[-3000:]
    # Failed during validation: no task that changes the host ran.
    assert "Install supervisor and the Python venv module" not in run.output
    assert run.recap()["th1"]["changed"] == 0
    assert_reported_as_invalid(run, messages)


def assert_reported_as_invalid(run: PlaybookRun, messages: list[str]) -> None:
    """The rollout report names the failed check and its message, and no version."""
    report = rollout_reports(run.output)[-1]
    assert len(report) == 1 and report[0].startswith("th1: validation failed: "), report
    for message in messages:
        assert message in report[0], report
    assert "(task: " in report[0], report
    assert " -> " not in report[0] and "?" not in report[0], report
    assert "Inputs of th1 are invalid" in run.output, run.output[-3000:]
    assert "the running agent was not touched" in run.output


@pytest.mark.timeout(FAIL_FAST_S + 30, func_only=True)
def test_missing_required_inputs_are_named(sandbox_vars):
    # Without the sandbox's vars file the SoundCloud credentials are missing.
    run = run_playbook(
        "playbooks/agents.yml",
        "-i", str(SANDBOX_INVENTORY),
        "--limit", "th1",
        timeout_s=FAIL_FAST_S,
    )
    assert run.rc != 0
    assert "missing required arguments" in run.output, run.output[-3000:]
    assert "sc2s3_soundcloud_client_id" in run.output
    assert "Install supervisor and the Python venv module" not in run.output
    assert_reported_as_invalid(run, ["missing required arguments", "sc2s3_soundcloud_client_id"])
