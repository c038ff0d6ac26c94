from __future__ import annotations

import json
import logging

import pytest

from app.settings import Settings
from core.logging import JsonFormatter, configure_logging, mask_secrets, parse_levels


def test_long_secrets_are_masked_anywhere() -> None:
    assert mask_secrets("url=https://x/?key=abcdef123456&z", ["abcdef123456"]) == "url=https://x/?key=********&z"


def test_short_secrets_are_masked_as_words_only() -> None:
    masked = mask_secrets("cleaning registries; password gis for postgresql://gis:gis@db", ["gis"])
    assert masked == "cleaning registries; password ******** for postgresql://********:********@db"


def test_levels_from_the_environment() -> None:
    assert parse_levels("importapi=debug, rq.worker=WARNING,") == {"importapi": "DEBUG", "rq.worker": "WARNING"}


def test_configured_secrets_never_reach_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env({"HDX_GIS_API_KEY": "ckan-key-0f1e2d3c", "HDXRQ_LOG_FORMAT": "json"})
    configure_logging(settings)
    try:
        logging.getLogger("importapi.test").warning("calling CKAN with %s", "ckan-key-0f1e2d3c")
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(line)
    assert entry["message"] == "calling CKAN with ********"
    assert entry["logger"] == "importapi.test" and entry["job_id"] == "-"
    assert isinstance(JsonFormatter(), logging.Formatter)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tracebacks_are_masked_like_messages(capsys: pytest.CaptureFixture[str], log_format: str) -> None:
    secret = "gisdb-password-7a6b5c"
    configure_logging(Settings.from_env({"HDX_GISDB_PASS": secret, "HDXRQ_LOG_FORMAT": log_format}))
    try:
        try:
            raise ConnectionError(f"could not connect with password={secret}")
        except ConnectionError:
            logging.getLogger("importapi.test").exception("import failed")
        logging.getLogger("importapi.test").warning("where", stack_info=True, extra={"note": "stack"})
        output = capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
    assert "Traceback" in output and "ConnectionError" in output and "password=********" in output
    assert secret not in output
