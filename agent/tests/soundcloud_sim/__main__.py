"""Run the simulator standalone:

    PYTHONPATH=agent/tests python -m soundcloud_sim --host 127.0.0.1 --port 8766 --demo \\
        --client-id ID --client-secret SECRET

Prints "soundcloud-sim listening on <base_url>" to stderr once ready, then one line per request.
Stops cleanly on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .catalog import Catalog
from .demo import DEMO_SIGNED_IN, demo_catalog
from .listing import SHORT_PAGES
from .simulator import Simulator


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m soundcloud_sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    parser.add_argument("--port", type=int, default=8766,
                        help="0 picks a free port (8765 is the redirect port of authorize)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--demo", action="store_true", help="serve the demo catalog")
    source.add_argument("--catalog", type=Path, help='JSON file: {"users": [...]}')
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--token-ttl", type=int, default=3599, help="access token lifetime, s")
    parser.add_argument("--url-ttl", type=int, default=300, help="signed CDN URL lifetime, s")
    parser.add_argument("--no-range", action="store_true", help="CDN ignores Range headers")
    parser.add_argument("--rate-limit-shape", choices=["errors", "spam"], default="errors")
    parser.add_argument("--play-budget", type=int, default=15_000, help="plays per window")
    parser.add_argument("--hls-segment-urls", choices=["relative", "absolute"], default="relative")
    parser.add_argument("--stream-urls", choices=["redirect", "signed"], default="redirect",
                        help="/streams gives API URLs that redirect, or signed CDN URLs")
    parser.add_argument("--short-pages", choices=SHORT_PAGES, default="private",
                        help="what listing pages count before hiding what the caller may not see")
    parser.add_argument("--signed-in", default=None,
                        help="permalink or id of the user who approves /authorize (default: "
                             f"{DEMO_SIGNED_IN} with --demo, else the catalog's first user)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    catalog = demo_catalog() if args.demo else Catalog.from_dict(json.loads(args.catalog.read_text()))
    sim = Simulator(
        catalog,
        client_id=args.client_id,
        client_secret=args.client_secret,
        host=args.host,
        port=args.port,
        token_ttl_s=args.token_ttl,
        url_ttl_s=args.url_ttl,
        range_supported=not args.no_range,
        rate_limit_429_shape=args.rate_limit_shape,
        play_budget=args.play_budget,
        hls_segment_urls=args.hls_segment_urls,
        stream_urls=args.stream_urls,
        log_requests=not args.quiet,
        short_pages=args.short_pages,
        signed_in=args.signed_in or (DEMO_SIGNED_IN if args.demo else None),
    )
    if sim.signed_in is not None and sim.signed_in_user() is None:
        print(f"--signed-in {sim.signed_in!r}: no such user in the catalog", file=sys.stderr)
        return 2
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    sim.start()
    print(f"soundcloud-sim listening on {sim.base_url}", file=sys.stderr, flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        print("soundcloud-sim stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
