"""Settings of the simulator (`livinglab simulate`)."""

from __future__ import annotations

from pydantic import Field

from livinglab.settings import CoreSettings, MaxLatenessS, MaxPayloadBytes


class SimulatorSettings(CoreSettings):
    """Simulator settings, from `LIVINGLAB_*` environment variables. Command-line options override them."""

    simulator_client_id: str = Field(default="livinglab-simulator", description="MQTT client id of the simulator.")
    seed: int = Field(default=1, description="Random seed: the same seed sends the same messages.")
    # The ingester's limits, read under the same names: malformed messages are built against them and a backfill
    # refuses a period older than the maximum lateness.
    max_payload_bytes: MaxPayloadBytes = 256 * 1024
    max_lateness_s: MaxLatenessS = 7 * 86400.0
