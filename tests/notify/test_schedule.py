"""The retry schedule of `NotifySettings`: the first retry within 10 s, delays doubling to at most 10 minutes, and
retries for at least 24 hours; settings outside those bounds are refused."""

from __future__ import annotations

import pydantic
import pytest

from notify import NotifySettings


def test_the_default_schedule_doubles_from_5_s_to_10_minutes_and_covers_a_day() -> None:
    settings = NotifySettings(database_url="postgresql://unused")
    delays = [settings.retry_delay_s(attempt) for attempt in range(1, 12)]
    assert delays == [5, 10, 20, 40, 80, 160, 320, 600, 600, 600, 600]
    assert settings.retry_for_s == 86_400
    # Attempts made within the first day at these delays: the receiver is asked ~150 times before `failed`.
    elapsed, attempts = 0.0, 1
    while elapsed < settings.retry_for_s:
        elapsed += settings.retry_delay_s(attempts)
        attempts += 1
    assert 140 <= attempts <= 160


@pytest.mark.parametrize(
    "override",
    [{"retry_first_s": 11}, {"retry_max_s": 601}, {"retry_for_s": 3600}, {"notify_allowed_networks": "127.0.0.0/33"}],
)
def test_settings_outside_the_contract_are_refused(override: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        NotifySettings(database_url="postgresql://unused", **override)  # type: ignore[arg-type]


def test_allowed_networks_take_addresses_and_networks() -> None:
    settings = NotifySettings(database_url="postgresql://unused", notify_allowed_networks="127.0.0.0/8, 127.0.0.1;::1")
    assert [str(n) for n in settings.allowed_networks()] == ["127.0.0.0/8", "127.0.0.1/32", "::1/128"]
