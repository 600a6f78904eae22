"""The two ways a Message leaves: an e-mail over SMTP, or a JSON POST over HTTP. One recipient per call.

Each call either delivers or raises; retrying and logging are delivery.py's. The SMTP password is
read once, at construction (Mailer.from_settings), from $SCRAPERD_SMTP_PASSWORD or the `smtp_secret`
section of the secret file (MySQL option-file style, default $SCRAPERD_MYCNF or ~/.my.cnf); it is kept
in the Mailer only and never logged, formatted into an error or written anywhere.

STARTTLS verifies the server against the system's CAs, or against $SCRAPERD_SMTP_CAFILE when set (a
private CA, or a test's self-signed certificate); a caller may pass its own ssl.SSLContext.
"""

from __future__ import annotations

import email.policy
import json
import os
import smtplib
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from scraperd import databases
from scraperd.config import Notify
from scraperd.errors import ConfigError
from scraperd.notify.message import Message

PASSWORD_ENV = "SCRAPERD_SMTP_PASSWORD"
# Long lines are allowed up to RFC 5322's 998: folding a subject that starts with "[scraperd]" puts the
# fold right after "Subject:", and some readers then show it with a leading blank.
_POLICY = email.policy.SMTP.clone(max_line_length=998)
CAFILE_ENV = "SCRAPERD_SMTP_CAFILE"


def _secret(settings: Notify) -> dict[str, str]:
    """The smtp_secret section of the secret file; ConfigError naming file and section when absent."""
    path = Path(settings.secret_file).expanduser() if settings.secret_file else databases.mycnf_path()
    where = f"smtp_secret = {settings.smtp_secret}"
    if not path.exists():
        raise ConfigError(f"no secret file {path} ({where}; set secret_file or ${databases.MYCNF_ENV})",
                          key="smtp_secret")
    try:
        return databases.read_mycnf_section(settings.smtp_secret, path)
    except ConfigError as exc:  # its message names the section; never a value of the file
        raise ConfigError(f"{path}: {exc.message} ({where})", key="smtp_secret") from None


def login(settings: Notify) -> tuple[str, str] | None:
    """(user, password) for SMTP AUTH, or None for no login. The env var's password wins."""
    env = os.environ.get(PASSWORD_ENV) or None
    keys: dict[str, str] = {}
    if settings.smtp_secret and not (env and settings.smtp_user):
        keys = _secret(settings)
        if not env and not keys.get("password"):
            raise ConfigError(f"section [{settings.smtp_secret}] of the secret file has no password",
                              key="smtp_secret")
    password = env or keys.get("password")
    if not password:
        return None
    user = settings.smtp_user or keys.get("user", "")
    if not user:
        raise ConfigError(f"a login needs a user (smtp_user, or user in the smtp_secret section); "
                          f"${PASSWORD_ENV} is set", key="smtp_user")
    return user, password


@dataclass(frozen=True)
class Mailer:
    """How to reach the SMTP server; send() mails one Message to one address."""

    host: str
    port: int
    timeout: float
    sender: str
    starttls: bool = False
    credentials: tuple[str, str] | None = field(default=None, repr=False)  # never shown
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Notify, tls: ssl.SSLContext | None = None) -> Mailer:
        return cls(host=settings.smtp_host, port=settings.smtp_port, timeout=settings.http_timeout.total_seconds(),
                   sender=settings.mail_from or f"scraperd@{socket.getfqdn()}", starttls=settings.smtp_starttls,
                   credentials=login(settings), tls=tls)

    def context(self) -> ssl.SSLContext:
        return self.tls or ssl.create_default_context(cafile=os.environ.get(CAFILE_ENV) or None)

    def send(self, message: Message, to: str) -> None:
        mail = EmailMessage(policy=_POLICY)
        mail["Subject"] = message.subject()
        mail["From"] = self.sender
        mail["To"] = to
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail.set_content(message.text())
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls(context=self.context())
            if self.credentials is not None:
                smtp.login(*self.credentials)
            smtp.send_message(mail, from_addr=self.sender, to_addrs=[to])


class HttpStatusError(Exception):
    """The receiver answered, but not with 2xx."""


def post(message: Message, url: str, timeout: float) -> None:
    """POST the message's JSON body to url; an answer other than 2xx raises."""
    data = json.dumps(message.body()).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "scraperd-notify"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            status = answer.status
    except urllib.error.HTTPError as exc:
        raise HttpStatusError(f"HTTP {exc.code} {exc.reason}") from None
    if not 200 <= status < 300:
        raise HttpStatusError(f"HTTP {status}")
