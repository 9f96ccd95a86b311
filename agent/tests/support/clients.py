"""A SoundCloud client for in-process tests, with a play budget that only counts."""

from __future__ import annotations

import time

from conftest import CLIENT_ID, CLIENT_SECRET
from soundcloud_sim import Simulator

from sc2s3.config import SoundCloudConfig
from sc2s3.soundcloud import SoundCloudClient


class CountingBudget:
    """Stands for the fleet's play budget: never blocks, counts the plays spent in ``spent``
    (tests of what must spend none check it stays 0)."""

    def __init__(self) -> None:
        self.spent = 0

    def spend(self) -> None:
        self.spent += 1

    def now(self) -> float:
        return time.time()

    def block_until(self, until: float) -> None:
        pass


def sim_config(sim: Simulator, account: str = "band-one") -> SoundCloudConfig:
    return SoundCloudConfig(api_url=sim.api_url, auth_url=sim.auth_url, client_id=CLIENT_ID,
                            client_secret=CLIENT_SECRET, accounts=[account])


def client_for(sim: Simulator, account: str = "band-one",
               budget: CountingBudget | None = None) -> SoundCloudClient:
    """A client of the simulator's app (``account`` configured), on ``budget`` (a new
    :class:`CountingBudget` by default: ``client.budget.spent``)."""
    return SoundCloudClient(sim_config(sim, account), budget=budget or CountingBudget())
