"""sc2s3.checksums
~~~~~~~~~~~~~~~~~~

S3 additional checksums (S3 API: "Checking object integrity in Amazon S3"). Every part is sent
with its checksum, S3 recomputes it on receipt and refuses a part that differs, and a multipart
object carries the COMPOSITE checksum ``base64(H(d1 + d2 + ... + dN))-N`` over the part digests.

New uploads use CRC32: it detects what it is there for (bytes damaged between the agent and S3)
at twice SHA-256's speed here, for the agent and for the S3 server that recomputes it, and it is
botocore's own default. End-to-end integrity is the whole file's SHA-256, which the catalog
records and ``verify`` recomputes. Objects archived by sc2s3 0.2 carry SHA-256 and still verify.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Literal, get_args

ChecksumAlgorithm = Literal["CRC32", "SHA256"]  # the ones sc2s3 uses, as S3 names them
ALGORITHMS: tuple[ChecksumAlgorithm, ...] = get_args(ChecksumAlgorithm)
PART_ALGORITHM: ChecksumAlgorithm = "CRC32"  # new uploads; a resumed one keeps its own


class Crc32:
    """zlib's CRC-32 (the one S3 calls CRC32) with hashlib's ``update``/``digest`` shape; the
    digest is the 4-byte big-endian value, as S3 encodes it."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def new(algorithm: str):
    """A fresh hash object for ``algorithm`` (one of :data:`ALGORITHMS`).

    :raises ValueError: an algorithm sc2s3 does not use.
    """
    if algorithm == "CRC32":
        return Crc32()
    if algorithm == "SHA256":
        return hashlib.sha256()
    raise ValueError(f"unsupported S3 checksum algorithm {algorithm!r}")


def field(algorithm: str) -> str:
    """The S3 API member that carries ``algorithm``'s value, e.g. ``ChecksumCRC32``."""
    return f"Checksum{algorithm}"


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite(algorithm: str, part_digests: list[bytes]) -> str:
    """S3's COMPOSITE checksum of a multipart object: ``base64(H(d1 + d2 + ...))-N``."""
    whole = new(algorithm)
    whole.update(b"".join(part_digests))
    return f"{b64(whole.digest())}-{len(part_digests)}"


def reported(answer: dict) -> tuple[ChecksumAlgorithm | None, str | None]:
    """``(algorithm, value)`` of the checksum an S3 answer (HeadObject, GetObject with
    ``ChecksumMode=ENABLED``, ListParts entry) reports, or ``(None, None)`` when it has none."""
    for algorithm in ALGORITHMS:
        value = answer.get(field(algorithm))
        if value is not None:
            return algorithm, value
    return None, None
