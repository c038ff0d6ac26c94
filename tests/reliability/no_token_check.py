"""A schemathesis check (loaded with ``SCHEMATHESIS_HOOKS``) for ``test_api_fuzz.py``: a client without
the admin token, from an address outside ``HDXRQ_ALLOWED_NETWORKS``, gets a 2xx answer only from the
operations anyone may call (docs/access.md)."""

from __future__ import annotations

import schemathesis

OPEN_TO_ANYONE = {
    ("GET", path)
    for path in (
        "/",
        "/about",
        "/conformance",
        "/healthz",
        "/readyz",
        "/version",
        "/metrics",
        "/api/run-checks",
        "/monitor/workers.json",
        "/openapi.json",
        "/processes",
        "/processes/{process_id}",
        "/jobs/{job_id}",
        "/gis/test",
        "/gis/layer-type/{layer_id}",
        "/gis/{layer_id}/{z}/{x}/{y}.pbf",
        "/preview/{layer_id}",
    )
}


@schemathesis.check
def no_success_without_the_token(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """Only an operation open to anyone may answer 2xx to this client (an ``OPTIONS`` probe is not a call)."""
    operation = (case.operation.method.upper(), case.operation.path)
    if case.method.upper() != operation[0]:
        return
    if operation not in OPEN_TO_ANYONE and 200 <= response.status_code < 300:
        raise AssertionError(f"{operation[0]} {operation[1]} answered {response.status_code} without a token")
