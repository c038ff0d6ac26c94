"""The bound on requests waiting for their job (``Prefer: wait``), shared by the API processes in Redis."""

from __future__ import annotations

from app.settings import Settings
from core.runtime import Runtime
from processes import waits


def test_every_always_running_request_slot_but_one_may_wait() -> None:
    assert waits.bound(Settings.from_env({"HDXRQ_API_WORKERS": "4"})) == 3
    assert waits.bound(Settings.from_env({"HDXRQ_API_WORKERS": "2", "HDXRQ_API_THREADS": "4"})) == 7
    assert waits.bound(Settings.from_env({"HDXRQ_API_WORKERS": "1", "HDXRQ_API_MAX_WORKERS": "16"})) == 0


def test_places_are_counted_across_clients_and_given_back(runtime: Runtime) -> None:
    two = Settings.from_env({"HDXRQ_API_WORKERS": "3"})
    other = Runtime(runtime.settings)  # another client, as another API process has
    try:
        with waits.place(runtime.redis, two, 30) as first, waits.place(other.redis, two, 30) as second:
            with waits.place(runtime.redis, two, 30) as third:
                assert (first, second, third) == (True, True, False)
        assert runtime.redis.zcard(waits.KEY) == 0
        with waits.place(other.redis, two, 30) as again:
            assert again
    finally:
        other.close()


def test_a_place_held_by_a_process_that_died_frees_when_its_wait_is_over(runtime: Runtime) -> None:
    one = Settings.from_env({"HDXRQ_API_WORKERS": "2"})
    runtime.redis.zadd(waits.KEY, {"killed-mid-wait": 1000})  # its wait ended long ago (milliseconds)

    with waits.place(runtime.redis, one, 30) as granted:
        assert granted
        assert runtime.redis.zscore(waits.KEY, "killed-mid-wait") is None


def test_with_one_process_nobody_waits(runtime: Runtime) -> None:
    with waits.place(runtime.redis, Settings.from_env({"HDXRQ_API_WORKERS": "1"}), 30) as granted:
        assert not granted
    assert runtime.redis.zcard(waits.KEY) == 0
