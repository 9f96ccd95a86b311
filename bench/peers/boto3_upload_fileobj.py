"""Peer: ``requests`` GET of the CDN URL streamed into boto3 ``upload_fileobj(response.raw)``
(s3transfer's non-seekable multipart path) at the given part size and concurrency."""

from __future__ import annotations

import requests
from boto3.s3.transfer import TransferConfig
from common import MIB, parse_args, s3_client


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    part_size = args.part_size_mib * MIB
    config = TransferConfig(multipart_threshold=part_size, multipart_chunksize=part_size,
                            max_concurrency=args.concurrency,
                            preferred_transfer_client="classic")  # no CRT: plain s3transfer
    with requests.get(args.url, stream=True, timeout=(10, 60)) as response:
        response.raise_for_status()
        s3_client(args.endpoint, args.concurrency).upload_fileobj(
            response.raw, args.bucket, args.key, Config=config)


if __name__ == "__main__":
    main()
