"""Settings of the simulator (`livinglab simulate`)."""

from __future__ import annotations

from pydantic import Field

from livinglab.settings import CoreSettings


class SimulatorSettings(CoreSettings):
    """Simulator settings, from `LIVINGLAB_*` environment variables."""

    simulator_client_id: str = Field(default="livinglab-simulator", description="MQTT client id of the simulator.")
    seed: int = Field(default=1, description="Random seed: the same seed sends the same messages.")
