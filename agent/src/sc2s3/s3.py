"""sc2s3.s3
~~~~~~~~~~~

The boto3 S3 client the agent uses. Credentials come from boto3's standard chain (instance
profile on EC2, environment or shared credentials file elsewhere).
"""

import json

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .config import Config
from .errors import TemporaryError

# Attempts per S3 request, the first included (botocore's standard retry mode: 8 retries),
# unless AWS's own setting says otherwise: AWS_MAX_ATTEMPTS, or max_attempts in the shared
# config file, which also count the first attempt.
DEFAULT_MAX_ATTEMPTS = 9


def make_s3_client(config: Config):
    """A thread-safe S3 client for ``config.s3`` with botocore's standard retry mode (which
    retries throttling such as SlowDown and 5xx with jittered backoff)."""
    core = botocore.session.get_session()
    max_attempts = core.get_config_variable("max_attempts") or DEFAULT_MAX_ATTEMPTS
    return boto3.Session(botocore_session=core).client(
        "s3",
        region_name=config.s3.region,
        endpoint_url=config.s3.endpoint_url or None,
        config=BotoConfig(
            retries={"mode": "standard", "total_max_attempts": int(max_attempts)},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=4 * config.agent.concurrency + 4,
            # botocore adds a CRC32 to any body that has no checksum of ours (state, catalog);
            # parts carry the transfer's own. Reads are checked by verify, not per response.
            request_checksum_calculation="when_supported",
            response_checksum_validation="when_required",
            s3=_custom_endpoint_options() if config.s3.endpoint_url else None,
        ),
    )


def _custom_endpoint_options() -> dict:
    # Over https botocore already sends UNSIGNED-PAYLOAD for a body with a checksum header; on a
    # plain-http endpoint (a LAN or test S3) it would SHA-256 every byte once more to sign it.
    # The signed checksum header, which S3 checks against the body, stands in for that hash.
    return {"addressing_style": "path", "payload_signing_enabled": False}


def _get(s3, bucket: str, key: str) -> tuple[bytes, dict] | None:
    """``(body, answer)`` of GetObject ``bucket/key``, or None when no such object exists."""
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
        return answer["Body"].read(), answer
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise TemporaryError(f"cannot read {key}: {exc}") from exc
    except BotoCoreError as exc:
        raise TemporaryError(f"cannot read {key}: {exc}") from exc


def get_object_body(s3, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """``(body, ETag)`` of ``bucket/key``, or ``(None, None)`` when no such object exists.

    :raises TemporaryError: S3 unreachable, or any other error answer.
    """
    got = _get(s3, bucket, key)
    return (None, None) if got is None else (got[0], got[1].get("ETag"))


def get_json_object(s3, bucket: str, key: str) -> tuple[dict | None, dict] | None:
    """``(document, answer)`` of a small JSON object: the parsed document (None when it is not a
    JSON object) and boto3's GetObject answer (``ETag``, ``LastModified``, the ``Date`` header);
    None when no such object exists.

    :raises TemporaryError: S3 unreachable, or any other error answer.
    """
    got = _get(s3, bucket, key)
    if got is None:
        return None
    try:
        document = json.loads(got[0])
    except ValueError:
        document = None
    return (document if isinstance(document, dict) else None), got[1]


def get_json_changed(s3, bucket: str, key: str, etag: str,
                     cache: dict[str, tuple[str, dict]]) -> dict | None:
    """The JSON object at ``key`` as listed with ``etag``, read only when ``cache`` (key ->
    ``(ETag, document)``, updated here) does not hold that version already; ``{}`` for one that
    is not a JSON object, None when it vanished since the listing.

    :raises TemporaryError: S3 unreachable.
    """
    cached = cache.get(key)
    if cached and cached[0] == etag:
        return cached[1]
    got = get_json_object(s3, bucket, key)
    if got is None:
        return None
    document, answer = got
    cache[key] = (answer.get("ETag", etag), document or {})
    return cache[key][1]
