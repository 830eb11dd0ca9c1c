"""The simulator's HTTP layer: a threading HTTP/1.1 server on loopback, the request
handler (bounded bodies, JSON answers, a dropped connection when the simulator stops) and
the Standard Webhooks signing that clients of the simulator use. What a request means is
:class:`demo.server.PartnerSimulator`'s business (:class:`Endpoints`).
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseServer, TCPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024


class DropConnection(Exception):
    """Stop handling this request without answering (the simulator is stopping)."""


class Endpoints(Protocol):
    """What the HTTP layer asks of the simulator."""

    def stats(self) -> dict[str, dict[str, int]]: ...

    def handle_post(self, handler: Handler) -> None: ...

    def track_connection(self, conn: socket.socket, *, add: bool) -> None: ...


def sign_headers(
    secret: str, payload: bytes, msg_id: str | None = None, *, timestamp: int | None = None
) -> dict[str, str]:
    """Standard Webhooks headers (``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature``) signing ``payload`` (the exact body bytes) with ``secret``.

    ``timestamp`` (Unix seconds) defaults to now; tests pass old values to check rejection.
    """
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    ts = int(time.time()) if timestamp is None else int(timestamp)
    signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), payload.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
    }


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # we track and join handler threads ourselves, with a deadline
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], simulator: Endpoints) -> None:
        self.simulator = simulator
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), slow in some sandboxes.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("partner simulator: error handling %s", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PartnerSimulator/1.0"
    sys_version = ""
    timeout = 300  # idle keep-alive connections
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls
    server: Server

    def __init__(self, request: Any, client_address: Any, server: BaseServer) -> None:
        assert isinstance(server, Server)
        self.simulator = server.simulator
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        super().setup()
        self.simulator.track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.simulator.track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("partner simulator: " + format, *args)

    # ---- responses

    def _send(self, status: int, body: bytes = b"", content_type: str = "application/json") -> None:
        self.send_response(status)
        if status != HTTPStatus.NO_CONTENT:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status != HTTPStatus.NO_CONTENT:
            self.wfile.write(body)
        self.wfile.flush()

    def _send_json(self, status: int, payload: object) -> None:
        self._send(status, json.dumps(payload).encode())

    def reset_connection(self) -> None:
        """Abort the connection with a TCP reset (SO_LINGER 0: RST, not FIN) and answer
        nothing, as a crashing lender or a dropping middlebox does."""
        self.close_connection = True
        linger = struct.pack("ii", 1, 0)
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
        except OSError:
            pass
        raise DropConnection

    # ---- routing

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/_health":
            self._send_json(200, {"status": "ok"})
        elif path == "/_stats":
            self._send_json(200, self.simulator.stats())
        else:
            self._send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        try:
            self.simulator.handle_post(self)
        except DropConnection:
            self.close_connection = True

    def read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413 or on a broken chunked body."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            self.close_connection = True
            self._send_json(411, {"error": "length_required"})
            return None
        try:
            length = int(length_header)
        except ValueError:
            self.close_connection = True
            self._send_json(400, {"error": "bad_content_length"})
            return None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._send_json(413, {"error": "payload_too_large"})
            return None
        return self.rfile.read(length)
