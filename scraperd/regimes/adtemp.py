"""AD temperatures: one payload row per source row; changed when any probe moves past threshold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from scraperd.dcsnames import probe
from scraperd.regimes.base import Faker, Regime, Scraper, Source, finite_or_none, moved


@lru_cache(maxsize=64)
def probe_columns(columns: tuple[str, ...]) -> tuple[tuple[int, str], ...]:
    """(probe number, column) pairs of a source's columns, worked out once per column set."""
    return tuple(sorted((n, c) for c in columns if (n := probe(c)) is not None))


def _probes(row: Mapping[str, Any]) -> tuple[tuple[int, str], ...]:
    return probe_columns(tuple(row))


class AdTempScraper(Scraper):
    def changed(self, sv: Sequence[Any]) -> bool:
        before, after = sv[0], sv[-1]
        threshold = self.threshold
        for _, col in _probes(after):  # a plain loop: this runs for every row of a catch-up
            if moved(before.get(col), after[col], threshold):
                return True
        return False

    def propagate(self, sv: Sequence[Any]) -> Iterable[Mapping[str, Any]]:
        latest = sv[-1]
        yield {f"Temp_PT{n}": finite_or_none(latest[col]) for n, col in _probes(latest)}


class AdTempFaker(Faker):
    def base(self, table: str, column: str) -> float:
        return float((probe(column) or 0) * 10)


class AdTemp(Regime):
    target = "DcsAdTemp"
    sources = (Source("DBNS_SAB_Temp"),)
    scraper = AdTempScraper
    faker = AdTempFaker

    def seed(self, source: Source) -> Mapping[str, Any]:
        return {f"Temp_PT{n}": 0.0 for n in range(1, 6)}
