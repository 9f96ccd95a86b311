"""deploy.yml's pre-flight: a bad input of either role stops the run on the controller with one
line naming the input and the fix, before provisioning makes any AWS call and before any agent
host is contacted.

Runs on the controller only (no sandbox). deploy.yml goes to a private moto_server that records
every request it gets: the only requests allowed are the production inventory's own host lookup
(ec2 DescribeInstances, made while Ansible reads the inventory, before any play). Every run is
limited to localhost, and the agent hosts of the static inventories below have a loopback
address: no test here can reach out to a host, even if the pre-flight let a bad input through.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import requests
from sys_moto import Moto, moto_server
from sys_paths import REPO
from sys_playbook import PlaybookRun

PRODUCTION_INVENTORY = str(REPO / "inventory" / "production")
RUN_TIMEOUT_S = 180
# Valid inputs of both roles, as an admin passes them with -e.
INPUTS = {
    "sc2s3_bucket": "sc2s3-preflight-test",
    "sc2s3_admin_cidrs": ["198.51.100.0/24"],
    "sc2s3_accounts": ["band-one"],
    "sc2s3_soundcloud_client_id": "preflight-client",
    "sc2s3_soundcloud_client_secret": "preflight-secret",
}
INVENTORY_HOST_LOOKUP = ("ec2", "DescribeInstances")
FIX = "nothing has been created or changed"

# Extra -e arguments -> what the one-line pre-flight message must say.
BAD_INPUTS = {
    "accounts [] on the command line (a string)": (
        ["-e", "sc2s3_accounts=[]"],
        ["agent inputs", "sc2s3_accounts must be a list", "not the string '[]'",
         """-e '{"sc2s3_accounts": ["band-one"]}'"""],
    ),
    "accounts as a string": (
        ["-e", "sc2s3_accounts=band-one"],
        ["sc2s3_accounts must be a list", "not the string 'band-one'"],
    ),
    "an empty accounts list": (
        ["-e", json.dumps({"sc2s3_accounts": []})],
        ["sc2s3_accounts must list at least one SoundCloud permalink", "got []"],
    ),
    "concurrency 0": (
        ["-e", "sc2s3_concurrency=0"],
        ["sc2s3_concurrency must be at least 1 (got 0)"],
    ),
    "concurrency not a number": (
        ["-e", "sc2s3_concurrency=many"],
        ["sc2s3_concurrency must be of type int"],
    ),
    "part size below the S3 minimum": (
        ["-e", "sc2s3_part_size_mib=2"],
        ["sc2s3_part_size_mib must be between 5 and 5120", "got 2"],
    ),
    "health endpoint off loopback": (
        ["-e", "sc2s3_health_listen=0.0.0.0:9464"],
        ["sc2s3_health_listen must be a loopback host:port"],
    ),
    "an owner token for an account not mirrored": (
        ["-e", json.dumps({"sc2s3_owner_refresh_tokens": {"band-nine": "r-secret-token"}})],
        ["sc2s3_owner_refresh_tokens must map accounts of sc2s3_accounts", "band-nine"],
    ),
    "a redirect URI off loopback": (
        ["-e", "sc2s3_soundcloud_redirect_uri=https://example.org/callback"],
        ["sc2s3_soundcloud_redirect_uri must be a loopback http URL with a port"],
    ),
    "poll interval 0": (
        ["-e", "sc2s3_poll_interval_s=0"],
        ["sc2s3_poll_interval_s must be at least 1 (got 0)"],
    ),
    "provisioning: no instances": (
        ["-e", "sc2s3_instance_count=0"],
        ["provisioning inputs (sc2s3_aws)", "sc2s3_instance_count must be at least 1 (got 0)"],
    ),
    "provisioning: SSH open to the world": (
        ["-e", json.dumps({"sc2s3_admin_cidrs": ["0.0.0.0/0"]})],
        ["provisioning inputs (sc2s3_aws)", "sc2s3_admin_cidrs must not contain 0.0.0.0/0"],
    ),
    "provisioning: instance count not a number": (
        ["-e", "sc2s3_instance_count=two"],
        ["sc2s3_instance_count must be of type int"],
    ),
}


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """A private moto_server recording every request (its recording file outside the repo)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_RECORDER_FILEPATH",
                     str(tmp_path_factory.mktemp("moto") / "requests.jsonl"))
        with moto_server() as server:
            yield server


def moto_api(moto: Moto, action: str) -> requests.Response:
    answer = requests.post(f"{moto.url}/moto-api/recorder/{action}", timeout=10)
    answer.raise_for_status()
    return answer


def aws_requests(moto: Moto) -> list[tuple[str, str]]:
    """(service, action) of each request moto recorded since the last reset."""
    text = requests.get(f"{moto.url}/moto-api/recorder/download-recording", timeout=10).text
    calls = []
    for line in filter(str.strip, text.splitlines()):
        request = json.loads(line)
        body = request.get("body") or ""
        if request.get("body_encoded"):
            body = base64.b64decode(body).decode(errors="replace")
        authorization = (request.get("headers") or {}).get("Authorization", "")
        service = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", authorization)
        action = re.search(r"(?:^|&)Action=([A-Za-z]+)", body)
        calls.append((service.group(1) if service else "?",
                      action.group(1) if action else f"{request['method']} {request['url']}"))
    return calls


def deploy(moto: Moto, *args: str, playbook: str = "deploy.yml",
           inventory: str = PRODUCTION_INVENTORY,
           inputs: dict | None = None) -> tuple[PlaybookRun, list[tuple[str, str]]]:
    """Run `playbook` on moto with `inputs` (INPUTS by default), then ARGS, as extra vars;
    returns the run and the AWS requests moto got during it."""
    moto_api(moto, "reset-recording")
    moto_api(moto, "start-recording")
    try:
        # --limit localhost: should the pre-flight ever let a bad input through, the agents
        # play still finds no host to connect to (moto's instances have made-up addresses).
        run = moto.playbook(playbook, "-i", inventory, "--limit", "localhost",
                            "-e", json.dumps(INPUTS if inputs is None else inputs), *args,
                            timeout_s=RUN_TIMEOUT_S)
    finally:
        moto_api(moto, "stop-recording")
    return run, aws_requests(moto)


def preflight_message(run: PlaybookRun) -> str:
    """The message of the pre-flight's final failure (the last failed task's msg)."""
    failures = re.findall(r'^fatal: \[localhost\]: FAILED! => (\{.*\})$', run.output, re.MULTILINE)
    assert failures, run.output[-4000:]
    return json.loads(failures[-1])["msg"]


def assert_nothing_created(moto: Moto) -> None:
    assert moto.client("s3").list_buckets()["Buckets"] == []
    reservations = moto.client("ec2").describe_instances()["Reservations"]
    assert [i for r in reservations for i in r["Instances"]] == []
    groups = moto.client("ec2").describe_security_groups()["SecurityGroups"]
    assert {g["GroupName"] for g in groups} <= {"default"}, groups
    assert moto.client("iam").list_roles()["Roles"] == []
    assert moto.client("iam").list_instance_profiles()["InstanceProfiles"] == []


def assert_stopped_in_preflight(run: PlaybookRun, calls: list[tuple[str, str]]) -> None:
    assert run.rc != 0, run.output[-4000:]
    # Only the pre-flight play ran: on localhost, and it was the last play.
    assert set(run.recap()) == {"localhost"}, run.recap()
    plays = re.findall(r"^PLAY \[(.*)\] \*+$", run.output, re.MULTILINE)
    assert plays == ["Pre-flight - check the inputs before anything changes"], plays
    assert set(calls) <= {INVENTORY_HOST_LOOKUP}, f"AWS calls during the run: {calls}"


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_stops_deploy_before_any_aws_call(moto, case):
    extra, expected = BAD_INPUTS[case]
    run, calls = deploy(moto, *extra)
    assert_stopped_in_preflight(run, calls)
    message = preflight_message(run)
    assert message.startswith("Pre-flight, "), message
    assert "\n" not in message, message
    for text in [*expected, FIX]:
        assert text in message, message
    assert INPUTS["sc2s3_soundcloud_client_secret"] not in run.output
    assert "r-secret-token" not in run.output  # a seeded owner token is a secret too
    assert_nothing_created(moto)


def write_inventory(path: Path, hosts: dict[str, dict]) -> str:
    """A static inventory with `hosts` in group sc2s3_agents; the group's accounts are group
    vars (localhost does not see them). No host is ever connected to."""
    localhost = {"ansible_connection": "local",
                 "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    path.write_text(json.dumps({"all": {"hosts": {"localhost": localhost}, "children": {"sc2s3_agents": {
        "hosts": hosts,
        "vars": {"ansible_host": "127.0.0.1", "ansible_port": 9,
                 "sc2s3_accounts": ["band-one", "band-two"]},
    }}}}))
    return str(path)


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_each_agent_hosts_own_inputs_are_checked(moto, tmp_path):
    inventory = write_inventory(tmp_path / "hosts.json", {
        "ag1": {}, "ag2": {"sc2s3_part_size_mib": 2}, "ag3": {}})
    run, calls = deploy(moto, inventory=inventory)
    assert_stopped_in_preflight(run, calls)
    assert calls == []
    message = preflight_message(run)
    assert message.startswith("Pre-flight, agent inputs of ag2: sc2s3_part_size_mib must be "
                              "between 5 and 5120"), message
    assert_nothing_created(moto)


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_a_required_agent_input_missing_on_a_host_is_named(moto, tmp_path):
    inventory = write_inventory(tmp_path / "hosts.json", {"ag1": {}})
    inputs = {k: v for k, v in INPUTS.items() if k != "sc2s3_soundcloud_client_id"}
    run, calls = deploy(moto, inventory=inventory, inputs=inputs)
    assert_stopped_in_preflight(run, calls)
    message = preflight_message(run)
    assert "agent inputs of ag1" in message and "sc2s3_soundcloud_client_id" in message, message
    assert_nothing_created(moto)


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_good_inputs_pass_preflight_without_an_aws_call(moto, tmp_path):
    """Hosts in the inventory: their group vars (the accounts) count. Without hosts (the
    production inventory before the first provisioning), the inputs the controller sees."""
    inventory = write_inventory(tmp_path / "hosts.json", {"ag1": {}, "ag2": {}})
    inputs = {k: v for k, v in INPUTS.items() if k != "sc2s3_accounts"}
    run, calls = deploy(moto, playbook="playbooks/preflight.yml", inventory=inventory,
                        inputs=inputs)
    assert run.rc == 0, run.output[-4000:]
    assert calls == []

    run, calls = deploy(moto, playbook="playbooks/preflight.yml", inputs=inputs)
    assert run.rc == 0, run.output[-4000:]
    assert "No host in group sc2s3_agents yet" in run.output
    assert set(calls) <= {INVENTORY_HOST_LOOKUP}, calls
    assert_nothing_created(moto)
