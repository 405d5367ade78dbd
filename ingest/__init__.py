"""The ingester: MQTT subscription, payload decoding and validation, batching, writing readings and rejections."""

from ingest.service import Ingester
from ingest.settings import IngestSettings

__all__ = ["IngestSettings", "Ingester"]
