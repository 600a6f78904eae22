"""A DBI context: which part of the detector and which kind of data a validity record is for.

Pure: no database. The reader turns a Context into SQL (reader.context_clause for the rows that
serve it, reader.exact_context for the rows written with exactly it); this module holds the same
rules for records that are not in a table yet (the writer's batch, a test's expectation).

    SITEMASK, SIMMASK   bit masks: a row serves a query when they share a bit with the query's
    SUBSITE, TASK       equal
    AGGREGATENO         equal; -1 is "not aggregated" (legacy rows may hold NULL, read as -1)

Sites are DBI's site masks, one bit each (SITES); the DCS table prefixes (DBNS, LANS, FARS, MIDS,
Aberdeen, SAB: dcsnames.py) name the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from scraperd import dcsnames

# DBI's site masks (Site::kDayaBay ...), and the DCS table prefix of each site: the bit dcsnames gives it
SITES = {"DayaBay": 1, "LingAo": 2, "Far": 4, "Mid": 8, "Aberdeen": 16, "SAB": 32}
DCS_SITES = {name: 1 << i for i, name in enumerate(dcsnames.SITES)}


def site_mask(name: str) -> int:
    """The SITEMASK of a site name (DayaBay, LingAo, Far, Mid, Aberdeen, SAB, or a DCS prefix such as
    DBNS), in any case; ValueError naming the known ones."""
    masks = {k.lower(): v for k, v in (SITES | DCS_SITES).items()}
    try:
        return masks[name.strip().lower()]
    except KeyError:
        known = ", ".join(f"{k} {v}" for k, v in SITES.items())
        raise ValueError(f"unknown site {name!r} (DBI sites: {known}; or DBNS, LANS, FARS, MIDS)") from None


@dataclass(frozen=True, slots=True)
class Context:
    """A DBI context as written in the Vld row."""

    sitemask: int
    subsite: int
    simmask: int = 1
    task: int = 0
    aggregateno: int = -1

    def serves(self, query: Context) -> bool:
        """Would the context query for `query` consider a row written with this context?"""
        return bool(self.sitemask & query.sitemask) and bool(self.simmask & query.simmask) and (
            (self.subsite, self.task, self.aggregateno) == (query.subsite, query.task, query.aggregateno))

    def fields(self) -> dict[str, int]:
        """The context as log event fields (sitemask, subsite, simmask, task)."""
        return {"sitemask": self.sitemask, "subsite": self.subsite, "simmask": self.simmask, "task": self.task}

    def text(self) -> str:
        """The context as a person reads it: sitemask=32 subsite=1 simmask=1 task=0 (aggregateno when not -1)."""
        shown = self.fields() | ({"aggregateno": self.aggregateno} if self.aggregateno != -1 else {})
        return " ".join(f"{k}={v}" for k, v in shown.items())

    def asdict(self) -> dict[str, int]:
        """All five columns, as a WriteConflict names the context."""
        return {**self.fields(), "aggregateno": self.aggregateno}
