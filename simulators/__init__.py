"""Simulators: city scenarios, device models, fault injection, load generation and ground truth.

This package never imports `processing`: its ground truth is computed independently.
"""

from simulators.scenario import Scenario, load_scenario
from simulators.settings import SimulatorSettings

__all__ = ["Scenario", "SimulatorSettings", "load_scenario"]
