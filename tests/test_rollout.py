"""Rolling updates over real SSH: batches, the health gate, automatic rollback of a bad release,
and playbooks/rollback.yml.

The tests run in file order and share the fleet: v1 everywhere, a good rollout to v2 in batches,
a no-op second run, a manual rollback to v1, then bad releases (one crashes at start, one
never becomes healthy, one is healthy but never proves itself) that must each roll the first
batch back to v1 and stop there.

The health gate's verdicts on their own (proven, degraded, a missing "proven" field) are tested at
the end against a fake /healthz on the controller, without the sandbox.
"""

from __future__ import annotations

import json
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sys_hosts import ssh, ssh_ok
from sys_paths import SANDBOX_INVENTORY, SANDBOX_VARS, TEST_HOSTS
from sys_playbook import PlaybookRun, rollout_reports, run_playbook
from sys_releases import NEW_AGENT_KEY, AgentRelease, build_wheelhouse, make_release

HOSTS = sorted(TEST_HOSTS)
PLAY_TIMEOUT_S = 420
# Short for the never-healthy release so the test does not idle; the default is 120 s.
BAD_HEALTH_TIMEOUT_S = 20
# After a play, an agent's /healthz settles within this (a restarted agent is "starting" first).
HEALTH_SETTLE_S = 60


def rollout(releases, name: str, *extra: str) -> PlaybookRun:
    """`agents.yml -e sc2s3_version=X` with X built from the test release `name` (and with the
    roles that render its new config key, when it has one)."""
    release = releases[name]
    run = run_playbook(
        "playbooks/agents.yml",
        "-i", str(SANDBOX_INVENTORY),
        "-e", f"@{SANDBOX_VARS}",
        "-e", f"sc2s3_version={release.version}",
        "-e", f"sc2s3_source_dir={release.source_dir}",
        "-e", f"sc2s3_wheelhouse_dir={releases['wheelhouse']}",
        *extra,
        timeout_s=PLAY_TIMEOUT_S,
        roles_path=releases.get(f"{name}_roles"),
    )
    show(f"rollout to {release.version}", run)
    return run


def show(what: str, run: PlaybookRun) -> None:
    """Recap, last rollout report and wall time, for the test log."""
    reports = rollout_reports(run.output)
    print(f"\n{what}: rc={run.rc} in {run.seconds:.1f} s")
    for line in run.output[run.output.rfind("PLAY RECAP"):].splitlines()[:5]:
        print(f"  {line}")
    for line in reports[-1] if reports else ["(no rollout report)"]:
        print(f"  report: {line}")


def health(host: str) -> dict:
    """/healthz of the host's agent, asked from the host itself (the endpoint is on loopback)."""
    _, listen = TEST_HOSTS[host]
    proc = ssh(
        host,
        "python3 -c 'import sys, urllib.request, urllib.error\n"
        "try:\n"
        f'    r = urllib.request.urlopen("http://{listen}/healthz", timeout=5)\n'
        "except urllib.error.HTTPError as e:\n"
        "    r = e\n"
        "sys.stdout.write(r.read().decode())'",
    )
    assert proc.returncode == 0, f"{host}: no answer from /healthz: {proc.stderr}"
    return json.loads(proc.stdout)


def settled_health(host: str, version: str) -> dict:
    """/healthz once it reports "ok" for `version`, or its last answer after HEALTH_SETTLE_S
    (no answer at all counts as not settled yet)."""
    deadline = time.monotonic() + HEALTH_SETTLE_S
    while True:
        try:
            body = health(host)
        except AssertionError as error:
            body = {"error": str(error)}
        if (body.get("status"), body.get("version")) == ("ok", version):
            return body
        if time.monotonic() >= deadline:
            return body
        time.sleep(1)


def current_release(host: str) -> str:
    return ssh_ok(host, "readlink /opt/sc2s3/current")


def record(host: str) -> dict:
    return json.loads(ssh_ok(host, "cat /etc/ansible/facts.d/sc2s3.fact"))


def config_in_force(host: str) -> tuple[str, bool]:
    """(the file /etc/sc2s3/config.toml resolves to, whether it sets v2's new key)."""
    path = ssh_ok(host, "readlink -f /etc/sc2s3/config.toml")
    has_key = ssh(host, f"grep -q '^{NEW_AGENT_KEY} = ' {path}").returncode == 0
    return path, has_key


def current_and_previous(host: str) -> tuple[str, str]:
    rec = record(host)
    return rec["current"], rec["previous"]


def agent_pid(host: str) -> str:
    return ssh_ok(host, "supervisorctl pid sc2s3")


def lifecycle(host: str) -> list[tuple[str, str | None]]:
    """("agent started", version) and ("agent stopped", None) events from the agent's log."""
    lines = ssh_ok(host, "grep -hE 'agent (started|stopped)' /var/log/sc2s3/agent.log")
    events = [json.loads(line) for line in lines.splitlines()]
    return [(e["event"], e.get("version")) for e in events]


def assert_fleet_on(version: str) -> None:
    for host in HOSTS:
        assert current_release(host) == f"releases/{version}", host
        body = settled_health(host, version)
        assert (body.get("status"), body.get("version")) == ("ok", version), (host, body)


@pytest.fixture(scope="module")
def fleet_on_v1(sandbox_vars, agent_releases):
    run = rollout(agent_releases, "v1", "-e", '{"sc2s3_serial": ["100%"]}')
    assert run.rc == 0, run.output[-6000:]
    return agent_releases


@pytest.mark.timeout(PLAY_TIMEOUT_S + 60, func_only=True)
def test_good_release_reaches_every_host_in_batches(fleet_on_v1):
    releases = fleet_on_v1
    v1, v2 = releases["v1"].version, releases["v2"].version
    run = rollout(releases, "v2", "-e", '{"sc2s3_serial": [1, 2]}')
    assert run.rc == 0, run.output[-6000:]
    recap = run.recap()
    assert all(recap[h]["failed"] == 0 and recap[h]["unreachable"] == 0 for h in HOSTS), recap
    # Two batches: th1 alone (a canary), then th2 and th3 together.
    first, last = rollout_reports(run.output)
    assert first[0].startswith(f"th1: {v1} -> {v2}, updated, health gate"), first
    assert first[1:] == ["th2: not reached", "th3: not reached"], first
    for host, line in zip(HOSTS, last, strict=True):
        assert line.startswith(f"{host}: {v1} -> {v2}, updated, health gate"), line
    assert_fleet_on(v2)
    for host in HOSTS:
        assert current_and_previous(host) == (v2, v1), host
        # Drained before the switch: v1 logged a clean stop, then v2 started.
        assert lifecycle(host)[-2:] == [("agent stopped", None), ("agent started", v2)], host
        # v2's config has the key v2 added (v1 would reject it), kept beside the v2 release.
        assert config_in_force(host) == (f"/opt/sc2s3/releases/{v2}/config.toml", True), host

@pytest.mark.timeout(PLAY_TIMEOUT_S + 60, func_only=True)
def test_second_rollout_of_the_same_release_changes_nothing(fleet_on_v1):
    pids = {host: agent_pid(host) for host in HOSTS}
    run = rollout(fleet_on_v1, "v2", "-e", '{"sc2s3_serial": [1, 2]}')
    assert run.rc == 0, run.output[-6000:]
    changed = {host: counts["changed"] for host, counts in run.recap().items()}
    assert changed == dict.fromkeys(HOSTS, 0), changed
    assert {host: agent_pid(host) for host in HOSTS} == pids  # nobody was restarted
    v2 = fleet_on_v1["v2"].version
    assert all(", unchanged, " in line for line in rollout_reports(run.output)[-1])
    assert_fleet_on(v2)


@pytest.mark.timeout(PLAY_TIMEOUT_S + 60, func_only=True)
def test_rollback_playbook_returns_to_the_previous_release(fleet_on_v1):
    """Across a config change: v2 added a key v1 rejects; v1 comes back with its own config."""
    v1, v2 = fleet_on_v1["v1"].version, fleet_on_v1["v2"].version
    run = rollback_playbook()
    assert run.rc == 0, run.output[-6000:]
    for host, line in zip(HOSTS, rollout_reports(run.output)[-1], strict=True):
        assert line.startswith(f"{host}: {v2} -> {v1}, rolled back, health gate"), line
    assert_fleet_on(v1)
    for host in HOSTS:
        assert current_and_previous(host) == (v1, v2), host
        assert config_in_force(host) == (f"/opt/sc2s3/releases/{v1}/config.toml", False), host
        # The release rolled back from stays installed: it is the next rollback target.
        ssh_ok(host, f"test -f /opt/sc2s3/releases/{v2}/.sc2s3-release-complete")


def rollback_playbook() -> PlaybookRun:
    run = run_playbook(
        "playbooks/rollback.yml",
        "-i", str(SANDBOX_INVENTORY),
        "-e", f"@{SANDBOX_VARS}",
        timeout_s=PLAY_TIMEOUT_S,
    )
    show("rollback.yml (previous release)", run)
    return run


@pytest.mark.timeout(2 * PLAY_TIMEOUT_S + 60, func_only=True)
def test_hosts_deployed_before_configs_moved_into_releases_keep_their_config(fleet_on_v1):
    """The path every existing host takes once: a plain /etc/sc2s3/config.toml and no config
    beside its release. The deploy keeps that file beside the running release, so a rollback
    brings the release back with the config it ran with."""
    releases = fleet_on_v1
    v1, v2 = releases["v1"].version, releases["v2"].version
    if any(current_release(host) != f"releases/{v1}" for host in HOSTS):
        assert rollout(releases, "v1", "-e", '{"sc2s3_serial": ["100%"]}').rc == 0
    for host in HOSTS:
        ssh_ok(host, 'cp --remove-destination "$(readlink -f /etc/sc2s3/config.toml)" /etc/sc2s3/config.toml'
                     f" && rm /opt/sc2s3/releases/{v1}/config.toml && test ! -L /etc/sc2s3/config.toml")

    run = rollout(releases, "v2", "-e", '{"sc2s3_serial": ["100%"]}')
    assert run.rc == 0, run.output[-6000:]
    for host in HOSTS:
        assert config_in_force(host) == (f"/opt/sc2s3/releases/{v2}/config.toml", True), host
        kept = ssh_ok(host, f"stat -c '%a %U %G' /opt/sc2s3/releases/{v1}/config.toml")
        assert kept == "640 root sc2s3", (host, kept)

    run = rollback_playbook()
    assert run.rc == 0, run.output[-6000:]
    assert_fleet_on(v1)
    for host in HOSTS:
        assert config_in_force(host) == (f"/opt/sc2s3/releases/{v1}/config.toml", False), host


# Appended to a copy of the agent's health module: the release answers like a healthy one (200
# "ok") but never proves itself, whatever the agent's own "proven" says.
NEVER_PROVEN = """

# Test release only (tests/test_rollout.py): healthy, never proven.
_snapshot_as_built = HealthState.snapshot


def _never_proven(self):
    healthy, body = _snapshot_as_built(self)
    return healthy, {**body, "proven": False}


HealthState.snapshot = _never_proven
"""


@pytest.fixture(scope="module")
def unproven_release(tmp_path_factory) -> AgentRelease:
    """A release whose /healthz says 200 "ok" with its version but "proven": false forever."""
    release = make_release(tmp_path_factory.mktemp("unproven"), "90.3.0+unproven")
    module = release.source_dir / "src" / "sc2s3" / "health.py"
    assert "class HealthState" in module.read_text(), module
    with module.open("a") as out:
        out.write(NEVER_PROVEN)
    return release


@pytest.mark.timeout(PLAY_TIMEOUT_S + 60, func_only=True)
@pytest.mark.parametrize("bad", ["crash", "unhealthy", "unproven"])
def test_bad_release_rolls_the_first_batch_back_and_stops(fleet_on_v1, unproven_release, bad):
    releases = {**fleet_on_v1, "unproven": unproven_release}
    v1, bad_version = releases["v1"].version, releases[bad].version
    if any(current_release(host) != f"releases/{v1}" for host in HOSTS):
        assert rollout(releases, "v1", "-e", '{"sc2s3_serial": ["100%"]}').rc == 0
    untouched_pids = {host: agent_pid(host) for host in HOSTS[1:]}

    # The default batches ([1, "34%"]): th1 is the first batch on its own.
    run = rollout(releases, bad, "-e", f"sc2s3_health_timeout_s={BAD_HEALTH_TIMEOUT_S}")

    assert run.rc != 0, run.output[-6000:]
    recap = run.recap()
    assert recap["th1"]["failed"] == 1 and recap["th1"]["rescued"] == 1, recap
    assert set(recap) == {"th1"}, f"later batches must not run: {recap}"
    report = rollout_reports(run.output)[-1]
    assert report[0].startswith(f"th1: {v1} -> {bad_version}, rolled back to {v1}"), report
    assert report[0].endswith(f"last failed version on this host: {bad_version}"), report
    assert report[1:] == ["th2: not reached", "th3: not reached"], report
    assert f"sc2s3 {bad_version} failed on th1" in run.output

    assert_fleet_on(v1)
    failed = record("th1")["failed"][-1]
    assert (failed["version"], failed["rolled_back_to"]) == (bad_version, v1), failed
    if bad == "crash":
        assert "spawn error" in failed["task"], failed
    else:
        # The gate names its reason: 503 "unhealthy", or ok but never proven.
        assert failed["task"].startswith("Check the health gate's verdict: /healthz at"), failed
        reason = '503 "unhealthy"' if bad == "unhealthy" else "has not proven itself"
        assert reason in failed["task"], failed
        assert reason in report[0], report
    # The failed release is gone from th1 and was never installed on the other hosts.
    for host in HOSTS:
        assert ssh(host, f"test -e /opt/sc2s3/releases/{bad_version}").returncode == 1, host
    assert {host: agent_pid(host) for host in HOSTS[1:]} == untouched_pids
    for host in HOSTS[1:]:
        assert all(f["version"] != bad_version for f in record(host).get("failed", [])), host


def host_platform(host: str) -> str:
    """The wheelhouse platform of the host, as the role reads it (cp3X-manylinux_2_Y_<arch>)."""
    return ssh_ok(
        host,
        "python3 -c 'import platform, sys; g = platform.libc_ver()[1].split(\".\"); "
        "print(f\"cp3{sys.version_info.minor}-manylinux_{g[0]}_{g[1]}_{platform.machine()}\")'",
    )


def tamper_with_a_wheel(tarball: Path, prefix: str) -> str:
    """Flip one byte of the first wheel named ``prefix*`` inside the wheelhouse tarball."""
    with tempfile.TemporaryDirectory() as work:
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
        wheel = next(Path(work).glob(f"{prefix}*.whl"))
        data = bytearray(wheel.read_bytes())
        data[len(data) // 2] ^= 0xFF
        wheel.write_bytes(bytes(data))
        with tarfile.open(tarball, "w") as tar:
            for path in sorted(Path(work).iterdir()):
                tar.add(path, arcname=path.name)
    return wheel.name


@pytest.mark.timeout(PLAY_TIMEOUT_S + 60, func_only=True)
def test_a_wheel_changed_on_the_way_fails_the_install_and_stops_the_rollout(fleet_on_v1):
    releases = fleet_on_v1
    v1, tampered = releases["v1"], releases["tampered"]
    if any(current_release(host) != f"releases/{v1.version}" for host in HOSTS):
        assert rollout(releases, "v1", "-e", '{"sc2s3_serial": ["100%"]}').rc == 0
    pids = {host: agent_pid(host) for host in HOSTS}
    # Built as the role builds it, then changed in the controller's cache, where the role finds it.
    target = host_platform("th1")
    build = build_wheelhouse(tampered.source_dir, tampered.version, target, releases["wheelhouse"],
                             timeout_s=PLAY_TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-3000:]
    tarball = Path(releases["wheelhouse"]) / f"sc2s3-{tampered.version}-{target}.tar"
    changed = tamper_with_a_wheel(tarball, "six-")

    run = rollout(releases, "tampered")

    assert run.rc != 0, run.output[-6000:]
    recap = run.recap()
    assert recap["th1"]["failed"] == 1 and recap["th1"]["rescued"] == 1, recap
    assert set(recap) == {"th1"}, f"later batches must not run: {recap}"
    assert "DO NOT MATCH THE HASHES" in run.output and changed.split("-")[0] in run.output
    assert "the running agent was not touched" in run.output
    # Nothing was switched: every agent still runs v1, not even restarted.
    assert_fleet_on(v1.version)
    assert {host: agent_pid(host) for host in HOSTS} == pids
    marker = f"/opt/sc2s3/releases/{tampered.version}/.sc2s3-release-complete"
    assert ssh("th1", f"test -e {marker}").returncode == 1


# --- The health gate on its own: roles/sc2s3_agent/tasks/health.yml on the controller, against
# a fake /healthz on a loopback port. No sandbox.

GATE_VERSION = "90.9.0"
GATE_TIMEOUT_S = 6
# Seconds since the fake endpoint started -> (HTTP status, JSON body).
Answers = Callable[[float], tuple[int, dict]]
GATE_PLAYBOOK = """\
- name: Health gate against a fake /healthz
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Run the role's health gate
      ansible.builtin.include_role:
        name: sc2s3_agent
        tasks_from: health.yml
"""


@contextmanager
def fake_healthz(answers: Answers) -> Iterator[str]:
    """Serve /healthz on a free loopback port as `answers` says; yields host:port."""
    started = time.monotonic()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = answers(time.monotonic() - started)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def ok(**fields) -> tuple[int, dict]:
    return 200, {"status": "ok", "version": GATE_VERSION, "degraded": False, **fields}


def run_gate(tmp_path: Path, answers: Answers) -> PlaybookRun:
    playbook = tmp_path / "gate.yml"
    playbook.write_text(GATE_PLAYBOOK)
    with fake_healthz(answers) as listen:
        return run_playbook(str(playbook), "-i", "localhost,",
                            "-e", f"sc2s3_health_listen={listen}",
                            "-e", f"sc2s3_health_version={GATE_VERSION}",
                            "-e", f"sc2s3_health_timeout_s={GATE_TIMEOUT_S}",
                            timeout_s=120)


GATE_PASSES = {
    # A release from before "proven" existed (a rollback target) does not send the field.
    "no proven field": lambda t: ok(),
    "proven": lambda t: ok(proven=True),
    # SoundCloud trouble (429s, an outage) is "degraded", still 200 "ok": not a reason to roll back.
    "degraded but proven": lambda t: ok(proven=True, degraded=True),
    "starting, then ok and proven": lambda t: ok(proven=True) if t > 2 else (503, {
        "status": "starting", "version": GATE_VERSION, "checks": {}}),
}


@pytest.mark.timeout(150, func_only=True)
@pytest.mark.parametrize("case", sorted(GATE_PASSES))
def test_health_gate_passes(tmp_path, case):
    run = run_gate(tmp_path, GATE_PASSES[case])
    assert run.rc == 0, run.output[-3000:]


@pytest.mark.timeout(150, func_only=True)
def test_health_gate_waits_until_the_release_has_proven_itself(tmp_path):
    proven_after_s = 3
    probes: list[float] = []

    def answers(t: float) -> tuple[int, dict]:
        probes.append(t)
        return ok(proven=t > proven_after_s)

    run = run_gate(tmp_path, answers)
    assert run.rc == 0, run.output[-3000:]
    # "ok" from the first probe on, but the gate went on until "proven", then stopped.
    assert probes[-1] > proven_after_s and sum(t > proven_after_s for t in probes) == 1, probes


GATE_FAILS = {
    "ok but never proven": (lambda t: ok(proven=False), "it answers ok but has not proven itself"),
    "unhealthy": (lambda t: (503, {"status": "unhealthy", "version": GATE_VERSION,
                                   "checks": {"s3": "error: AccessDenied"}}),
                  'it answers 503 "unhealthy", checks {"s3": "error: AccessDenied"}'),
    "another version": (lambda t: (200, {"status": "ok", "version": "90.8.0", "proven": True}),
                        "it answers for version 90.8.0"),
}


@pytest.mark.timeout(150, func_only=True)
@pytest.mark.parametrize("case", sorted(GATE_FAILS))
def test_health_gate_fails_at_the_deadline_naming_the_reason(tmp_path, case):
    answers, reason = GATE_FAILS[case]
    run = run_gate(tmp_path, answers)
    assert run.rc != 0, run.output[-3000:]
    assert "Check the health gate's verdict" in run.output
    assert f"did not pass the health gate of release {GATE_VERSION} within {GATE_TIMEOUT_S} s: " \
           f"{reason}" in run.output.replace('\\"', '"'), run.output[-3000:]
    # Bounded by the wall-clock deadline, not by a count of probes.
    assert GATE_TIMEOUT_S <= run.seconds < GATE_TIMEOUT_S + 60, run.seconds
