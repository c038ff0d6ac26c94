"""Callers, kinds of access and the check every door makes (core.auth)."""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import Settings
from core.auth import OPERATOR, Access, Caller, access_of, allows, authorize, operation
from core.errors import Forbidden, Unauthorized
from core.runtime import Runtime
from core.settings import MASK, SettingsError

TOKEN = "admin-token-1f0c"


def settings(**environ: str) -> Settings:
    return Settings.from_env({"HDXRQ_ADMIN_TOKENS": TOKEN, **environ})


def caller(authorization: str | None = None, remote_addr: str = "203.0.113.9") -> Caller:
    environ = {"REMOTE_ADDR": remote_addr, **({"HTTP_AUTHORIZATION": authorization} if authorization else {})}
    return Caller.from_environ(settings(), environ)


@pytest.mark.parametrize(
    "header", [None, "Bearer", "Bearer ", "Bearer wrong-token", "Basic dGVzdDp0ZXN0", TOKEN, f"Token {TOKEN}"]
)
def test_only_a_bearer_admin_token_makes_an_admin_caller(header: str | None) -> None:
    assert caller(header).admin is False


def test_any_configured_admin_token_is_accepted() -> None:
    two = settings(HDXRQ_ADMIN_TOKENS="first-token,second-token")
    for token in ("first-token", "second-token"):
        assert Caller.from_environ(two, {"HTTP_AUTHORIZATION": f"bearer {token}"}).admin


def test_without_configured_tokens_nobody_is_an_admin() -> None:
    none = Settings.from_env({"HDXRQ_ADMIN_TOKENS": ""})
    assert not Caller.from_environ(none, {"HTTP_AUTHORIZATION": "Bearer "}).admin


def test_admin_operations_need_the_token_from_anywhere() -> None:
    open_networks = settings()
    with pytest.raises(Unauthorized):
        authorize(open_networks, Access.ADMIN, caller())
    authorize(open_networks, Access.ADMIN, caller(f"Bearer {TOKEN}"))
    authorize(open_networks, Access.ADMIN, OPERATOR)


def test_notifications_are_open_while_no_network_is_set() -> None:
    assert allows(settings(), Access.NOTIFIER, caller(remote_addr="198.51.100.1"))


def test_allowed_networks_limit_notifications_unless_the_admin_token_is_presented() -> None:
    limited = settings(HDXRQ_ALLOWED_NETWORKS="10.20.0.0/16,192.0.2.7")
    inside = Caller(remote_addr="10.20.3.4")
    single = Caller(remote_addr="192.0.2.7")
    outside = Caller(remote_addr="10.21.0.1")
    assert allows(limited, Access.NOTIFIER, inside) and allows(limited, Access.NOTIFIER, single)
    with pytest.raises(Forbidden):
        authorize(limited, Access.NOTIFIER, outside)
    assert allows(limited, Access.NOTIFIER, Caller(remote_addr="10.21.0.1", admin=True))
    assert not allows(limited, Access.NOTIFIER, Caller(remote_addr="not an address"))
    assert allows(limited, Access.NOTIFIER, OPERATOR)
    assert allows(limited, Access.ANYONE, outside)


@pytest.mark.parametrize("value", ["ckan.example.org", "10.0.0.0/8,localhost", "10.0.0.0/33"])
def test_a_host_name_in_allowed_networks_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="HDXRQ_ALLOWED_NETWORKS"):
        Settings.from_env({"HDXRQ_ALLOWED_NETWORKS": value})


def test_an_operation_checks_its_caller_before_it_runs() -> None:
    ran: list[Any] = []

    @operation(Access.ADMIN)
    def schedule_something(rt: Runtime, caller: Caller, value: int) -> int:
        ran.append(value)
        return value

    rt = Runtime(settings())
    with pytest.raises(Unauthorized):
        schedule_something(rt, caller(), 1)
    assert ran == []
    assert schedule_something(rt, caller(f"Bearer {TOKEN}"), 2) == 2
    assert schedule_something(rt, OPERATOR, 3) == 3
    assert ran == [2, 3] and access_of(schedule_something) is Access.ADMIN
    with pytest.raises(TypeError):
        access_of(authorize)


def test_a_notifier_token_admits_notifications_from_anywhere_and_nothing_else() -> None:
    limited = settings(HDXRQ_ALLOWED_NETWORKS="10.20.0.0/16", HDXRQ_NOTIFIER_TOKENS="ckan-one,ckan-two")
    ckan = Caller.from_environ(limited, {"HTTP_AUTHORIZATION": "Bearer ckan-two", "REMOTE_ADDR": "203.0.113.9"})
    assert ckan.notifier and not ckan.admin
    authorize(limited, Access.NOTIFIER, ckan)
    with pytest.raises(Unauthorized):
        authorize(limited, Access.ADMIN, ckan)
    stranger = Caller.from_environ(limited, {"HTTP_AUTHORIZATION": "Bearer ckan-three", "REMOTE_ADDR": "203.0.113.9"})
    assert not stranger.notifier
    with pytest.raises(Forbidden):
        authorize(limited, Access.NOTIFIER, stranger)
    admin = Caller.from_environ(limited, {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "REMOTE_ADDR": "203.0.113.9"})
    assert admin.admin and allows(limited, Access.NOTIFIER, admin)


def test_notifier_tokens_are_masked_in_the_shown_settings() -> None:
    shown = settings(HDXRQ_NOTIFIER_TOKENS="ckan-secret-token").masked()
    assert shown["access"]["HDXRQ_NOTIFIER_TOKENS"] == [MASK]
    assert "ckan-secret-token" not in repr(shown)
