"""Settings of the processor (`livinglab process`)."""

from __future__ import annotations

from pydantic import Field

from livinglab.settings import CoreSettings


class ProcessorSettings(CoreSettings):
    """Processor settings, from `LIVINGLAB_*` environment variables."""

    worker_id: str = Field(default="livinglab-process-1", description="Names this processor in claimed work.")
    claim_batch: int = Field(default=5000, ge=1, description="Dirty 1-minute windows claimed per round.")
    rollup_batch: int = Field(default=2000, ge=1, description="Dirty hours and days claimed per round.")
    claim_lease_s: float = Field(
        default=15.0,
        gt=0,
        description="Lease of claimed windows, renewed every third of it while the processor computes them; the"
        " windows of a processor that died move on to the others when it runs out.",
    )
    poll_interval_s: float = Field(default=5.0, gt=0, description="Polling fallback when no NOTIFY arrives.")
    hour_rollup_delay_s: float = Field(
        default=10.0,
        ge=0,
        description="The current hour is recomputed from its raw readings (with its indices) this long after it "
        "changes, and not more often, so its readings are not re-read for every minute (past hours: at once).",
    )
    day_rollup_delay_s: float = Field(
        default=60.0, ge=0, description="The same for the current day (a day of 1 Hz readings is 86,400 rows)."
    )
    drain_timeout_s: float = Field(
        default=10.0, ge=0, description="On stop, time given to hours and days still waiting out their delay."
    )
    rollup_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="While minutes are queued, due hours and days are still computed at least this often.",
    )
    tally_interval_s: float = Field(
        default=30.0, gt=0, description="How often the service-level clock checks for newly completed hours."
    )
    alarms: bool = Field(
        default=True,
        description="Evaluate alarm rules beside the processing rounds (one evaluator per processor; they take"
        " turns on one cursor, see livinglab.alarms.evaluator).",
    )
    alarm_poll_s: float = Field(
        default=1.0, gt=0, description="Alarm evaluation runs on every change event, and at least this often."
    )
    alarm_min_interval_s: float = Field(
        default=0.5,
        ge=0,
        description="While change events keep coming, alarm evaluation runs at most this often (events gather).",
    )
    silence_check_s: float = Field(
        default=2.0, gt=0, description="How often the rules on `silence_s` are checked against the wall clock."
    )
