"""sc2s3.cli
~~~~~~~~~~~~

The ``sc2s3`` command (contract: docs/commands.md): 0 done, 1 some tracks
failed, 2 usage error, 75 temporary failure (upstream or S3 unreachable), 78 invalid config.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

import click

from . import __version__
from .config import Config, config_path, load_config
from .errors import EXIT_INTERNAL, EXIT_OK, EXIT_TEMPFAIL, EXIT_TRACKS_FAILED, Sc2s3Error
from .logs import configure_logging, log
from .progress import make_reporter
from .s3 import make_s3_client
from .soundcloud import SoundCloudClient

config_option = click.option(
    "--config", "config_file", metavar="PATH", default=None,
    help="Config file (default: $SC2S3_CONFIG or /etc/sc2s3/config.toml).")


def _load(config_file: str | None) -> Config:
    return load_config(config_path(config_file))


def _fail(error: Sc2s3Error) -> None:
    click.echo(f"sc2s3: {error}", err=True)
    sys.exit(error.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sc2s3")
def cli() -> None:
    """Mirror SoundCloud accounts into S3: streamed, checksummed, restorable."""
    configure_logging()


@cli.command("check-config")
@config_option
def check_config(config_file: str | None) -> None:
    """Validate the config file; exit 78 with one line naming the key if it is invalid."""
    config = _load(config_file)
    click.echo(f"{config_path(config_file)}: ok ({len(config.soundcloud.accounts)} accounts, "
               f"bucket {config.s3.bucket})")


@cli.command()
@config_option
def run(config_file: str | None) -> None:
    """Run the agent: mirror every poll interval until SIGTERM."""
    from .daemon import run_daemon

    sys.exit(run_daemon(_load(config_file)))


@cli.command()
@config_option
@click.option("--once", is_flag=True, required=True, help="One pass, then exit (required).")
@click.option("--account", "accounts", multiple=True, metavar="A",
              help="Only this account (permalink or user URN); repeatable.")
@click.option("--dry-run", is_flag=True, help="List what would be mirrored; write nothing.")
def mirror(config_file: str | None, once: bool, accounts: tuple[str, ...], dry_run: bool) -> None:
    """Mirror the configured accounts once."""
    from .fleet import join
    from .mirror import Mirror

    config = _load(config_file)
    reporter = make_reporter()
    s3 = make_s3_client(config)
    fleet, budget = join(config, s3, member=False)
    soundcloud = SoundCloudClient(config.soundcloud, budget, Path(config.agent.state_dir))
    fleet.start()  # renews the leases this run takes, while it runs
    try:
        with Mirror(config, soundcloud, s3, fleet, reporter=reporter) as engine:
            result = engine.run_cycle(list(accounts) or None, dry_run=dry_run)
    finally:
        fleet.stop()
        reporter.close()
    if dry_run:
        for urn in result.planned:
            click.echo(urn)
    for held in result.held_elsewhere:
        click.echo(f"sc2s3: skipped {held}; its holder mirrors it", err=True)
    for unreachable in result.unreachable:
        click.echo(f"sc2s3: archive unreachable: {unreachable}", err=True)
    for unavailable in result.upstream_unavailable:
        click.echo(f"sc2s3: SoundCloud unavailable for {unavailable}", err=True)
    if result.rate_limited:
        click.echo(f"sc2s3: {result.rate_limited} track(s) left for a later run: the play budget "
                   f"is spent or SoundCloud answered 429", err=True)
    if result.handed_over:
        click.echo(f"sc2s3: {result.handed_over} track(s) left to their account's new holder",
                   err=True)
    for problem in result.owner_problems:
        click.echo(f"sc2s3: public tracks only for {problem}", err=True)
    if result.incomplete:
        _exit_now(EXIT_TEMPFAIL)
    # A broken owner authorization leaves private tracks unmirrored: not done.
    failed = result.failed or result.deferred or result.account_errors or result.owner_problems
    _exit_now(EXIT_TRACKS_FAILED if failed else EXIT_OK)


def _exit_now(code: int) -> NoReturn:
    """Exit with ``code`` without the interpreter's teardown. A mirror run holds botocore's
    service models and pydantic's schemas, which Python would free object by object: a quarter
    of a second per run here. Everything the run wrote is complete by now (executors joined,
    state files fsync'ed and closed, S3 calls answered), so only the streams need flushing."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _OneLineUsageError(click.UsageError):
    """A usage error (exit 2) shown as one line, without click's usage block."""

    def show(self, file=None) -> None:
        click.echo(f"sc2s3: {self.format_message()}", file=file, err=file is None)


def _sample_size(_ctx, _param, value: str | None) -> int | None:
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]+", value) or int(value) < 1:
        raise _OneLineUsageError(f"--sample takes a whole number of revisions, 1 or more "
                                 f"(got {value!r}), e.g. --sample 100")
    return int(value)


@cli.command()
@config_option
@click.option("--sample", metavar="N", callback=_sample_size,
              help="Check N archived revisions picked at random across every account, not all "
                   "(N >= 1; a drill for large archives).")
def verify(config_file: str | None, sample: int | None) -> None:
    """Re-read every archived object and check its checksums; exit 1 on any mismatch."""
    from .verify import PassProgress, verify_archive

    config = _load(config_file)
    progress = PassProgress("verify")
    try:
        result = verify_archive(config, make_s3_client(config), progress, sample=sample,
                                on_problem=lambda problem: click.echo(f"FAILED {problem}", err=True))
    finally:
        progress.close()
    if result.sampled:
        click.echo(f"verified {result.checked} objects (a random sample of the {result.recorded} "
                   f"revisions recorded), {result.bytes} bytes, {result.problems} problems")
    else:
        click.echo(f"verified {result.checked} objects, {result.bytes} bytes, "
                   f"{result.problems} problems")
    sys.exit(EXIT_TRACKS_FAILED if result.problems else EXIT_OK)


@cli.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_file: str | None, as_json: bool) -> None:
    """Show what is archived per account and the last cycle on this host."""
    from .status import collect_status, print_status

    config = _load(config_file)
    report = collect_status(config, make_s3_client(config))
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        print_status(report)


@cli.command()
@config_option
@click.option("--account", metavar="A",
              help="Permalink or user URN (required unless --set names a set).")
@click.option("--track", "track_urn", metavar="URN", help="Only this track URN.")
@click.option("--set", "set_urn", metavar="URN",
              help="Only this set (playlist URN): its tracks in order, an M3U8 playlist and its "
                   "cover.")
@click.option("--to", "to_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to restore into.")
@click.option("--overwrite", is_flag=True,
              help="Replace existing files that differ from the archive (atomically).")
@click.option("--private-in-place", is_flag=True,
              help="Restore private tracks beside the public ones, not into private/.")
def restore(config_file: str | None, account: str | None, track_urn: str | None,
            set_urn: str | None, to_dir: Path, overwrite: bool, private_in_place: bool) -> None:
    """Restore an account's tracks (or one set) from the archive, verified on the way down."""
    from .restore import restore as restore_tracks
    from .restore import restore_set
    from .verify import PassProgress

    if set_urn and track_urn:
        raise _OneLineUsageError("give --track or --set, not both")
    if not set_urn and not account:
        raise _OneLineUsageError("--account is required (or --set URN to restore one set)")
    config = _load(config_file)
    progress = PassProgress("restore")

    def report(problem: str) -> None:
        click.echo(f"FAILED {problem}", err=True)

    try:
        if set_urn:
            result = restore_set(config, make_s3_client(config), set_urn, to_dir, account,
                                 progress, overwrite=overwrite, on_problem=report)
        else:
            result = restore_tracks(config, make_s3_client(config), account, to_dir, track_urn,
                                    progress, overwrite=overwrite, on_problem=report,
                                    include_private_in_place=private_in_place)
    finally:
        progress.close()
    click.echo(f"restored {result.restored} tracks into {to_dir}")
    sys.exit(EXIT_TRACKS_FAILED if result.problems else EXIT_OK)


@cli.command()
@config_option
@click.option("--account", required=True, metavar="A",
              help="The account whose owner consents: a permalink or user URN of "
                   "[soundcloud] accounts.")
@click.option("--no-browser", is_flag=True,
              help="Print the URL to open instead of opening a browser (on a host reached "
                   "through ssh -L 8765:127.0.0.1:8765).")
@click.option("--timeout-s", type=click.FloatRange(min=0, min_open=True), default=300.0,
              show_default=True, metavar="N",
              help="Seconds to wait for SoundCloud's answer in the browser (then exit 75).")
@click.option("--refresh-token-file", metavar="PATH",
              help="Seed the account's token chain from the owner's refresh token in PATH ('-': "
                   "stdin) instead of the browser; not used when a working chain is stored "
                   "already (it is single-use).")
def authorize(config_file: str | None, account: str, no_browser: bool, timeout_s: float,
              refresh_token_file: str | None) -> None:
    """Let an account's owner consent (Authorization Code + PKCE) so its private tracks are
    mirrored: once per account; the fleet keeps the token chain in the bucket."""
    from .authorize import authorize_account, read_refresh_token

    config = _load(config_file)
    refresh_token = read_refresh_token(refresh_token_file) if refresh_token_file else None
    click.echo(authorize_account(config, make_s3_client(config), account, no_browser=no_browser,
                                 timeout_s=timeout_s, refresh_token=refresh_token,
                                 echo=click.echo))


def main() -> None:
    """Console script entry point: maps :class:`Sc2s3Error` to its exit code and any other
    exception to 70 (internal error), each with one line on stderr."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except Sc2s3Error as exc:
        _fail(exc)
    except KeyboardInterrupt:
        log.info("interrupted")
        sys.exit(130)
    except Exception as exc:
        # A bug: the traceback goes to the log, one line to stderr, and supervisor sees 70.
        log.exception("internal error")
        click.echo(f"sc2s3: internal error (a bug; the traceback is in the log): "
                   f"{type(exc).__name__}: {exc}", err=True)
        sys.exit(EXIT_INTERNAL)
