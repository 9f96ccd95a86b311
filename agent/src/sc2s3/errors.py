"""sc2s3.errors
~~~~~~~~~~~~~~~

One exception root for the agent, so the command line can map failures to the exit codes of
docs/commands.md: 78 invalid config, 75 temporary failure (upstream or S3 unreachable), 1 some
tracks failed, 70 internal error (any other exception: a bug).
"""

EXIT_OK = 0
EXIT_TRACKS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78


class Sc2s3Error(Exception):
    """Root of every error the agent raises on purpose."""

    exit_code = EXIT_TRACKS_FAILED


class ConfigError(Sc2s3Error):
    """The config file is missing, unparsable or invalid. Not retryable: fix the file."""

    exit_code = EXIT_CONFIG


class TemporaryError(Sc2s3Error):
    """SoundCloud or S3 is unreachable or overloaded. Safe to retry later."""

    exit_code = EXIT_TEMPFAIL


class UpstreamUnavailable(TemporaryError):
    """SoundCloud (its API or token endpoint) is unreachable, failing (5xx) or rate-limiting.
    Not the agent's fault: the health endpoint reports it as degraded, never as unhealthy, so
    a SoundCloud outage cannot roll back a good release."""


class UpstreamError(Sc2s3Error):
    """SoundCloud answered with something the contract does not allow (bad JSON, bad URN...)."""


class IntegrityError(Sc2s3Error):
    """Bytes read back do not match the checksum recorded when they were archived."""


class OwnerAuthorizationError(UpstreamError):
    """The account owner's authorization is missing, refused or broken (a 401 with the owner's
    token, an ``invalid_grant`` on refresh, a token of another account). Fixed by the owner
    running ``sc2s3 authorize --account A`` again; meanwhile the account's public tracks are
    mirrored with the app's own token."""
