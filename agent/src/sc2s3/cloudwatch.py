"""sc2s3.cloudwatch
~~~~~~~~~~~~~~~~~~~

Each cycle's figures in CloudWatch, where AWS admins look, and where the alarms of
``roles/sc2s3_aws`` watch them (docs/alerts.md): namespace :data:`NAMESPACE`, each figure once with
the dimension ``Fleet`` (what the alarms read: the fleet's hosts add up) and once with ``Fleet`` and
``Host``. Turned on by ``[cloudwatch] fleet`` (docs/config.md).

One PutMetricData call per cycle (CloudWatch API Reference, PutMetricData: at most 1,000 values and
1 MB per request), made by a thread of its own with short timeouts: CloudWatch slow or unreachable
is logged and never delays or stops the mirror. A publication still in flight when the next cycle
ends makes that cycle's figures wait for the one after (they are gauges and counts of one cycle:
none is owed to CloudWatch).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, fields

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from .config import Config
from .logs import log

NAMESPACE = "sc2s3"


@dataclass(frozen=True)
class CycleFigures:
    """What one cycle of one host tells CloudWatch; each field is a metric (its name in
    CamelCase, :data:`UNITS` its unit)."""

    cycles_succeeded: int         # 1: the cycle ended without a failed track or account
    tracks_archived: int          # revisions archived in the cycle
    bytes_archived: int           # their audio bytes
    tracks_failing: int           # tracks whose last attempt failed (retried with back-off)
    play_budget_remaining: int    # plays the fleet has left in the app's 24 h budget
    play_budget_blocked: int      # 1: the fleet may not spend plays now (budget spent, 429)
    accounts_without_holder: int  # configured accounts no live process holds
    oldest_unarchived_age_s: float  # seconds since the oldest listed, unarchived track was made
    drill_revisions: int          # revisions the restore drill read back in the cycle
    drill_failures: int           # those it found damaged or missing

    def metrics(self) -> list[tuple[str, float, str]]:
        """``(metric name, value, unit)`` for each field."""
        return [(_camel(f.name), float(getattr(self, f.name)), UNITS.get(f.name, "Count"))
                for f in fields(self)]


UNITS = {"bytes_archived": "Bytes", "oldest_unarchived_age_s": "Seconds"}


def _camel(name: str) -> str:
    words = name.removesuffix("_s").split("_")
    return "".join(word.capitalize() for word in words) + ("Seconds" if name.endswith("_s") else "")


class CloudWatchPublisher:
    """Puts :class:`CycleFigures` into CloudWatch from a thread of its own (see the module doc).

    :param client: a boto3 CloudWatch client.
    :param fleet: the ``Fleet`` dimension; ``host``: the ``Host`` dimension.
    """

    def __init__(self, client, fleet: str, host: str):
        self.client, self.fleet, self.host = client, fleet, host
        self._busy = threading.Lock()
        self.published = 0  # publications CloudWatch accepted (for status and logs)

    @classmethod
    def from_config(cls, config: Config, host: str) -> CloudWatchPublisher | None:
        """A publisher for ``[cloudwatch]``, or None when ``fleet`` is empty (turned off)."""
        if not config.cloudwatch.fleet:
            return None
        client = boto3.Session().client(
            "cloudwatch", region_name=config.s3.region,
            endpoint_url=config.cloudwatch.endpoint_url or None,
            config=BotoConfig(connect_timeout=5, read_timeout=10,
                              retries={"mode": "standard", "total_max_attempts": 3}))
        return cls(client, config.cloudwatch.fleet, host)

    def publish(self, figures: CycleFigures) -> threading.Thread | None:
        """Start publishing ``figures``; the thread doing it, or None when the previous
        publication is still in flight (these figures are dropped)."""
        if not self._busy.acquire(blocking=False):
            log.warning("CloudWatch publication still in flight; this cycle's figures dropped")
            return None
        thread = threading.Thread(target=self._put, args=(figures,), name="cloudwatch",
                                  daemon=True)
        thread.start()
        return thread

    def _put(self, figures: CycleFigures) -> None:
        try:
            fleet = {"Name": "Fleet", "Value": self.fleet}
            host = {"Name": "Host", "Value": self.host}
            data = [{"MetricName": name, "Value": value, "Unit": unit, "Dimensions": dimensions}
                    for name, value, unit in figures.metrics()
                    for dimensions in ([fleet], [fleet, host])]
            self.client.put_metric_data(Namespace=NAMESPACE, MetricData=data)
            self.published += 1
        except (BotoCoreError, ClientError) as exc:
            log.warning("cannot publish metrics to CloudWatch; mirroring goes on", error=str(exc))
        finally:
            self._busy.release()
