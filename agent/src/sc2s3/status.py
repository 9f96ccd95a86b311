"""sc2s3.status
~~~~~~~~~~~~~~~

What is in the archive per account (from the catalogs in the bucket) and how the daemon's last
cycle went (from ``state_dir/last_cycle.json``).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.table import Table

from . import __version__
from .archive import Layout, list_user_urns
from .catalog_stream import scan_catalog
from .config import Config
from .drill import drill_summary
from .errors import TemporaryError
from .failures import FAILURES_FILE, load_failures
from .fleet import fleet_report, join
from .owners import OwnerTokens
from .state import write_atomic

LAST_CYCLE_FILE = "last_cycle.json"
# The text output lists at most this many failing tracks (``--json`` has them all).
FAILING_SHOWN = 20


def collect_status(config: Config, s3) -> dict:
    """``{"version", "bucket", "prefix", "accounts": [...], "last_cycle": {...} | None,
    "failing_tracks": {urn: {...}}, "drill": {...}, "play_budget": {...}, "fleet": {...}}``:
    ``last_cycle``, ``failing_tracks`` and ``drill`` (:func:`sc2s3.drill.drill_summary`) from
    this host's state_dir, the rest from the bucket (``play_budget`` is the fleet's, ``fleet``
    as :func:`sc2s3.fleet.fleet_report` gives it)."""
    layout = Layout(config.s3.prefix)
    owners = OwnerTokens(None, s3, config.s3.bucket, config.s3.prefix)
    accounts = []
    for user_urn in list_user_urns(s3, config.s3.bucket, layout):
        # Streamed: counted entry by entry, one account at a time (sc2s3.catalog_stream).
        scan = scan_catalog(s3, config.s3.bucket, layout, user_urn)
        owner = owners.describe(user_urn)
        accounts.append({
            "user_urn": user_urn,
            "permalink": scan.permalink,
            "tracks": scan.tracks,
            "private": scan.private,
            "revisions": scan.revisions,
            "bytes": scan.bytes,
            "deleted_upstream": scan.deleted_upstream,
            "unarchivable": scan.unarchivable,
            "unarchivable_tracks": scan.unarchivable_shown,
            "sets": _count_sets(s3, config.s3.bucket, layout, user_urn),
            "owner": owner,
            "listing": scan.listing,
            "warnings": listing_warnings(scan.name, scan.listing, owner),
            "updated_at": scan.updated_at,
        })
    state_dir = Path(config.agent.state_dir)
    fleet, budget = join(config, s3, member=False)
    report = fleet_report(s3, config.s3.bucket, config.s3.prefix, config.soundcloud.accounts,
                          fleet.holder, config.agent.lease_ttl_s)
    return {"version": __version__, "bucket": config.s3.bucket, "prefix": config.s3.prefix,
            "accounts": accounts, "last_cycle": read_last_cycle(state_dir),
            "failing_tracks": load_failures(state_dir / FAILURES_FILE),
            "drill": drill_summary(state_dir),
            "play_budget": budget.snapshot(), "fleet": report}


def _count_sets(s3, bucket: str, layout: Layout, user_urn: str) -> int:
    """Sets archived for the account: the folders under its ``sets/``."""
    paginator = s3.get_paginator("list_objects_v2")
    try:
        return sum(len(page.get("CommonPrefixes", [])) for page in paginator.paginate(
            Bucket=bucket, Prefix=layout.sets_dir(user_urn), Delimiter="/"))
    except (ClientError, BotoCoreError) as exc:
        raise TemporaryError(f"cannot list the sets of {user_urn}: {exc}") from exc


def listing_warnings(name: str, listing: dict | None, owner: dict | None) -> list[str]:
    """Warnings for an account whose last complete listing found another number of tracks than
    SoundCloud counts for it (``/me``'s ``track_count`` and ``private_tracks_count`` with the
    owner's token, else the public ``track_count``), or whose owner authorization is broken."""
    warnings = []
    if owner and owner.get("broken"):
        warnings.append(f"{name}: the owner's authorization is broken ({owner['broken']}); "
                        f"private tracks are not mirrored until the owner runs: "
                        f"sc2s3 authorize --account {name}")
    if not listing or listing.get("expected") is None:
        return warnings
    listed, public = listing.get("listed", 0), listing["expected"]
    private = listing.get("expected_private") if listing.get("owner") else None
    expected = public + (private or 0)
    if listed != expected:
        counted = f"{public} public + {private} private" if private is not None \
            else f"{public} public"
        warnings.append(f"{name}: the last listing found {listed} tracks "
                        f"({listing.get('listed_private', 0)} private), SoundCloud counts "
                        f"{counted}")
    return warnings


def read_last_cycle(state_dir: Path) -> dict | None:
    try:
        data = json.loads((state_dir / LAST_CYCLE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_last_cycle(state_dir: Path, summary: dict) -> None:
    write_atomic(state_dir / LAST_CYCLE_FILE, json.dumps(summary).encode(), mode=0o644)


def print_status(status: dict, console: Console | None = None) -> None:
    """A human table of ``status``."""
    console = console or Console()
    table = Table(title=f"s3://{status['bucket']}/{status['prefix']}")
    accounts = status["accounts"]
    # Names and numbers are never cut short on a narrow terminal: the time stamp folds instead.
    whole = {"account": max((len(a["permalink"]) for a in accounts), default=7),
             "bytes": max((len(f"{a['bytes']:,}") for a in accounts), default=5)}
    for column in ("account", "tracks", "private", "sets", "revisions", "bytes", "deleted",
                   "catalog updated"):
        table.add_column(column, justify="left" if column in ("account", "catalog updated")
                         else "right", no_wrap=column in whole, min_width=whole.get(column),
                         overflow="fold")
    for account in status["accounts"]:
        table.add_row(account["permalink"], str(account["tracks"]), str(account["private"]),
                      str(account["sets"]), str(account["revisions"]),
                      f"{account['bytes']:,}", str(account["deleted_upstream"]),
                      account["updated_at"])
    console.print(table)
    for account in status["accounts"]:
        unarchivable = account["unarchivable"]
        console.print(f"{account['permalink'] or account['user_urn']} ({account['user_urn']}): "
                      f"{_owner_state(account['owner'])}" + (
                          f"; {_count(unarchivable, 'track')} SoundCloud serves no audio for"
                          if unarchivable else ""), markup=False)
        for warning in account["warnings"]:
            console.print(f"warning: {warning}", markup=False)
        for track in account["unarchivable_tracks"]:
            console.print(f"not archivable: {account['permalink']} {track['urn']} "
                          f"{track['title']!r}: {track['reason']}", markup=False)
        more = account["unarchivable"] - len(account["unarchivable_tracks"])
        if more > 0:
            console.print(f"… and {more:,} more tracks of {account['permalink']} that cannot "
                          f"be archived (the catalog's \"unarchivable\" field)", markup=False)
    cycle = status["last_cycle"]
    # Error texts come from upstream answers: printed as they are, never read as rich markup.
    console.print("last cycle: " + (json.dumps(cycle) if cycle else "none recorded on this host"),
                  markup=False)
    _print_fleet(status["fleet"], console)
    budget = status["play_budget"]
    console.print(f"fleet play budget: {budget['used']} of {budget['limit']} used in the last "
                  f"{budget['window_s'] / 3600:.0f} h, {budget['remaining']} left" + (
                      f"; blocked by SoundCloud until {_when(budget['blocked_until'])}"
                      if budget["blocked_until"] else ""))
    _print_drill(status["drill"], console)
    failing = status["failing_tracks"]
    for urn, failure in itertools.islice(failing.items(), FAILING_SHOWN):
        console.print(f"failing: {urn} ({failure['failures']} cycles): {failure['last_error']}",
                      markup=False)
    if len(failing) > FAILING_SHOWN:
        console.print(f"… and {len(failing) - FAILING_SHOWN:,} more failing tracks "
                      f"({len(failing):,} in all; sc2s3 status --json lists every one)", markup=False)


def _owner_state(owner: dict | None) -> str:
    if owner is None:
        return "public tracks only (the owner has not authorized sc2s3)"
    if owner.get("broken"):
        return "owner authorization BROKEN (public tracks only; see the warning)"
    return f"every track, private ones included (owner authorized {owner.get('authorized_at')})"


def _print_drill(drill: dict, console: Console) -> None:
    if not drill["rounds"]:
        console.print("restore drill: no round on this host in the last 24 h")
        return
    console.print(f"restore drill (this host, last 24 h): {_count(drill['checked'], 'revision')} "
                  f"read back in {_count(drill['rounds'], 'round')}, {drill['damaged']} damaged "
                  f"or missing; last round {drill['last_at']}")
    for line in drill["lines"][:FAILING_SHOWN]:
        console.print(f"drill: {line}", markup=False)


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _print_fleet(fleet: dict, console: Console) -> None:
    hosts = Table(title="fleet: hosts")
    for column in ("host", "pid", "version", "last heartbeat", "age s", "live", "accounts held",
                   "tracks in flight"):
        hosts.add_column(column)
    for host in fleet["hosts"]:
        hosts.add_row(host["host"], str(host.get("pid", "")), str(host.get("version", "")),
                      host["last_heartbeat"], f"{host['age_s']:.0f}",
                      "yes" if host["live"] else "no", ", ".join(host.get("accounts", [])),
                      str(host.get("tracks_in_flight", 0)))
    console.print(hosts)
    accounts = Table(title="fleet: accounts")
    for column in ("account", "lease", "holder host", "lease age s"):
        accounts.add_column(column)
    for row in fleet["accounts"]:
        accounts.add_row(row["account"], row["state"], row["host"] or "-",
                         "-" if row["age_s"] is None else f"{row['age_s']:.0f}")
    console.print(accounts)
    if fleet["unheld"]:
        console.print("accounts without a holder: " + ", ".join(fleet["unheld"]), markup=False)
