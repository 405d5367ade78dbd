"""The OGC SensorThings API 1.1 (read-only) under `/sta/v1.1` (CONTRACT.md section 7)."""

from api.sta.routes import CONFORMANCE, router

__all__ = ["CONFORMANCE", "router"]
