"""Local receivers for provider channels: an HTTP server and an SMTP server (aiosmtpd).

Each records what arrived. Like real receivers that honour idempotency keys,
they keep one effect per key and count the repeats separately.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from services.devstack.embedded import free_port


@dataclass
class HttpRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """Does `X-Cohortflow-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`
        hold? Checked as a receiver would, from the documented format (not our code)."""
        header = self.headers.get("X-Cohortflow-Signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if "t" not in parts or "v1" not in parts:
            return False
        mac = hmac.new(secret.encode(), f"{parts['t']}.".encode() + self.body, hashlib.sha256)
        return hmac.compare_digest(parts["v1"], mac.hexdigest())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default (5) resets connections under load


@dataclass
class HttpReceiver:
    """Answers POSTs with `status` (after failing the first `fail_first` with 503)."""

    status: int = 200
    reply: dict[str, Any] = field(default_factory=dict)
    fail_first: int = 0
    requests: list[HttpRequest] = field(default_factory=list)
    by_key: dict[str, HttpRequest] = field(default_factory=dict)
    key_counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.port = free_port()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as providers do

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                if len(body) < length:  # the caller died mid-request: nothing arrived
                    self.close_connection = True
                    return
                request = HttpRequest(self.path, dict(self.headers), body)
                with receiver._lock:
                    receiver.requests.append(request)
                    failing = len(receiver.requests) <= receiver.fail_first
                    key = request.headers.get("Idempotency-Key", "")
                    if not failing and receiver.status < 300:
                        receiver.key_counts[key] += 1
                        receiver.by_key.setdefault(key, request)
                status = 503 if failing else receiver.status
                body = json.dumps(receiver.reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """aiosmtpd on a free local port."""

    def __init__(self) -> None:
        self.mailbox = _Mailbox()
        self.port = free_port()
        self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def messages(self) -> list[Message]:
        with self.mailbox.lock:
            return list(self.mailbox.messages)

    def by_message_id(self) -> dict[str, Message]:
        return {m["Message-ID"]: m for m in self.messages}

    def close(self) -> None:
        self._controller.stop()
