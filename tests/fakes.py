"""Local HTTP servers that stand in for outside services (CKAN, Mixpanel, GA4, the HXL proxy, file hosts).

Each records every call it receives and answers scripted replies: a status and body, a body streamed in
chunks, a stall (the request hangs until the test releases it or the server closes), or a dropped
connection. Nothing here sleeps: tests wait on conditions.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Call:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.time)
    """When the fake had read the request (epoch seconds): delivery latency in the benchmarks."""

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Reply:
    """What the fake answers. ``body`` may be bytes, a str, a JSON-able object or an iterable of chunks."""

    status: int = 200
    body: Any = b""
    headers: dict[str, str] = field(default_factory=dict)
    stall: bool = False
    """Hang before answering until :meth:`FakeService.release` or close."""
    stall_after_chunks: int | None = None
    """Send this many body chunks, then hang."""
    drop: bool = False
    """Close the connection without answering."""

    def encoded_chunks(self) -> tuple[list[bytes] | Iterable[bytes], str | None]:
        body = self.body
        if isinstance(body, bytes):
            return [body], None
        if isinstance(body, str):
            return [body.encode()], "text/plain; charset=utf-8"
        if isinstance(body, (dict, list)) or body is None:
            return [json.dumps(body).encode()], "application/json"
        return body, None  # an iterable of byte chunks, streamed


Responder = Reply | Callable[[Call], Reply]


def json_reply(payload: Any, status: int = 200) -> Reply:
    return Reply(status=status, body=payload)


class FakeService:
    """A threaded HTTP server on 127.0.0.1 with routes, one-shot scripts and a call log."""

    def __init__(
        self, name: str = "fake", *, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.name = name
        self.calls: list[Call] = []
        self._routes: dict[tuple[str, str], Responder] = {}
        self._scripts: dict[tuple[str, str], deque[Responder]] = defaultdict(deque)
        self._changed = threading.Condition()
        self._release = threading.Event()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        if tls is not None:  # an HTTPS server: the listening socket hands out TLS connections
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=name, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    # --- scripting ---

    def route(self, method: str, path: str, reply: Responder) -> None:
        """Answer every ``method path`` request with ``reply`` (a Reply or a function of the Call)."""
        self._routes[(method.upper(), path)] = reply

    def script(self, method: str, path: str, *replies: Responder) -> None:
        """Answer the next requests with these replies, in order, then fall back to the route."""
        self._scripts[(method.upper(), path)].extend(replies)

    def release(self) -> None:
        """Let stalled requests go (they then get a 504)."""
        self._release.set()

    # --- inspection ---

    def calls_to(self, path: str, method: str | None = None) -> list[Call]:
        with self._changed:
            return [c for c in self.calls if c.path == path and (method is None or c.method == method.upper())]

    def wait_for_calls(self, path: str, count: int = 1, timeout: float = 30.0) -> list[Call]:
        """Wait until ``path`` received at least ``count`` calls; fail the test otherwise."""
        with self._changed:
            ok = self._changed.wait_for(lambda: len(self._matching(path)) >= count, timeout=timeout)
            calls = self._matching(path)
        if not ok:
            raise AssertionError(f"{self.name}: {len(calls)} call(s) to {path} after {timeout}s, wanted {count}")
        return calls

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- internals ---

    def _matching(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def _record(self, call: Call) -> Responder | None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()
            key = (call.method, call.path)
            if self._scripts[key]:
                return self._scripts[key].popleft()
            return self._routes.get(key)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                call = Call(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                responder = service._record(call)
                if responder is None:
                    reply = json_reply({"success": False, "error": {"message": "Not found"}}, 404)
                else:
                    reply = responder(call) if callable(responder) else responder
                self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if reply.stall:
                    service._release.wait()
                    reply = Reply(status=504, body={"error": "stalled"})
                chunks, content_type = reply.encoded_chunks()
                self.send_response(reply.status)
                headers = dict(reply.headers)
                if content_type and "Content-Type" not in headers:
                    headers["Content-Type"] = content_type
                materialized = chunks if isinstance(chunks, list) else None
                if materialized is not None and reply.stall_after_chunks is None:
                    headers.setdefault("Content-Length", str(sum(len(c) for c in materialized)))
                else:
                    headers.setdefault("Transfer-Encoding", "chunked")
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                chunked = headers.get("Transfer-Encoding") == "chunked"
                try:
                    for index, chunk in enumerate(chunks):
                        if reply.stall_after_chunks is not None and index >= reply.stall_after_chunks:
                            service._release.wait()
                            self.close_connection = True
                            return
                        self._write(chunk, chunked)
                    if chunked:
                        self.wfile.write(b"0\r\n\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _write(self, chunk: bytes, chunked: bool) -> None:
                if not chunk:
                    return
                if chunked:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                else:
                    self.wfile.write(chunk)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

        return Handler


class FakeCkan(FakeService):
    """CKAN's action API: answers the actions this service calls with ``success: true``."""

    ACTIONS = (
        "hdx_resource_update_metadata",
        "hdx_fs_check_resource_revise",
        "status_show",
    )

    def __init__(self, *, port: int = 0) -> None:
        super().__init__("fake-ckan", port=port)
        for action in self.ACTIONS:
            for method in ("GET", "POST"):
                self.route(method, self.action_path(action), json_reply({"success": True, "result": {}}))

    @property
    def base_url(self) -> str:
        """What ``CKAN_API_BASE_URL`` is set to."""
        return f"{self.url}/api/action"

    @staticmethod
    def action_path(action: str) -> str:
        return f"/api/action/{action}"

    def action_calls(self, action: str) -> list[Call]:
        return self.calls_to(self.action_path(action))

    def wait_for_action(self, action: str, count: int = 1, timeout: float = 30.0) -> list[Call]:
        return self.wait_for_calls(self.action_path(action), count, timeout)

    def on_action(self, action: str, reply: Responder, method: str = "POST") -> None:
        self.route(method, self.action_path(action), reply)

    def script_action(self, action: str, *replies: Responder, method: str = "POST") -> None:
        self.script(method, self.action_path(action), *replies)


class FakeMixpanel(FakeService):
    """Mixpanel's ingestion API (``/import`` and ``/track``), as the official library calls it.

    The library POSTs a form with ``data=<JSON array of events>`` and reads ``{"status": 1}`` on success;
    ``/import`` authenticates with the project token as the basic-auth user name.
    """

    PATHS = ("/import", "/track")

    def __init__(self) -> None:
        super().__init__("fake-mixpanel")
        for path in self.PATHS:
            self.route("POST", path, json_reply({"status": 1, "error": None}))

    @staticmethod
    def events_in(call: Call) -> list[dict[str, Any]]:
        """The events one request carried."""
        form = parse_qs(call.body.decode())
        events = json.loads(form["data"][0])
        return events if isinstance(events, list) else [events]

    @staticmethod
    def token_of(call: Call) -> str | None:
        """The basic-auth user name of a request (the project token for ``/import``)."""
        import base64

        scheme, _, value = (call.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        return base64.b64decode(value).decode().partition(":")[0]

    def import_calls(self) -> list[Call]:
        return self.calls_to("/import", "POST")

    def imported_events(self) -> list[dict[str, Any]]:
        """Every event of every ``/import`` request, in order (including requests answered with an error)."""
        return [event for call in self.import_calls() for event in self.events_in(call)]


class FakeGa4(FakeService):
    """GA4's Measurement Protocol collect endpoint: ``POST /mp/collect?measurement_id=..&api_secret=..``."""

    PATH = "/mp/collect"

    def __init__(self) -> None:
        super().__init__("fake-ga4")
        self.route("POST", self.PATH, Reply(status=204))

    @property
    def endpoint(self) -> str:
        """What ``GA4_ENDPOINT`` is set to."""
        return self.url + self.PATH

    def collect_calls(self) -> list[Call]:
        return self.calls_to(self.PATH, "POST")
