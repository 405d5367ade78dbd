"""Processors: numba kernels over raw readings, and the workers that claim dirty windows and store results.

Layout: `_kernels`/`_index_kernels` hold the numba kernels (pure array functions, flags in `_jit`);
`aggregates`, `ispu`, `aqi` and `traffic` are their validating public wrappers; `claims`, `windows`,
`hourly_air`, `hourly_traffic`, `service_levels` and `rounds` move data between PostgreSQL and the kernels;
`worker` runs the rounds.
"""

from processing.settings import ProcessorSettings
from processing.worker import Processor, process_once, process_until_idle, warm_up

__all__ = ["Processor", "ProcessorSettings", "process_once", "process_until_idle", "warm_up"]
