"""Readable logs: one line per event, with time, level, role and logger."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "INFO", role: str = "livinglab") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)-7s [{role}] %(name)s: %(message)s", datefmt="%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("numba", "pgserver", "uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
