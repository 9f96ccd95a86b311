"""The Debian releases a test host can run, and which host runs which (`--debian 12,13`)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Release:
    number: int  # 12, 13: what `--debian`, state.json and the inventory var say
    suite: str  # debootstrap's and apt's name for it
    python: str  # the `python3` it ships (major.minor)


RELEASES = {
    12: Release(12, "bookworm", "3.11"),
    13: Release(13, "trixie", "3.13"),
}
DEFAULT = [12]  # what `make test` needs: production hosts run Debian 12


def parse_list(text: str) -> list[int]:
    """argparse type for `--debian`: "12,13" -> [12, 13]; each entry a known release."""
    numbers = []
    for item in text.split(","):
        try:
            number = int(item.strip())
        except ValueError:
            number = None
        if number not in RELEASES:
            known = ", ".join(str(n) for n in RELEASES)
            raise argparse.ArgumentTypeError(f"unknown Debian release {item.strip()!r} (known: {known})")
        numbers.append(number)
    return numbers


def for_hosts(count: int, numbers: list[int]) -> list[int]:
    """The release of hosts 1..count: the list assigned in order, cycling (12,13 -> 12,13,12)."""
    return [numbers[i % len(numbers)] for i in range(count)]


def describe(number: int) -> str:
    """The release as status lines show it, e.g. "13 (trixie)"."""
    release = RELEASES.get(number)
    return f"{number} ({release.suite})" if release else str(number)
