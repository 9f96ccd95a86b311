"""The owner's refresh token seeded from the vault: roles/sc2s3_agent/tasks/owners.yml run by
ansible-playbook on the controller (the repository's agent, SeaweedFS and the SoundCloud
simulator on loopback, as on a host after its health gate).

A refresh token is single-use: the first play turns it into the account's token chain in the
bucket; a later play with the same (now stale) vault value must leave the working chain alone and
report no change; a spent token for an account without a chain fails the play with the command's
own one-line reason. No token ever appears in the play's output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sys_agent_run import CLIENT_ID, CLIENT_SECRET, write_agent_config
from sys_paths import REPO, VENV_BIN
from sys_playbook import run_playbook

sys.path.insert(0, str(REPO / "agent" / "tests"))
from soundcloud_sim import Catalog, Simulator, Track, User
from support.ports import free_loopback_ports
from support.seaweedfs import SeaweedFS

BUCKET, PREFIX, USER_ID = "seed-bucket", "archive/", 7
CHAIN_KEY = f"{PREFIX}state/owners/soundcloud:users:{USER_ID}.json"
PLAY_TIMEOUT_S = 180

SEED_PLAY = """\
- name: Seed the owners' token chains as the agent role does
  hosts: localhost
  connection: local
  gather_facts: false
  environment: "{{ seed_environment }}"
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Run the role's owner seed
      ansible.builtin.include_role:
        name: sc2s3_agent
        tasks_from: owners.yml
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("seed")
    catalog = Catalog([User(id=USER_ID, permalink="band-one", username="Band One",
                            tracks=[Track(id=11, title="one", size=1024, sharing="private")])])
    (health_port,) = free_loopback_ports(1)
    with SeaweedFS(workdir / "s3") as seaweed, \
            Simulator(catalog, client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sim:
        seaweed.create_bucket(BUCKET, versioning=True)
        config = write_agent_config(workdir / "config.toml", sim, seaweed.endpoint_url, BUCKET,
                                    PREFIX, workdir / "state", health_port)
        environment = {"SC2S3_CONFIG": str(config), "AWS_ACCESS_KEY_ID": seaweed.access_key,
                       "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
                       "AWS_EC2_METADATA_DISABLED": "true"}
        play = workdir / "seed.yml"
        play.write_text(SEED_PLAY)
        yield sim, seaweed.client(), play, environment


def seed(play: Path, environment: dict, tokens: dict):
    return run_playbook(str(play), "-i", "localhost,", "-e", json.dumps({
        "seed_environment": environment, "sc2s3_owner_refresh_tokens": tokens,
        "sc2s3_command_path": str(VENV_BIN / "sc2s3")}), timeout_s=PLAY_TIMEOUT_S)


def test_a_vaulted_refresh_token_seeds_the_chain_once(servers):
    sim, s3, play, environment = servers
    vaulted = sim.tokens.issue(sim.clock.now(), USER_ID).refresh_token
    first = seed(play, environment, {"band-one": vaulted})
    assert first.rc == 0, first.output[-4000:]
    assert first.recap()["localhost"]["changed"] == 1
    chain = json.loads(s3.get_object(Bucket=BUCKET, Key=CHAIN_KEY)["Body"].read())
    assert chain["user_urn"] == f"soundcloud:users:{USER_ID}" and chain["broken"] is None
    assert chain["refresh_token"] != vaulted  # redeemed: the chain moved on

    # The vault still holds the spent token: the working chain is left alone, nothing changes.
    again = seed(play, environment, {"band-one": vaulted})
    assert again.rc == 0, again.output[-4000:]
    assert again.recap()["localhost"]["changed"] == 0
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=CHAIN_KEY)["Body"].read()) == chain
    for run in (first, again):
        assert vaulted not in run.output and chain["refresh_token"] not in run.output
        assert chain["access_token"] not in run.output


def test_a_spent_token_without_a_chain_fails_with_the_commands_reason(servers):
    sim, s3, play, environment = servers
    s3.delete_object(Bucket=BUCKET, Key=CHAIN_KEY)
    spent = sim.tokens.issue(sim.clock.now(), USER_ID).refresh_token
    sim.tokens.redeem_refresh(spent)
    failed = seed(play, environment, {"band-one": spent})
    assert failed.rc != 0
    assert "sc2s3 authorize --account band-one failed (exit 1)" in failed.output
    assert spent not in failed.output
