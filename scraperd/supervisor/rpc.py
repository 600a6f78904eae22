"""Asking supervisord what runs: its XML-RPC over the unix socket its config names.

    url, user, password = supervisor_url(SUPERVISORD_CONF)   where supervisorctl would connect
    programs(SUPERVISORD_CONF)   {"adtemp_scraper": ProgramState("RUNNING", pid, uptime_s, logfile, ...)}

An unexpected exit (`unexpected_exit`) is an EXITED program whose exit status is not among its
`exitcodes`: supervisord logs it as "exited: NAME (exit status 78; not expected)" but does not say so
over XML-RPC (getProcessInfo's description of an EXITED program is its stop time, as supervisor 4.3
writes it), so the exit codes are read from getAllConfigInfo.

Reads only: never starts, stops or reconfigures a program (supervisorctl does that). A supervisord
that does not answer within RPC_TIMEOUT_S is None, not an error: `status` then shows "-".
"""

from __future__ import annotations

import configparser
import os
import socket
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from scraperd import config
from scraperd.errors import ConfigError

SUPERVISORD_CONF = config.REPO_ROOT / "deploy" / "supervisord.conf"
RPC_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ProgramState:
    """One program as supervisord reports it."""

    state: str
    pid: int | None
    uptime_s: int | None
    logfile: str | None = None  # where supervisord writes its stdout: the JSON log
    description: str = ""       # supervisord's: "pid 42, uptime 0:12:03", a stop time, or why it is FATAL
    exitstatus: int | None = None  # of its last exit (0 before the first)
    spawnerr: str = ""          # why the last start failed ("Exited too quickly (process log may have details)")
    exitcodes: tuple[int, ...] = (0,)  # its expected exit codes (supervisord's default, and gen-ini's)

    @property
    def unexpected_exit(self) -> bool:
        """EXITED with a status not among its exitcodes (what supervisord logs as "not expected")."""
        return self.state == "EXITED" and self.exitstatus not in self.exitcodes

    @classmethod
    def from_info(cls, info: dict[str, Any], exitcodes: tuple[int, ...] = (0,)) -> ProgramState:
        """From one entry of getAllProcessInfo() and the program's exitcodes (getAllConfigInfo())."""
        running = info["statename"] == "RUNNING"
        return cls(state=info["statename"], pid=info["pid"] or None,
                   uptime_s=int(info["now"] - info["start"]) if running else None,
                   logfile=info.get("stdout_logfile") or None, description=info.get("description") or "",
                   exitstatus=info.get("exitstatus"), spawnerr=info.get("spawnerr") or "", exitcodes=exitcodes)


def supervisor_url(conf: Path) -> tuple[str, str | None, str | None]:
    """(serverurl, username, password) of supervisorctl as the conf file names them."""
    here = os.path.dirname(os.path.abspath(conf))
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)
    if not parser.read(conf):
        raise ConfigError("no such supervisord config (use --supervisor-conf PATH)", file=str(conf))
    expansions = {"here": here, **{f"ENV_{k}": v for k, v in os.environ.items()}}

    def get(section: str, key: str) -> str | None:
        if not parser.has_option(section, key):
            return None
        try:
            return parser.get(section, key) % expansions
        except (KeyError, ValueError, TypeError):
            raise ConfigError("cannot expand this value", file=str(conf), section=section, key=key) from None

    url = get("supervisorctl", "serverurl")
    if not url:
        sock = get("unix_http_server", "file")
        if not sock:
            raise ConfigError("names no [supervisorctl] serverurl nor [unix_http_server] file", file=str(conf))
        url = f"unix://{sock}"
    if url.startswith("unix://"):
        url = "unix://" + os.path.normpath(url[len("unix://"):])
    return url, get("supervisorctl", "username"), get("supervisorctl", "password")


def proxy(conf: Path) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to the supervisord the conf file names (over its unix socket)."""
    url, user, password = supervisor_url(conf)
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=SupervisorTransport(user, password, url))


def programs(conf: Path) -> dict[str, ProgramState] | None:
    """Every program supervisord runs, by name; None when it does not answer."""
    server = proxy(conf)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(RPC_TIMEOUT_S)  # its unix-socket connection takes no timeout of its own
    try:
        infos: list[dict[str, Any]] = server.supervisor.getAllProcessInfo()  # type: ignore[assignment]
        exitcodes = _exitcodes(server)
    except (OSError, xmlrpc.client.Error):
        return None
    finally:
        socket.setdefaulttimeout(previous)
    return {info["name"]: ProgramState.from_info(info, exitcodes.get((info["group"], info["name"]), (0,)))
            for info in infos}


def _exitcodes(server: xmlrpc.client.ServerProxy) -> dict[tuple[str, str], tuple[int, ...]]:
    """(group, name) -> the program's exitcodes; {} from a supervisord without getAllConfigInfo (< 3.3)."""
    try:
        configs: list[dict[str, Any]] = server.supervisor.getAllConfigInfo()  # type: ignore[assignment]
    except xmlrpc.client.Fault:
        return {}
    return {(c["group"], c["name"]): tuple(c["exitcodes"]) for c in configs}
