"""sc2s3.metrics
~~~~~~~~~~~~~~~~

Prometheus metrics of the agent, served as text on ``/metrics`` (see :mod:`sc2s3.health`).
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

BYTES_UPLOADED = Counter("sc2s3_uploaded_bytes", "Audio bytes uploaded to S3.", registry=REGISTRY)
TRACKS_MIRRORED = Counter("sc2s3_tracks_mirrored", "Tracks archived, by source.", ["source"],
                          registry=REGISTRY)
TRACKS_FAILED = Counter("sc2s3_tracks_failed", "Track mirror attempts that failed.",
                        registry=REGISTRY)
TRACKS_IN_FLIGHT = Gauge("sc2s3_tracks_in_flight", "Tracks being transferred now.",
                         registry=REGISTRY)
CYCLE_SECONDS = Histogram("sc2s3_cycle_duration_seconds", "Duration of a mirror cycle (seconds).",
                          buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
                          registry=REGISTRY)
LAST_CYCLE_SUCCESS = Gauge("sc2s3_last_cycle_success_timestamp_seconds",
                           "Unix time of the last successful cycle: it mirrored at least one "
                           "account, and no account failed (failing tracks have their own "
                           "gauge).", registry=REGISTRY)
TRACKS_FAILING = Gauge("sc2s3_tracks_failing",
                       "Tracks whose last cycle failed; retried with a growing delay.",
                       registry=REGISTRY)
PLAYS_REMAINING = Gauge("sc2s3_fleet_play_budget_remaining",
                        "Plays (/download, /streams) the fleet has left in the app's 24 h budget.",
                        registry=REGISTRY)
ACCOUNTS_HELD = Gauge("sc2s3_accounts_held", "Accounts this host holds the lease of.",
                      registry=REGISTRY)
LIVE_HOSTS = Gauge("sc2s3_fleet_live_hosts", "Hosts of the fleet with a live heartbeat.",
                   registry=REGISTRY)
PLAYS_BLOCKED = Gauge("sc2s3_fleet_play_budget_blocked",
                      "1 while the fleet may spend no play (budget spent, or a 429's reset).",
                      registry=REGISTRY)
ACCOUNTS_WITHOUT_HOLDER = Gauge("sc2s3_fleet_accounts_without_holder",
                                "Configured accounts no live process holds, as this host sees "
                                "the fleet.", registry=REGISTRY)
OLDEST_UNARCHIVED_AGE = Gauge("sc2s3_oldest_unarchived_track_age_seconds",
                              "Seconds since the oldest track listed but not archived in the "
                              "last cycle was created upstream (0: none).", registry=REGISTRY)
DRILL_REVISIONS = Counter("sc2s3_drill_revisions", "Archived revisions the restore drill read "
                          "back.", registry=REGISTRY)
DRILL_FAILURES = Counter("sc2s3_drill_failures", "Revisions the restore drill found damaged or "
                         "missing.", registry=REGISTRY)
DRILL_LAST_RUN = Gauge("sc2s3_drill_last_run_timestamp_seconds",
                       "Unix time of the restore drill's last round.", registry=REGISTRY)
