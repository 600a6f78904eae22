"""`scraperd logs SECTION`: a section's JSON log file, made readable.

    2026-05-09 07:35:24  DBNS_SAB_Temp  SV 8   (6, 13)  2011-02-01 00:01:00 full       overage    (00:01:00 00:02:10)  ==> PROCEED
    2026-05-09 07:35:25  info     propagate source=DBNS_SAB_Temp seqno=3 rows=1 timestart="2011-01-31 16:02:10"

`sample` events become the manual's SV lines; every other event is `ts level event key=value ...`
(`section`, bound to every event of the file, is left out). Lines that are not JSON — a traceback,
the one-line error of a failed start, supervisord's own words — are printed as they are. Times are
the events' `ts` (UTC). Reads the file supervisord writes for the section (var/log/<section>.log,
as gen-ini configures it); needs no config, so the log of a broken section can always be read.
`-f` follows the file across supervisord's rotations, like `tail -F`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO, cast

from scraperd import config
from scraperd.errors import ScraperdError
from scraperd.supervisor import DEFAULT_LOG_DIR, logfile_for

HIDDEN = ("ts", "level", "event", "section")
POLL_S = 0.25


def sv_line(e: dict[str, Any]) -> str:
    """A `sample` event as the manual prints it: SV n ids tcursor fullness state (range) ==> PROCEED."""
    ids = tuple(e.get("ids") or ())
    rng = list(e.get("range") or [None, None]) + [None, None]

    def clock(t: Any) -> str:
        return "++" if t is None else str(t).split(" ")[-1]

    proceed = " PROCEED" if e.get("proceed") else ""
    if "groups" in e:  # the averager's territory bin: start=>end, and the number of groups written
        return (f"SV {e.get('n', '?')!s:<3} {rng[0]}=>{clock(rng[1])} {e.get('fullness', 'full')!s:<10} "
                f"{e.get('state', '')!s:<10} ({clock(rng[0])} {clock(rng[1])}) [{e['groups']}]  ==>{proceed}")
    return (f"SV {e.get('n', '?')!s:<3} {ids!s:<8} {e.get('tcursor')} {e.get('fullness', '')!s:<10} "
            f"{e.get('state', '')!s:<10} ({clock(rng[0])} {clock(rng[1])})  ==>{proceed}")


def _value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v) if (not v or any(c in v for c in " \"'=\t")) else v
    return json.dumps(v, default=str, separators=(",", ":"))


def short_ts(ts: Any) -> str:
    """ISO `2026-05-09T07:35:25.123456Z` as `2026-05-09 07:35:25`."""
    text = str(ts or "")
    return text[:19].replace("T", " ") if len(text) >= 19 else text or "-"


def format_event(e: dict[str, Any]) -> str:
    """One event as one line (plus a traceback's lines, indented, when it carries one)."""
    ts = short_ts(e.get("ts"))
    if e.get("event") == "sample":
        return f"{ts}  {str(e.get('source', '')):<14} {sv_line(e)}"
    exc = e.get("exception")
    fields = " ".join(f"{k}={_value(v)}" for k, v in e.items() if k not in HIDDEN and k != "exception")
    line = f"{ts}  {str(e.get('level', '')):<7}  {e.get('event', '')} {fields}".rstrip()
    if isinstance(exc, str) and exc:
        line += "\n" + "\n".join("    " + x for x in exc.rstrip().splitlines())
    return line


def parse_ts(ts: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(ts))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_since(text: str) -> datetime:
    """--since: a duration back from now (10m, 2h, 1d) or a UTC time (2026-05-09 07:00:00)."""
    try:
        return datetime.now(UTC) - cast(timedelta, config.parse_duration(text))
    except ValueError:
        pass
    try:
        return cast(datetime, config.parse_datetime(text)).replace(tzinfo=UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration (10m, 2h) or a UTC time, got {text!r}") from None


@dataclass
class Filter:
    """Which lines to show. Non-JSON lines have no event: shown unless --event is given, and dated by
    the event before them (a traceback belongs to the error it follows); those before any event
    (say, the one-line error of a section that never started) are always shown."""

    events: frozenset[str] = frozenset()
    since: datetime | None = None
    _last_ts: datetime | None = None

    def render(self, line: str) -> str | None:
        """The text to print for one raw line, or None to skip it."""
        line = line.rstrip("\n")
        event = parse_event(line) if line.startswith("{") else None
        if event is None:
            return line if self._shows_text(line) else None
        ts = parse_ts(event.get("ts"))
        if ts is not None:
            self._last_ts = ts
        return format_event(event) if self._shows_event(event, ts) else None

    def _shows_text(self, line: str) -> bool:
        """A line that is not an event, dated by the event before it."""
        if self.events or not line:
            return False
        return self.since is None or self._last_ts is None or self._last_ts >= self.since

    def _shows_event(self, event: dict[str, Any], ts: datetime | None) -> bool:
        if self.since is not None and (ts is None or ts < self.since):
            return False
        return not self.events or event.get("event") in self.events


def render_lines(lines: Iterable[str], flt: Filter) -> Iterator[str]:
    for line in lines:
        out = flt.render(line)
        if out is not None:
            yield out


@dataclass
class _Tail:
    """One open log file being followed, and the part of a line not yet ended."""

    fh: TextIO
    flt: Filter
    write: Callable[[str], None]
    pending: str = ""

    @classmethod
    def opened(cls, path: Path, flt: Filter, write: Callable[[str], None], *, at_end: bool) -> _Tail | None:
        """The file opened (at its end with at_end), or None while it does not exist."""
        try:
            fh = path.open(errors="replace")
        except FileNotFoundError:
            return None
        if at_end:
            fh.seek(0, os.SEEK_END)
        return cls(fh, flt, write)

    def drain(self) -> None:
        """Write every line ended since the last look."""
        while chunk := self.fh.readline():
            self.pending += chunk
            if self.pending.endswith("\n"):  # a line still being written waits for its end
                out = self.flt.render(self.pending)
                self.pending = ""
                if out is not None:
                    self.write(out)

    def poll(self, path: Path) -> bool:
        """Write what was appended; False once path names another file (this one is then finished)."""
        while True:
            self.drain()
            try:
                st: os.stat_result | None = path.stat()
            except FileNotFoundError:
                st = None
            if st is None or st.st_ino != os.fstat(self.fh.fileno()).st_ino:
                self.drain()  # rotated: finish the old file, then the new one
                return False
            if st.st_size >= self.fh.tell():
                return True
            self.fh.seek(0)  # truncated in place: read it again from its start
            self.pending = ""


def follow(path: Path, flt: Filter, write: Callable[[str], None], *, stop: threading.Event | None = None,
           from_start: bool = True, poll_s: float = POLL_S, on_poll: Callable[[], None] | None = None) -> None:
    """Print the file's lines as they come, across rotation (rename + new file) and truncation.

    on_poll is called after each look at the file (tests wait on it instead of on the clock).
    """
    stop = stop or threading.Event()
    tail: _Tail | None = None
    try:
        while not stop.is_set():
            if tail is None:
                tail = _Tail.opened(path, flt, write, at_end=not from_start)
                if tail is None:
                    stop.wait(poll_s)
                    continue
                from_start = True  # a file that appears later, or after rotation, is read whole
            if not tail.poll(path):
                tail.fh.close()
                tail = None
                continue
            if on_poll is not None:
                on_poll()
            stop.wait(poll_s)
    finally:
        if tail is not None:
            tail.fh.close()


def rotated(path: Path) -> list[Path]:
    """The file and its rotated predecessors, newest first: x.log, x.log.1, x.log.2, ... (supervisord's)."""
    older = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    return [path, *sorted(older, key=lambda p: int(p.suffix[1:]))]


def count_events(path: Path, event: str, since: datetime) -> Counter[str]:
    """Per source, the `event` events at or after `since` in a section's log file and, while they
    reach back that far, its rotated predecessors; one with rows=N (a summary) counts N.

    Only lines naming the event are parsed, so a day of a busy log reads fast. FileNotFoundError when
    the file itself is missing, OSError when it cannot be read."""
    counts: Counter[str] = Counter()
    for n, file in enumerate(rotated(path)):
        try:
            fh = file.open(errors="replace")
        except FileNotFoundError:
            if n == 0:
                raise
            break
        with fh:
            first = _count_in(fh, event, since, counts)
        if first is not None and first < since:
            break  # the older files end before this one begins
    return counts


def _count_in(lines: Iterable[str], event: str, since: datetime, counts: Counter[str]) -> datetime | None:
    """Add one file's `event` events at or after since to counts; the time of its first event."""
    first: datetime | None = None
    for line in lines:
        if first is None and line.startswith("{"):
            first = parse_ts((parse_event(line) or {}).get("ts"))
        if event not in line:
            continue
        e = parse_event(line) or {}
        if _counted(e, event, since):
            rows = e.get("rows", 1)
            counts[str(e.get("source"))] += rows if isinstance(rows, int) else 1
    return first


def _counted(e: dict[str, Any], event: str, since: datetime) -> bool:
    ts = parse_ts(e.get("ts"))
    return e.get("event") == event and ts is not None and ts >= since


def parse_event(line: str) -> dict[str, Any] | None:
    """A JSON log line as its event; None for any other line."""
    try:
        e = json.loads(line)
    except ValueError:
        return None
    return e if isinstance(e, dict) else None


def _write(text: str) -> None:
    print(text, flush=True)


def _print_file(path: Path, flt: Filter) -> None:
    if not path.exists():
        raise ScraperdError(f"no log file {path} (gen-ini's programs log to {DEFAULT_LOG_DIR}/<section>.log; "
                            "use --logfile PATH)")
    with path.open(errors="replace") as fh:
        for out in render_lines(fh, flt):
            _write(out)


def _follow_until_interrupted(path: Path, flt: Filter) -> None:
    if not path.exists():
        print(f"scraperd: waiting for {path} to appear", file=sys.stderr)
    try:
        follow(path, flt, _write)
    except KeyboardInterrupt:
        pass


def cmd_logs(args: argparse.Namespace) -> int:
    path = Path(args.logfile) if args.logfile else logfile_for(args.section)
    events = frozenset(e.strip() for arg in args.event or [] for e in arg.split(",") if e.strip())
    flt = Filter(events=events, since=args.since)
    if args.follow:
        _follow_until_interrupted(path, flt)
    else:
        _print_file(path, flt)
    return 0


EPILOG = """\
examples:
  scraperd logs adtemp_scraper --event sample --since 10m
  scraperd logs pmthv_scraper -f --event propagate,db_retry,shutdown

Event names: startup, seed, sample, propagate, tune, db_retry, seqno_repair, fake, progress,
shutdown, and warnings named after their condition (bad_row, late_row, aggregate_empty, write_conflict, ...).
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("logs", help="print a section's log readably (SV lines for samples)",
                       description="Print the JSON log of a section readably: sample events as the manual's "
                                   "SV lines, other events as `ts level event key=value`.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", help="config section, e.g. adtemp_scraper")
    p.add_argument("--event", action="append", metavar="E", help="only these events (repeatable, or a,b)")
    p.add_argument("--since", type=parse_since, metavar="WHEN",
                   help="only events since a duration ago (10m, 2h) or a UTC time")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (follows rotation)")
    p.add_argument("--logfile", metavar="PATH", help=f"the log file (default {DEFAULT_LOG_DIR}/SECTION.log)")
    p.set_defaults(func=cmd_logs)
