"""Shared fixtures: one parametrised database fixture, SQLite and the real MariaDB.

Under CI (CI=true or SCRAPERD_REQUIRE_MYSQL=1) a MariaDB test fails when the server cannot be
reached; on a developer's machine it is skipped with the reason. `mariadb_server` is a private
server a test may stop and start (tests/mariadbserver.py): the shared one never stops.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from sqlalchemy.engine import URL, Engine

from scraperd import databases

MYSQL_HOST = os.environ.get("SCRAPERD_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("SCRAPERD_TEST_MYSQL_PORT", "3306"))
REQUIRE_MYSQL = os.environ.get("CI", "").lower() == "true" or bool(os.environ.get("SCRAPERD_REQUIRE_MYSQL"))


def mysql_url(database: str | None = None) -> URL:
    return URL.create("mysql+mysqldb", username="root", password=None, host=MYSQL_HOST, port=MYSQL_PORT,
                      database=database, query={"charset": "utf8mb4"})


_mysql_checked: dict[str, Any] = {}


def require_mysql() -> None:
    """Skip (locally) or fail (CI) when MariaDB does not answer."""
    if "error" not in _mysql_checked:
        try:
            eng = databases.make_engine(mysql_url())
            with eng.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            eng.dispose()
            _mysql_checked["error"] = None
        except Exception as exc:  # pragma: no cover - depends on the machine
            _mysql_checked["error"] = f"{exc.__class__.__name__}: {exc}"
    err = _mysql_checked["error"]
    if err:
        msg = f"MariaDB at {MYSQL_HOST}:{MYSQL_PORT} unreachable: {err}"
        if REQUIRE_MYSQL:
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)


@dataclass
class TestDB:
    """A fresh, empty database of one backend, with its URL and engine."""

    __test__ = False  # not a test class, though its name starts with Test
    backend: str
    url: URL
    engine: Engine

    @property
    def name(self) -> str:
        return str(self.url.render_as_string(hide_password=False))


def _new_db(backend: str, tmp_path: Path, tag: str) -> TestDB:
    if backend == "sqlite":
        url = sa.engine.make_url(f"sqlite:///{tmp_path / (tag + '.db')}")
    else:
        require_mysql()
        url = mysql_url(f"scrt_{tag}_{uuid.uuid4().hex[:10]}")
        databases.ensure_database(url)
    return TestDB(backend, url, databases.make_engine(url))


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """structlog as new after each test: a test that ran `scraperd run` in-process configured it to
    write to its captured (then closed) stderr, which a later test's events must not reach."""
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _own_run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Heartbeat files of a test's daemons (in-process or not) go to its own tmp_path/run, never to the
    checkout's var/run, which the demo fleet uses."""
    monkeypatch.setenv("SCRAPERD_RUN_DIR", str(tmp_path / "run"))


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_db(backend: str, tmp_path: Path) -> Iterator[Callable[[str], TestDB]]:
    """Factory of fresh databases on the parametrised backend; dropped afterwards."""
    made: list[TestDB] = []

    def factory(tag: str = "db") -> TestDB:
        db = _new_db(backend, tmp_path, tag)
        made.append(db)
        return db

    yield factory
    for db in made:
        db.engine.dispose()
        if db.backend == "mysql":
            databases.drop_database(db.url)


@pytest.fixture
def db(make_db: Callable[[str], TestDB]) -> TestDB:
    """One fresh database (SQLite and MariaDB)."""
    return make_db("target")


@pytest.fixture
def mariadb_server(tmp_path: Path) -> Iterator[Any]:
    """A private MariaDB server of this test's own, to stop, start or kill (tests/mariadbserver.py);
    its log is kept as mariadb-server.log in the test's tmp_path."""
    from tests.mariadbserver import private_mariadb

    with private_mariadb(keep_log=tmp_path / "mariadb-server.log") as srv:
        yield srv


def wait_until(predicate: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition",
               interval: float = 0.05) -> Any:
    """Poll predicate until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(interval)
