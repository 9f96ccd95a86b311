"""The bucket's lifecycle expires bookkeeping only: its rules, as roles/sc2s3_aws renders them,
evaluated against every object version a real agent run leaves in a bucket (with its tags) and
against synthetic keys of every archive kind, hostile ones included.

The rules are the role's own: a throwaway play includes roles/sc2s3_aws (validate.yml with
``public: true``, so its defaults and vars apply) and writes ``_sc2s3_lifecycle_rules`` (what
tasks/bucket.yml hands to S3) and the agents' IAM policy through ``to_json``.
tests/test_provision.py checks that provision.yml stores exactly these rules on moto, and that
a second run changes nothing; tests/test_provision_policy.py provisions with a custom
``sc2s3_bookkeeping_noncurrent_days``.

Neither moto nor SeaweedFS runs lifecycle rules, so this file carries a small evaluator of the
filter language S3 documents for lifecycle rules ("Lifecycle configuration elements": an empty
filter, ``Prefix`` (the key begins with it, no wildcards), ``Tag`` (the version carries the
tag), ``ObjectSizeGreaterThan``/``ObjectSizeLessThan`` and ``And`` of those) and refuses any
other element, so a rule it cannot judge fails here instead of passing unjudged. What it does
not prove: how S3 itself applies the rules (real S3 is never called).

The real run is the one tests/test_bucket_policy.py records too, tests/sys_agent_run.py
(SeaweedFS, the SoundCloud simulator, the real ``sc2s3 mirror --once`` twice around a metadata
edit and a replaced original, then ``sc2s3 run`` until it has heartbeated and taken a lease),
all on loopback; every version it leaves is listed with ListObjectVersions and its tags read
with GetObjectTagging.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sys_agent_run import object_key, record_agent_run
from sys_moto import moto_server
from sys_paths import REPO
from sys_playbook import run_playbook
from test_bucket_policy import (
    ARCHIVE_KINDS,
    CAS_KINDS,
    TRACK,
    UNCONDITIONAL_KINDS,
    USER,
    agent_keys,
    matching,
)
from test_bucket_policy import RUN_PREFIX as PREFIX

BUCKET = "sc2s3-lifecycle-eval"
INPUTS = {"sc2s3_bucket": BUCKET, "sc2s3_admin_cidrs": ["198.51.100.0/24"]}
RENDER_TIMEOUT_S = 120
DAYS = 30  # the role's default sc2s3_bookkeeping_noncurrent_days
CUSTOM_DAYS = 7
TAG = ("sc2s3-kind", "bookkeeping")  # what the agent writes: PutObject Tagging="sc2s3-kind=bookkeeping"

ARCHIVE_RULE = "sc2s3-archive"
TAG_RULE = "sc2s3-bookkeeping-tagged"


def state_rule(prefix: str) -> str:
    return f"sc2s3-bookkeeping-state:{prefix}state/"


def localhost_play(name: str, tasks: str) -> str:
    """A playbook of one play named ``name`` on the controller, with the Python running
    ansible-playbook; ``tasks`` is the play's task list (items indented by four spaces)."""
    return (f"- name: {name}\n"
            "  hosts: localhost\n"
            "  connection: local\n"
            "  gather_facts: false\n"
            "  vars:\n"
            '    ansible_python_interpreter: "{{ ansible_playbook_python }}"\n'
            "  tasks:\n" + tasks)


RENDER_PLAY = localhost_play("Render the lifecycle rules and the agents' policy of sc2s3_aws", """\
    - name: Check the inputs and load the role's defaults and vars
      ansible.builtin.include_role:
        name: sc2s3_aws
        tasks_from: validate.yml
        public: true
    - name: Write the rules as bucket.yml hands them to S3
      ansible.builtin.copy:
        dest: "{{ lifecycle_out }}"
        mode: "0644"
        content: >-
          {{ {'rules': _sc2s3_lifecycle_rules, 'agent': _sc2s3_agent_policy} | to_json }}
""")


def render(workdir: Path, inputs: dict):
    """The playbook run rendering the role's lifecycle rules and agent policy for ``inputs``,
    and the path it writes them to."""
    workdir.mkdir(parents=True, exist_ok=True)
    play, out = workdir / "render.yml", workdir / "lifecycle.json"
    play.write_text(RENDER_PLAY)
    run = run_playbook(str(play), "-i", "localhost,", "-e", json.dumps(inputs),
                       "-e", json.dumps({"lifecycle_out": str(out)}), timeout_s=RENDER_TIMEOUT_S)
    return run, out


def render_lifecycle(workdir: Path, inputs: dict) -> dict:
    """``{"rules": [<lifecycle rule>, ...], "agent": <the agents' IAM policy>}`` as the role
    makes them for ``inputs``."""
    run, out = render(workdir, inputs)
    assert run.rc == 0, f"rendering failed (rc={run.rc}):\n{run.output[-4000:]}"
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, dict]:
    """The documents for the default prefix and for an empty one (the whole bucket)."""
    root = tmp_path_factory.mktemp("lifecycle")
    return {PREFIX: render_lifecycle(root / "default", INPUTS),
            "": render_lifecycle(root / "empty", {**INPUTS, "sc2s3_prefix": ""})}


# -- the evaluator ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Version:
    """One object version as a lifecycle rule sees it."""

    key: str
    tags: dict[str, str] = field(default_factory=dict)
    size: int = 1024

    def tagged(self) -> Version:
        return Version(self.key, {**self.tags, TAG[0]: TAG[1]}, self.size)


RULE_ELEMENTS = {"ID", "Status", "Filter", "Expiration", "NoncurrentVersionExpiration",
                 "Transitions", "NoncurrentVersionTransitions", "AbortIncompleteMultipartUpload"}
# Actions that delete a version (Transitions and AbortIncompleteMultipartUpload delete none).
EXPIRING = ("Expiration", "NoncurrentVersionExpiration")


def condition_holds(element: str, value, version: Version) -> bool:
    if element == "Prefix":
        return version.key.startswith(value)  # literal: "*" and "?" are characters here
    if element == "Tag":
        return version.tags.get(value["Key"]) == value["Value"]
    if element == "Tags":
        return all(version.tags.get(t["Key"]) == t["Value"] for t in value)
    if element == "ObjectSizeGreaterThan":
        return version.size > value
    if element == "ObjectSizeLessThan":
        return version.size < value
    raise AssertionError(f"the test's evaluator does not know the filter element {element!r}: "
                         "teach it before relying on it")


def filter_matches(rule_filter: dict, version: Version) -> bool:
    """S3's lifecycle filter: empty (every object), one element, or ``And`` of several."""
    assert len(rule_filter) <= 1, f"S3 takes one filter element (several go in And): {rule_filter}"
    for element, value in rule_filter.items():
        if element == "And":
            assert "Tag" not in value, "And lists its tags under Tags"
            return all(condition_holds(e, v, version) for e, v in value.items())
        assert element != "Tags", "Tags belongs in And"
        return condition_holds(element, value, version)
    return True


def expiring_rules(rules: list[dict], version: Version) -> list[str]:
    """IDs of the enabled rules that can delete ``version`` (current or noncurrent)."""
    found = []
    for rule in rules:
        unknown = set(rule) - RULE_ELEMENTS
        assert not unknown, f"the test's evaluator does not know {sorted(unknown)}"
        assert "Filter" in rule, f"a rule without Filter (the old top-level Prefix): {rule}"
        if (rule["Status"] == "Enabled" and any(a in rule for a in EXPIRING)
                and filter_matches(rule["Filter"], version)):
            found.append(rule["ID"])
    return found


def test_the_evaluator_reads_filters_as_s3_does():
    key = Version("soundcloud/state/leases/x.json", {"k": "v"}, size=10)
    assert filter_matches({}, key) and filter_matches({"Prefix": ""}, key)
    assert filter_matches({"Prefix": "soundcloud/state/"}, key)
    assert not filter_matches({"Prefix": "soundcloud/state/*"}, key)  # no wildcards
    assert not filter_matches({"Prefix": "state/"}, key)  # anchored at the key's start
    assert filter_matches({"Tag": {"Key": "k", "Value": "v"}}, key)
    assert not filter_matches({"Tag": {"Key": "k", "Value": "w"}}, key)
    assert not filter_matches({"Tag": {"Key": "K", "Value": "v"}}, key)
    both = {"And": {"Prefix": "soundcloud/", "Tags": [{"Key": "k", "Value": "v"}]}}
    assert filter_matches(both, key)
    assert not filter_matches(both, Version(key.key))
    assert not filter_matches({"And": {"Prefix": "other/", "Tags": [{"Key": "k", "Value": "v"}]}},
                              key)
    assert filter_matches({"ObjectSizeLessThan": 11}, key)
    assert not filter_matches({"ObjectSizeGreaterThan": 10}, key)
    rule = {"ID": "r", "Status": "Enabled", "Filter": {}, "NoncurrentVersionExpiration": {}}
    assert expiring_rules([rule], key) == ["r"]
    assert expiring_rules([{**rule, "Status": "Disabled"}], key) == []
    tiering = {"ID": "t", "Status": "Enabled", "Filter": {}, "NoncurrentVersionTransitions": [],
               "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
    assert expiring_rules([tiering], key) == []
    with pytest.raises(AssertionError, match="does not know"):
        filter_matches({"ObjectOwner": "x"}, key)
    with pytest.raises(AssertionError, match="one filter element"):
        filter_matches({"Prefix": "a", "Tag": {"Key": "k", "Value": "v"}}, key)


# -- the rendered rules -----------------------------------------------------------------------

@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_only_bookkeeping_rules_expire_and_never_a_current_version(rendered, prefix):
    rules = rendered[prefix]["rules"]
    print(f"lifecycle rules for prefix {prefix!r}:\n" + json.dumps(rules, indent=1))
    assert [r["ID"] for r in rules] == [ARCHIVE_RULE, state_rule(prefix), TAG_RULE]
    assert all(r["Status"] == "Enabled" for r in rules)
    assert not any("Expiration" in r for r in rules)  # current versions never expire
    archive, state, tagged = rules
    assert archive["Filter"] == {"Prefix": ""} and not any(a in archive for a in EXPIRING)
    assert state["Filter"] == {"Prefix": f"{prefix}state/"}
    assert tagged["Filter"] == {"Tag": {"Key": TAG[0], "Value": TAG[1]}}
    for rule in (state, tagged):
        assert set(rule) == {"ID", "Status", "Filter", "NoncurrentVersionExpiration"}, rule
        assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": DAYS}


# -- synthetic keys ---------------------------------------------------------------------------

# Every extension the agent gives audio (docs/archive.md: from the Content-Type, bin if unknown).
AUDIO_EXTENSIONS = ("mp3", "wav", "flac", "aiff", "ogg", "m4a", "aac", "ts", "bin")
PLAYLIST = "soundcloud:playlists:77"


def archive_keys(prefix: str) -> dict[str, str]:
    """A key of every archive kind under ``prefix``: the agent's own (audio, track.json,
    metadata), those the design adds (sets, artwork, avatar), and hostile look-alikes."""
    # Create-only archive objects, and the avatar and set covers (replaced when the image
    # changes, every version kept).
    keys = {f"{kind}": key for kind, key in agent_keys(prefix).items()
            if kind in ARCHIVE_KINDS | {"avatar", "set cover"}}
    track_dir = f"{prefix}{USER}/{TRACK}/"
    keys.update({f"audio .{ext}": f"{track_dir}r3/audio.{ext}" for ext in AUDIO_EXTENSIONS})
    keys.update({
        "metadata m1": f"{track_dir}metadata/m1.json",
        "set": f"{prefix}{USER}/sets/{PLAYLIST}/s1.json",
        "artwork": f"{track_dir}artwork.jpg",
        "artwork of a revision": f"{track_dir}r1/artwork.png",
        "avatar": f"{prefix}{USER}/avatar.jpg",
        # Folders named like the bookkeeping, below the account or the track.
        "audio in a state folder": f"{prefix}{USER}/state/r1/audio.mp3",
        "track folder named state": f"{prefix}{USER}/state/metadata/m1.json",
        "state below a track": f"{track_dir}state/uploads/r1/audio.wav",
        "state/ in the file name": f"{track_dir}r1/audio.state/",
    })
    return keys


def state_keys(prefix: str) -> dict[str, str]:
    keys = {kind: key for kind, key in agent_keys(prefix).items()
            if key.startswith(f"{prefix}state/")}
    keys["owner"] = f"{prefix}state/owners/{USER}.json"
    assert set(keys) >= {"lease", "upload state", "plays", "heartbeat", "owner"}, sorted(keys)
    return keys


def kept_keys(prefix: str) -> dict[str, str]:
    """Neither archive nor bookkeeping: rewritten as they change, every version kept."""
    return {kind: agent_keys(prefix)[kind] for kind in ("README", "user.json")}


def test_every_kind_of_agent_key_is_classified():
    assert set(agent_keys(PREFIX)) == ARCHIVE_KINDS | CAS_KINDS | UNCONDITIONAL_KINDS
    sorted_out = (set(archive_keys(PREFIX)) | set(state_keys(PREFIX)) | set(kept_keys(PREFIX))
                  | {"catalog"})
    assert set(agent_keys(PREFIX)) <= sorted_out


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_no_rule_expires_an_archive_version_tagged_or_not(rendered, prefix):
    rules = rendered[prefix]["rules"]
    for kind, key in archive_keys(prefix).items():
        assert expiring_rules(rules, Version(key)) == [], (kind, key)
        # Only the tag rule would take a tagged one, and the agents cannot tag it (next test).
        assert expiring_rules(rules, Version(key).tagged()) == [TAG_RULE], (kind, key)


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_the_agents_may_tag_catalogs_only(rendered, prefix):
    """PutObject with Tagging needs s3:PutObjectTagging too: allowed on catalog.json keys, on
    no archive, state or other key, and s3:PutObjectVersionTagging (an existing version's tags)
    on none."""
    agent = rendered[prefix]["agent"]

    def may(action: str, key: str) -> bool:
        arn, context = f"arn:aws:s3:::{BUCKET}/{key}", {"aws:SecureTransport": "true"}
        return (bool(matching(agent, "Allow", action, arn, context))
                and not matching(agent, "Deny", action, arn, context))

    catalog = agent_keys(prefix)["catalog"]
    assert may("s3:PutObjectTagging", catalog) and may("s3:PutObject", catalog)
    assert may("s3:PutObjectTagging", f"{prefix}soundcloud:users:1/catalog.json")
    others = {**archive_keys(prefix), **state_keys(prefix), **kept_keys(prefix)}
    assert [kind for kind, key in others.items() if may("s3:PutObjectTagging", key)] == []
    assert not may("s3:PutObjectVersionTagging", catalog)
    assert not may("s3:PutObjectTagging", f"other-fleet/{USER}/catalog.json")


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_the_state_rule_expires_every_state_version(rendered, prefix):
    rules = rendered[prefix]["rules"]
    for kind, key in state_keys(prefix).items():
        assert expiring_rules(rules, Version(key)) == [state_rule(prefix)], (kind, key)


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_the_tag_rule_expires_catalog_versions_only_when_tagged(rendered, prefix):
    rules = rendered[prefix]["rules"]
    catalog = Version(agent_keys(prefix)["catalog"])
    assert expiring_rules(rules, catalog) == []
    assert expiring_rules(rules, catalog.tagged()) == [TAG_RULE]
    assert expiring_rules(rules, Version(catalog.key, {TAG[0]: "archive"})) == []
    assert expiring_rules(rules, Version(catalog.key, {"sc2s3-Kind": TAG[1]})) == []
    for kind, key in kept_keys(prefix).items():
        assert expiring_rules(rules, Version(key)) == [], (kind, key)


def test_no_rule_of_a_fleet_expires_another_fleets_archive(rendered):
    """Fleets sharing the bucket (prefixes validate.yml lets through): neither fleet's state rule
    reaches into the other's archive."""
    for prefix in ("other-fleet/", "a/b/", "soundcloud/other/", "statements/", "state.d/", "State/"):
        for mine in (PREFIX, ""):
            for kind, key in archive_keys(prefix).items():
                assert expiring_rules(rendered[mine]["rules"], Version(key)) == [], (
                    mine, prefix, kind)


# A prefix with a state/ folder would lie under the state rule of a fleet with a shorter prefix.
BAD_INPUTS = {
    "prefix with a state folder": ({"sc2s3_prefix": "soundcloud/state/"}, [
        "sc2s3_prefix must not contain a folder named state/"]),
    "prefix state/": ({"sc2s3_prefix": "state/"}, [
        "sc2s3_prefix must not contain a folder named state/"]),
    "bookkeeping days 0": ({"sc2s3_bookkeeping_noncurrent_days": 0}, [
        "sc2s3_bookkeeping_noncurrent_days must be at least 1", "got 7, 30, 0"]),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_inputs_that_would_expire_the_archive_or_everything_are_refused(tmp_path, case):
    override, messages = BAD_INPUTS[case]
    run, out = render(tmp_path, {**INPUTS, **override})
    assert run.rc != 0 and not out.exists(), run.output[-3000:]
    for message in messages:
        assert message in run.output, run.output[-3000:]


# -- a real agent run -------------------------------------------------------------------------

USER_PATTERN, TRACK_PATTERN = r"soundcloud:users:\d+", r"soundcloud:tracks:\d+"
# What each key of a run is (after PREFIX), independent of the rules: a new kind of key needs a
# decision here (archive, bookkeeping, or kept) before this test passes.
RUN_KINDS = {
    "archive": [rf"{USER_PATTERN}/{TRACK_PATTERN}/.+", rf"{USER_PATTERN}/sets/.+",
                rf"{USER_PATTERN}/(artwork|avatar)\.[a-z0-9]+"],
    "catalog": [rf"{USER_PATTERN}/catalog\.json"],
    "state": [r"state/.+"],
    "kept": [r"README\.txt", rf"{USER_PATTERN}/user\.json"],
}


def run_kind(key: str) -> str:
    rest = key.removeprefix(PREFIX)
    found = [kind for kind, patterns in RUN_KINDS.items()
             if any(re.fullmatch(p, rest) for p in patterns)]
    assert key.startswith(PREFIX) and len(found) == 1, f"a new kind of key: {key!r}"
    return found[0]


@dataclass(frozen=True)
class RunVersion:
    version: Version
    version_id: str
    latest: bool


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """Every object version a real agent run leaves, with its tags, and the run's requests
    (method, path, headers)."""
    run = record_agent_run(tmp_path_factory.mktemp("run"), BUCKET, PREFIX)
    assert run.delete_markers == [], run.delete_markers  # the agent deletes nothing
    versions = [RunVersion(Version(v.key, v.tags, v.size), v.version_id, v.latest)
                for v in run.versions]
    return versions, run.requests


def test_a_real_run_left_every_kind_of_version(real_run):
    versions, _ = real_run
    print("versions of the run:\n" + "\n".join(
        f"{v.version.key} {'current' if v.latest else 'noncurrent'} {v.version.tags}"
        for v in versions))
    kinds = {run_kind(v.version.key) for v in versions}
    assert kinds == {"archive", "catalog", "state", "kept"}
    # Bookkeeping rewritten: noncurrent versions for the rules to expire.
    noncurrent = {run_kind(v.version.key) for v in versions if not v.latest}
    assert {"catalog", "state"} <= noncurrent, noncurrent
    # The archive's versions are all current (written once, never replaced).
    assert all(v.latest for v in versions if run_kind(v.version.key) == "archive")
    assert any("/r2/audio." in v.version.key for v in versions)
    assert any("/metadata/m1.json" in v.version.key for v in versions)


@pytest.mark.timeout(60, func_only=True)
def test_no_rule_expires_a_version_of_the_archive_of_a_real_run(rendered, real_run):
    versions, _ = real_run
    rules = rendered[PREFIX]["rules"]
    archive = [v.version for v in versions if run_kind(v.version.key) == "archive"]
    assert archive
    assert [(v.key, expiring_rules(rules, v)) for v in archive if expiring_rules(rules, v)] == []
    assert [v for v in archive if v.tags] == []  # the agent tags no archive object
    kept = [v.version for v in versions if run_kind(v.version.key) == "kept"]
    assert [(v.key, expiring_rules(rules, v)) for v in kept if expiring_rules(rules, v)] == []


@pytest.mark.timeout(60, func_only=True)
def test_the_state_rule_expires_every_state_version_of_a_real_run(rendered, real_run):
    versions, _ = real_run
    rules = rendered[PREFIX]["rules"]
    state = [v.version for v in versions if run_kind(v.version.key) == "state"]
    assert {v.key.split("/")[2] for v in state} >= {"leases", "hosts", "uploads", "plays.json"}
    wrong = [(v.key, expiring_rules(rules, v)) for v in state
             if expiring_rules(rules, v) != [state_rule(PREFIX)]]
    assert wrong == []


def request_key(path: str) -> str:
    return object_key(path, BUCKET)


def tagging_requests(requests) -> list[tuple[str, dict[str, str]]]:
    """(key, headers) of every request that sets tags: PutObject, CreateMultipartUpload or
    CopyObject with x-amz-tagging, and PutObjectTagging (?tagging)."""
    return [(request_key(path), headers) for method, path, headers in requests
            if "x-amz-tagging" in headers
            or (method == "PUT" and "tagging" in urlsplit(path).query.split("&"))]


@pytest.mark.timeout(60, func_only=True)
def test_every_tag_the_agent_writes_is_the_catalogs_and_allowed(rendered, real_run):
    """The requests of the run: each one carrying x-amz-tagging writes a catalog with exactly the
    tag the rule filters on, and the rendered IAM policy allows s3:PutObjectTagging on it."""
    _, requests = real_run
    agent = rendered[PREFIX]["agent"]
    for key, headers in tagging_requests(requests):
        assert run_kind(key) == "catalog", key
        assert headers.get("x-amz-tagging") == f"{TAG[0]}={TAG[1]}", (key, headers)
        arn = f"arn:aws:s3:::{BUCKET}/{key}"
        assert matching(agent, "Allow", "s3:PutObjectTagging", arn, {}), key


@pytest.mark.timeout(60, func_only=True)
def test_the_tag_rule_expires_the_catalog_versions_of_a_real_run(rendered, real_run):
    """Depends on the agent writing each catalog.json with Tagging="sc2s3-kind=bookkeeping"
    (sc2s3.catalog.BOOKKEEPING_TAG): every catalog version of the run carries the tag, so the tag
    rule, and only it, expires the catalog's noncurrent versions."""
    versions, requests = real_run
    rules = rendered[PREFIX]["rules"]
    writes = [headers for method, path, headers in requests
              if method == "PUT" and request_key(path) and run_kind(request_key(path)) == "catalog"]
    assert writes and all(h.get("x-amz-tagging") == f"{TAG[0]}={TAG[1]}" for h in writes), (
        "catalog.json written without Tagging=sc2s3-kind=bookkeeping")
    catalogs = [v.version for v in versions if run_kind(v.version.key) == "catalog"]
    assert len(catalogs) >= 2
    assert [v for v in catalogs if v.tags != {TAG[0]: TAG[1]}] == [], (
        "catalog versions without the tag sc2s3-kind=bookkeeping: their old versions never expire")
    assert {tuple(expiring_rules(rules, v)) for v in catalogs} == {(TAG_RULE,)}


# -- the role's module on moto ----------------------------------------------------------------

MODULE_PLAY = localhost_play("Set the bucket's lifecycle rules as tasks/bucket.yml does", """\
    - name: Set the lifecycle rules
      sc2s3_s3_lifecycle:
        name: "{{ bucket }}"
        rules: "{{ rules }}"
        region: us-east-1
        endpoint_url: "{{ sc2s3_aws_endpoint_url }}"
""")
FOREIGN_RULE = {"ID": "logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
                "Expiration": {"Days": 3}}
# What community.aws.s3_lifecycle wrote before the role set its rules itself.
OLD_ARCHIVE_RULE = {"ID": ARCHIVE_RULE, "Status": "Enabled", "Filter": {"Prefix": ""},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}


@pytest.mark.timeout(240, func_only=True)
def test_the_module_sets_rules_by_id_keeps_others_and_changes_nothing_twice(
        rendered, tmp_path):
    rules = rendered[PREFIX]["rules"]
    custom = render_lifecycle(tmp_path / "custom", {
        **INPUTS, "sc2s3_bookkeeping_noncurrent_days": CUSTOM_DAYS})["rules"]
    assert [r.get("NoncurrentVersionExpiration") for r in custom] == [
        None, {"NoncurrentDays": CUSTOM_DAYS}, {"NoncurrentDays": CUSTOM_DAYS}]
    play = tmp_path / "module.yml"
    play.write_text(MODULE_PLAY)
    (tmp_path / "library").symlink_to(REPO / "roles" / "sc2s3_aws" / "library")

    with moto_server() as moto:
        s3 = moto.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={
            "Rules": [FOREIGN_RULE, OLD_ARCHIVE_RULE]})

        def apply(rules: list[dict], *extra: str) -> int:
            run = moto.playbook(str(play), "-i", "localhost,", *extra,
                                "-e", json.dumps({"bucket": BUCKET, "rules": rules}),
                                timeout_s=60)
            assert run.rc == 0, run.output[-3000:]
            return run.recap()["localhost"]["changed"]

        def stored() -> list[dict]:
            return s3.get_bucket_lifecycle_configuration(Bucket=BUCKET)["Rules"]

        assert apply(rules) == 1
        assert stored() == [FOREIGN_RULE, *rules]  # the old archive rule replaced in place
        assert apply(rules) == 0
        assert apply(custom, "--check") == 1
        assert stored() == [FOREIGN_RULE, *rules]
        assert apply(custom) == 1
        assert stored() == [FOREIGN_RULE, *custom]
        assert apply(custom) == 0
