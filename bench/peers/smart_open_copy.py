"""Peer: smart_open reads the CDN URL (its http transport) and writes ``s3://bucket/key`` with
its MultipartWriter at the given part size. smart_open uploads parts one after another
(no concurrency setting exists), so ``--concurrency`` only sizes the connection pool."""

from __future__ import annotations

import shutil

import smart_open
from common import MIB, parse_args, s3_client

COPY_CHUNK = MIB  # what shutil hands the writer per call; parts are assembled by smart_open


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    client = s3_client(args.endpoint, args.concurrency)
    target = f"s3://{args.bucket}/{args.key}"
    params = {"client": client, "min_part_size": args.part_size_mib * MIB}
    with (smart_open.open(args.url, "rb", compression="disable") as source,
          smart_open.open(target, "wb", compression="disable", transport_params=params) as sink):
        shutil.copyfileobj(source, sink, COPY_CHUNK)


if __name__ == "__main__":
    main()
