"""Fixtures of the fault scenarios: the table of outcomes, which `pytest -m faults` prints at the end of the run
(`tests/support/faults.py` holds the oracle)."""

from __future__ import annotations

import pytest

from tests.support.faults import FaultTable

_TABLE = FaultTable()


@pytest.fixture(scope="session")
def fault_table() -> FaultTable:
    return _TABLE


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TABLE.rows:
        terminalreporter.section("fault scenarios: what the publisher sent and what the database holds")
        for text in _TABLE.render():
            terminalreporter.write_line(text)
    if _TABLE.recoveries:
        terminalreporter.section("fault scenarios: processors and the live stream, detection and catch-up")
        for text in _TABLE.render_recoveries():
            terminalreporter.write_line(text)
