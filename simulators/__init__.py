"""Simulators: a realistic city for demos, tests and benchmarks, with faults and the ground truth of what it sent.

- `scenario`: city scenarios (YAML): districts with outlines, sensors with registry attributes and device parameters;
  shipped `demo` and `large`.
- `models`, `devices`: device parameters and models (air stations, traffic counters), deterministic for a seed;
  `roads` is the plain PKJI arithmetic they are calibrated with.
- `plan`, `faults`, `messages`: the messages of a period, in publishing order, with injected faults.
- `ledger`: what was sent and what the platform should store and reject; `truth`: what it should compute.
- `run` (real time, accelerated, backfill), `load` (maximum rate from several processes), `publisher` (MQTT with
  flow control), `progress`, `command` (what `livinglab simulate` does).

This package never imports `processing`: its ground truth is computed independently.
"""

from simulators.scenario import Scenario, load_scenario
from simulators.settings import SimulatorSettings

__all__ = ["Scenario", "SimulatorSettings", "load_scenario"]
