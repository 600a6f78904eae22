"""Heartbeats: every daemon says, in a small file, that it is alive and what it is doing.

    <run_dir>/<section>.heartbeat   {"section", "ts" (ISO UTC, Z), "pid", "phase", "lag_s", "sleep_s"}

The phase is reading, writing, sleeping or retrying (starting before the first of them); lag_s is the
daemon's current lag (scraper: max over sources of head − tcursor; averager: the source time still to
average), sleep_s the wait it is in or last chose. lifecycle.serve() installs the section's Heart for
the daemon's thread (beating()); the loops, lifecycle.pause() and retry's waits call beat(), which does
nothing outside a daemon. A file is written when the phase changes, else at most every EVERY_S, so a
scraper catching up (thousands of iterations a second) is not slowed; long waits beat every WAIT_BEAT_S
(wait()). Written atomically (temp file + os.replace): a reader never sees half a file. A write that
fails never stops a daemon: one `heartbeat_failed` warning, then silence until a write succeeds again.
`scraperd status` reads it back with read(). $SCRAPERD_HEARTBEAT=0 (or ENABLED = False before a daemon
starts) turns writing off: for the bench, which compares the two, only.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scraperd import config, logsetup

log = logsetup.get_logger("scraperd.heartbeat")

PHASES = ("starting", "reading", "writing", "sleeping", "retrying")
EVERY_S = 1.0        # the same phase is written again at most this often
WAIT_BEAT_S = 5.0    # a long wait beats this often
SUFFIX = ".heartbeat"
ENABLED = os.environ.get("SCRAPERD_HEARTBEAT", "1") != "0"
_KEEP: Any = object()  # beat(): leave lag_s / sleep_s as they were


@dataclass(frozen=True)
class Beat:
    """One heartbeat file, as read back."""

    section: str
    ts: datetime       # aware, UTC
    pid: int
    phase: str
    lag_s: float | None
    sleep_s: float | None

    def age_s(self, now: datetime | None = None) -> float:
        """Seconds since the beat (never below 0)."""
        return max(((now or datetime.now(UTC)) - self.ts).total_seconds(), 0.0)


DEFAULT_RUN_DIR = config.REPO_ROOT / "var" / "run"


def run_dir(settings: config.Program) -> Path:
    """The section's run_dir; by default $SCRAPERD_RUN_DIR, else the checkout's var/run."""
    if settings.run_dir:
        return Path(settings.run_dir)
    return Path(os.environ.get("SCRAPERD_RUN_DIR") or DEFAULT_RUN_DIR)


def path_for(run_dir: Path, section: str) -> Path:
    return Path(run_dir) / f"{section}{SUFFIX}"


def stamp(t: datetime) -> str:
    """An aware time as the file writes it: ISO UTC with milliseconds and Z."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def read(path: Path) -> Beat | None:
    """The heartbeat in `path`; None when there is none or it is not a heartbeat file."""
    try:
        doc = json.loads(Path(path).read_text())
        ts = datetime.fromisoformat(str(doc["ts"]).replace("Z", "+00:00"))
        return Beat(section=str(doc["section"]), ts=ts if ts.tzinfo else ts.replace(tzinfo=UTC),
                    pid=int(doc["pid"]), phase=str(doc["phase"]), lag_s=_float(doc.get("lag_s")),
                    sleep_s=_float(doc.get("sleep_s")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Heart:
    """The heartbeat file of one section, written by its daemon's thread."""

    def __init__(self, section: str, run_dir: Path) -> None:
        self.section, self.path, self.enabled = section, path_for(run_dir, section), ENABLED
        self.phase: str | None = None
        self.lag_s: float | None = None
        self.sleep_s: float | None = None
        self.written = -EVERY_S
        self.made_dir = False
        self.failing = False

    def beat(self, phase: str, *, lag_s: float | None = _KEEP, sleep_s: float | None = _KEEP,
             force: bool = False) -> None:
        """Note the phase (and lag, sleep); write the file if the phase changed or EVERY_S passed."""
        if lag_s is not _KEEP:
            self.lag_s = None if lag_s is None else round(lag_s, 3)
        if sleep_s is not _KEEP:
            self.sleep_s = None if sleep_s is None else round(sleep_s, 3)
        now = time.monotonic()
        if not self.enabled or (phase == self.phase and not force and now - self.written < EVERY_S):
            return
        self.phase, self.written = phase, now
        self._write()

    def _write(self) -> None:
        doc = {"section": self.section, "ts": stamp(datetime.now(UTC)), "pid": os.getpid(), "phase": self.phase,
               "lag_s": self.lag_s, "sleep_s": self.sleep_s}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            try:
                tmp.write_text(json.dumps(doc))
            except FileNotFoundError:
                if self.made_dir:
                    raise
                self.made_dir = True  # created once: a directory removed under a running daemon is reported
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self.failing:
                log.warning("heartbeat_failed", file=str(self.path), error=f"{type(exc).__name__}: {exc}",
                            action="the daemon goes on; reported again only after a write succeeded")
            self.failing = True
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        else:
            self.failing = False


_local = threading.local()


def current() -> Heart | None:
    """The Heart of the daemon running in this thread, if any."""
    return getattr(_local, "heart", None)


@contextmanager
def beating(section: str, run_dir: Path) -> Iterator[Heart]:
    """Install the section's Heart for this thread while inside (lifecycle.serve)."""
    previous, heart = current(), Heart(section, run_dir)
    _local.heart = heart
    heart.beat("starting")
    try:
        yield heart
    finally:
        _local.heart = previous


def beat(phase: str, *, lag_s: float | None = _KEEP, sleep_s: float | None = _KEEP, force: bool = False) -> None:
    """A heartbeat of this thread's daemon (nothing outside one)."""
    if (heart := current()) is not None:
        heart.beat(phase, lag_s=lag_s, sleep_s=sleep_s, force=force)


def wait(stop: threading.Event, seconds: float, phase: str = "sleeping") -> bool:
    """stop.wait(seconds), beating `phase` before and every WAIT_BEAT_S during it; True when stopped."""
    heart = current()
    if heart is None:
        return stop.wait(seconds)
    deadline = time.monotonic() + seconds
    heart.beat(phase, sleep_s=seconds if phase == "sleeping" else _KEEP)
    while (left := deadline - time.monotonic()) > 0:
        if stop.wait(min(left, WAIT_BEAT_S)):
            return True
        if deadline - time.monotonic() > 0:
            heart.beat(phase, force=True)
    return stop.is_set()
