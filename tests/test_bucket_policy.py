"""The archive bucket's policy enforces "never overwritten": evaluated here, statement by
statement, against the agent's own keys and against every request of a real agent run.

Neither moto nor SeaweedFS evaluates bucket-policy conditions, and no Python package found on
PyPI evaluates IAM conditions either (policyuniverse, parliament, policy-sentry, cloudsplaining
and iam-ape parse, lint, generate or summarize policies). So this file carries a small
evaluator of exactly the policy language the role uses (Effect, Action, Resource with the ARN
wildcards * and ?, and the condition operators Null, Bool, StringEquals and StringLike) and
refuses any other element or operator, so a policy it cannot judge fails here instead of
passing unjudged. What it does not prove: how AWS itself evaluates these documents (real S3
is never called), and that S3 fills s3:ObjectCreationOperation, s3:if-match and
s3:if-none-match as the S3 User Guide documents ("Enforce conditional writes on Amazon S3
buckets", conditional-writes-enforce.html); the request contexts below follow that page.

The documents are the role's own: a throwaway play includes roles/sc2s3_aws (its validate.yml,
with ``public: true`` so the role's defaults and vars apply) and writes ``_sc2s3_bucket_policy``
and ``_sc2s3_agent_policy`` through ``to_json``, as tasks/bucket.yml and tasks/iam.yml pass
them to AWS. tests/test_provision.py checks that provision.yml stores exactly this bucket
policy. No sandbox is used: ansible-playbook on localhost, and for the end-to-end test a
SeaweedFS server, the SoundCloud simulator and a recording proxy, all on loopback
(tests/sys_agent_run.py).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sys_agent_run import record_agent_run
from sys_paths import REPO
from sys_playbook import run_playbook

# The agent's test support (the proxy's operation names) is not an installed package.
sys.path.insert(0, str(REPO / "agent" / "tests"))
from sc2s3.archive import Layout
from sc2s3.fleet import Fleet
from sc2s3.leases import Holder, LeaseStore
from sc2s3.plays import FleetPlayBudget
from sc2s3.resume import ResumeStore
from support.s3_faults import object_operation

BUCKET = "sc2s3-policy-eval"
PREFIX = "soundcloud/"  # the role's default; the first rendering does not set it
INPUTS = {"sc2s3_bucket": BUCKET, "sc2s3_admin_cidrs": ["198.51.100.0/24"]}
RENDER_TIMEOUT_S = 120
USER = "soundcloud:users:948745750"
TRACK = "soundcloud:tracks:1001"
HOLDER = Holder("host-a", "0123456789ab", 4242, "")

# The Sids of the bucket policy's statements, in the role's order.
TLS = "DenyInsecureTransport"
ARCHIVE = "DenyArchiveOverwrite"
BOOKKEEPING = "DenyUnconditionalBookkeepingWrite"

RENDER_PLAY = """\
- name: Render the policy documents of sc2s3_aws
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Check the inputs and load the role's defaults and vars
      ansible.builtin.include_role:
        name: sc2s3_aws
        tasks_from: validate.yml
        public: true
    - name: Write the documents as bucket.yml and iam.yml hand them to AWS
      ansible.builtin.copy:
        dest: "{{ policy_out }}"
        mode: "0644"
        content: >-
          {{ {'bucket': _sc2s3_bucket_policy | to_json,
              'agent': _sc2s3_agent_policy | to_json} | to_json }}
"""


def render_policies(workdir: Path, inputs: dict) -> dict[str, dict]:
    """``{"bucket": <bucket policy>, "agent": <the agents' IAM policy>}`` as the role makes them
    for ``inputs``."""
    workdir.mkdir(parents=True, exist_ok=True)
    play, out = workdir / "render.yml", workdir / "policies.json"
    play.write_text(RENDER_PLAY)
    run = run_playbook(str(play), "-i", "localhost,", "-e", json.dumps(inputs),
                       "-e", json.dumps({"policy_out": str(out)}), timeout_s=RENDER_TIMEOUT_S)
    assert run.rc == 0, f"rendering failed (rc={run.rc}):\n{run.output[-4000:]}"
    return {name: json.loads(text) for name, text in json.loads(out.read_text()).items()}


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict[str, dict[str, dict]]:
    """The documents for the default prefix, and for an empty one (the whole bucket)."""
    root = tmp_path_factory.mktemp("policies")
    return {PREFIX: render_policies(root / "default", INPUTS),
            "": render_policies(root / "empty", {**INPUTS, "sc2s3_prefix": ""})}


# -- the evaluator ----------------------------------------------------------------------------

def wildcard_regex(pattern: str, *, case_sensitive: bool) -> re.Pattern:
    """IAM's wildcards: ``*`` any run of characters, "/" included, ``?`` one character;
    everything else literal (unlike fnmatch, ``[`` is not special)."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, 0 if case_sensitive else re.IGNORECASE | re.DOTALL)


def matches_any(patterns: str | list[str], value: str, *, case_sensitive: bool) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return any(wildcard_regex(p, case_sensitive=case_sensitive).fullmatch(value)
               for p in patterns)


def condition_holds(condition: dict, context: dict[str, str]) -> bool:
    """Every operator, and every key under it, must match (AND); the values listed for one key
    are alternatives (OR). Condition keys are case-insensitive, context values single."""
    context = {k.lower(): v for k, v in context.items()}
    for operator, block in condition.items():
        for key, wanted in block.items():
            values = [wanted] if isinstance(wanted, str) else list(wanted)
            present = key.lower() in context
            actual = context.get(key.lower())
            if operator == "Null":
                held = ("true" if not present else "false") in [v.lower() for v in values]
            elif operator == "Bool":
                held = present and actual.lower() in [v.lower() for v in values]
            elif operator == "StringEquals":
                held = present and actual in values
            elif operator == "StringLike":
                held = present and matches_any(values, actual, case_sensitive=True)
            else:
                raise AssertionError(f"the test's evaluator does not know {operator!r}: teach "
                                     "it before relying on it")
            if not held:
                return False
    return True


def statement_applies(statement: dict, action: str, resource: str, context: dict) -> bool:
    unknown = set(statement) - {"Sid", "Effect", "Principal", "Action", "Resource", "Condition"}
    assert not unknown, f"the test's evaluator does not know {sorted(unknown)}"
    assert statement.get("Principal", "*") == "*", statement
    return (matches_any(statement["Action"], action, case_sensitive=False)
            and matches_any(statement["Resource"], resource, case_sensitive=True)
            and condition_holds(statement.get("Condition", {}), context))


def matching(policy: dict, effect: str, action: str, resource: str, context: dict) -> list[str]:
    """Sids of ``policy``'s ``effect`` statements that apply to the request."""
    return [s.get("Sid", "?") for s in policy["Statement"]
            if s["Effect"] == effect and statement_applies(s, action, resource, context)]


@dataclass(frozen=True)
class Request:
    """One S3 request as IAM sees it: the API operation, the object key (or None for a
    bucket-level request) and the request's headers and listing prefix."""

    operation: str
    key: str | None
    if_none_match: str | None = None
    if_match: str | None = None
    list_prefix: str | None = None
    secure: bool = True

    def unconditional(self) -> Request:
        return replace(self, if_none_match=None, if_match=None)


# API operation -> (IAM action, s3:ObjectCreationOperation or None when the key is absent).
# The S3 User Guide: ObjectCreationOperation is true for PutObject, CopyObject and
# CompleteMultipartUpload, false for CreateMultipartUpload, UploadPart and UploadPartCopy.
OPERATIONS = {
    "PutObject": ("s3:PutObject", "true"),
    "CopyObject": ("s3:PutObject", "true"),
    "CompleteMultipartUpload": ("s3:PutObject", "true"),
    "CreateMultipartUpload": ("s3:PutObject", "false"),
    "UploadPart": ("s3:PutObject", "false"),
    "UploadPartCopy": ("s3:PutObject", "false"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", None),
    "ListParts": ("s3:ListMultipartUploadParts", None),
    "GetObject": ("s3:GetObject", None),
    "HeadObject": ("s3:GetObject", None),
    "GetObjectVersion": ("s3:GetObjectVersion", None),
    "DeleteObject": ("s3:DeleteObject", None),
    "ListObjectsV2": ("s3:ListBucket", None),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", None),
}
CREATES_OBJECT = {op for op, (_, creation) in OPERATIONS.items() if creation == "true"}


def request_context(request: Request) -> tuple[str, str, dict[str, str]]:
    """``(action, resource ARN, condition context)`` of ``request``."""
    action, creation = OPERATIONS[request.operation]
    arn = f"arn:aws:s3:::{BUCKET}" + (f"/{request.key}" if request.key is not None else "")
    context = {"aws:SecureTransport": "true" if request.secure else "false"}
    if creation is not None:
        context["s3:ObjectCreationOperation"] = creation
    if request.if_none_match is not None:
        context["s3:if-none-match"] = request.if_none_match
    if request.if_match is not None:
        context["s3:if-match"] = request.if_match
    if request.list_prefix is not None:
        context["s3:prefix"] = request.list_prefix
    return action, arn, context


def bucket_denials(documents: dict[str, dict], request: Request) -> list[str]:
    return matching(documents["bucket"], "Deny", *request_context(request))


def decide(documents: dict[str, dict], request: Request) -> str:
    """The agent role's verdict, same account: an explicit Deny in either policy wins, then the
    identity policy must allow (the bucket policy grants nothing)."""
    action, arn, context = request_context(request)
    denied = (matching(documents["bucket"], "Deny", action, arn, context)
              + matching(documents["agent"], "Deny", action, arn, context))
    if denied:
        return "denied by " + ", ".join(denied)
    allowed = matching(documents["agent"], "Allow", action, arn, context) + matching(
        documents["bucket"], "Allow", action, arn, context)
    return "allowed" if allowed else "not allowed"


def test_the_evaluator_reads_the_policy_language_as_iam_does():
    # * crosses "/", ? is one character, [ is literal; Null is about presence, Bool needs the key.
    assert matches_any("arn:aws:s3:::b/p*/r*/audio.*", "arn:aws:s3:::b/p/u/t/r1/audio.wav",
                       case_sensitive=True)
    assert not matches_any("arn:aws:s3:::b/p*/r?/x", "arn:aws:s3:::b/p/r10/x", case_sensitive=True)
    assert not matches_any("arn:aws:s3:::b/[ab]", "arn:aws:s3:::b/a", case_sensitive=True)
    assert not matches_any("arn:aws:s3:::b/Key", "arn:aws:s3:::b/key", case_sensitive=True)
    assert matches_any("S3:putobject", "s3:PutObject", case_sensitive=False)
    both_absent = {"Null": {"s3:if-match": "true", "s3:if-none-match": "true"}}
    assert condition_holds(both_absent, {})
    assert not condition_holds(both_absent, {"s3:if-match": '"etag"'})
    assert not condition_holds({"Bool": {"s3:ObjectCreationOperation": "true"}}, {})
    assert condition_holds({"Bool": {"S3:ObjectCreationOperation": "TRUE"}},
                           {"s3:objectcreationoperation": "true"})
    with pytest.raises(AssertionError, match="does not know"):
        condition_holds({"StringNotEquals": {"k": "v"}}, {"k": "w"})


# -- the agent's keys -------------------------------------------------------------------------

def agent_keys(prefix: str) -> dict[str, str]:
    """One key of each kind, built by the agent's own code for ``prefix``."""
    layout = Layout(prefix)
    fleet = Fleet(None, BUCKET, prefix, ["band-one"], HOLDER, ttl_s=60, tick_s=20, version="t",
                  play_budget=100, member=True)
    return {
        "audio": layout.audio(USER, TRACK, 1, "wav"),
        "audio r12": layout.audio(USER, TRACK, 12, "m4a"),
        "track.json": layout.track_json(USER, TRACK, 1),
        "metadata": layout.metadata(USER, TRACK, 1),
        "metadata m10": layout.metadata(USER, TRACK, 10),
        "catalog": layout.catalog(USER),
        "user.json": layout.user_json(USER),
        "README": layout.readme(),
        "lease": LeaseStore(None, BUCKET, prefix, HOLDER, 60).key("band-one"),
        "lease by URN": LeaseStore(None, BUCKET, prefix, HOLDER, 60).key(USER),
        "upload state": ResumeStore(None, BUCKET, prefix).key(TRACK),
        "plays": FleetPlayBudget(None, BUCKET, prefix, 100, HOLDER).key,
        "heartbeat": fleet.heartbeat_key(),
        "revision artwork": layout.revision_artwork(USER, TRACK, 1, "jpg"),
        "set": layout.set_version(USER, PLAYLIST, 1),
        "set s10": layout.set_version(USER, PLAYLIST, 10),
        "owner chain": layout.owner_chain(USER),
        "sets index": layout.sets_index(USER),
        "avatar": layout.avatar(USER, "png"),
        "set cover": layout.set_artwork(USER, PLAYLIST, "jpg"),
    }


PLAYLIST = "soundcloud:playlists:77"
ARCHIVE_KINDS = {"audio", "audio r12", "track.json", "metadata", "metadata m10",
                 "revision artwork", "set", "set s10"}
CAS_KINDS = {"catalog", "lease", "lease by URN", "upload state", "plays", "owner chain",
             "sets index"}
UNCONDITIONAL_KINDS = {"user.json", "README", "heartbeat", "avatar", "set cover"}


def test_every_kind_of_key_is_classified():
    assert set(agent_keys(PREFIX)) == ARCHIVE_KINDS | CAS_KINDS | UNCONDITIONAL_KINDS


@pytest.mark.parametrize("prefix", [PREFIX, ""])
def test_each_key_is_matched_by_its_own_statement_only(policies, prefix):
    """Resource patterns against keys, conditions aside: an archive key is never taken for
    bookkeeping, nor a key the agent writes unconditionally for either."""
    expected = {kind: ({TLS, ARCHIVE} if kind in ARCHIVE_KINDS else
                       {TLS, BOOKKEEPING} if kind in CAS_KINDS else {TLS})
                for kind in agent_keys(prefix)}
    statements = policies[prefix]["bucket"]["Statement"]
    assert [s["Sid"] for s in statements] == [TLS, ARCHIVE, BOOKKEEPING]
    found = {kind: {s["Sid"] for s in statements
                    if matches_any(s["Resource"], f"arn:aws:s3:::{BUCKET}/{key}",
                                   case_sensitive=True)}
             for kind, key in agent_keys(prefix).items()}
    assert found == expected


def test_archive_keys_of_any_fleet_sharing_the_bucket_are_covered(policies):
    """The archive and catalog patterns do not depend on the prefix, so a second fleet under
    another prefix (which may have provisioned the bucket last) is protected as well; its
    state/ is not (those patterns are per prefix)."""
    documents = policies[PREFIX]
    for prefix in ("other-fleet/", "a/b/", "r1/audio.x/", "state/leases/"):
        keys = agent_keys(prefix)
        for kind in ARCHIVE_KINDS | {"catalog"}:
            assert bucket_denials(documents, Request("PutObject", keys[kind])), (prefix, kind)
        for kind in UNCONDITIONAL_KINDS:
            assert not bucket_denials(documents, Request("PutObject", keys[kind])), (
                prefix, kind)


INM, IM = {"if_none_match": "*"}, {"if_match": '"9b2cf535f27731c974343645a3985328"'}
HEADER_NAMES = {("if_none_match",): "If-None-Match", ("if_match",): "If-Match"}
# (kind, operation, headers, verdict)
CASES = [
    *[(kind, "PutObject", {}, "denied") for kind in sorted(ARCHIVE_KINDS)],
    *[(kind, "PutObject", INM, "allowed") for kind in sorted(ARCHIVE_KINDS)],
    *[(kind, "PutObject", IM, "denied") for kind in sorted(ARCHIVE_KINDS)],
    ("audio", "CopyObject", {}, "denied"),
    ("audio", "CompleteMultipartUpload", {}, "denied"),
    ("audio", "CompleteMultipartUpload", IM, "denied"),
    ("audio", "CompleteMultipartUpload", INM, "allowed"),
    ("audio", "CreateMultipartUpload", {}, "allowed"),
    ("audio", "UploadPart", {}, "allowed"),
    ("audio r12", "UploadPart", {}, "allowed"),
    ("audio", "UploadPartCopy", {}, "allowed"),
    ("audio", "AbortMultipartUpload", {}, "allowed"),
    ("audio", "ListParts", {}, "allowed"),
    ("audio", "GetObject", {}, "allowed"),
    ("audio", "GetObjectVersion", {}, "allowed"),
    *[(kind, "PutObject", {}, "denied") for kind in sorted(CAS_KINDS)],
    *[(kind, "PutObject", IM, "allowed") for kind in sorted(CAS_KINDS)],
    *[(kind, "PutObject", INM, "allowed") for kind in sorted(CAS_KINDS)],
    ("catalog", "CopyObject", {}, "denied"),
    *[(kind, "PutObject", {}, "allowed") for kind in sorted(UNCONDITIONAL_KINDS)],
    *[(kind, "PutObject", INM, "allowed") for kind in sorted(UNCONDITIONAL_KINDS)],
]


@pytest.mark.parametrize("prefix", [PREFIX, ""])
@pytest.mark.parametrize(("kind", "operation", "headers", "verdict"), CASES,
                         ids=[f"{k}-{o}-{HEADER_NAMES.get(tuple(h), 'no header')}"
                              for k, o, h, _ in CASES])
def test_the_agent_role_may_write_each_key_only_as_the_agent_does(
        policies, prefix, kind, operation, headers, verdict):
    request = Request(operation, agent_keys(prefix)[kind], **headers)
    decision = decide(policies[prefix], request)
    expected = "allowed" if verdict == "allowed" else (
        f"denied by {ARCHIVE if kind in ARCHIVE_KINDS else BOOKKEEPING}")
    assert decision == expected, request


@pytest.mark.parametrize("kind", sorted(ARCHIVE_KINDS | CAS_KINDS | UNCONDITIONAL_KINDS))
def test_plain_http_is_refused_for_every_key(policies, kind):
    request = Request("PutObject", agent_keys(PREFIX)[kind], if_none_match="*", secure=False)
    assert TLS in bucket_denials(policies[PREFIX], request)


def test_the_admin_is_bound_too(policies):
    """Principal "*": the Denies hold for any principal, whatever its own policy allows."""
    keys = agent_keys(PREFIX)
    assert ARCHIVE in bucket_denials(policies[PREFIX], Request("PutObject", keys["audio"]))
    assert BOOKKEEPING in bucket_denials(policies[PREFIX], Request("PutObject", keys["catalog"]))


# -- a real agent run -------------------------------------------------------------------------

RUN_PREFIX = PREFIX
# The recorded run (a fixture) is bounded by its own timeouts; the test itself only evaluates.
EVALUATE_TIMEOUT_S = 60


def classify(method: str, target: str, headers: dict[str, str]) -> Request:
    """The S3 API operation of one path-style request the agent's botocore sent."""
    split = urlsplit(target)
    query = parse_qs(split.query, keep_blank_values=True)
    bucket, _, key = unquote(split.path).lstrip("/").partition("/")
    assert bucket == BUCKET, target
    key = key or None
    copy = "x-amz-copy-source" in headers
    if key is None:
        if method == "GET" and "uploads" in query:
            operation = "ListMultipartUploads"
        elif method == "GET" and set(query) <= {"list-type", "prefix", "delimiter", "max-keys",
                                                "continuation-token", "encoding-type",
                                                "start-after", "fetch-owner"}:
            operation = "ListObjectsV2"
        else:
            raise AssertionError(f"unexpected bucket request {method} {target}")
        return Request(operation, None, list_prefix=query.get("prefix", [None])[0])
    operation = object_operation(method, query, copy)
    if operation is None:
        raise AssertionError(f"unexpected object request {method} {target}")
    return Request(operation, key, if_none_match=headers.get("if-none-match"),
                   if_match=headers.get("if-match"))


def key_kind(key: str) -> str:
    """What the agent's layout calls ``key`` (tests/ regexes, independent of the policy)."""
    rest = key.removeprefix(RUN_PREFIX)
    user, track = r"soundcloud:users:\d+", r"soundcloud:tracks:\d+"
    playlist = r"soundcloud:playlists:\d+"
    kinds = {
        "audio": rf"{user}/{track}/r\d+/audio\.[a-z0-9]+",
        "track.json": rf"{user}/{track}/r\d+/track\.json",
        "metadata": rf"{user}/{track}/metadata/m\d+\.json",
        "catalog": rf"{user}/catalog\.json",
        "user.json": rf"{user}/user\.json",
        "README": r"README\.txt",
        "lease": r"state/leases/accounts/[^/]+\.json",
        "upload state": rf"state/uploads/{track}\.json",
        "plays": r"state/plays\.json",
        "heartbeat": r"state/hosts/[^/]+\.json",
        "revision artwork": rf"{user}/{track}/r\d+/artwork\.[a-z0-9]+",
        "set": rf"{user}/sets/{playlist}/s\d+\.json",
        "owner chain": rf"state/owners/{user}\.json",
        "sets index": rf"state/sets/{user}\.json",
        "avatar": rf"{user}/artwork\.[a-z0-9]+",
        "set cover": rf"{user}/sets/{playlist}/artwork\.[a-z0-9]+",
    }
    found = [kind for kind, pattern in kinds.items() if re.fullmatch(pattern, rest)]
    assert key.startswith(RUN_PREFIX) and len(found) == 1, f"unknown key {key!r}"
    return found[0]


@pytest.fixture
def recorded_run(tmp_path):
    """Every request of a real agent run through the proxy (tests/sys_agent_run.py: ``mirror
    --once`` with a single-part and a multipart track, again after a metadata edit and a
    replaced original (m1.json, r2), then ``sc2s3 run`` until it has heartbeated and taken a
    lease, stopped with SIGTERM), and the keys the bucket holds under the prefix after it."""
    run = record_agent_run(tmp_path, BUCKET, RUN_PREFIX)
    return [classify(*request) for request in run.requests], run.current_keys(RUN_PREFIX)


@pytest.mark.timeout(EVALUATE_TIMEOUT_S, func_only=True)
def test_a_real_agent_run_is_allowed_and_every_conditional_write_is_required(
        policies, recorded_run):
    requests, stored = recorded_run
    documents = policies[RUN_PREFIX]
    refused = [(r, decide(documents, r)) for r in requests if decide(documents, r) != "allowed"]
    assert refused == [], "\n".join(f"{r}: {why}" for r, why in refused)

    writes = [r for r in requests if r.operation in CREATES_OBJECT]
    conditional = [r for r in writes if r.if_none_match or r.if_match]
    unconditional = [r for r in writes if not (r.if_none_match or r.if_match)]
    # Every conditional write the agent makes is one the policy would refuse without its header.
    loose = [r for r in conditional if not bucket_denials(documents, r.unconditional())]
    assert loose == [], "conditional writes the bucket policy does not require:\n" + "\n".join(
        map(str, loose))
    # The agent writes only these unconditionally (the run has no set, so no set cover); a new
    # one needs a decision in the policy.
    assert {key_kind(r.key) for r in unconditional} == UNCONDITIONAL_KINDS - {"set cover"}, \
        unconditional
    # Archive keys are only ever written with If-None-Match: *.
    archive = [r for r in writes if key_kind(r.key) in {"audio", "track.json", "metadata",
                                                        "revision artwork", "set"}]
    assert archive and all(r.if_none_match == "*" and r.if_match is None for r in archive)

    # The run exercised every kind of write the policy speaks about, in every shape.
    shapes = {(r.operation, key_kind(r.key), "If-None-Match" if r.if_none_match else
               "If-Match" if r.if_match else "none") for r in requests if r.key}
    expected = {
        ("PutObject", "audio", "If-None-Match"),
        ("CreateMultipartUpload", "audio", "none"),
        ("UploadPart", "audio", "none"),
        ("CompleteMultipartUpload", "audio", "If-None-Match"),
        ("PutObject", "track.json", "If-None-Match"),
        ("PutObject", "metadata", "If-None-Match"),
        ("PutObject", "catalog", "If-None-Match"),
        ("PutObject", "catalog", "If-Match"),
        ("PutObject", "lease", "If-None-Match"),
        ("PutObject", "lease", "If-Match"),
        ("PutObject", "upload state", "If-None-Match"),
        ("PutObject", "upload state", "If-Match"),
        ("PutObject", "plays", "If-None-Match"),
        ("PutObject", "plays", "If-Match"),
        ("PutObject", "README", "none"),
        ("PutObject", "user.json", "none"),
        ("PutObject", "heartbeat", "none"),
        ("PutObject", "revision artwork", "If-None-Match"),
        ("PutObject", "avatar", "none"),
        ("PutObject", "sets index", "If-None-Match"),
    }
    print("request shapes of the run:\n" + "\n".join(map(str, sorted(shapes))))
    assert expected <= shapes, sorted(expected - shapes)
    # ... and really archived the second revision and the edit.
    assert {key_kind(k) for k in stored} >= {"audio", "track.json", "metadata", "catalog"}
    assert any("/r2/audio." in k for k in stored), sorted(stored)
