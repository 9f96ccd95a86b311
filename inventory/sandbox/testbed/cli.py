"""The commands of `sandbox.py` and their options; each cmd_* returns the exit code."""

from __future__ import annotations

import argparse
import os
import shutil
import time

from . import handoff, releases
from .hosts import hosts_down, hosts_up
from .image import ensure_images
from .loopback import check_loopback_only
from .paths import REPO, SANDBOX, SEAWEEDFS_DATA, VARS_PATH
from .podman import available as podman_available
from .processes import terminate, wait_gone
from .services import MARKERS, choose_ports, has_ports, start_services
from .shell import log
from .show import show
from .state import credentials, load_state, sandbox_lock, save_state
from .status import print_status

DESCRIPTION = "The local sandbox: podman test hosts, SeaweedFS, the SoundCloud simulator and moto."


def cmd_image(args: argparse.Namespace) -> int:
    for tag in ensure_images(args.debian).values():
        print(tag)
    return 0


def cmd_hosts_up(args: argparse.Namespace) -> int:
    hosts = hosts_up(releases.for_hosts(args.count, args.debian))
    state = load_state()
    state["hosts"] = hosts
    save_state(state)
    refresh_host_handoff(state)
    return 0


def cmd_hosts_down(_: argparse.Namespace) -> int:
    state = load_state()
    hosts_down([h["name"] for h in state.get("hosts", [])] or None)
    state["hosts"] = []
    save_state(state)
    refresh_host_handoff(state)
    return 0


def refresh_host_handoff(state: dict) -> None:
    """After hosts-up/hosts-down: the host_vars files, and the host releases in
    sandbox_vars.yml when the servers are up (without them there is no such file)."""
    handoff.write_host_vars(state["hosts"])
    if has_ports(state) and VARS_PATH.exists():
        handoff.write_sandbox_vars(state)


def cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    host_releases = releases.for_hosts(args.hosts, args.debian)
    state = load_state()
    credentials(state)
    choose_ports(state)
    SANDBOX.mkdir(exist_ok=True)
    ensure_images(host_releases)  # before the servers: a cold build takes a minute or two
    start_services(state)
    state["hosts"] = hosts_up(host_releases)
    check_loopback_only([*state["pids"].values()])
    save_state(state)
    handoff.write_sandbox_vars(state)
    handoff.write_host_vars(state["hosts"])
    log(f"up in {time.monotonic() - started:.0f} s; vars in {VARS_PATH.relative_to(REPO)}")
    print_status(state)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state = load_state()
    handoff.remove_handoff()  # the endpoints and hosts in them are about to go away
    # SeaweedFS takes ~15 s to stop: signal the servers first, remove the hosts meanwhile.
    signalled = terminate(state.get("pids", {}), MARKERS)
    hosts = [h["name"] for h in state.get("hosts", [])]
    if hosts and podman_available():
        hosts_down(hosts)
    wait_gone(signalled)
    if not args.keep_data:
        # The next `up` starts from an empty bucket, so a demo or test shows fresh uploads.
        shutil.rmtree(SEAWEEDFS_DATA, ignore_errors=True)
    state["pids"], state["hosts"] = {}, []
    if state:
        save_state(state)
    log("down")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = load_state()
    if not state:
        print("no sandbox state (run: sandbox.py up)")
        return 0
    print_status(state)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    state = load_state()
    if not has_ports(state):
        raise SystemExit("sandbox: not up (run: sandbox.py up)")
    return show(state, args.prefix, args.wait, args.timeout)


def cmd_authorize(args: argparse.Namespace) -> int:
    from .authorize import authorize

    state = load_state()
    if not has_ports(state):
        raise SystemExit("sandbox: not up (run: sandbox.py up)")
    return authorize(state, args.account, args.prefix)


def add_debian_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--debian",
        type=releases.parse_list,
        default=releases.DEFAULT,
        metavar="12,13",
        help=f"comma list of Debian releases {what} (default: 12)",
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sandbox.py", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="build the test-host image (cached)")
    add_debian_option(image, "to build an image for")
    image.set_defaults(func=cmd_image)
    hosts = commands.add_parser("hosts-up", help="start test hosts sc2s3-th1..N")
    hosts.add_argument("--count", type=int, default=3)
    add_debian_option(hosts, "given to the hosts in order, cycling")
    hosts.set_defaults(func=cmd_hosts_up)
    commands.add_parser("hosts-down", help="remove the test hosts").set_defaults(func=cmd_hosts_down)
    up = commands.add_parser("up", help="start the whole sandbox")
    up.add_argument("--hosts", type=int, default=3)
    add_debian_option(up, "given to the hosts in order, cycling")
    up.set_defaults(func=cmd_up)
    down = commands.add_parser("down", help="stop the whole sandbox (and drop its S3 data)")
    down.add_argument("--keep-data", action="store_true", help="keep .sandbox/seaweedfs")
    down.set_defaults(func=cmd_down)
    commands.add_parser("status", help="what runs").set_defaults(func=cmd_status)
    show_parser = commands.add_parser("show", help="table of the archived demo tracks")
    show_parser.add_argument("--wait", action="store_true", help="poll until every demo track is in")
    show_parser.add_argument("--timeout", type=float, default=900, help="seconds to wait at most")
    show_parser.add_argument("--prefix", default="", help="key prefix to list (default: whole bucket)")
    show_parser.set_defaults(func=cmd_show)
    owner = commands.add_parser(
        "authorize", help="a demo account's owner authorizes the app (private tracks, sets)")
    owner.add_argument("--account", default="band-one", help="the demo account (default band-one)")
    owner.add_argument("--prefix", default="soundcloud/", help="the agents' sc2s3_prefix")
    owner.set_defaults(func=cmd_authorize)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command in ("status", "show"):  # read-only: no root, no lock
        return args.func(args)
    if os.geteuid() != 0:
        raise SystemExit("sandbox: run as root (podman and apt need it)")
    with sandbox_lock():
        return args.func(args)
