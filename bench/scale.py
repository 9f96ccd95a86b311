"""Large accounts: what one track costs sc2s3 when an account holds thousands of them.

For each size n (default 1,000 and 10,000 tracks of 1 KiB) and each account count (n in 1
account, n/20 in each of 20), every agent runs ``sc2s3 mirror --once`` twice against a fresh,
versioned bucket: a first mirror from empty, then a second pass with nothing to do. The tracks
are tiny so the numbers are the bookkeeping (catalog, upload state, play ledger, leases), not
bandwidth. Two agents run side by side in one run: ``new`` (the working tree's ``sc2s3``) and
``baseline`` (the agent source at ``--baseline-rev``, exported with ``git archive`` and run by the
same venv's Python), so today's numbers sit beside the new ones.

Everything listens on 127.0.0.1. The SoundCloud simulator runs in this process (threads), with
an O(1) track lookup so its own cost stays flat at 10,000 tracks; SeaweedFS is one child process.
The agent reaches S3 through a counting proxy in this process, which tallies every request by
method, S3 operation and kind of key, and the bytes of request bodies. The agent's config is
the production default for concurrency (4) and part size (16 MiB); listing pages are the
simulator's defaults.

Columns, one row per (agent, n, accounts):

- ``s``, ``tr/s``: wall seconds of the first mirror; tracks archived / those seconds. A track
  is archived once its audio object is in the bucket (in an ``ok`` run, every track, each in
  its catalog); every "per track" figure of the first mirror divides by that number;
- ``S3/tr``, ``wr/tr``: S3 requests per track, and those that write (PUT/POST/DELETE);
- ``KiB/tr``: KiB of request bodies sent to S3 per track (audio included: 1 KiB of it);
- ``bk wr/fin``, ``bk MiB wr``, ``bk MiB fin``: bookkeeping objects (everything but audio,
  ``track.json`` and ``metadata/m<k>.json``) from the bucket's versions: bytes of every version
  written / bytes of the current versions, and both in MiB;
- ``no-op s``, ``S3``, ``wr``, ``SC``: the second pass's wall seconds, S3 requests, S3 writes
  and SoundCloud requests (API and CDN);
- ``RSS``: peak RSS (MiB) of the first mirror: its ``VmHWM``, read from /proc as it runs
  (``ru_maxrss`` from ``wait4`` would also count this process's own high-water mark, which
  Linux carries into a child at exec; the JSON has both);
- ``status``: ``ok`` (exit 0, every track in its account's catalog, second pass exit 0),
  ``exit N``, ``MISSING k`` (tracks not in a catalog) or ``TIMEOUT held/n`` (the tracks the
  catalogs held when the first mirror was killed; no second pass then). The agent's stderr goes
  to a log in the run's temp dir; a run that is not ``ok`` prints its last lines.

Below the table, per run, the first mirror's S3 requests per track by operation and kind of key
(``PutObject catalog.json``, ``GetObject state/plays.json``, ``ListObjectsV2 bucket``...), the
ones that sent the most KiB per track, and those S3 took the most ms per track to answer.
``--json FILE`` writes every figure, including the full breakdowns and SoundCloud's per-route
request counts.

Every run has a timeout (``--timeout-s``, default max(120 s, 0.09 s per track)). It is a
benchmark, not a test: it exits 0 whatever the numbers, 1 only if the benchmark itself broke.

    .venv/bin/python bench/scale.py --quick   # n = 200 and 1,000 (a few minutes)
    .venv/bin/python bench/scale.py           # n = 1,000 and 10,000 (up to about an hour)
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from harness import (
    AGENT_BIN,
    MIB,
    ROOT,
    Catalog,
    SeaweedFS,
    Track,
    User,
    agent_env,
    simulator,
    write_config,
)
from support.s3_faults import relay_answer

KIB = 1024
POLL_S = 0.02  # how often a running agent is checked: its exit, its VmHWM, its timeout
TRACK_BYTES = 1 * KIB
CONCURRENCY, PART_SIZE_MIB = 4, 16  # the agent's defaults (agent/src/sc2s3/config.py)
PREFIX = "archive/"  # write_config's [s3] prefix
AGENTS = ("new", "baseline")
BASELINE_MAIN = "import sys; from sc2s3.cli import main; sys.exit(main())"  # the console script
WRITE_METHODS = ("PUT", "POST", "DELETE")
# The archive proper; every other key is bookkeeping.
ARCHIVE_KEY = re.compile(r"[^/]+/[^/]+/(?:r\d+/(?P<audio>audio)\.[^/]+|r\d+/(?P<json>track\.json)"
                         r"|(?P<meta>metadata)/m\d+\.json)")
# Operations named by a query parameter (first match wins); the others by their method alone.
QUERY_OPERATIONS = (
    ("GET", "list-type", "ListObjectsV2"), ("GET", "versions", "ListObjectVersions"),
    ("GET", "versioning", "GetBucketVersioning"), ("GET", "uploadId", "ListParts"),
    ("GET", "uploads", "ListMultipartUploads"), ("GET", "tagging", "GetObjectTagging"),
    ("PUT", "tagging", "PutObjectTagging"), ("POST", "uploads", "CreateMultipartUpload"),
    ("POST", "uploadId", "CompleteMultipartUpload"), ("POST", "delete", "DeleteObjects"),
    ("PUT", "partNumber", "UploadPart"), ("DELETE", "uploadId", "AbortMultipartUpload"),
)
METHOD_OPERATIONS = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
                     "DELETE": "DeleteObject"}


# -- what a request or key is ---------------------------------------------------------------


def key_kind(key: str) -> str:
    """The kind of an object key in the archive layout (docs/archive.md): ``audio``,
    ``track.json``, ``metadata``, ``catalog.json``, ``user.json``, ``README.txt``,
    ``state/<dir>/``, ``state/plays.json``, ``bucket`` (no key) or ``other``."""
    if not key:
        return "bucket"
    relative = key.removeprefix(PREFIX)
    match = ARCHIVE_KEY.fullmatch(relative)
    if match:
        return "audio" if match["audio"] else "track.json" if match["json"] else "metadata"
    parts = relative.split("/")
    if parts[0] == "state":
        return relative if len(parts) == 2 else f"state/{parts[1]}/"
    if relative == "README.txt" or (len(parts) == 2 and parts[1] in ("catalog.json", "user.json")):
        return parts[-1]
    return "other"


def is_bookkeeping(key: str) -> bool:
    return key_kind(key) not in ("audio", "track.json", "metadata")


def operation(method: str, path: str, query: str, copy: bool) -> tuple[str, str]:
    """(S3 operation, kind of key) of a path-style request."""
    key = unquote(path).lstrip("/").partition("/")[2]
    params = parse_qs(query, keep_blank_values=True)
    if "x-id" in params:  # botocore names many operations itself
        name = params["x-id"][0]
    else:
        name = next((op for m, param, op in QUERY_OPERATIONS if m == method and param in params),
                    METHOD_OPERATIONS.get(method, method))
        if copy and name == "PutObject":
            name = "CopyObject"
    return name, key_kind(key)


# -- the counting S3 proxy ------------------------------------------------------------------


def bump(counts: dict, name: str, n: float) -> None:
    counts[name] = counts.get(name, 0) + n


@dataclass
class S3Tally:
    """S3 requests seen by the proxy: counts, request and answer body bytes, and per
    ``"<operation> <key kind>"`` the requests, their request body bytes and the ms S3 took."""

    requests: int = 0
    writes: int = 0
    bytes_written: int = 0
    bytes_read: int = 0
    errors: int = 0  # answers >= 400 (a 404 for an object not there yet counts too)
    upstream_s: float = 0.0  # S3's answer times, summed (over wall time: requests in flight)
    by_operation: dict[str, int] = field(default_factory=dict)
    bytes_by_operation: dict[str, int] = field(default_factory=dict)
    ms_by_operation: dict[str, float] = field(default_factory=dict)

    def add(self, method: str, label: str, sent: int, received: int, status: int,
            seconds: float) -> None:
        self.requests += 1
        self.writes += method in WRITE_METHODS
        self.bytes_written += sent
        self.bytes_read += received
        self.errors += status >= 400
        bump(self.by_operation, label, 1)
        bump(self.bytes_by_operation, label, sent)
        bump(self.ms_by_operation, label, seconds * 1000)
        self.upstream_s += seconds


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards each request unchanged (Host too: SigV4 stays valid) over one upstream
    connection per client connection, and counts it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no delayed-ACK stall
    upstream: http.client.HTTPConnection | None = None

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        asked = time.monotonic()
        try:
            status, headers, data = self._ask_upstream(body)
        except (OSError, http.client.HTTPException):
            status, headers, data = 502, [], b""
            self.close_connection = True
        split = urlsplit(self.path)
        name, kind = operation(self.command, split.path, split.query,
                               "x-amz-copy-source" in self.headers)
        self.server.count(self.command, f"{name} {kind}", length, len(data), status,
                          time.monotonic() - asked)
        relay_answer(self, status, headers, data)

    def _ask_upstream(self, body: bytes | None) -> tuple[int, list, bytes]:
        # We hold the whole body: no 100-continue upstream (Expect is not signed by SigV4).
        headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
        for attempt in (1, 2):
            reused = self.upstream is not None
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(*self.server.upstream, timeout=300)
            try:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                answer = self.upstream.getresponse()
                return answer.status, answer.getheaders(), answer.read()
            except (ConnectionError, http.client.RemoteDisconnected):
                self.upstream.close()
                self.upstream = None
                if not reused or attempt == 2:  # only an idle connection closed upstream is retried
                    raise
        raise AssertionError("unreachable")

    def finish(self) -> None:
        super().finish()
        if self.upstream is not None:
            self.upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, *args) -> None:
        pass


class CountingProxy(ThreadingHTTPServer):
    """``with CountingProxy(seaweed.endpoint_url) as proxy``: S3 at ``proxy.endpoint_url``;
    :meth:`take` returns what was counted since the last call."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream_url: str):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        upstream = urlsplit(upstream_url)
        self.upstream = (upstream.hostname, upstream.port)
        self.endpoint_url = f"http://127.0.0.1:{self.server_port}"
        self._lock = threading.Lock()
        self._tally = S3Tally()

    def server_bind(self) -> None:
        # HTTPServer's would look the address up (getfqdn): nothing here leaves loopback.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def count(self, method: str, label: str, sent: int, received: int, status: int,
              seconds: float) -> None:
        with self._lock:
            self._tally.add(method, label, sent, received, status, seconds)

    def take(self) -> S3Tally:
        with self._lock:
            tally, self._tally = self._tally, S3Tally()
        return tally

    def handle_error(self, request, client_address) -> None:
        pass  # an agent killed at its timeout drops its connections: not news

    def __enter__(self) -> CountingProxy:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
        self.server_close()


# -- the simulated accounts -----------------------------------------------------------------


class IndexedCatalog(Catalog):
    """The simulator's catalog with a dict for track lookups (the simulator scans every track
    per request otherwise: its cost, not the agent's, would grow with n). Never mutated here."""

    def __init__(self, users: list[User]):
        super().__init__(users)
        self._by_id = {t.id: (u, t) for u in users for t in u.tracks}

    def track(self, key: str | int) -> tuple[User, Track] | None:
        text = str(key).removeprefix("soundcloud:tracks:")
        return self._by_id.get(int(text)) if text.isdigit() else None


def build_catalog(tracks: int, accounts: int) -> IndexedCatalog:
    per_account = tracks // accounts
    return IndexedCatalog([
        User(id=500 + a, permalink=f"band-{a}", username=f"Band {a}",
             tracks=[Track(id=a * 1_000_000 + t, title=f"track {a}.{t}", size=TRACK_BYTES)
                     for t in range(per_account)])
        for a in range(1, accounts + 1)])


# -- one run ----------------------------------------------------------------------------------


@dataclass
class Exited:
    """An agent process, reaped: exit code, whether it was killed at the timeout, wall and CPU
    seconds (user + system), peak RSS in MiB (its VmHWM) and ``ru_maxrss`` for comparison."""

    exit_code: int
    timed_out: bool
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    ru_maxrss_mib: float


@dataclass
class Pass(Exited):
    """One ``mirror --once``: the process (the fields of :class:`Exited`), S3 as the proxy saw
    it, and SoundCloud's request counts."""

    s3: S3Tally
    sc_requests: int
    sc_routes: dict


@dataclass
class Stored:
    """The bucket's versions once a run is over."""

    bookkeeping_written: int = 0  # bytes of every version of every bookkeeping key
    bookkeeping_final: int = 0  # bytes of their current versions
    bookkeeping_versions: int = 0
    archive_bytes: int = 0  # audio, track.json, metadata: every version
    audio_objects: int = 0
    written_by_kind: dict[str, int] = field(default_factory=dict)
    versions_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class Run:
    agent: str
    tracks: int
    accounts: int
    timeout_s: float
    first: Pass
    held: int  # tracks the catalogs hold after the first mirror
    noop: Pass | None
    stored: Stored

    @property
    def status(self) -> str:
        if self.first.timed_out:
            return f"TIMEOUT {self.held}/{self.tracks}"
        if self.first.exit_code:
            missing = f", {self.held}/{self.tracks} held" if self.held < self.tracks else ""
            return f"exit {self.first.exit_code}{missing}"
        if self.held < self.tracks:
            return f"MISSING {self.tracks - self.held}"
        if self.noop is None or self.noop.timed_out:
            return "no-op TIMEOUT"
        return f"no-op exit {self.noop.exit_code}" if self.noop.exit_code else "ok"

    @property
    def archived(self) -> int:
        """Tracks whose audio landed (the catalog may lag behind it when a run is cut short)."""
        return self.stored.audio_objects

    def per_track(self, value: float) -> float | None:
        return value / self.archived if self.archived else None


@dataclass
class Bench:
    """What every run shares."""

    seaweed: SeaweedFS
    proxy: CountingProxy
    workdir: Path
    commands: dict[str, tuple[list[str], dict[str, str]]]  # agent -> (argv head, extra env)


def measure_pass(bench: Bench, agent: str, config: Path, sim, timeout_s: float,
                 log: Path) -> Pass:
    head, extra_env = bench.commands[agent]
    bench.proxy.take()
    sim.reset_counters()
    exited = run_agent([*head, "mirror", "--once", "--config", str(config)],
                       env={**agent_env(bench.seaweed), **extra_env}, timeout_s=timeout_s, log=log)
    counters = sim.counters.snapshot()
    return Pass(**asdict(exited), s3=bench.proxy.take(), sc_requests=counters.get("requests", 0),
                sc_routes={k: v for k, v in counters.items() if k not in ("requests", "cdn_bytes")})


def run_agent(argv: list[str], env: dict[str, str], timeout_s: float, log: Path) -> Exited:
    """Run ``argv`` (stderr appended to ``log``) to its end, or SIGKILL it after ``timeout_s``.

    Like ``harness.run_measured``, but peak RSS is the highest ``VmHWM`` read from /proc while it
    runs (every 20 ms; the high-water mark only grows), not ``ru_maxrss`` from ``wait4``: Linux
    carries the parent's high-water mark into the child at exec, and this process (simulator,
    proxy, catalogs of up to 10,000 tracks) is larger than an agent mirroring 1 KiB tracks.
    """
    with log.open("ab") as stderr:
        started = time.monotonic()
        process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
        timed_out, peak_kib = False, 0
        try:
            while not (reaped := os.wait4(process.pid, os.WNOHANG))[0]:
                peak_kib = max(peak_kib, vm_hwm_kib(process.pid))
                if not timed_out and time.monotonic() - started > timeout_s:
                    timed_out = True
                    os.kill(process.pid, signal.SIGKILL)
                time.sleep(POLL_S)
        except BaseException:  # Ctrl-C: never leave the agent running
            process.kill()
            process.wait()
            raise
    _, status, usage = reaped
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4 already
    return Exited(exit_code=process.returncode, timed_out=timed_out,
                  wall_s=time.monotonic() - started, cpu_s=usage.ru_utime + usage.ru_stime,
                  peak_rss_mib=peak_kib / KIB, ru_maxrss_mib=usage.ru_maxrss / KIB)


def vm_hwm_kib(pid: int) -> int:
    """The process's peak resident set (KiB) so far; 0 once it is exiting."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError, IndexError):
        return 0


def catalog_held(s3, bucket: str, catalog: Catalog) -> int:
    """Tracks with at least one revision in their account's catalog.json."""
    held = 0
    for user in catalog.users:
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{PREFIX}{user.urn}/catalog.json")["Body"]
        except s3.exceptions.NoSuchKey:
            continue
        entries = json.loads(body.read()).get("tracks", {})
        held += sum(1 for t in user.tracks if entries.get(t.urn, {}).get("revisions"))
    return held


def stored_versions(s3, bucket: str) -> Stored:
    stored = Stored()
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            key, size = version["Key"], version["Size"]
            kind = key_kind(key)
            bump(stored.written_by_kind, kind, size)
            bump(stored.versions_by_kind, kind, 1)
            if not is_bookkeeping(key):
                stored.archive_bytes += size
                stored.audio_objects += kind == "audio"
                continue
            stored.bookkeeping_written += size
            stored.bookkeeping_versions += 1
            stored.bookkeeping_final += size if version["IsLatest"] else 0
    return stored


def drop_bucket(seaweed: SeaweedFS, bucket: str) -> None:
    """Delete the bucket with every version through SeaweedFS's master (its collection: the
    volumes go at once) and filer (the entries), so the disk holds one run's data at a time."""
    for port, path in ((seaweed.ports["master"], f"/col/delete?collection={bucket}"),
                       (seaweed.ports["filer"],
                        f"/buckets/{bucket}?recursive=true&ignoreRecursiveError=true")):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        try:
            connection.request("DELETE" if "buckets" in path else "POST", path)
            answer = connection.getresponse()
            answer.read()
            if answer.status >= 300:
                print(f"  warning: {path} answered {answer.status}", file=sys.stderr)
        except OSError as exc:
            print(f"  warning: could not drop {bucket} ({path}): {exc}", file=sys.stderr)
        finally:
            connection.close()


def run_case(bench: Bench, agent: str, tracks: int, accounts: int, timeout_s: float) -> Run:
    bucket = f"scale-{agent}-{tracks}-{accounts}-{uuid.uuid4().hex[:6]}"
    home = bench.workdir / bucket
    home.mkdir()
    bench.seaweed.create_bucket(bucket, versioning=True)
    s3 = bench.seaweed.client()
    catalog = build_catalog(tracks, accounts)
    log = home / "agent.log"
    with simulator(catalog) as sim:
        config = write_config(home / "config.toml", sim_url=sim.base_url,
                              endpoint=bench.proxy.endpoint_url, bucket=bucket,
                              state_dir=home / "state", accounts=[u.permalink for u in catalog.users],
                              part_size_mib=PART_SIZE_MIB, concurrency=CONCURRENCY)
        first = measure_pass(bench, agent, config, sim, timeout_s, log)
        held = catalog_held(s3, bucket, catalog)
        noop = None if first.timed_out else measure_pass(bench, agent, config, sim, timeout_s, log)
    run = Run(agent, tracks, accounts, timeout_s, first, held, noop,
              stored_versions(s3, bucket))
    print(f"  {agent:<8} {tracks:>6} tracks in {accounts:>2} account(s): first "
          f"{first.wall_s:.1f} s, {held} held, no-op {f'{noop.wall_s:.1f} s' if noop else '-'}: "
          f"{run.status}", file=sys.stderr, flush=True)
    if run.status != "ok":
        print_log_tail(log)
    drop_bucket(bench.seaweed, bucket)
    shutil.rmtree(home)
    return run


def print_log_tail(log: Path, lines: int = 5) -> None:
    tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
    for line in tail:
        print(f"    | {line[:300]}", file=sys.stderr)


# -- the agents -------------------------------------------------------------------------------


def export_baseline(rev: str, into: Path) -> Path:
    """``git archive <rev> agent/src | tar -x -C <into>``; returns the exported ``agent/src``."""
    git = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "agent/src"],
                         capture_output=True)
    if git.returncode:
        raise RuntimeError(f"git archive {rev} agent/src: {git.stderr.decode().strip()}")
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=git.stdout, check=True)
    return into / "agent" / "src"


def agent_commands(agents: list[str], rev: str, workdir: Path) -> dict:
    """Per agent: (argv head, extra environment), each checked to import the intended sc2s3."""
    commands = {"new": ([str(AGENT_BIN)], {})}
    if "baseline" in agents:
        src = export_baseline(rev, workdir / "baseline")
        pythonpath = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
        commands["baseline"] = ([sys.executable, "-c", BASELINE_MAIN], {"PYTHONPATH": pythonpath})
        where = agent_module(commands["baseline"][1])
        if not where.startswith(str(src)):
            raise RuntimeError(f"baseline imports sc2s3 from {where}, not from {src}")
    return {a: commands[a] for a in agents}


def agent_module(extra_env: dict[str, str]) -> str:
    """Where (and which version of) ``sc2s3`` the venv's Python imports with ``extra_env``."""
    probe = "import sc2s3; print(sc2s3.__file__, sc2s3.__version__)"
    return subprocess.run([sys.executable, "-c", probe], env={**os.environ, **extra_env},
                          check=True, capture_output=True, text=True).stdout.strip()


# -- output -----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table_row(r: Run) -> str:
    first, stored, noop = r.first, r.stored, r.noop
    ratio = stored.bookkeeping_written / stored.bookkeeping_final if stored.bookkeeping_final \
        else None
    noop_cells = (f"{noop.wall_s:>7.1f} {noop.s3.requests:>6} {noop.s3.writes:>5} "
                  f"{noop.sc_requests:>5}") if noop else f"{'-':>7} {'-':>6} {'-':>5} {'-':>5}"
    return (f"{r.agent:<8} {r.tracks:>6} {r.accounts:>5} {first.wall_s:>7.1f} "
            f"{fmt(r.archived / first.wall_s, '>6.1f')} "
            f"{fmt(r.per_track(first.s3.requests), '>6.1f')} "
            f"{fmt(r.per_track(first.s3.writes), '>6.1f')} "
            f"{fmt(r.per_track(first.s3.bytes_written / KIB), '>8.1f')} "
            f"{fmt(ratio, '>9.1f')} {stored.bookkeeping_written / MIB:>9.1f} "
            f"{stored.bookkeeping_final / MIB:>9.2f} {noop_cells} {first.peak_rss_mib:>6.1f}  "
            f"{r.status}")


def print_table(runs: list[Run]) -> None:
    print(f"{'agent':<8} {'tracks':>6} {'accts':>5} {'s':>7} {'tr/s':>6} {'S3/tr':>6} "
          f"{'wr/tr':>6} {'KiB/tr':>8} {'bk wr/fin':>9} {'bk MiB wr':>9} {'bk MiB fin':>9} "
          f"{'no-op s':>7} {'S3':>6} {'wr':>5} {'SC':>5} {'RSS':>6}  status")
    for run in runs:
        print(table_row(run))


def print_breakdown(runs: list[Run], top: int = 6) -> None:
    """Per run, first mirror: the most frequent S3 requests per track (by operation and kind of
    key), the ones that sent the most bytes (KiB per track) and took the most of S3's time (ms
    per track, summed over requests in flight)."""
    print(f"\nfirst mirror, per track archived: S3 requests by operation and key (top {top}); "
          "KiB they sent (top 3); ms S3 took to answer them (top 3)")
    for r in runs:
        if not r.archived:
            continue
        s3, n = r.first.s3, r.archived
        lines = [", ".join(f"{label} {count / n:.2f}"
                           for label, count in most_common(s3.by_operation, top)),
                 "KiB: " + ", ".join(f"{label} {sent / KIB / n:.1f}"
                                     for label, sent in most_common(s3.bytes_by_operation, 3)),
                 "ms: " + ", ".join(f"{label} {ms / n:.1f}"
                                    for label, ms in most_common(s3.ms_by_operation, 3))]
        print(f"  {r.agent} {r.tracks}x{r.accounts}: " + "\n      ".join(lines))


def most_common(counts: dict, n: int) -> list[tuple[str, float]]:
    return sorted(counts.items(), key=lambda item: -item[1])[:n]


def as_json(run: Run) -> dict:
    return asdict(run) | {"status": run.status}


# -- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    csv_ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--sizes", type=csv_ints, help="tracks per run (default 1000,10000)")
    parser.add_argument("--accounts", type=csv_ints, default=[1, 20],
                        help="accounts the tracks are spread over (default 1,20)")
    parser.add_argument("--agents", type=lambda t: t.split(","), default=list(AGENTS),
                        help="new,baseline (default both)")
    parser.add_argument("--baseline-rev", default="0638644",
                        help="git revision of the baseline agent (default 0638644)")
    parser.add_argument("--timeout-s", type=float,
                        help="per agent process (default max(120, 0.09 x tracks))")
    parser.add_argument("--quick", action="store_true", help="n = 200 and 1,000 only")
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    args = parser.parse_args()
    args.sizes = args.sizes or ([200, 1000] if args.quick else [1000, 10_000])
    if unknown := set(args.agents) - set(AGENTS):
        parser.error(f"--agents: unknown {', '.join(sorted(unknown))} (new, baseline)")
    if bad := [(n, a) for n in args.sizes for a in args.accounts if n % a or n < a]:
        parser.error(f"--sizes must divide evenly among --accounts: {bad}")
    return args


def run_all(args: argparse.Namespace, workdir: Path, runs: list[Run]) -> None:
    """Every (size, accounts, agent) in turn, appended to ``runs`` as it ends."""
    commands = agent_commands(args.agents, args.baseline_rev, workdir)
    for agent, (_, extra_env) in commands.items():
        print(f"{agent}: sc2s3 {agent_module(extra_env)}", file=sys.stderr)
    seaweed = SeaweedFS(workdir / "seaweedfs").start()
    try:
        with CountingProxy(seaweed.endpoint_url) as proxy:
            bench = Bench(seaweed, proxy, workdir, commands)
            for tracks in args.sizes:
                timeout_s = args.timeout_s or max(120.0, 0.09 * tracks)
                for accounts in args.accounts:
                    for agent in args.agents:
                        runs.append(run_case(bench, agent, tracks, accounts, timeout_s))
    finally:
        seaweed.stop()


def main() -> int:
    args = parse_args()
    started = time.monotonic()
    runs: list[Run] = []
    exit_code = 0
    try:
        with tempfile.TemporaryDirectory(prefix="sc2s3-bench-scale-") as tmp:
            run_all(args, Path(tmp), runs)
    except KeyboardInterrupt:
        print("scale.py: interrupted", file=sys.stderr)
        exit_code = 130
    except Exception:
        traceback.print_exc()
        print("scale.py: the benchmark itself broke (above)", file=sys.stderr)
        exit_code = 1
    if runs:
        report(args, runs, time.monotonic() - started)
    return exit_code


def report(args: argparse.Namespace, runs: list[Run], seconds: float) -> None:
    print(f"\nsc2s3 mirror --once on loopback (SeaweedFS, versioned bucket, via a counting proxy; "
          f"SoundCloud simulator, default page size): tracks of {TRACK_BYTES} B, concurrency "
          f"{CONCURRENCY}, part_size_mib {PART_SIZE_MIB} (agent defaults); baseline = "
          f"{args.baseline_rev}; took {seconds / 60:.1f} min")
    print_table(runs)
    print_breakdown(runs)
    if args.json:
        args.json.write_text(json.dumps([as_json(r) for r in runs], indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
