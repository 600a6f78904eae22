"""A private, real supervisord for tests, and the in-process entry to gen-ini, status and logs.

`Supervisor` lays out a throw-away checkout-like tree — deploy/supervisord.conf (a copy of the
shipped one, so its %(here)s paths are tested too), deploy/conf.d/, var/run/, var/log/ — under a
short /tmp directory (a unix socket path must stay under ~100 characters). `private_supervisor()`
gives one whose supervisord, once started, runs in the foreground as our child, and always shuts
it down, programs included:

    @pytest.fixture
    def sv():
        with private_supervisor() as s:
            yield s
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scraperd import cli, supervisor
from tests.conftest import wait_until

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCRAPERD = BIN / "scraperd"


def cli_main(argv: Sequence[str]) -> int:
    """`scraperd ARGV` in this process."""
    return cli.main(list(argv))


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSON events of a log file (other lines skipped)."""
    out = []
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


class Supervisor:
    """One private supervisord: its tree, its process, and supervisorctl/XML-RPC to drive it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.deploy = root / "deploy"
        self.conf_d = self.deploy / "conf.d"
        self.logdir = root / "var" / "log"
        self.conf = self.deploy / "supervisord.conf"
        for d in (self.conf_d, self.logdir, root / "var" / "run"):
            d.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "deploy" / "supervisord.conf", self.conf)
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, bytes] = {}  # pid -> its command line, as seen running

    @property
    def log(self) -> Path:
        return self.logdir / "supervisord.log"

    def rpc(self) -> Any:
        return supervisor.proxy(self.conf)

    def answering(self) -> bool:
        try:
            return self.rpc().supervisor.getState()["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: self.answering() or self.proc.poll() is not None, timeout=15,
                   what="supervisord to answer on its socket")
        assert self.proc.poll() is None, f"supervisord exited: {self.log.read_text() if self.log.exists() else ''}"

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "supervisorctl"), "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=60)

    def info(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.rpc().supervisor.getProcessInfo(name)
        self._saw(info)
        return info

    def _saw(self, info: dict[str, Any]) -> None:
        pid = int(info.get("pid") or 0)
        if pid and pid not in self.seen:
            try:
                self.seen[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                pass

    def states(self) -> dict[str, str]:
        infos = self.rpc().supervisor.getAllProcessInfo()
        for i in infos:
            self._saw(i)
        return {i["name"]: i["statename"] for i in infos}

    def wait_state(self, name: str, state: str, timeout: float = 20) -> dict[str, Any]:
        return wait_until(lambda: (i := self.info(name))["statename"] == state and i, timeout=timeout,
                          what=f"{name} to be {state}", interval=0.1)

    def shutdown(self) -> None:
        """Stop supervisord and its programs; SIGKILL whatever of ours is left after a deadline."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.states()
            except (OSError, xmlrpc.client.Error):
                pass
            self.proc.send_signal(signal.SIGTERM)  # supervisord stops every program, then itself
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, cmdline in self.seen.items():
            _kill_if_still(pid, cmdline)
        self.proc = None


def _kill_if_still(pid: int, cmdline: bytes) -> None:
    """SIGKILL a program supervisord left behind: only while that pid still runs the same command."""
    def same() -> bool:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline
        except OSError:
            return False

    deadline = time.monotonic() + 10
    while same():
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.1)


@contextmanager
def private_supervisor() -> Iterator[Supervisor]:
    """A private supervisord tree (not yet started: write the .ini files, then call start()); on leaving,
    supervisord and its programs are shut down and the tree removed, whatever happened inside."""
    root = Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))
    sv = Supervisor(root)
    try:
        yield sv
    finally:
        sv.shutdown()
        shutil.rmtree(root, ignore_errors=True)
