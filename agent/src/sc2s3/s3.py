"""sc2s3.s3
~~~~~~~~~~~

The boto3 S3 client the agent uses. Credentials come from boto3's standard chain (instance
profile on EC2, environment or shared credentials file elsewhere).
"""

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .config import Config
from .errors import TemporaryError


def make_s3_client(config: Config):
    """A thread-safe S3 client for ``config.s3`` with botocore's standard retry mode (which
    retries throttling such as SlowDown and 5xx with jittered backoff)."""
    return boto3.client(
        "s3",
        region_name=config.s3.region,
        endpoint_url=config.s3.endpoint_url or None,
        config=BotoConfig(
            retries={"mode": "standard", "max_attempts": 8},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=4 * config.agent.concurrency + 4,
            # The agent sends its own SHA-256 per part; don't add a second (CRC32) checksum.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"} if config.s3.endpoint_url else None,
        ),
    )


def get_object_body(s3, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """``(body, ETag)`` of ``bucket/key``, or ``(None, None)`` when no such object exists.

    :raises TemporaryError: S3 unreachable, or any other error answer.
    """
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), answer.get("ETag")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, None
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
