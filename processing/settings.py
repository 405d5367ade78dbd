"""Settings of the processor (`livinglab process`)."""

from __future__ import annotations

from pydantic import Field

from livinglab.settings import CoreSettings


class ProcessorSettings(CoreSettings):
    """Processor settings, from `LIVINGLAB_*` environment variables."""

    worker_id: str = Field(default="livinglab-process-1", description="Names this processor in claimed work.")
    claim_batch: int = Field(default=2000, ge=1, description="Dirty windows claimed per round.")
    claim_lease_s: float = Field(default=120.0, gt=0, description="A claim not finished by then is taken over.")
    poll_interval_s: float = Field(default=5.0, gt=0, description="Polling fallback when no NOTIFY arrives.")
