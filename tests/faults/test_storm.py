"""Hostile input at volume: a storm in which one message in ten is bad, spread over every rejection reason.

The bad messages come from the simulator's fault injection (one defect each, built so that the check naming it is
the first to fail); conflicting duplicates resend a stored key with another value. Accounting must be exact: every
good reading stored, every bad message rejected with its own reason, nothing else; the ingester neither crashes nor
stalls (it takes the whole storm within the timeout and stays healthy).
"""

from __future__ import annotations

import collections
import random

import numpy as np
import pytest

from livinglab.domain import MESSAGE_REASONS, Kind, RejectionReason
from livinglab.embedded import MosquittoBroker
from simulators.faults import BUILDERS, MalformedContext, unknown_sensor
from simulators.messages import senml_payload
from tests.support.faults import SENSORS, FaultTable, Outcome, base_ts
from tests.support.ingest import ingesting, publish_all
from tests.support.roles import rows, scalar, wait_until
from tests.support.sensors import register

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]

PER_REASON = 20
#: Every reason a payload or topic of CONTRACT.md section 1 can earn (a retained message is a way of delivery, tested
#: on its own; LoRaWAN uplinks have reasons of their own, tests/ingest/test_lorawan.py).
REASONS = [r for r in RejectionReason if r in MESSAGE_REASONS]
GOOD = 9 * PER_REASON * len(REASONS)  # bad messages are one in ten


def _storm(prefix: str, seed: int) -> tuple[list[tuple[str, bytes]], collections.Counter[str]]:
    rng = random.Random(seed)
    t0 = base_ts()
    good = []
    for i in range(GOOD):
        sensor = SENSORS[i % len(SENSORS)]
        record = ("pm25", t0 + i, float(i % 500), None)
        good.append((f"{prefix}/jakarta/air/{sensor}", senml_payload(sensor, [record]), record))
    bad: list[tuple[str, bytes]] = []
    conflicts: list[tuple[str, bytes]] = []
    expected: collections.Counter[str] = collections.Counter()
    generator = np.random.default_rng(seed)
    for reason in REASONS:
        for k in range(PER_REASON):
            expected[reason.value] += 1
            if reason is RejectionReason.CONFLICTING_DUPLICATE:
                # A key stored earlier in the storm, with another value.
                topic, _, (q, ts, v, u) = good[100 + k * 40]
                conflicts.append((topic, senml_payload(topic.rsplit("/", 1)[1], [(q, ts, v + 1.0, u)])))
                continue
            topic, _, record = good[rng.randrange(len(good))]
            ctx = MalformedContext(
                prefix, "jakarta", Kind.AIR, topic.rsplit("/", 1)[1], (record,), 7.0, 256 * 1024, 7 * 86400.0, generator
            )
            built = unknown_sensor(ctx) if reason is RejectionReason.UNKNOWN_SENSOR else BUILDERS[reason](ctx)
            bad.append((built.topic, built.payload))
    messages = [(t, p) for t, p, _ in good]
    for message in bad:
        messages.insert(rng.randrange(len(messages) + 1), message)
    for message in conflicts:  # in the last quarter, long after their originals
        messages.insert(rng.randrange(3 * len(messages) // 4, len(messages) + 1), message)
    return messages, expected


def test_storm_of_ten_percent_bad_messages_is_accounted_exactly(
    fresh_database_url: str, own_broker: MosquittoBroker, topic_prefix: str, fault_table: FaultTable
) -> None:
    url = fresh_database_url
    register(url, *SENSORS)
    seed = random.randrange(1 << 30)
    messages, expected = _storm(topic_prefix, seed)
    settings = {"database_url": url, "mqtt_url": own_broker.url, "topic_prefix": topic_prefix, "health_port": 0}
    with ingesting(**settings) as ingester:
        publish_all(own_broker.port, messages)
        total = len(messages)
        wait_until(lambda: ingester.metrics.messages._value.get() >= total, timeout_s=120)
        assert ingester.health()[0], ingester.health()
    rejected = dict(rows(url, "SELECT reason, count(*) FROM rejected GROUP BY 1"))
    stored = scalar(url, "SELECT count(*) FROM readings")
    doubled = scalar(url, "SELECT sum(accepted) FROM ingest_counters") - stored
    wrong = sum(abs(rejected.get(reason, 0) - n) for reason, n in expected.items()) + len(rejected.keys() - expected)
    fault_table.record(
        Outcome(
            "storm: 10 % bad across all 15 reasons",
            len(messages),
            len(messages),
            stored,
            GOOD - stored,
            doubled,
            f"good readings {GOOD}; rejections off by reason: {wrong}; seed {seed}",
        )
    )
    assert len(messages) == GOOD + sum(expected.values())
    assert sum(expected.values()) * 10 == len(messages)
    assert stored == GOOD, f"seed {seed}"
    assert doubled == 0
    assert rejected == dict(expected), f"seed {seed}"
