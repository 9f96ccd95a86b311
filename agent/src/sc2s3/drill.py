"""sc2s3.drill
~~~~~~~~~~~~~

The daily restore drill of ``sc2s3 run``: ``[agent] drill_sample_per_day`` archived revisions a day,
picked at random across the archive, are read back and checked as ``sc2s3 verify --sample`` checks
them (size, S3 checksum and SHA-256 against the catalog: :func:`sc2s3.verify.verify_archive`).

The sample is spread over the day and over the fleet: after each cycle a host owes the share of the
day's sample that the time since its last round is worth, divided by the live hosts, and drills
what it owes in whole revisions, at most one round per :data:`ROUND_INTERVAL_S` (each round reads
the catalogs through). The first round comes after the first cycle that finds a revision in the
archive, so a new release proves a restore at once. The rounds of the last 24 h are kept in
``state_dir/drill.json``, for ``status`` and ``/healthz``; ``/metrics`` and CloudWatch count them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .archive import parse_utc, utc_stamp
from .config import Config
from .logs import log
from .metrics import DRILL_FAILURES, DRILL_LAST_RUN, DRILL_REVISIONS
from .state import write_atomic
from .verify import verify_archive

DRILL_FILE = "drill.json"
DAY_S = 24 * 3600
ROUND_INTERVAL_S = 3600
# Problem lines kept per round (a round over a damaged archive may find many).
PROBLEMS_KEPT = 20


@dataclass
class DrillRound:
    """One round: when (UTC, ``YYYY-MM-DDThh:mm:ssZ``), revisions ``checked``, how many of them
    were ``damaged`` (missing, or not as the catalog records them), and the first
    :data:`PROBLEMS_KEPT` lines of their problems."""

    at: str
    checked: int
    damaged: int
    lines: list[str] = field(default_factory=list)


class Drill:
    """The drill of one daemon (see the module doc).

    :param clock: Unix seconds.
    """

    def __init__(self, config: Config, s3, state_dir: Path, clock=time.time):
        self.config, self.s3, self.clock = config, s3, clock
        self.path = Path(state_dir) / DRILL_FILE
        self.per_day = config.agent.drill_sample_per_day
        self._owed = 1.0 if self.per_day else 0.0
        self._since = self._last_round = None

    def run_due(self, live_hosts: int) -> DrillRound | None:
        """Drill what this host owes now (``live_hosts``: the fleet's, this one included), or
        nothing. An object S3 cannot find counts as damaged, as verify reports it.

        :raises TemporaryError: S3 unreachable (nothing owed is forgiven).
        """
        now = self.clock()
        if self._since is not None:
            # At most a day's sample owed: no burst after a long S3 outage.
            self._owed = min(max(self.per_day, 1), self._owed + self.per_day * (
                now - self._since) / DAY_S / max(live_hosts, 1))
        self._since = now
        if self._owed < 1 or (self._last_round is not None
                              and now - self._last_round < ROUND_INTERVAL_S):
            return None
        wanted = int(self._owed)
        lines: list[str] = []
        result = verify_archive(self.config, self.s3, sample=wanted, on_problem=lines.append)
        if not result.checked:
            return None  # nothing archived yet: still owed
        self._owed -= wanted
        self._last_round = now
        round_ = DrillRound(utc_stamp(now), result.checked, result.damaged, lines[:PROBLEMS_KEPT])
        DRILL_REVISIONS.inc(result.checked)
        DRILL_FAILURES.inc(result.damaged)
        DRILL_LAST_RUN.set(now)
        (log.error if result.damaged else log.info)(
            "restore drill", checked=result.checked, damaged=result.damaged)
        self._keep(round_, now)
        return round_

    def _keep(self, round_: DrillRound, now: float) -> None:
        rounds = [r for r in read_drill(self.path.parent)["rounds"]
                  if parse_utc(r["at"]) > now - DAY_S] + [round_.__dict__]
        try:
            write_atomic(self.path, json.dumps({"rounds": rounds}, indent=1).encode())
        except OSError as exc:
            log.warning("cannot keep the drill's result", path=str(self.path), error=str(exc))


def read_drill(state_dir: Path) -> dict:
    """``{"rounds": [...]}``: the drill rounds of the last 24 h kept in ``state_dir`` (as
    :class:`DrillRound` dicts, oldest first), none when there is no or no readable file."""
    try:
        data = json.loads((Path(state_dir) / DRILL_FILE).read_text())
        rounds = [r for r in data["rounds"] if isinstance(r, dict) and isinstance(r.get("at"), str)]
    except (OSError, ValueError, KeyError, TypeError):
        rounds = []
    return {"rounds": rounds}


def drill_summary(state_dir: Path, now: float | None = None) -> dict:
    """The last 24 h of the drill: ``{"rounds", "checked", "damaged", "last_at", "lines"}``
    (``lines``: the problems found, newest round first)."""
    now = time.time() if now is None else now
    rounds = [r for r in read_drill(state_dir)["rounds"] if parse_utc(r["at"]) > now - DAY_S]
    return {"rounds": len(rounds),
            "checked": sum(int(r.get("checked", 0)) for r in rounds),
            "damaged": sum(int(r.get("damaged", 0)) for r in rounds),
            "last_at": rounds[-1]["at"] if rounds else None,
            "lines": [line for r in reversed(rounds) for line in r.get("lines", [])]}


