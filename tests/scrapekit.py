"""Test helpers for running fakers and scrapers in-process on real databases and reading their events."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog

from scraperd import config
from scraperd.dbi import spec as specmod
from scraperd.dbi.tables import tables_for


def url_text(db: Any) -> str:
    return db.url.render_as_string(hide_password=False)


def write_cfg(path: Path, sections: dict[str, dict[str, Any]], defaults: dict[str, Any] | None = None) -> Path:
    lines = []
    if defaults:
        lines.append("[DEFAULT]")
        lines += [f"{k} = {v}" for k, v in defaults.items()]
        lines.append("")
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in keys.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def run_section(cfg: Path, name: str, stop: threading.Event | None = None, *, catch_up: bool = False,
                **overrides: Any) -> list[dict[str, Any]]:
    """Run a section in this process until maxiter (or caught up); return its structlog events."""
    loaded = config.load_section(cfg, name, {k: str(v) for k, v in overrides.items()})
    with structlog.testing.capture_logs() as events:
        if loaded.mode == "scraper":
            from scraperd.scrape import daemon

            rc = daemon.run(loaded, stop or threading.Event(), until_caught_up=catch_up)
        elif loaded.mode == "faker":
            from scraperd import faker

            rc = faker.run(loaded, stop or threading.Event())
        else:
            from scraperd import averager

            rc = averager.run(loaded)
    assert rc == 0
    return events


def target_rows(engine: sa.Engine, table: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """All Vld rows (without INSERTDATE) and payload rows of a target table, ordered."""
    t = tables_for(specmod.find_spec(table))
    with engine.connect() as conn:
        vcols = [c for c in t.vld.columns if c.name != "INSERTDATE"]
        vld = [tuple(r) for r in conn.execute(sa.select(*vcols).order_by(t.vld.c.SEQNO))]
        pay = [tuple(r) for r in conn.execute(sa.select(t.payload).order_by(t.payload.c.SEQNO,
                                                                            t.payload.c.ROW_COUNTER))]
    return vld, pay


def events_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]
