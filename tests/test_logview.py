"""logview on log files made here: late_row counting across supervisord's rotated files, and
`logs -f` after a file is truncated in place."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scraperd import logview
from tests.conftest import wait_until

NOW = datetime.now(UTC)


def event(ago: timedelta, name: str, **kw) -> str:
    return json.dumps({"event": name, "level": "warning", "ts": (NOW - ago).strftime("%Y-%m-%dT%H:%M:%S.%fZ"), **kw})


def write(path: Path, *lines: str) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def test_count_events_reads_rotated_files_only_while_they_reach_back(tmp_path):
    log = tmp_path / "s.log"
    h = timedelta(hours=1)
    write(log, event(1 * h, "startup"), event(h / 2, "late_row", source="A"),
          event(h / 4, "late_row", source="A", rows=15), event(h / 4, "propagate", source="A"), "not json late_row")
    write(tmp_path / "s.log.1", event(30 * h, "startup"), event(26 * h, "late_row", source="A"),
          event(2 * h, "late_row", source="B"))
    write(tmp_path / "s.log.2", event(3 * h, "late_row", source="C"))  # before s.log.1 began: never read
    counts = logview.count_events(log, "late_row", NOW - 24 * h)
    assert counts == {"A": 16, "B": 1}
    with pytest.raises(FileNotFoundError):
        logview.count_events(tmp_path / "none.log", "late_row", NOW - 24 * h)


def test_follow_reads_a_file_truncated_in_place_again_from_its_start(tmp_path):
    log = tmp_path / "s.log"
    write(log, event(timedelta(0), "startup", seqno=1), event(timedelta(0), "propagate", seqno=2))
    seen: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=logview.follow, args=(log, logview.Filter(), seen.append),
                         kwargs={"stop": stop, "poll_s": 0.02}, daemon=True)
    t.start()
    try:
        wait_until(lambda: len(seen) == 2, timeout=5, what="the two existing lines")
        with log.open("r+") as fh:  # copytruncate-style: the same file, emptied, then written anew
            fh.truncate(0)
        with log.open("a") as fh:
            fh.write(event(timedelta(0), "shutdown", reason="SIGTERM") + "\n")
        wait_until(lambda: len(seen) == 3, timeout=5, what="the line written after the truncation")
    finally:
        stop.set()
        t.join(timeout=5)
    assert [s.split()[3] for s in seen] == ["startup", "propagate", "shutdown"]
