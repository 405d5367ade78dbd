"""The ingester: MQTT subscription, payload decoding and validation, batching, writing readings and rejections."""

from ingest.decode import decode_payload
from ingest.outcome import Rejection
from ingest.rows import Limits, Rows
from ingest.service import Ingester
from ingest.settings import IngestSettings

__all__ = ["IngestSettings", "Ingester", "Limits", "Rejection", "Rows", "decode_payload"]
