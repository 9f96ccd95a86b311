"""sc2s3.store
~~~~~~~~~~~~~~

A generic store of small objects (JSON, text) in the bucket, for what is written once or replaced
as a whole: track JSON, metadata edits, user.json, README.txt. Catalogs (:mod:`sc2s3.catalog`)
and the fleet's state (:mod:`sc2s3.leases`, :mod:`sc2s3.plays`, :mod:`sc2s3.resume`) have their
own conditional writers, or use :meth:`ObjectStore.put_if` (compare-and-swap).
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError

from .errors import TemporaryError
from .s3 import get_object_body


class ObjectStore:
    """Reads and writes whole small objects of ``bucket``."""

    def __init__(self, s3, bucket: str):
        self.s3, self.bucket = s3, bucket

    def put_json(self, key: str, data: object, *, overwrite: bool) -> None:
        """Store ``data`` as JSON at ``key``. Without ``overwrite`` an existing object is never
        replaced (``If-None-Match: *``); with it, it is replaced only when its bytes differ (no
        new version otherwise).

        :raises TemporaryError: S3 unreachable.
        """
        body = json.dumps(data, indent=1, ensure_ascii=False).encode()
        self.put_bytes(key, body, "application/json", overwrite=overwrite)

    def put_bytes(self, key: str, body: bytes, content_type: str, *, overwrite: bool) -> None:
        """Store ``body`` at ``key`` (see :meth:`put_json` for ``overwrite``).

        :raises TemporaryError: S3 unreachable.
        """
        if overwrite and get_object_body(self.s3, self.bucket, key)[0] == body:
            return
        extra = {} if overwrite else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, ContentType=content_type, Body=body,
                               **extra)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 412 and not overwrite:
                return  # created before: written once, never replaced
            raise TemporaryError(f"cannot write {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot write {key}: {exc}") from exc

    def put_if(self, key: str, body: bytes, content_type: str, etag: str | None,
               **extra) -> str | None:
        """Compare-and-swap: store ``body`` at ``key`` only if the object is still the version
        read (``If-Match: etag``), or, with ``etag`` None, only if there is none
        (``If-None-Match: *``). ``extra``: more PutObject arguments (``Tagging``, ``Metadata``).

        :returns: the new ETag, or None when the condition failed (412, or 409 for a concurrent
            conditional write): read again, merge, retry.
        :raises TemporaryError: S3 unreachable.
        """
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            answer = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body,
                                        ContentType=content_type, **condition, **extra)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (409, 412):
                return None
            raise TemporaryError(f"cannot write {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise TemporaryError(f"cannot write {key}: {exc}") from exc
        return answer.get("ETag")

    def get_json(self, key: str) -> object:
        """The JSON document at ``key``. :raises TemporaryError: unreadable or S3 unreachable."""
        body, _etag = get_object_body(self.s3, self.bucket, key)
        if body is None:
            raise TemporaryError(f"cannot read {key}: no such object")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise TemporaryError(f"cannot read {key}: {exc}") from exc
