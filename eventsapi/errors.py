"""Errors of the eventsapi slice.

HdxError (core.errors)
├── EventRequestError        bad-change-event-request   (the body of create-change-events is unusable)
├── EventsDisabled           events-disabled            (EVENTS_API_ENABLED=false)
├── FsCheckRequestError      bad-fs-check-request       (the body of file-structure-check is unusable)
├── HxlProxyError            hxl-proxy-problem          (the HXL proxy failed, answered non-JSON or timed out)
│   ├── HxlProxyTimeout      hxl-proxy-timeout
│   └── HxlProxyRefused      hxl-proxy-refused          (the URL leads to a private or metadata address)
└── FsCheckGaveUp            fs-check-interrupted       (every attempt of the check was interrupted)
"""

from __future__ import annotations

from core.errors import HdxError


class EventRequestError(HdxError):
    error_type = "bad-change-event-request"
    http_status = 200
    user_message = "The change-event request is not usable"


class EventsDisabled(HdxError):
    error_type = "events-disabled"
    http_status = 200
    user_message = "Change events are disabled on this service (EVENTS_API_ENABLED is false)"


class FsCheckRequestError(HdxError):
    error_type = "bad-fs-check-request"
    http_status = 200
    user_message = "The file-structure-check request is not usable"


class HxlProxyError(HdxError):
    error_type = "hxl-proxy-problem"
    http_status = 502
    user_message = "The HXL proxy could not describe the file"


class HxlProxyTimeout(HxlProxyError):
    error_type = "hxl-proxy-timeout"
    user_message = "The HXL proxy did not answer in time"


class HxlProxyRefused(HxlProxyError):
    error_type = "hxl-proxy-refused"
    http_status = 403
    user_message = "The HXL proxy URL leads to an address the service may not reach"


class FsCheckGaveUp(HdxError):
    error_type = "fs-check-interrupted"
    user_message = "The file structure check was interrupted on each attempt"
