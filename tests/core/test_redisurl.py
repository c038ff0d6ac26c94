"""``redis+sentinel://`` URLs: parsing, settings validation, and the clients built from them (real sentinels)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from redis.sentinel import SentinelConnectionPool

from app.cli import rq_defaults
from app.settings import Settings
from core import runtime as runtime_module
from core.connections import PrimaryConnection, rq_redis, stream_redis
from core.redisurl import SentinelAddress, parse_sentinel_url, url_password
from core.runtime import HdxRedis, Runtime
from core.settings import SettingsError
from tests.sentinel import SERVICE, SentinelCluster


def test_a_sentinel_url_names_sentinels_service_db_and_the_data_nodes_password() -> None:
    url = "redis+sentinel://:p%40ss%2Fw@10.0.0.1:26379,sentinel-b:26380,[::1]:26381/hdx-queues/3"
    assert parse_sentinel_url(url) == SentinelAddress(
        sentinels=(("10.0.0.1", 26379), ("sentinel-b", 26380), ("::1", 26381)),
        service="hdx-queues",
        db=3,
        password="p@ss/w",
    )
    assert parse_sentinel_url("redis+sentinel://s1/mymaster") == SentinelAddress((("s1", 26379),), "mymaster")
    assert url_password(url) == "p@ss/w"
    assert url_password("redis://:plain%21@host:6379/1") == "plain!"
    assert url_password("redis://host:6379/1") is None


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:secret-9@s1:26379",  # no service name
        "redis+sentinel://:secret-9@s1:26379/svc/one",  # db not a number
        "redis+sentinel://:secret-9@s1:notaport/svc",
        "redis+sentinel://:secret-9@s1:26379,/svc",  # empty host
        "http://:secret-9@s1:26379/1",  # not a Redis scheme
    ],
)
def test_a_bad_url_is_refused_naming_the_variable_never_the_password(url: str) -> None:
    for variable in ("HDXRQ_REDIS_URL", "HDXRQ_STREAM_REDIS_URL"):
        with pytest.raises(SettingsError, match=variable) as error:
            Settings.from_env({variable: url})
        assert "secret-9" not in str(error.value)


def test_passwords_in_redis_urls_are_secrets() -> None:
    settings = Settings.from_env(
        {"HDXRQ_REDIS_URL": "redis+sentinel://:q-pass@s1:1/svc/1", "HDXRQ_STREAM_REDIS_URL": "redis://:s-pass@h/7"}
    )
    assert {"q-pass", "s-pass"} <= set(settings.secret_values())
    assert "q-pass" not in repr(settings) and "q-pass" not in str(settings.masked())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    cluster = SentinelCluster(tmp_path_factory.mktemp("sentinel"), password="data-node-pass")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def test_clients_reach_the_primary_through_the_sentinels(cluster: SentinelCluster) -> None:
    settings = Settings.from_env({"HDXRQ_REDIS_URL": cluster.url(3), "HDXRQ_STREAM_REDIS_URL": cluster.url(4)})
    with rq_redis(settings) as queues, stream_redis(settings) as stream:
        queues.set("where", "queues")
        stream.set("where", "stream")
        assert isinstance(queues.connection_pool, SentinelConnectionPool)
        assert queues.connection_pool.service_name == SERVICE
    with cluster.client(3) as first, cluster.client(4) as second:
        assert first.get("where") == b"queues" and second.get("where") == b"stream"


def test_rq_commands_get_a_sentinel_connection(cluster: SentinelCluster) -> None:
    settings = Settings.from_env({"HDXRQ_REDIS_URL": cluster.url(5), "HDXRQ_REDIS_FAILOVER_SEC": "7"})
    defaults = rq_defaults(settings)
    assert defaults["worker"]["connection_class"] == "core.runtime.HdxRedis"
    runtime_module.install(Runtime(settings))
    try:
        client = HdxRedis.from_url(defaults["worker"]["url"])
    finally:
        runtime_module._current = None
    with client, cluster.client(5) as primary:
        client.set("rq", "here")
        assert primary.get("rq") == b"here"
        connection = client.connection_pool.get_connection()
        assert isinstance(connection, PrimaryConnection) and connection.failover_sec == 7
        client.connection_pool.release(connection)
