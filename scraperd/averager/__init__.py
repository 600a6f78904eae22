"""The averager: binned historical aggregation of a regime's sources, at database speed.

Modules: grid.py the territory grid and bin planner (pure), queries.py the grouped SQL, daemon.py the shell.

Every source of the regime is averaged into its own DBI context (SITEMASK/SUBSITE from the table
name), all of them in one pass over one grid:

    territory       from the bin after the context's last validity record to the start of the bin
                    holding the source's last row, so only complete bins (a later row exists) are
                    averaged. An empty context starts after timefloor / seed_timestart (or 1971,
                    below which DCS dates are junk). Either way it starts at the bin of the first row
                    the aggregate_filter keeps, so a stretch without any writes nothing and costs
                    no maxiter.
    territory bins  `territory` long, aligned on local midnight: one grouped query each (after an
                    index-only look-up of its ids), grouping the rows into `binsize` bins and
                    computing every `aggregate` function of every column not in `aggregate_skips`,
                    the count (`aggregate_count`) and min/max date_time, `aggregate_filter` in the
                    WHERE clause. The sources' territory bins are taken together, cell by cell of
                    the territory grid: maxiter > 0 caps the cells of one run; SIGTERM stops
                    between cells, after writing the finished ones.
    records         one per group: validity [min, max] date_time in UTC (one second when min = max,
                    as DBI needs start < end), VERSIONDATE = TIMESTART (averages never overlay each
                    other), one payload row keyed like the target columns: <column>_<fn>, count.

Order: records are written in (bin, source) order, the source's place in the regime breaking ties
(AD1 before AD2), as the scraper commits in (sample time, source) order. Every batch is a prefix of
that order and every source resumes after its own last record, so SEQNOs, not only contents, are
the same however the work was cut: maxiter, SIGTERM, a kill between batches, a lost connection.
Each source runs to the end of its own last complete bin; one that is behind never holds the
others back. Append runs over a growing source therefore equal one full run row for row, SEQNOs
included, when the sources have grown alike (their last complete bins are the same at each run, as
when the DCS writes all of them); otherwise only the SEQNO order of the bins where one source was
ahead differs (`territory` events say where each source ends).

Bins are cut from one grid of naive local time starting at 1970-01-01 00:00, so a binsize that
divides a day falls on every local midnight (a DST day holds 23 or 25 hours), and a re-run cuts the
same bins as the first run: N append runs write what one full run writes. A run resumes at the end
of the bin holding the last record's TIMESTART: its TIMEEND can be the next bin's start (a one-row
group), its TIMESTART never. (A local time inside a spring-forward gap, which a DST-keeping DCS
clock never writes, would come back one hour later and resume one bin late.)

Speed: rows never leave the database. Each territory bin is found with `date_time >= :lo AND
date_time < :hi` on the date_time index, which also gives its span of ids, so the grouped query can
read that stretch of the primary key in order (see grouped_statement). Up to `workers`
territory bins are queried at once, taken in order of time, while the main thread writes records in
batches (dbi.writer.write_many: one transaction, SEQNOs reserved once). The work in Python is one
dict per group; memory does not grow with the table.

Events: startup and territory (every bin listed) per source, sample per territory bin (the manual's
SV line: range, groups, state replay), propagate per record (committed in batches),
progress (no terminal) or a bar on stderr (terminal), shutdown.

Refuses (exit 78): a target none of whose columns is named like an aggregate (the regime's scraper is
not used: a group is its aggregates); binsize or territory not falling on every local midnight, or
territory not a whole multiple of binsize (config.AveragerSection, so check-config says so too); an
aggregate_filter the source rejects (checked by running the grouped query over an empty range at
start-up); --drop-target on offline_db. Target columns no aggregate fills, or aggregates the target
has no column for, are an `aggregate_mismatch` warning naming them all: the former are written NULL.
Unlike the scraper, the averager counts every row of a bin, a repeated date_time too. binsize is
fixed for a target: to change it, --drop-target or a new target (a last record longer than a bin is
warned as `binsize_changed`; a larger binsize cannot be told from the records).
It never seeds a target, and never writes anything but its own records. Its writes are fenced as the
scraper's (dbi.writer.Fence): a second copy of the section that wrote first turns a batch into a
`write_conflict` and a fresh start-up from the target, so two copies write what one run writes.
"""

from scraperd.averager.daemon import Averager, run
from scraperd.averager.grid import Unit, bin_floor, cells, in_order, resume_start, territory_bins, validity
from scraperd.averager.queries import BIN

__all__ = ["BIN", "Averager", "Unit", "bin_floor", "cells", "in_order", "resume_start", "run", "territory_bins",
           "validity"]
