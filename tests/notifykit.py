"""Real receivers for notification tests: an SMTP server (aiosmtpd) and an HTTP server, on 127.0.0.1.

    with SmtpSink(tmp_path, starttls=True, auth=("mon", "s3cret")) as smtp, HttpSink(fail_first=2) as http:
        ...                                   # smtp.port, smtp.cafile (its self-signed cert), http.url
        [mail] = smtp.wait_for(1, timeout=10)  # mail.message is an email.message.EmailMessage
        [post] = http.wait_for(1)              # post.body is the decoded JSON document

Both record what they receive in `.messages` and fail the test, naming what they waited for, when
wait_for() times out. `closed_port()` is a port nothing listens on (a receiver that is down).
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Generic, TypeVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

T = TypeVar("T")


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for CN=localhost, IP 127.0.0.1, made with openssl req -x509."""
    cert, key = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    return cert, key


class _Sink(Generic[T]):
    """What a receiver got, and a way to wait for it."""

    what = "messages"

    def __init__(self) -> None:
        self.messages: list[T] = []
        self.cond = threading.Condition()

    def _record(self, item: T) -> None:
        with self.cond:
            self.messages.append(item)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[T]:
        """The first n messages, once there are n (fails the test after timeout s)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"timed out after {timeout}s waiting for {n} {self.what} "
                                f"(got {len(self.messages)})", pytrace=False)
                self.cond.wait(left)
            return list(self.messages[:n])


@dataclass
class Mail:
    """One message the SMTP sink accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool                 # the session had been upgraded with STARTTLS
    login: str | None         # the user that logged in, if any

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        assert body is not None
        return str(body.get_content()).replace("\r\n", "\n")  # CRLF on the wire


class SmtpSink(_Sink[Mail]):
    """aiosmtpd on 127.0.0.1 at a free port; optional STARTTLS (self-signed cert into `directory`,
    `cafile` to trust it) and AUTH (only `auth`'s user and password are accepted; `logins` records
    every attempt's user, `refused` counts the wrong ones)."""

    what = "e-mails"

    def __init__(self, directory: Path | None = None, *, starttls: bool = False,
                 auth: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.auth = auth
        self.cafile: Path | None = None
        self.logins: list[str] = []
        self.refused = 0
        params: dict[str, Any] = {}
        if starttls:
            assert directory is not None, "STARTTLS needs a directory for its certificate"
            cert, key = self_signed_cert(directory)
            server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_tls.load_cert_chain(str(cert), str(key))
            params.update(tls_context=server_tls, require_starttls=True)
            self.cafile = cert
        if auth is not None:
            params.update(authenticator=self._authenticate, auth_required=True, auth_require_tls=starttls)
        self.port = closed_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **params)

    def client_tls(self) -> ssl.SSLContext:
        """A client context that trusts this sink's certificate."""
        assert self.cafile is not None
        return ssl.create_default_context(cafile=str(self.cafile))

    def _authenticate(self, _server: Any, _session: Any, _envelope: Any, _mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append(user)
        ok = (user, password) == self.auth
        self.refused += not ok
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    async def handle_DATA(self, _server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data if isinstance(session.auth_data, str) else None
        self._record(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, session.ssl is not None, login))
        return "250 OK"

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class Post:
    """One request the HTTP sink answered."""

    path: str
    content_type: str
    body: Any                 # the decoded JSON (None when it was not JSON)
    raw: bytes = field(repr=False, default=b"")
    status: int = 200         # what the sink answered


class HttpSink(_Sink[Post]):
    """ThreadingHTTPServer on 127.0.0.1 at a free port, recording every POST; answers 500 to the
    first `fail_first` requests (those are recorded too, in `.failed`), 200 to the rest. With
    hold=True every request waits, unanswered and unrecorded, until `release` is set (a slow receiver)."""

    what = "HTTP POSTs (answered 200)"

    def __init__(self, *, fail_first: int = 0, hold: bool = False) -> None:
        super().__init__()
        self.fail_left = fail_first
        self.release = threading.Event()
        self.arrived = threading.Event()   # a request came in (held or not)
        if not hold:
            self.release.set()
        self.failed: list[Post] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                sink._answer(self, Post(self.path, self.headers.get("Content-Type", ""), body, raw))

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, name="http-sink", daemon=True)

    def _answer(self, handler: BaseHTTPRequestHandler, post: Post) -> None:
        self.arrived.set()
        self.release.wait(30)
        with self.cond:
            failing = self.fail_left > 0
            self.fail_left -= failing
        post.status = 500 if failing else 200
        if failing:  # recorded before the answer: a client that got its answer finds its post here
            with self.cond:
                self.failed.append(post)
        else:
            self._record(post)
        handler.send_response(post.status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def __enter__(self) -> HttpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
