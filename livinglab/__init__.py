"""livinglab: an event-driven sensor platform for a city living lab.

This package is the shared core (settings, domain model, storage) plus, on top of the roles, the
``livinglab`` command line and the embedded runtime. The roles live in sibling packages: ``ingest``,
``processing``, ``api`` and ``simulators``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("livinglab")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["__version__"]
