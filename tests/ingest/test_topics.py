"""The topic grammar, tested on the parser directly: brokers refuse to route some of these topics at all."""

from __future__ import annotations

import pytest

from ingest.outcome import Rejection
from ingest.topics import DeviceTopic, TopicCache, parse_topic, subscription
from livinglab.domain import Kind, RejectionReason

PREFIX = "livinglab/v1"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("livinglab/v1/jakarta/air/aq-07", DeviceTopic("jakarta", Kind.AIR, "aq-07")),
        ("livinglab/v1/bandung/traffic/tc_1", DeviceTopic("bandung", Kind.TRAFFIC, "tc_1")),
        ("livinglab/v1/0/air/" + "a" * 64, DeviceTopic("0", Kind.AIR, "a" * 64)),
    ],
)
def test_device_topics_parse(topic: str, expected: DeviceTopic) -> None:
    assert parse_topic(topic, PREFIX) == expected


@pytest.mark.parametrize(
    "topic",
    [
        pytest.param("livinglab/v1/jakarta/air/aq-07/extra", id="too-many-levels"),
        pytest.param("livinglab/v1/jakarta/air/aq-07/errors", id="errors-topic"),
        pytest.param("livinglab/v1/jakarta/air", id="too-few-levels"),
        pytest.param("livinglab/v1/jakarta/air/", id="empty-sensor-id"),
        pytest.param("livinglab/v1//air/aq-07", id="empty-city"),
        pytest.param("livinglab/v1/jakarta/water/aq-07", id="unknown-kind"),
        pytest.param("livinglab/v1/jakarta/AIR/aq-07", id="upper-case-kind"),
        pytest.param("livinglab/v1/Jakarta/air/aq-07", id="upper-case-city"),
        pytest.param("livinglab/v1/jakartä/air/aq-07", id="non-ascii-city"),
        pytest.param("livinglab/v1/jakarta/air/aq-０７", id="full-width-digits"),
        pytest.param("livinglab/v1/jakarta/air/+", id="single-level-wildcard"),
        pytest.param("livinglab/v1/jakarta/air/#", id="multi-level-wildcard"),
        pytest.param("livinglab/v1/+/air/aq-07", id="wildcard-city"),
        pytest.param("livinglab/v1/jakarta/air/aq 07", id="space"),
        pytest.param("livinglab/v1/jakarta/air/-aq", id="leading-dash"),
        pytest.param("livinglab/v1/jakarta/air/" + "a" * 65, id="id-too-long"),
        pytest.param("livinglab/v1/jakarta/air/aq\x0007", id="nul"),
        pytest.param("livinglab/v1/jakarta/air/aq\ud80007", id="lone-surrogate"),
        pytest.param("livinglab/v2/jakarta/air/aq-07", id="other-prefix"),
        pytest.param("$SYS/broker/uptime", id="system-topic"),
        pytest.param("", id="empty"),
    ],
)
def test_other_topics_are_topic_invalid(topic: str) -> None:
    outcome = parse_topic(topic, PREFIX)
    assert isinstance(outcome, Rejection)
    assert outcome.reason is RejectionReason.TOPIC_INVALID
    assert "\x00" not in outcome.detail
    outcome.detail.encode("utf-8")  # safe for a text column


def test_errors_topic_and_subscription() -> None:
    topic = DeviceTopic("jakarta", Kind.AIR, "aq-07")
    assert topic.errors_topic(PREFIX) == "livinglab/v1/jakarta/air/aq-07/errors"
    assert subscription(PREFIX) == "livinglab/v1/+/+/+"
    assert subscription(PREFIX, "ingest") == "$share/ingest/livinglab/v1/+/+/+"


def test_topic_cache_is_bounded() -> None:
    cache = TopicCache(PREFIX, max_entries=10)
    for i in range(25):
        assert isinstance(cache.parse(f"{PREFIX}/c/air/s{i}"), DeviceTopic)
    assert len(cache._parsed) <= 10
