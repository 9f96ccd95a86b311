"""Peak memory and disk writes of ``sc2s3 mirror --once`` for a large track, side by side with a
small one, on loopback (SeaweedFS + the SoundCloud simulator).

The agent streams SoundCloud -> S3 multipart upload without temp files, so its peak RSS must not
grow with the file size and it must write (almost) nothing to disk. Prints a table and the ratios;
exits 1 if the large track's peak RSS exceeds the limit.

    .venv/bin/python bench/agent_memory.py [--sizes-mib 256 2048] [--limit-mib 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from harness import (
    AGENT_BIN,
    MIB,
    Catalog,
    SeaweedFS,
    Track,
    User,
    agent_env,
    object_sha256,
    original_sha256,
    run_measured,
    simulator,
    write_config,
)


def mirror_one(seaweed: SeaweedFS, workdir: Path, size: int, part_size_mib: int,
               concurrency: int) -> dict:
    """Mirror one track of ``size`` bytes; returns elapsed s, peak RSS and disk writes."""
    track = Track(id=7000 + size // MIB, title=f"rehearsal {size // MIB} MiB", size=size,
                  content_type="audio/wav")
    bucket = f"bench-{size // MIB}"
    seaweed.create_bucket(bucket)
    catalog = Catalog([User(id=42, permalink="band-one", username="Band", tracks=[track])])
    with simulator(catalog) as sim:
        config = write_config(workdir / f"config-{bucket}.toml", sim_url=sim.base_url,
                              endpoint=seaweed.endpoint_url, bucket=bucket,
                              state_dir=workdir / f"state-{bucket}",
                              part_size_mib=part_size_mib, concurrency=concurrency)
        run = run_measured([str(AGENT_BIN), "mirror", "--once", "--config", str(config)],
                           env=agent_env(seaweed), timeout_s=3600)
    if run.exit_code != 0:
        raise SystemExit(f"sc2s3 exited {run.exit_code} for {size} bytes")
    s3 = seaweed.client()
    key = next(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
               if "/audio." in o["Key"])
    return {"size": size, "elapsed_s": run.elapsed_s, "rss_mib": run.rss_mib,
            "disk_write_bytes": run.disk_write_bytes,
            "identical": object_sha256(s3, bucket, key) == original_sha256(track)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[256, 2048])
    parser.add_argument("--part-size-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--limit-mib", type=float, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sc2s3-bench-") as tmp:
        workdir = Path(tmp)
        seaweed = SeaweedFS(workdir / "seaweedfs").start()
        try:
            rows = [mirror_one(seaweed, workdir, mib * MIB, args.part_size_mib, args.concurrency)
                    for mib in args.sizes_mib]
        finally:
            seaweed.stop()
    print(f"sc2s3 mirror --once, part size {args.part_size_mib} MiB, concurrency "
          f"{args.concurrency}, loopback SeaweedFS + simulator")
    print(f"{'track':>10} {'seconds':>8} {'MB/s':>7} {'peak RSS MiB':>13} {'disk writes':>12} "
          f"{'identical':>9}")
    for row in rows:
        print(f"{row['size'] // MIB:>6} MiB {row['elapsed_s']:>8.1f} "
              f"{row['size'] / row['elapsed_s'] / 1e6:>7.0f} {row['rss_mib']:>13.1f} "
              f"{row['disk_write_bytes']:>12,} {row['identical']!s:>9}")
    small, large = rows[0], rows[-1]
    print(f"size ratio {large['size'] / small['size']:.1f}x -> peak RSS ratio "
          f"{large['rss_mib'] / small['rss_mib']:.2f}x; largest peak RSS "
          f"{large['rss_mib']:.0f} MiB vs limit {args.limit_mib:.0f} MiB "
          f"({large['rss_mib'] / args.limit_mib:.2f} of the limit)")
    ok = all(r["identical"] for r in rows) and large["rss_mib"] <= args.limit_mib
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
