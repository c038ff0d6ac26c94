"""Pure rules of schedules: validation and when the next call is due (no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.settings import Settings
from core.finite import NonFiniteNumber
from scheduler.errors import InvalidSchedule
from scheduler.schedules import Kind, ScheduleSpec, parse_add_job

NOW = datetime(2026, 11, 23, 10, 2, 30, 500000, tzinfo=UTC)
T = int(NOW.timestamp())


def parse(**body: object) -> ScheduleSpec:
    return parse_add_job(body, Settings.from_env({"HDX_GIS_API_KEY": "k-123456"}), NOW)


def test_a_one_shot_runs_after_the_sum_of_the_delays_rounded_up_to_the_second() -> None:
    spec = parse(action="package_patch", sch_days="1", sch_hours=2.5, sch_minutes=1)

    assert spec.kind is Kind.ONCE and spec.method == "POST"
    assert spec.first_tick == T + 1 + 86400 + 9000 + 60
    assert spec.tick_after(spec.first_tick, spec.first_tick) is None


def test_an_interval_starts_one_interval_from_now_unless_a_delay_is_given() -> None:
    assert parse(action="a", interval_minutes=10).first_tick == T + 1 + 600
    assert parse(action="a", interval_minutes="10", sch_minutes=1).first_tick == T + 1 + 60


def test_an_interval_skips_missed_ticks_but_keeps_its_phase() -> None:
    spec = parse(action="a", interval_minutes=10)
    first = spec.first_tick

    assert spec.tick_after(first, first) == first + 600
    assert spec.tick_after(first, first + 3599) == first + 3600
    assert spec.tick_after(first, first + 3600) == first + 4200


def test_cron_is_evaluated_in_utc_and_after_the_delay() -> None:
    spec = parse(action="a", cron="0  3 * * *")
    assert spec.cron == "0 3 * * *"
    assert spec.first_tick == int(datetime(2026, 11, 24, 3, 0, tzinfo=UTC).timestamp())
    assert spec.tick_after(spec.first_tick, spec.first_tick) == spec.first_tick + 86400
    delayed = parse(action="a", cron="0 3 * * *", sch_days=2)
    assert delayed.first_tick == int(datetime(2026, 11, 26, 3, 0, tzinfo=UTC).timestamp())


def test_descriptions_name_method_action_and_timing_only() -> None:
    assert parse(action="a", interval_minutes=5, api_params={"x": "secret-ish"}).description == (
        "POST a every 5 minute(s)"
    )
    assert parse(action="a", method="GET", cron="*/5 * * * *").description == "GET a on cron '*/5 * * * *' (UTC)"


@pytest.mark.parametrize("value", [True, float("nan"), float("inf"), 1e300, "1e300"])
def test_absurd_delays_are_refused(value: object) -> None:
    with pytest.raises((InvalidSchedule, NonFiniteNumber)):  # NaN and Infinity: core.finite, a 400 on the API
        parse(action="a", sch_days=value)


def test_the_configured_token_cannot_be_smuggled_into_api_params() -> None:
    with pytest.raises(InvalidSchedule, match="credentials"):
        parse(action="a", api_params={"nested": ["Bearer k-123456"]})
