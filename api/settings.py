"""Settings of the API service (`livinglab api`)."""

from __future__ import annotations

from pydantic import Field

from livinglab.settings import CoreSettings


class ApiSettings(CoreSettings):
    """API settings, from `LIVINGLAB_*` environment variables."""

    api_host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(default=8000, ge=0, le=65535, description="Port the API listens on.")
    public_read: bool = Field(default=False, description="Serve read endpoints without an API key.")
    statement_timeout_ms: int = Field(default=5000, ge=1, description="Statement timeout of every API query.")
    pool_min_size: int = Field(default=1, ge=1, description="Database connections the API keeps open.")
    pool_max_size: int = Field(default=8, ge=1, description="Most database connections the API opens.")
    max_body_bytes: int = Field(default=1_048_576, ge=1, description="Larger request bodies get 413.")
    max_page_size: int = Field(default=1000, ge=1, description="Largest `limit` a list accepts.")
