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
        event: dict[str, Any] | None = None
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
                event = parsed if isinstance(parsed, dict) else None
            except ValueError:
                event = None
        if event is None:
            if self.events or not line:
                return None
            if self.since is not None and self._last_ts is not None and self._last_ts < self.since:
                return None
            return line
        ts = parse_ts(event.get("ts"))
        if ts is not None:
            self._last_ts = ts
        if self.since is not None and (ts is None or ts < self.since):
            return None
        if self.events and event.get("event") not in self.events:
            return None
        return format_event(event)


def render_lines(lines: Iterable[str], flt: Filter) -> Iterator[str]:
    for line in lines:
        out = flt.render(line)
        if out is not None:
            yield out


def follow(path: Path, flt: Filter, write: Callable[[str], None], *, stop: threading.Event | None = None,
           from_start: bool = True, poll_s: float = POLL_S, on_poll: Callable[[], None] | None = None) -> None:
    """Print the file's lines as they come, across rotation (rename + new file) and truncation.

    on_poll is called after each look at the file (tests wait on it instead of on the clock).
    """
    stop = stop or threading.Event()
    fh: TextIO | None = None
    pending = ""

    def drain() -> None:
        nonlocal pending
        assert fh is not None
        while True:
            chunk = fh.readline()
            if not chunk:
                return
            pending += chunk
            if pending.endswith("\n"):  # a line still being written waits for its end
                out = flt.render(pending)
                pending = ""
                if out is not None:
                    write(out)

    try:
        while not stop.is_set():
            if fh is None:
                try:
                    fh = path.open(errors="replace")
                except FileNotFoundError:
                    stop.wait(poll_s)
                    continue
                if not from_start:
                    fh.seek(0, os.SEEK_END)
                from_start = True  # a file that appears later, or after rotation, is read whole
            drain()
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            cur = os.fstat(fh.fileno())
            if st is None or st.st_ino != cur.st_ino:  # rotated: finish the old file, then the new one
                drain()
                fh.close()
                fh, pending = None, ""
                continue
            if st.st_size < fh.tell():  # truncated in place
                fh.seek(0)
                pending = ""
                continue
            if on_poll is not None:
                on_poll()
            stop.wait(poll_s)
    finally:
        if fh is not None:
            fh.close()


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
        first: datetime | None = None
        with fh:
            for line in fh:
                if first is None and line.startswith("{"):
                    first = parse_ts(_parsed(line).get("ts"))
                if event not in line:
                    continue
                e = _parsed(line)
                ts = parse_ts(e.get("ts"))
                if e.get("event") == event and ts is not None and ts >= since:
                    rows = e.get("rows", 1)
                    counts[str(e.get("source"))] += rows if isinstance(rows, int) else 1
        if first is not None and first < since:
            break  # the older files end before this one begins
    return counts


def _parsed(line: str) -> dict[str, Any]:
    try:
        e = json.loads(line)
    except ValueError:
        return {}
    return e if isinstance(e, dict) else {}


def cmd_logs(args: argparse.Namespace) -> int:
    path = Path(args.logfile) if args.logfile else logfile_for(args.section)
    events = frozenset(e.strip() for arg in args.event or [] for e in arg.split(",") if e.strip())
    flt = Filter(events=events, since=args.since)

    def write(text: str) -> None:
        print(text, flush=True)

    if not args.follow:
        if not path.exists():
            raise ScraperdError(f"no log file {path} (gen-ini's programs log to {DEFAULT_LOG_DIR}/<section>.log; "
                                "use --logfile PATH)")
        with path.open(errors="replace") as fh:
            for out in render_lines(fh, flt):
                write(out)
        return 0
    if not path.exists():
        print(f"scraperd: waiting for {path} to appear", file=sys.stderr)
    try:
        follow(path, flt, write)
    except KeyboardInterrupt:
        pass
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
