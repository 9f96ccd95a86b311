"""The hosts' image (roles/sc2s3_aws/tasks/ami.yml) against a private moto_server holding
Debian-like images: the newest official Debian image of sc2s3_debian_release (12 or 13) built
for the instance type's architecture (t4g: arm64, t3: x86_64), an explicit sc2s3_ami_id as it
is, a clear failure naming the variables when nothing matches, and the architecture rule checked
against moto's copy of EC2's whole instance type catalogue.

The lookup cases run the role's own task file, one play per case, in one ansible-playbook run (a
few seconds); one full provision.yml run checks that the instances get the chosen image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from sys_moto import Moto, moto_server
from sys_paths import REPO

DEBIAN = "136693071363"  # the account publishing Debian's official images
OTHER = "999999999999"
PRODUCTION_INVENTORY = str(REPO / "inventory" / "production")
LOOKUP_TIMEOUT_S = 60
RUN_TIMEOUT_S = 240

# 12/13 x amd64/arm64, two builds each (listed out of date order), and decoys that must never
# win although newer: another owner's look-alike, Debian's backports images, a pending build,
# a Debian 11 image.
D12_AMD64_OLD, D12_AMD64 = "ami-0120a00000000001", "ami-0120a00000000002"
D12_ARM64_OLD, D12_ARM64 = "ami-0120b00000000001", "ami-0120b00000000002"
D13_AMD64_OLD, D13_AMD64 = "ami-0130a00000000001", "ami-0130a00000000002"
D13_ARM64_OLD, D13_ARM64 = "ami-0130b00000000001", "ami-0130b00000000002"
IMAGES = [
    # (id, owner, name, architecture, created, state)
    (D12_AMD64, DEBIAN, "debian-12-amd64-20250610-2137", "x86_64", "2025-06-10T21:37:00", None),
    (D12_ARM64_OLD, DEBIAN, "debian-12-arm64-20250201-1000", "arm64", "2025-02-01T10:00:00", None),
    (D13_ARM64, DEBIAN, "debian-13-arm64-20251020-2250", "arm64", "2025-10-20T22:50:00", None),
    (D12_AMD64_OLD, DEBIAN, "debian-12-amd64-20250101-1000", "x86_64", "2025-01-01T10:00:00", None),
    (D13_AMD64, DEBIAN, "debian-13-amd64-20251020-2250", "x86_64", "2025-10-20T22:50:00", None),
    (D12_ARM64, DEBIAN, "debian-12-arm64-20250610-2137", "arm64", "2025-06-10T21:37:00", None),
    (D13_AMD64_OLD, DEBIAN, "debian-13-amd64-20250809-2000", "x86_64", "2025-08-09T20:00:00", None),
    (D13_ARM64_OLD, DEBIAN, "debian-13-arm64-20250809-2000", "arm64", "2025-08-09T20:00:00", None),
    ("ami-0990000000000001", OTHER, "debian-13-arm64-20251201-0000", "arm64",
     "2025-12-01T00:00:00", None),
    ("ami-0990000000000002", OTHER, "debian-12-amd64-20251201-0000", "x86_64",
     "2025-12-01T00:00:00", None),
    ("ami-0130c00000000001", DEBIAN, "debian-13-backports-arm64-20251130-0000", "arm64",
     "2025-11-30T00:00:00", None),
    ("ami-0130c00000000002", DEBIAN, "debian-13-arm64-20251215-0000", "arm64",
     "2025-12-15T00:00:00", "pending"),
    ("ami-0110a00000000001", DEBIAN, "debian-11-amd64-20251201-0000", "x86_64",
     "2025-12-01T00:00:00", None),
]


def moto_ami(ami_id: str, owner: str, name: str, arch: str, created: str,
             state: str | None) -> dict:
    """One image in moto's MOTO_AMIS_PATH format."""
    return {
        "ami_id": ami_id, "state": state or "available", "public": True, "owner_id": owner,
        "image_location": f"{owner}/{name}", "root_device_type": "ebs",
        "root_device_name": "/dev/xvda", "description": name, "image_type": "machine",
        "architecture": arch, "name": name, "virtualization_type": "hvm", "hypervisor": "xen",
        "creation_date": f"{created}.000Z",
    }


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    amis = tmp_path_factory.mktemp("amis") / "debian_amis.json"
    amis.write_text(json.dumps([moto_ami(*image) for image in IMAGES]))
    with moto_server(amis) as server:
        yield server


def lookup_play(case: str, inputs: dict, chosen_image_file: Path) -> dict:
    """A play running the role's AMI task file as provision.yml would (same module_defaults,
    the case's inputs as play vars), then writing the fact it sets to `chosen_image_file`."""
    return {
        "name": f"Choose the hosts' AMI: {case}",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}", **inputs},
        "module_defaults": {"group/amazon.aws.aws": {
            "region": "{{ sc2s3_region | default('us-east-1') }}",
            "endpoint_url": "{{ sc2s3_aws_endpoint_url }}"}},
        "tasks": [
            {"name": "Run the role's AMI lookup",
             "ansible.builtin.include_role": {"name": "sc2s3_aws", "tasks_from": "ami.yml"}},
            {"name": "Write the chosen image",
             "ansible.builtin.copy": {"content": "{{ sc2s3_aws_image | to_json }}",
                                      "dest": str(chosen_image_file), "mode": "0600"}},
        ],
    }


def look_up(moto: Moto, tmp_path: Path, cases: dict[str, dict]):
    """Run the role's AMI lookup once per case (one play each, one ansible-playbook run):
    ({case: the chosen image}, the run)."""
    files = {case: tmp_path / f"chosen_{n}.json" for n, case in enumerate(cases)}
    playbook = tmp_path / "ami_lookup.yml"
    # JSON is YAML.
    playbook.write_text(json.dumps(
        [lookup_play(case, inputs, files[case]) for case, inputs in cases.items()], indent=1))
    run = moto.playbook(str(playbook), "-i", "localhost,", timeout_s=LOOKUP_TIMEOUT_S)
    chosen = {case: json.loads(f.read_text()) for case, f in files.items() if f.exists()}
    return chosen, run


LOOKUPS = {
    # case: (inputs, expected image)
    "t3 on the default release is Debian 12 amd64": ({"sc2s3_instance_type": "t3.small"},
                                                     D12_AMD64),
    "t4g on Debian 12 is arm64": ({"sc2s3_instance_type": "t4g.small",
                                   "sc2s3_debian_release": 12}, D12_ARM64),
    # A string, as -e sc2s3_debian_release=13 passes it.
    "t3 on Debian 13 is amd64": ({"sc2s3_instance_type": "t3.small",
                                  "sc2s3_debian_release": "13"}, D13_AMD64),
    "t4g on Debian 13 is arm64": ({"sc2s3_instance_type": "t4g.small",
                                   "sc2s3_debian_release": 13}, D13_ARM64),
    "a1 is Graviton too": ({"sc2s3_instance_type": "a1.large",
                            "sc2s3_debian_release": 13}, D13_ARM64),
    "m7i-flex is x86_64": ({"sc2s3_instance_type": "m7i-flex.large",
                            "sc2s3_debian_release": 13}, D13_AMD64),
    "a name pattern picks an older build, same architecture": (
        {"sc2s3_instance_type": "c7g.medium", "sc2s3_ami_name": "debian-12-arm64-202502*"},
        D12_ARM64_OLD),
    "an explicit AMI id is used as it is": (
        {"sc2s3_instance_type": "t4g.small", "sc2s3_debian_release": 13,
         "sc2s3_ami_id": D12_ARM64_OLD}, D12_ARM64_OLD),
}


@pytest.fixture(scope="module")
def lookups(moto, tmp_path_factory) -> dict[str, dict]:
    chosen, run = look_up(moto, tmp_path_factory.mktemp("lookups"),
                          {case: inputs for case, (inputs, _) in LOOKUPS.items()})
    print(f"AMI lookups: rc={run.rc} in {run.seconds:.0f} s")
    if run.rc != 0:
        pytest.fail(f"the AMI lookups failed (rc={run.rc}):\n{run.output[-6000:]}")
    return chosen


@pytest.mark.timeout(LOOKUP_TIMEOUT_S + 30, func_only=True)
@pytest.mark.parametrize("case", sorted(LOOKUPS))
def test_lookup_picks_the_newest_official_image_for_release_and_architecture(lookups, case):
    _, expected = LOOKUPS[case]
    image = lookups[case]
    assert image["image_id"] == expected, image
    expected_arch = {image_id: arch for image_id, _, _, arch, _, _ in IMAGES}[expected]
    assert image["architecture"] == expected_arch


@pytest.mark.timeout(LOOKUP_TIMEOUT_S + 30, func_only=True)
def test_no_matching_image_fails_naming_the_variables(moto, tmp_path):
    # An x86_64 name pattern on a Graviton type: the architecture filter still applies.
    inputs = {"sc2s3_instance_type": "t4g.small", "sc2s3_ami_name": "debian-12-amd64-*"}
    chosen, run = look_up(moto, tmp_path, {"no match": inputs})
    assert run.rc != 0 and chosen == {}, run.output[-4000:]
    output = " ".join(run.output.split())
    for text in ("No available arm64 AMI named debian-12-amd64-* owned by 136693071363",
                 "sc2s3_instance_type t4g.small is arm64", "sc2s3_debian_release (12)",
                 "sc2s3_ami_name ('debian-12-amd64-*')", "sc2s3_ami_owner", "sc2s3_ami_id"):
        assert text in output, run.output[-4000:]


@pytest.mark.timeout(60, func_only=True)
def test_arm64_rule_agrees_with_the_instance_type_catalogue(moto):
    """vars/main.yml's family rule gives arm64 exactly to the types whose
    ProcessorInfo.SupportedArchitectures has arm64 (mac types, arm64_mac / x86_64_mac, run no
    Debian image and are left out)."""
    role_vars = yaml.safe_load((REPO / "roles/sc2s3_aws/vars/main.yml").read_text())
    arm64 = re.compile(role_vars["_sc2s3_arm64_instance_types"])  # Jinja's `match` is re.match
    pages = moto.client("ec2").get_paginator("describe_instance_types").paginate()
    types = {t["InstanceType"]: t["ProcessorInfo"]["SupportedArchitectures"]
             for page in pages for t in page["InstanceTypes"]}
    assert {"t4g.small", "t3.small", "a1.large", "c7gn.large", "x2gd.large"} <= types.keys()
    wrong = sorted(
        name for name, archs in types.items()
        if ("arm64" in archs or "x86_64" in archs)
        and bool(arm64.match(name)) != ("arm64" in archs))
    print(f"{len(types)} instance types checked")
    assert wrong == []


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_bad_release_fails_before_any_aws_call(moto):
    inputs = {"sc2s3_bucket": "sc2s3-ami-test", "sc2s3_admin_cidrs": ["198.51.100.0/24"],
              "sc2s3_debian_release": 11}
    run = moto.playbook("playbooks/provision.yml", "-i", PRODUCTION_INVENTORY,
                        "-e", json.dumps(inputs), timeout_s=RUN_TIMEOUT_S)
    assert run.rc != 0
    assert "sc2s3_debian_release" in run.output and "12, 13" in run.output, run.output[-3000:]
    assert "TASK [sc2s3_aws : Find the AMI of the hosts]" not in run.output


@pytest.mark.timeout(RUN_TIMEOUT_S + 30, func_only=True)
def test_provision_runs_graviton_hosts_on_the_debian_13_arm64_image(moto):
    inputs = {"sc2s3_bucket": "sc2s3-ami-test", "sc2s3_admin_cidrs": ["198.51.100.0/24"],
              "sc2s3_fleet": "amitest", "sc2s3_instance_type": "t4g.small",
              "sc2s3_debian_release": 13}
    # The production inventory finds no host of fleet "amitest": only localhost is played.
    run = moto.playbook("playbooks/provision.yml", "-i", PRODUCTION_INVENTORY,
                        "-e", json.dumps(inputs), timeout_s=RUN_TIMEOUT_S)
    print(f"provision: rc={run.rc} in {run.seconds:.0f} s, recap {run.recap()}")
    assert run.rc == 0, run.output[-6000:]
    answer = moto.client("ec2").describe_instances(Filters=[
        {"Name": "tag:sc2s3:fleet", "Values": ["amitest"]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]}])
    (instance,) = [i for r in answer["Reservations"] for i in r["Instances"]]
    assert (instance["ImageId"], instance["InstanceType"]) == (D13_ARM64, "t4g.small")
    assert f"{D13_ARM64} (debian-13-arm64-20251020-2250, arm64) for t4g.small" in " ".join(
        run.output.split())
