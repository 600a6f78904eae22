"""Late source rows: committed after the scraper read past their date_time.

Rows are read in (date_time, id) order from the point reached, so a row that appears later with an
earlier date_time is never read by this run, while a rebuild from the source reads it: the output
would depend on when scraping happened. This room watches for such rows, cheaply, on the id
primary key of each source's main table, and reports each as a `late_row` warning:

    head   the highest id looked at: MAX(id) at the first start-up of the process (read from the
           index alone), kept across reconnects
    poll   after every read of the source: the rows with id above the head, a primary-key range that
           holds only what was inserted since the last read (in chunks); the head moves to the
           largest id returned. One the read did not return, dated before the point already read
           (sampling.missed()), is late.
    start  once per process, after resume(): rows inserted after the last record's row (id above
           sv[0]'s) but dated before it, at most START_WINDOW before: late commits while no
           scraper ran. A window of date_time, so that a start-up far behind costs no table scan.

A late row repeating the date_time of a row with a smaller id is no loss (a rebuild ignores it too:
the first by id counts) and is not reported. At most LISTED events per source and look, then one
summary with rows=N. Nothing here reads a row
for sampling or changes what is written: source_delay is how late commits get read in order.
Limits (README, "Behaviour worth knowing"): an auto-increment id is allocated at INSERT, not at
COMMIT, so a row committed after a larger id was looked at is not seen; only the main table of a
joined source is watched; a row in the gap after an earlier record is reported though a rebuild
skips it too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from scraperd import logsetup
from scraperd.scrape import sampling, source
from scraperd.scrape.sampling import Sampler, SourceRow
from scraperd.scrape.source import SourceTable

log = logsetup.get_logger("scraperd.scraper")

LISTED = 10                      # late_row events per source and look; the rest in one summary event
CHUNK = 1000                     # new rows read per query
START_WINDOW = timedelta(days=1)  # how far before the last record the start-up look goes

ACTION = {
    "poll": "not read: the scraper had read past its date_time; a rebuild would read it (raise source_delay)",
    "startup": "not read: dated before the last record but inserted after its row; a rebuild would read it "
               "(raise source_delay)",
}


@dataclass
class Found:
    """The late rows of one look at one source: the first LISTED, and a count of the others."""

    listed: list[tuple[int, datetime]] = field(default_factory=list)
    more: int = 0
    first_more: int | None = None
    last_more: int | None = None

    def add(self, row_id: int, dt: datetime) -> None:
        if len(self.listed) < LISTED:
            self.listed.append((row_id, dt))
            return
        self.more += 1
        self.first_more = self.first_more if self.first_more is not None else row_id
        self.last_more = row_id


class Watcher:
    """The id heads of one scraper's sources, kept across reconnects: after one, the next poll looks
    at the rows committed meanwhile (against the resumed state) instead of starting afresh."""

    def __init__(self, tz: ZoneInfo, timeformat: str) -> None:
        self.tz, self.timeformat = tz, timeformat
        self.heads: dict[str, int] = {}  # source name -> highest id looked at; absent: not watched
        self.unwatched: set[str] = set()

    def start(self, conn: sa.Connection, st: SourceTable, state: Sampler) -> None:
        """At start-up, after resume(): the head, and on the process's first start the late rows
        committed while no scraper ran."""
        name = st.source.name
        if not source.id_indexed(st):
            if name not in self.unwatched:
                self.unwatched.add(name)
                log.warning("late_rows_unwatched", source=name, reason="id is not indexed",
                            action="late rows are not looked for (an id range would scan the table)")
            return
        head = source.max_id(conn, st)
        if name in self.heads:  # a reconnect (a table recreated with fewer rows: from its new head)
            self.heads[name] = min(self.heads[name], head)
            return
        self.heads[name] = head
        sv0 = state.sv[0] if state.sv else None
        if sv0 is None:
            return
        found = Found()
        for row_id, dt in source.inserted_after(conn, st, sv0, head, sv0.date_time - START_WINDOW):
            if dt >= source.EPOCH_GUARD and sampling.missed(state, None, dt) \
                    and not source.has_twin_before(conn, st, row_id, dt):
                found.add(row_id, dt)
        self._report(name, found, "startup")

    def poll(self, conn: sa.Connection, st: SourceTable, state: Sampler, fetched: list[SourceRow]) -> None:
        """After a read (`fetched`, not yet stepped): the rows inserted since the last look that the
        read did not return and that are dated before the point read."""
        name = st.source.name
        if name not in self.heads:
            return
        read_to = fetched[-1].date_time if fetched else None
        found, fetched_ids = Found(), None
        while True:
            new = source.ids_after(conn, st, self.heads[name], CHUNK)
            if not new:
                break
            self.heads[name] = new[-1][0]
            for row_id, dt in new:
                if dt is None or dt < source.EPOCH_GUARD or not sampling.missed(state, read_to, dt):
                    continue  # NULL, zero and 1970 dates are bad rows, never read by anyone
                if fetched_ids is None:  # only when a new row is behind the point read: rare
                    fetched_ids = {r.id for r in fetched}
                if row_id not in fetched_ids and not source.has_twin_before(conn, st, row_id, dt):
                    found.add(row_id, dt)
            if len(new) < CHUNK:
                break
        self._report(name, found, "poll")

    def _report(self, name: str, found: Found, where: str) -> None:
        if not found.listed:
            return
        now = source.now_local(self.tz)
        for row_id, dt in found.listed:
            log.warning("late_row", source=name, id=row_id, date_time=dt.strftime(self.timeformat),
                        late_s=int((now - dt).total_seconds()), found=where, action=ACTION[where])
        if found.more:
            log.warning("late_row", source=name, rows=found.more, first_id=found.first_more,
                        last_id=found.last_more, found=where,
                        action=f"{found.more} more late rows, not listed one by one; {ACTION[where]}")
