"""sc2s3: mirror SoundCloud accounts into S3, streamed and checksummed."""

__version__ = "0.9.1"
