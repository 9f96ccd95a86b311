"""The tools the benchmark runs, each as its own process doing the same copy.

Every tool copies one simulated track (CDN -> S3 bucket) except the two limits: ``curl`` only
reads the CDN (the source limit) and ``sink`` only writes S3 from memory (the sink limit).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness import AGENT_BIN, Track, write_config

PEERS_DIR = Path(__file__).resolve().parent / "peers"
SOURCE, SINK, SC2S3, PEER = "source limit", "sink limit", "sc2s3", "peer"


@dataclass(frozen=True)
class Job:
    """One copy of one track. ``url`` is a signed CDN URL valid for the whole run; ``key`` is
    where peers write (sc2s3 picks its own archive key); ``run_dir`` is private to this tool and
    job, and is reused when the job is run again after a kill."""

    track: Track
    account: str
    url: str
    sim_url: str
    endpoint: str
    bucket: str
    key: str
    part_size_mib: int
    concurrency: int
    run_dir: Path


@dataclass(frozen=True)
class Tool:
    """``command(job)`` gives argv; ``env(job, base)`` the environment from ``base`` (which holds
    the S3 credentials as AWS_* variables); ``stores_object``: whether the copy lands in the
    bucket (to verify and to delete)."""

    name: str
    kind: str
    command: Callable[[Job], list[str]]
    env: Callable[[Job, dict[str, str]], dict[str, str]] = lambda job, base: base
    stores_object: bool = True


def _python_peer(script: str) -> Callable[[Job], list[str]]:
    def command(job: Job) -> list[str]:
        return [sys.executable, str(PEERS_DIR / script), "--url", job.url,
                *_s3_args(job)]
    return command


def _s3_args(job: Job) -> list[str]:
    return ["--endpoint", job.endpoint, "--bucket", job.bucket, "--key", job.key,
            "--part-size-mib", str(job.part_size_mib), "--concurrency", str(job.concurrency)]


def _curl(job: Job) -> list[str]:
    return ["curl", "--silent", "--show-error", "--fail", "--output", "/dev/null", job.url]


def _sink(job: Job) -> list[str]:
    return [sys.executable, str(PEERS_DIR / "sink_from_memory.py"), *_s3_args(job),
            "--track-id", str(job.track.id), "--size", str(job.track.size)]


def _sc2s3(job: Job) -> list[str]:
    job.run_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(job.run_dir / "config.toml", sim_url=job.sim_url,
                          endpoint=job.endpoint, bucket=job.bucket,
                          state_dir=job.run_dir / "state", accounts=(job.account,),
                          part_size_mib=job.part_size_mib, concurrency=job.concurrency)
    return [str(AGENT_BIN), "mirror", "--once", "--config", str(config)]


def _rclone(job: Job) -> list[str]:
    # A config file that does not exist: the remote comes from RCLONE_CONFIG_BENCH_* only.
    return ["rclone", "copyurl", job.url, f"bench:{job.bucket}/{job.key}",
            "--config", str(job.run_dir / "no-rclone.conf"), "--quiet",
            "--s3-chunk-size", f"{job.part_size_mib}Mi",
            "--s3-upload-concurrency", str(job.concurrency), "--s3-no-check-bucket"]


def _rclone_env(job: Job, base: dict[str, str]) -> dict[str, str]:
    # rclone gets the same credentials as everyone else, under its own names. AWS_CA_BUNDLE
    # (set on some machines) makes rclone's aws-sdk-go fail ("LoadCustomCABundleError:
    # unsupported transport"); the endpoint is plain http on loopback, so drop it.
    base = {name: value for name, value in base.items() if name != "AWS_CA_BUNDLE"}
    return {**base, "RCLONE_CONFIG_BENCH_TYPE": "s3", "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": job.endpoint,
            "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": base["AWS_ACCESS_KEY_ID"],
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": base["AWS_SECRET_ACCESS_KEY"]}


TOOLS: tuple[Tool, ...] = (
    Tool("curl", SOURCE, _curl, stores_object=False),
    Tool("sink", SINK, _sink),
    Tool("sc2s3", SC2S3, _sc2s3),
    Tool("rclone", PEER, _rclone, _rclone_env),
    Tool("boto3", PEER, _python_peer("boto3_upload_fileobj.py")),
    Tool("smart_open", PEER, _python_peer("smart_open_copy.py")),
)
