"""The sink limit: the track's exact bytes generated in memory (no network read, no disk) and
uploaded with boto3 multipart, ``--concurrency`` parts of ``--part-size-mib`` at once.

Nothing a copying tool can do beats this: it is S3's (SeaweedFS's) intake rate on this machine.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import MIB, make_parser, s3_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "agent" / "tests"))
from soundcloud_sim.content import original_seed, stream_views


def main() -> None:
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--track-id", type=int, required=True, help="simulator track id")
    parser.add_argument("--size", type=int, required=True, help="track size in bytes")
    args = parser.parse_args()
    track_id, size = args.track_id, args.size
    part_size = args.part_size_mib * MIB
    s3 = s3_client(args.endpoint, args.concurrency)
    seed = original_seed(track_id)
    upload_id = s3.create_multipart_upload(Bucket=args.bucket, Key=args.key)["UploadId"]

    def upload(number: int) -> dict:
        start = (number - 1) * part_size
        body = b"".join(stream_views(seed, size, start, start + part_size))  # built per task
        answer = s3.upload_part(Bucket=args.bucket, Key=args.key, UploadId=upload_id,
                                PartNumber=number, Body=body)
        return {"PartNumber": number, "ETag": answer["ETag"]}

    numbers = range(1, -(-size // part_size) + 1)
    with ThreadPoolExecutor(args.concurrency) as pool:
        # Each task builds its own part, so at most `concurrency` parts exist at once.
        parts = list(pool.map(upload, numbers))
    s3.complete_multipart_upload(Bucket=args.bucket, Key=args.key, UploadId=upload_id,
                                 MultipartUpload={"Parts": parts})


if __name__ == "__main__":
    main()
