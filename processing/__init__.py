"""Processors: numba kernels over raw readings, and the workers that claim dirty windows and store results."""

from processing.settings import ProcessorSettings
from processing.worker import Processor, process_once

__all__ = ["Processor", "ProcessorSettings", "process_once"]
