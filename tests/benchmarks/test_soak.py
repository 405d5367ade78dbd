"""The soak run's plumbing, on a few simulated minutes of the demo city at high fault rates: its own platform
processes come up, the run is watched and accounted, and afterwards its processes are gone and its database
dropped. The soak itself (`python -m benchmarks.soak`, an hour of the large city) is a benchmark, not a test."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from benchmarks.soak._report import summary
from benchmarks.soak._run import SoakOptions, run_soak
from tests.support.roles import scalar
from tests.support.simulation import FAULTS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The simulator tests' high rates, and more malformed messages so a few minutes surely hold rejections.
_RATES = ",".join(f"{name}={rate}" for name, rate in FAULTS.as_dict().items()) + ",malformed=0.3"


def test_a_short_soak_accounts_for_everything_and_leaves_nothing_behind(pg_server_url: str, tmp_path: Path) -> None:
    options = SoakOptions(
        scenario="demo",
        duration_s=360.0,
        speed=60.0,
        faults=_RATES,
        seed=7,
        sample_interval_s=2.0,
        database_server=pg_server_url,
        log_dir=tmp_path,
    )
    out = io.StringIO()
    result = run_soak(options, out)
    report = "\n".join(summary(result))

    assert result.error is None, report
    assert not result.interrupted
    assert result.ledger.messages > 30
    assert result.ledger.rejected > 0, "the fault rates should have produced rejections"
    assert result.matches, report
    assert result.stored_after_s is not None
    assert result.caught_up_after_s is not None
    # Rows were printed while publishing and while settling, one per probe of the sample interval.
    rows = [line for line in out.getvalue().splitlines() if line.startswith("| ")]
    assert any("settling" in row for row in rows)
    assert len(rows) >= 3
    for name in ("ingester", "processor", "broker"):
        memory = result.memory[name]
        assert set(memory.marks) == {"start", "half", "published", "settled"}
        assert memory.peak >= max(memory.marks.values()) > 0
    assert "the database holds exactly what the ledger expects" in report

    # Only the processes it started are gone (this test's own process is the simulator's and stays).
    for name, pid in result.pids.items():
        if name != "soak (simulator)":
            assert not Path(f"/proc/{pid}").exists(), f"{name} (pid {pid}) is still running"
    assert scalar(pg_server_url, "SELECT count(*) FROM pg_database WHERE datname = %s", (result.database,)) == 0
