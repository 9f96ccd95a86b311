"""Command line shared by the peer scripts: where to read, where to write, and how."""

from __future__ import annotations

import argparse

import boto3
from botocore.config import Config

MIB = 1024 * 1024


def make_parser(description: str) -> argparse.ArgumentParser:
    """``--endpoint``/``--bucket``/``--key`` (S3 target), ``--part-size-mib``, ``--concurrency``.
    Credentials come from the AWS_* environment."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--part-size-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    return parser


def parse_args(description: str) -> argparse.Namespace:
    """The common options plus ``--url``, the signed CDN URL to copy from."""
    parser = make_parser(description)
    parser.add_argument("--url", required=True)
    return parser.parse_args()


def s3_client(endpoint: str, concurrency: int):
    """A boto3 S3 client with enough pooled connections for ``concurrency`` parts at once.

    Everything else is boto3's default, checksums included, as a user of the tool would get."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"},
                                      max_pool_connections=max(10, concurrency + 2)))
