#!/usr/bin/env python3
"""The local sandbox: podman test hosts, SeaweedFS, the SoundCloud simulator and moto.

Run it with the project venv's Python from anywhere; everything it makes lives in `.sandbox/`
at the repository root, and every server it starts listens on 127.0.0.1 only.

    sandbox.py image               build the test-host image once (cached by recipe hash)
    sandbox.py hosts-up --count N  start test hosts sc2s3-th1..N (SSH on 127.0.0.1:220N)
    sandbox.py hosts-down          remove those containers
    sandbox.py up [--hosts N]      everything above plus the servers; writes the handoff files
    sandbox.py down [--keep-data]  stop what `up` started (by PID and container name)
    sandbox.py status              what runs
    sandbox.py show [--wait]       table of the archived demo tracks in the bucket

Handoff files: `.sandbox/state.json` (PIDs, ports, credentials) and `.sandbox/sandbox_vars.yml`
(the Ansible extra vars: `-e @.sandbox/sandbox_vars.yml`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
AGENT_TESTS = REPO / "agent" / "tests"
SANDBOX = REPO / ".sandbox"
STATE_PATH = SANDBOX / "state.json"
VARS_PATH = SANDBOX / "sandbox_vars.yml"
LOG_DIR = SANDBOX / "logs"
SSH_KEY = SANDBOX / "ssh" / "id_ed25519"
IMAGE_DIR = HERE / "image"

# The support package (SeaweedFS launcher, port helpers) and the simulator live in agent/tests.
sys.path.insert(0, str(AGENT_TESTS))
from support.ports import free_loopback_ports, port_is_free, wait_for_listen  # noqa: E402

LOOPBACK = "127.0.0.1"
BUCKET = "sc2s3-demo"
REGION = "us-east-1"
HOST_TOOLS = {
    "podman": "podman",
    "debootstrap": "debootstrap",
    "runc": "runc",
    "ssh": "openssh-client",
}
SUITE = "bookworm"
IMAGE_NAME = "localhost/sc2s3-testhost"
IMAGE_PACKAGES = "openssh-server,python3,python3-venv,sudo,iproute2,procps,ca-certificates,supervisor,curl"
CONTAINER_PREFIX = "sc2s3-th"
SSH_BASE_PORT = 2200  # host N listens on 127.0.0.1:2200+N
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
# Preferred ports (kept in state.json once chosen; a taken one is replaced by a free one).
PREFERRED_PORTS = {"seaweedfs": 8333, "soundcloud": 8765, "moto": 5000}
# A marker in each service's command line: a PID from state.json counts only if it matches.
MARKERS = {"seaweedfs": "support.seaweedfs", "soundcloud": "soundcloud_sim", "moto": "moto_server"}


def log(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, failing loudly with its output when it exits non-zero."""
    kwargs.setdefault("text", True)
    kwargs.setdefault("capture_output", True)
    proc = subprocess.run(argv, check=False, **kwargs)
    if proc.returncode != 0:
        output = (proc.stdout or "") + (proc.stderr or "")
        raise SystemExit(f"sandbox: {' '.join(argv)} failed ({proc.returncode}):\n{output[-3000:]}")
    return proc


# -- host tools ----------------------------------------------------------------------------------


def ensure_host_tools() -> None:
    """Install podman, debootstrap, runc and ssh with apt when missing (one apt-get update)."""
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if not shutil.which(tool)})
    if missing:
        log(f"installing {' '.join(missing)} with apt")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", *missing], env=env)
    ensure_containers_conf()


def ensure_containers_conf() -> None:
    """Empty podman's default ulimits: on this kind of machine the defaults make runc fail."""
    text = CONTAINERS_CONF.read_text() if CONTAINERS_CONF.exists() else ""
    if re.search(r"^\s*default_ulimits\s*=", text, re.MULTILINE):
        return
    if re.search(r"^\s*\[containers\]\s*$", text, re.MULTILINE):
        text = re.sub(
            r"^(\s*\[containers\]\s*)$",
            r"\1\ndefault_ulimits = []",
            text,
            count=1,
            flags=re.MULTILINE,
        )
    else:
        text += "\n[containers]\ndefault_ulimits = []\n"
    CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
    CONTAINERS_CONF.write_text(text)


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["podman", *args]
    if check:
        return run(argv)
    return subprocess.run(argv, capture_output=True, text=True, check=False)


# -- image ---------------------------------------------------------------------------------------


def apt_source_files() -> list[Path]:
    """The controller's active apt sources (disabled ones have other suffixes)."""
    sources = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        sources += sorted(sources_d.glob("*.list")) + sorted(sources_d.glob("*.sources"))
    return [p for p in sources if p.is_file()]


def apt_mirror() -> str:
    """The controller's Debian mirror for SUITE (deb822 or one-line format)."""
    for path in apt_source_files():
        text = path.read_text()
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.MULTILINE)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        line = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", text, re.MULTILINE)
        if line:
            return line.group(1)
    return "http://deb.debian.org/debian"


def image_tag() -> str:
    """`localhost/sc2s3-testhost:<hash>`; the hash covers every input of the recipe."""
    digest = hashlib.sha256()
    digest.update(f"{SUITE}|minbase|{IMAGE_PACKAGES}|{apt_mirror()}".encode())
    for step in (bootstrap_rootfs, configure_rootfs, import_rootfs):
        digest.update(inspect.getsource(step).encode())
    for path in sorted(IMAGE_DIR.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for path in apt_source_files():
        digest.update(path.read_bytes())
    return f"{IMAGE_NAME}:{digest.hexdigest()[:12]}"


def ensure_image() -> str:
    """Build the test-host image unless this recipe's tag exists; returns the tag."""
    ensure_host_tools()
    tag = image_tag()
    if podman("image", "exists", tag, check=False).returncode == 0:
        return tag
    started = time.monotonic()
    log(f"building {tag} (debootstrap, about a minute)")
    rootfs = Path(tempfile.mkdtemp(prefix="sc2s3-rootfs-", dir="/var/tmp"))
    try:
        bootstrap_rootfs(rootfs)
        configure_rootfs(rootfs)
        import_rootfs(rootfs, tag)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    remove_older_images(tag)
    return tag


def remove_older_images(keep: str) -> None:
    """Drop earlier recipes' images (~250 MB each); one still used by a container stays."""
    tags = podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME).stdout.split()
    for tag in tags:
        if tag != keep:
            podman("rmi", tag, check=False)


def bootstrap_rootfs(rootfs: Path) -> None:
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={IMAGE_PACKAGES}",
            SUITE,
            str(rootfs),
            apt_mirror(),
        ]
    )


def configure_rootfs(rootfs: Path) -> None:
    """apt settings from the controller, no SSH keys, supervisord in the foreground."""
    # The controller's sources replace debootstrap's (both at once make apt warn twice per line).
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    for source in apt_source_files():
        target = rootfs / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    conf_d = rootfs / "etc/apt/apt.conf.d"
    for setting in sorted(Path("/etc/apt/apt.conf.d").glob("*")):
        if setting.is_file():
            shutil.copy2(setting, conf_d / setting.name)
    for host_key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        host_key.unlink()
    supervisord_conf = rootfs / "etc/supervisor/supervisord.conf"
    supervisord_conf.write_text(
        supervisord_conf.read_text().replace("[supervisord]\n", "[supervisord]\nnodaemon=true\n", 1)
    )
    shutil.copy2(IMAGE_DIR / "sshd.conf", rootfs / "etc/supervisor/conf.d/sshd.conf")
    shutil.copy2(IMAGE_DIR / "testhost-init", rootfs / "usr/local/sbin/testhost-init")
    (rootfs / "usr/local/sbin/testhost-init").chmod(0o755)
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True)


def import_rootfs(rootfs: Path, tag: str) -> None:
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        run(
            ["podman", "import", "--change", 'CMD ["/usr/local/sbin/testhost-init"]', "-", tag],
            stdin=tar.stdout,
        )
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()


# -- test hosts ----------------------------------------------------------------------------------


def ensure_ssh_key() -> Path:
    """The sandbox keypair (`.sandbox/ssh/id_ed25519`), made once; returns the private key."""
    if not SSH_KEY.exists():
        SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "sc2s3-sandbox",
                "-f",
                str(SSH_KEY),
            ]
        )
    return SSH_KEY


def container_name(index: int) -> str:
    return f"{CONTAINER_PREFIX}{index}"


def ssh_port(index: int) -> int:
    return SSH_BASE_PORT + index


def existing_containers() -> list[str]:
    """Names of sandbox test-host containers that exist (running or not)."""
    names = podman("ps", "-a", "--format", "{{.Names}}").stdout.split()
    return sorted(n for n in names if re.fullmatch(rf"{CONTAINER_PREFIX}\d+", n))


def container_running(name: str) -> bool:
    state = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return state.returncode == 0 and state.stdout.strip() == "true"


def container_alive(name: str) -> bool:
    """Running and able to exec: after a reboot or a killed session podman's stored state can
    still say "running" for a container whose processes are gone."""
    return container_running(name) and podman("exec", name, "true", check=False).returncode == 0


def hosts_up(count: int) -> list[dict[str, Any]]:
    """Start sc2s3-th1..count (reusing running ones) and wait until each answers SSH."""
    tag = ensure_image()
    public_key = ensure_ssh_key().with_suffix(".pub")
    started = time.monotonic()
    extra = [n for n in existing_containers() if int(n.removeprefix(CONTAINER_PREFIX)) > count]
    hosts_down(extra)  # left from a larger sandbox; `down` would not know about them
    hosts = []
    for index in range(1, count + 1):
        name, port = container_name(index), ssh_port(index)
        if not container_alive(name):
            remove_stale_container(name)
            if not port_is_free(port):
                raise SystemExit(f"sandbox: port {port} for {name} is taken by another process")
            run_container(tag, name, port, public_key)
        hosts.append({"name": name, "hostname": name, "ssh_port": port})
    for host in hosts:
        wait_for_ssh(host["name"], host["ssh_port"])
    check_loopback_only([container_pid(h["name"]) for h in hosts])
    log(f"{count} test hosts answer SSH after {time.monotonic() - started:.1f} s")
    return hosts


def remove_stale_container(name: str) -> None:
    """`podman rm -f`, twice if need be: with its processes gone, the first attempt times out
    waiting for an exit file but marks the container exited, so the second one removes it."""
    for _ in range(2):
        if podman("rm", "-f", "-t", "2", name, check=False).returncode == 0:
            return
        if podman("container", "exists", name, check=False).returncode != 0:
            return


def run_container(tag: str, name: str, port: int, public_key: Path) -> None:
    """One test host in the controller's network namespace (to reach its loopback servers)."""
    podman(
        "run",
        "-d",
        "--runtime",
        "runc",
        "--name",
        name,
        "--hostname",
        name,
        # The host network keeps the controller's /etc/hosts; sudo wants its own name there.
        "--add-host",
        f"{name}:{LOOPBACK}",
        "--network",
        "host",
        "--label",
        "sc2s3-sandbox=testhost",
        "-e",
        f"SSH_PORT={port}",
        "-v",
        f"{public_key}:/root/.ssh/authorized_keys:ro",
        tag,
    )


def container_pid(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip())


def ssh_command(port: int, *remote: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(SSH_KEY),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=5",
        "-p",
        str(port),
        f"root@{LOOPBACK}",
        *remote,
    ]


def wait_for_ssh(name: str, port: int, timeout_s: float = 60.0) -> None:
    """Wait until `ssh root@127.0.0.1 -p PORT true` succeeds; on timeout, exit with what the
    container, its supervisor and sshd said (the only clues when this fails on a CI machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        probe = subprocess.run(ssh_command(port, "true"), capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    state = podman(
        "ps", "-a", "--filter", f"name={name}", "--format", "{{.Names}} {{.Status}}", check=False
    ).stdout.strip()
    logs = podman("logs", "--tail", "15", name, check=False)
    sshd = podman("exec", name, "tail", "-n", "15", "/var/log/supervisor/sshd.log", check=False)
    raise SystemExit(
        f"sandbox: no SSH answer on {LOOPBACK}:{port} after {timeout_s:.0f} s\n"
        f"ssh: {probe.stderr.strip()}\ncontainer: {state}\n"
        f"container log:\n{logs.stdout}{logs.stderr}\nsshd log:\n{sshd.stdout}{sshd.stderr}"
    )


def hosts_down(names: list[str] | None = None) -> None:
    """Remove the named test-host containers (default: every sc2s3-thN that exists)."""
    names = existing_containers() if names is None else names
    if not names:
        return
    if podman("rm", "-f", "-t", "5", *names, check=False).returncode != 0:
        for name in names:  # one whose processes died under podman needs a second try
            remove_stale_container(name)
    log(f"removed {' '.join(names)}")


# -- loopback check ------------------------------------------------------------------------------


def process_tree(root_pids: list[int]) -> set[int]:
    """The given PIDs and all their descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = set(), list(root_pids)
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo += children.get(pid, [])
    return tree


def check_loopback_only(root_pids: list[int]) -> None:
    """Fail if any process in these trees listens (TCP or UDP) on a non-loopback address."""
    pids = process_tree(root_pids)
    out = run(["ss", "-ltunpH"]).stdout
    offenders = []
    for line in out.splitlines():
        fields = line.split()
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        address = fields[4].rsplit(":", 1)[0].strip("[]") if len(fields) > 4 else ""
        if owners & pids and not (address.startswith("127.") or address == "::1"):
            offenders.append(line)
    if offenders:
        raise SystemExit("sandbox: non-loopback listeners:\n" + "\n".join(offenders))


# -- state ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def sandbox_lock(timeout_s: float = 900.0):
    """Serialize sandbox.py commands that change things (a test run and a person may overlap)."""
    SANDBOX.mkdir(exist_ok=True)
    with (SANDBOX / ".lock").open("w") as lock:
        deadline = time.monotonic() + timeout_s
        waiting_logged = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SystemExit("sandbox: another sandbox.py holds .sandbox/.lock") from None
                if not waiting_logged:
                    log("waiting for another sandbox.py command to finish")
                    waiting_logged = True
                time.sleep(1)
        yield


def load_state() -> dict[str, Any]:
    if STATE_PATH.exists():
        return json.loads(STATE_PATH.read_text())
    return {}


def save_state(state: dict[str, Any]) -> None:
    SANDBOX.mkdir(exist_ok=True)
    STATE_PATH.write_text(json.dumps(state, indent=2) + "\n")
    STATE_PATH.chmod(0o600)


def credentials(state: dict[str, Any]) -> dict[str, str]:
    """Sandbox-only secrets, made once and kept in state.json across up/down."""
    if "credentials" not in state:
        state["credentials"] = {
            "s3_access_key_id": "sandbox-" + secrets.token_hex(6),
            "s3_secret_access_key": secrets.token_urlsafe(24),
            "soundcloud_client_id": "sandbox-client-" + secrets.token_hex(4),
            "soundcloud_client_secret": secrets.token_urlsafe(24),
            "moto_access_key_id": "testing",
            "moto_secret_access_key": "testing",
        }
    return state["credentials"]


def choose_ports(state: dict[str, Any]) -> dict[str, int]:
    """Per service: a running one keeps its port; otherwise the preferred port, else last
    run's, else a free one. Kept in state.json."""
    previous = state.get("ports") or {}
    pids = state.get("pids") or {}
    chosen = {}
    for name, preferred in PREFERRED_PORTS.items():
        if name in previous and pid_alive(pids.get(name), MARKERS[name]):
            chosen[name] = previous[name]
            continue
        candidates = [preferred, previous.get(name)]
        free = [port for port in candidates if port and port_is_free(port)]
        chosen[name] = free[0] if free else free_loopback_ports(1)[0]
    state["ports"] = chosen
    return chosen


def pid_alive(pid: int | None, marker: str) -> bool:
    """True when `pid` runs and its command line contains `marker` (PIDs get reused)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


# -- background services -------------------------------------------------------------------------


def start_detached(name: str, argv: list[str], env: dict[str, str] | None = None) -> int:
    """Start a service in its own session with output to .sandbox/logs/NAME.log; returns its PID."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{name}.log"
    if log_path.exists():
        log_path.replace(log_path.with_suffix(".log.1"))  # one log per run; keep the previous
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def service_specs(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> argv, env, port and the command-line marker that identifies its PID."""
    ports, creds = state["ports"], credentials(state)
    python = sys.executable
    on_tests_path = {"PYTHONPATH": str(AGENT_TESTS)}
    return {
        "seaweedfs": {
            "marker": MARKERS["seaweedfs"],
            "port": ports["seaweedfs"],
            "env": on_tests_path,
            "argv": [
                python, "-m", "support.seaweedfs",
                "--data", str(SANDBOX / "seaweedfs"),
                "--port", str(ports["seaweedfs"]),
                "--access-key", creds["s3_access_key_id"],
                "--secret-key", creds["s3_secret_access_key"],
                "--bucket", BUCKET,
            ],
        },
        "soundcloud": {
            "marker": MARKERS["soundcloud"],
            "port": ports["soundcloud"],
            "env": on_tests_path,
            "argv": [
                python, "-m", "soundcloud_sim", "--demo",
                "--host", LOOPBACK,
                "--port", str(ports["soundcloud"]),
                "--client-id", creds["soundcloud_client_id"],
                "--client-secret", creds["soundcloud_client_secret"],
            ],
        },
        "moto": {
            "marker": MARKERS["moto"],
            "port": ports["moto"],
            "env": {"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
            "argv": [
                str(Path(python).parent / "moto_server"), "-H", LOOPBACK, "-p", str(ports["moto"]),
            ],
        },
    }  # fmt: skip


def start_services(state: dict[str, Any]) -> None:
    """Start the services not already running, then wait until each is ready."""
    pids = state.setdefault("pids", {})
    specs = service_specs(state)
    for name, spec in specs.items():
        if not pid_alive(pids.get(name), spec["marker"]):
            pids[name] = start_detached(name, spec["argv"], spec["env"])
            log(f"started {name} (pid {pids[name]}, port {spec['port']})")
    save_state(state)  # PIDs first, so `down` can clean up a half-started sandbox
    wait_for_seaweedfs(pids["seaweedfs"])
    for name in ("soundcloud", "moto"):
        port = specs[name]["port"]
        if not wait_for_listen(port, timeout_s=60):
            alive = "running" if pid_alive(pids[name], specs[name]["marker"]) else "exited"
            raise SystemExit(
                f"sandbox: {name} (pid {pids[name]}, {alive}) not listening on port {port}; "
                f"see {LOG_DIR / name}.log"
            )


def wait_for_seaweedfs(pid: int, timeout_s: float = 180.0) -> None:
    """The launcher prints a JSON line once a real S3 PUT/GET works and the bucket exists."""
    log_path = LOG_DIR / "seaweedfs.log"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if '"endpoint_url"' in log_path.read_text(errors="replace"):
            return
        if not pid_alive(pid, MARKERS["seaweedfs"]):
            raise SystemExit(f"sandbox: SeaweedFS exited; see {log_path}")
        time.sleep(0.5)
    raise SystemExit(f"sandbox: SeaweedFS not ready after {timeout_s:.0f} s; see {log_path}")


def terminate(pids: dict[str, int], markers: dict[str, str]) -> dict[str, int]:
    """SIGTERM every live service (without waiting); returns those that were signalled."""
    live = {name: pid for name, pid in pids.items() if pid_alive(pid, markers.get(name, "?"))}
    for pid in live.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    return live


def wait_gone(live: dict[str, int], markers: dict[str, str], timeout_s: float = 90.0) -> None:
    """Wait for signalled services to exit; SIGKILL the process group of one that lingers."""
    deadline = time.monotonic() + timeout_s
    while live and time.monotonic() < deadline:
        live = {n: p for n, p in live.items() if pid_alive(p, markers.get(n, "?"))}
        time.sleep(0.5)
    for name, pid in live.items():
        log(f"{name} (pid {pid}) ignored SIGTERM; killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


# -- handoff -------------------------------------------------------------------------------------


def sandbox_vars(state: dict[str, Any]) -> dict[str, str]:
    """The Ansible extra vars that point a deploy at this sandbox."""
    ports, creds = state["ports"], credentials(state)
    soundcloud = f"http://{LOOPBACK}:{ports['soundcloud']}"
    return {
        "sc2s3_bucket": BUCKET,
        "sc2s3_region": REGION,
        "sc2s3_s3_endpoint_url": f"http://{LOOPBACK}:{ports['seaweedfs']}",
        "sc2s3_s3_access_key_id": creds["s3_access_key_id"],
        "sc2s3_s3_secret_access_key": creds["s3_secret_access_key"],
        "sc2s3_soundcloud_api_url": soundcloud,
        "sc2s3_soundcloud_auth_url": soundcloud,
        "sc2s3_soundcloud_client_id": creds["soundcloud_client_id"],
        "sc2s3_soundcloud_client_secret": creds["soundcloud_client_secret"],
        "sc2s3_aws_endpoint_url": f"http://{LOOPBACK}:{ports['moto']}",
    }


def write_sandbox_vars(state: dict[str, Any]) -> None:
    """YAML with one quoted scalar per line (a JSON string is a valid YAML scalar)."""
    lines = ["---", "# Written by inventory/sandbox/sandbox.py up; removed by down. Sandbox only."]
    lines += [f"{key}: {json.dumps(value)}" for key, value in sandbox_vars(state).items()]
    VARS_PATH.write_text("\n".join(lines) + "\n")
    VARS_PATH.chmod(0o600)


# -- commands ------------------------------------------------------------------------------------


def cmd_image(_: argparse.Namespace) -> int:
    print(ensure_image())
    return 0


def cmd_hosts_up(args: argparse.Namespace) -> int:
    hosts = hosts_up(args.count)
    state = load_state()
    state["hosts"] = hosts
    save_state(state)
    return 0


def cmd_hosts_down(_: argparse.Namespace) -> int:
    state = load_state()
    hosts_down([h["name"] for h in state.get("hosts", [])] or None)
    state["hosts"] = []
    save_state(state)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    state = load_state()
    credentials(state)
    choose_ports(state)
    SANDBOX.mkdir(exist_ok=True)
    ensure_image()  # before the servers: a cold build takes a minute
    start_services(state)
    state["hosts"] = hosts_up(args.hosts)
    check_loopback_only([*state["pids"].values()])
    save_state(state)
    write_sandbox_vars(state)
    log(f"up in {time.monotonic() - started:.0f} s; vars in {VARS_PATH.relative_to(REPO)}")
    print_status(state)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state = load_state()
    VARS_PATH.unlink(missing_ok=True)  # the endpoints in it are about to go away
    markers = MARKERS
    # SeaweedFS takes ~15 s to stop: signal the services first, remove the hosts meanwhile.
    signalled = terminate(state.get("pids", {}), markers)
    hosts = [h["name"] for h in state.get("hosts", [])]
    if hosts and shutil.which("podman"):
        hosts_down(hosts)
    wait_gone(signalled, markers)
    if not args.keep_data:
        # The next `up` starts from an empty bucket, so a demo or test shows fresh uploads.
        shutil.rmtree(SANDBOX / "seaweedfs", ignore_errors=True)
    state["pids"], state["hosts"] = {}, []
    if state:
        save_state(state)
    log("down")
    return 0


def service_specs_or_empty(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return service_specs(state) if PREFERRED_PORTS.keys() <= state.get("ports", {}).keys() else {}


def cmd_status(_: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("no sandbox state (run: sandbox.py up)")
        return 0
    print_status(state)
    return 0


def print_status(state: dict[str, Any]) -> None:
    specs = service_specs_or_empty(state)
    for name, spec in specs.items():
        pid = state.get("pids", {}).get(name)
        alive = "running" if pid_alive(pid, spec["marker"]) else "stopped"
        print(f"{name:<12} {alive:<8} pid={pid} http://{LOOPBACK}:{spec['port']}")
    for host in state.get("hosts", []):
        alive = "running" if shutil.which("podman") and container_running(host["name"]) else "stopped"
        print(f"{host['name']:<12} {alive:<8} ssh root@{LOOPBACK} -p {host['ssh_port']}")
    if VARS_PATH.exists():
        print(f"ansible vars: -e @{VARS_PATH.relative_to(REPO)}")


def cmd_show(args: argparse.Namespace) -> int:
    state = load_state()
    if not service_specs_or_empty(state):
        raise SystemExit("sandbox: not up (run: sandbox.py up)")
    expected = demo_tracks()
    s3 = s3_client(state)
    deadline = time.monotonic() + args.timeout
    while True:
        archived = archived_tracks(s3, args.prefix)
        missing = sorted(expected.keys() - archived.keys())
        if not missing or not args.wait or time.monotonic() > deadline:
            break
        log(f"{len(expected) - len(missing)}/{len(expected)} demo tracks archived; waiting")
        time.sleep(5)
    print_archive_table(expected, archived)
    if missing and args.wait:
        log(f"gave up after {args.timeout:.0f} s; missing: {', '.join(missing)}")
        return 1
    return 0


# -- show: what the agents archived --------------------------------------------------------------

CHECKSUM_FIELDS = ("ChecksumSHA256", "ChecksumCRC64NVME", "ChecksumCRC32C", "ChecksumCRC32")


def demo_tracks() -> dict[str, tuple[str, str]]:
    """Track URN -> (account permalink, title) for every demo track an agent can archive."""
    from soundcloud_sim.demo import demo_catalog

    return {
        track.urn: (user.permalink, track.title)
        for user in demo_catalog().users
        for track in user.tracks
        if track.access == "playable"  # blocked tracks are hidden; previews have no audio
    }


def s3_client(state: dict[str, Any]):
    import boto3
    from botocore.config import Config

    creds = credentials(state)
    return boto3.client(
        "s3",
        endpoint_url=f"http://{LOOPBACK}:{state['ports']['seaweedfs']}",
        region_name=REGION,
        aws_access_key_id=creds["s3_access_key_id"],
        aws_secret_access_key=creds["s3_secret_access_key"],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )


_heads: dict[tuple[str, str], dict[str, Any]] = {}  # (key, ETag) -> HeadObject answer


def archived_tracks(s3, prefix: str) -> dict[str, dict[str, Any]]:
    """Track URN -> {key, bytes, source, checksum} for audio objects (`sc-urn` + `sc-source`).

    Key shapes belong to the agent; only the user metadata is relied on here. An S3 error
    (e.g. the server still starting) reads as "nothing archived yet".
    """
    found: dict[str, dict[str, Any]] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            for item in page.get("Contents", []):
                head = head_object(s3, item["Key"], item["ETag"])
                meta = head.get("Metadata", {})
                if "sc-urn" in meta and "sc-source" in meta:
                    found[meta["sc-urn"]] = {
                        "key": item["Key"],
                        "bytes": head["ContentLength"],
                        "source": meta["sc-source"],
                        "checksum": checksum_of(head),
                    }
    except Exception as error:  # botocore raises many kinds; all mean "not yet"
        log(f"listing {BUCKET} failed: {error}")
    return found


def head_object(s3, key: str, etag: str) -> dict[str, Any]:
    if (key, etag) not in _heads:
        _heads[(key, etag)] = s3.head_object(Bucket=BUCKET, Key=key, ChecksumMode="ENABLED")
    return _heads[(key, etag)]


def checksum_of(head: dict[str, Any]) -> str:
    """The object's additional checksum as "ALGORITHM value" ("-" when there is none)."""
    for field in CHECKSUM_FIELDS:
        if head.get(field):
            return f"{field.removeprefix('Checksum')} {head[field]}"
    return "-"


def print_archive_table(expected: dict[str, tuple[str, str]], archived: dict[str, dict[str, Any]]) -> None:
    rows = [("account", "track", "bytes", "source", "checksum")]
    for urn, (account, title) in sorted(expected.items(), key=lambda item: item[1]):
        got = archived.get(urn)
        if got:
            rows.append((account, clip(title), str(got["bytes"]), got["source"], got["checksum"]))
        else:
            rows.append((account, clip(title), "-", "(not yet)", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"{len(archived.keys() & expected.keys())}/{len(expected)} demo tracks archived in s3://{BUCKET}")


def clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandbox.py", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("image", help="build the test-host image (cached)").set_defaults(func=cmd_image)
    hosts = commands.add_parser("hosts-up", help="start test hosts sc2s3-th1..N")
    hosts.add_argument("--count", type=int, default=3)
    hosts.set_defaults(func=cmd_hosts_up)
    commands.add_parser("hosts-down", help="remove the test hosts").set_defaults(func=cmd_hosts_down)
    up = commands.add_parser("up", help="start the whole sandbox")
    up.add_argument("--hosts", type=int, default=3)
    up.set_defaults(func=cmd_up)
    down = commands.add_parser("down", help="stop the whole sandbox (and drop its S3 data)")
    down.add_argument("--keep-data", action="store_true", help="keep .sandbox/seaweedfs")
    down.set_defaults(func=cmd_down)
    commands.add_parser("status", help="what runs").set_defaults(func=cmd_status)
    show = commands.add_parser("show", help="table of the archived demo tracks")
    show.add_argument("--wait", action="store_true", help="poll until every demo track is in")
    show.add_argument("--timeout", type=float, default=900, help="seconds to wait at most")
    show.add_argument("--prefix", default="", help="key prefix to list (default: whole bucket)")
    show.set_defaults(func=cmd_show)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command in ("status", "show"):
        return args.func(args)
    if os.geteuid() != 0:
        raise SystemExit("sandbox: run as root (podman and apt need it)")
    with sandbox_lock():
        return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
