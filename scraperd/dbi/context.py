"""A DBI context: which part of the detector and which kind of data a validity record is for.

Pure: no database. The reader turns a Context into SQL (reader.context_clause for the rows that
serve it, reader.exact_context for the rows written with exactly it); this module holds the same
rules for records that are not in a table yet (the writer's batch, a test's expectation).

    SITEMASK, SIMMASK   bit masks: a row serves a query when they share a bit with the query's
    SUBSITE, TASK       equal
    AGGREGATENO         equal; -1 is "not aggregated" (legacy rows may hold NULL, read as -1)
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def asdict(self) -> dict[str, int]:
        """All five columns, as a WriteConflict names the context."""
        return {**self.fields(), "aggregateno": self.aggregateno}
