"""A private, real MariaDB server for tests that stop, start or kill it (the shared one must never stop).

`MariaDBServer` lays out a throw-away datadir under a short /tmp directory (a unix socket path must
stay under ~100 characters), initialises it with `mariadb-install-db` (root with an empty password,
reachable over TCP on 127.0.0.1, about a second) and runs `mariadbd` on a free port outside the
kernel's ephemeral range, so that no client connection can take the port while the server is down.
The server's stdout and stderr (its error log) go to `server.log`, never to a pipe.

    with private_mariadb() as srv:          # or the `mariadb_server` fixture (tests/conftest.py)
        url = srv.url("scrt_src")           # SQLAlchemy URL of a database on it
        srv.stop()                          # SIGTERM, wait for the exit: clients get 2013, then 2002
        srv.start()                         # same port, same datadir, same data
        srv.kill()                          # SIGKILL: a crash, InnoDB recovers at the next start()

Under CI (CI=true or SCRAPERD_REQUIRE_MYSQL=1) a missing MariaDB installation fails the test;
elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tests.conftest import REQUIRE_MYSQL

_SBIN = ("/usr/sbin", "/usr/libexec", "/usr/local/sbin", "/usr/local/mysql/bin")
# Small enough for a 2-core test machine running other servers; the same for install and server.
_SIZING = ("--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M")


def _program(*names: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    for name in names:
        if found := shutil.which(name, path=path):
            return found
    return None


def _missing(reason: str) -> None:
    if REQUIRE_MYSQL:
        pytest.fail(f"private MariaDB server: {reason}", pytrace=False)
    pytest.skip(f"private MariaDB server: {reason}")


def free_port() -> int:
    """A TCP port nobody listens on, below the ephemeral range (outgoing connections never take it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(20000, max(low, 20001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in 20000..{low}")


class MariaDBServer:
    """One private mariadbd: its datadir, port, socket and log, and stop()/start()/kill()."""

    def __init__(self, root: Path | None = None, port: int | None = None) -> None:
        install_db = _program("mariadb-install-db", "mysql_install_db")
        server = _program("mariadbd", "mysqld")
        if install_db is None or server is None:
            _missing("mariadb-install-db or mariadbd not found (apt-get install mariadb-server)")
        assert install_db is not None and server is not None
        self.install_db, self.server = install_db, server
        self.root = root or Path(tempfile.mkdtemp(prefix="scrt-mdb-", dir="/tmp"))
        self.datadir = self.root / "data"
        self.socket = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        # mariadbd refuses to run as root; as root it runs as `mysql`, which must own its files
        self.user = "mysql" if os.geteuid() == 0 else None

    def url(self, database: str | None = None) -> URL:
        """The SQLAlchemy URL of `database` (or of no database) on this server, over TCP."""
        return URL.create("mysql+mysqldb", username="root", host="127.0.0.1", port=self.port, database=database,
                          query={"charset": "utf8mb4"})

    def install(self) -> MariaDBServer:
        """Create and initialise the datadir (once)."""
        self.datadir.mkdir(parents=True)
        if self.user:
            shutil.chown(self.root, self.user, self.user)
            shutil.chown(self.datadir, self.user, self.user)
        user = [f"--user={self.user}"] if self.user else []
        with open(self.root / "install.log", "wb") as out:
            done = subprocess.run([self.install_db, "--no-defaults", f"--datadir={self.datadir}", *user,
                                   "--auth-root-authentication-method=normal", "--skip-test-db", *_SIZING],
                                  stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
        if done.returncode != 0:
            tail = (self.root / "install.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"mariadb-install-db exited {done.returncode}:\n{tail}")
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> MariaDBServer:
        """Start mariadbd on the datadir and port, and wait until it answers a query over TCP."""
        assert not self.running, "the private MariaDB server is already running"
        user = [f"--user={self.user}"] if self.user else []
        with open(self.log, "ab") as out:  # appended: one file tells every start and stop
            self.proc = subprocess.Popen(
                [self.server, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
                 f"--socket={self.socket}", f"--pid-file={self.root / 'mariadbd.pid'}", *user,
                 "--bind-address=127.0.0.1", "--skip-name-resolve", *_SIZING],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # a Ctrl-C meant for pytest does not stop it under the test
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited {self.proc.returncode} at start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not answer within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        import MySQLdb

        try:
            conn = MySQLdb.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2)
        except MySQLdb.Error:
            return False
        try:
            cur = conn.cursor()
            cur.execute("SELECT 1")
            return True
        except MySQLdb.Error:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), waiting for the process to exit."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """A crash (SIGKILL): nothing flushed, InnoDB recovers at the next start()."""
        self._signal(signal.SIGKILL, 30)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        if not self.running:
            return
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise RuntimeError(f"mariadbd did not exit within {timeout}s of {sig.name}:\n{self.log_tail()}") from None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no server log)"

    def cleanup(self, keep_log: Path | None = None) -> None:
        """Stop the server (killing it if it will not stop) and remove its directory; keep_log: copy
        server.log there first."""
        try:
            self.stop(timeout=30)
        except RuntimeError:
            pass
        finally:
            if keep_log is not None and self.log.exists():
                keep_log.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.log, keep_log)
            shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def private_mariadb(keep_log: Path | None = None) -> Iterator[MariaDBServer]:
    """A started private server, always stopped and removed afterwards (its log copied to keep_log)."""
    srv = MariaDBServer()
    try:
        srv.install().start()
        yield srv
    finally:
        srv.cleanup(keep_log)
