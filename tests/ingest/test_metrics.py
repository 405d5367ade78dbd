"""The ingester's CPU time per stage (`livinglab_ingest_thread_cpu_seconds_total`), against each thread's own clock."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import generate_latest

from ingest.metrics import IngestMetrics, StageCpu


def _collected(cpu: StageCpu) -> dict[str, float]:
    (family,) = cpu.collect()
    return {sample.labels["stage"]: sample.value for sample in family.samples}


def test_each_stage_counts_the_cpu_time_of_its_own_thread() -> None:
    cpu = StageCpu()
    burnt = threading.Event()
    release = threading.Event()
    own: dict[str, float] = {}

    def build() -> None:
        cpu.track("build")
        started = time.thread_time()
        while time.thread_time() - started < 0.3:
            pass
        own["build"] = time.thread_time()
        burnt.set()
        release.wait(10)

    builder = threading.Thread(target=build)
    idle = threading.Thread(target=release.wait, args=(10,))
    cpu.track("write", idle)
    cpu.track("network", lambda: None)  # not running yet: left out
    builder.start()
    idle.start()
    try:
        assert burnt.wait(10)
        seconds = _collected(cpu)
    finally:
        release.set()
        builder.join()
        idle.join()
    assert set(seconds) == {"build", "write"}
    # /proc counts whole clock ticks (10 ms on Linux): the thread's own clock, to within two of them.
    assert seconds["build"] == pytest.approx(own["build"], abs=0.02)
    assert seconds["write"] < 0.02
    assert _collected(cpu) == {}, "threads that ended drop out"


def test_the_family_is_served_with_the_ingester_metrics() -> None:
    metrics = IngestMetrics()
    metrics.stage_cpu.track("replay")
    text = generate_latest(metrics.registry).decode()
    assert "livinglab_ingest_thread_cpu_seconds_total counter" in text
    assert 'livinglab_ingest_thread_cpu_seconds_total{stage="replay"} ' in text


def test_an_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        StageCpu().track("decode")
