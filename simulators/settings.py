"""Settings of the simulator (`livinglab simulate`)."""

from __future__ import annotations

from pydantic import Field

from livinglab.settings import CoreSettings


class SimulatorSettings(CoreSettings):
    """Simulator settings, from `LIVINGLAB_*` environment variables. Command-line options override them."""

    simulator_client_id: str = Field(default="livinglab-simulator", description="MQTT client id of the simulator.")
    seed: int = Field(default=1, description="Random seed: the same seed sends the same messages.")
    # The ingester's limits, read under the same names: malformed messages are built against them and a backfill
    # refuses a period older than the maximum lateness.
    max_payload_bytes: int = Field(default=256 * 1024, ge=1, description="Larger payloads are rejected.")
    max_lateness_s: float = Field(default=7 * 86400.0, ge=0, description="How old a reading may be.")
