"""AD temperatures: one payload row per source row; changed when any probe moves past threshold."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scraperd.dcsnames import probe
from scraperd.regimes.base import Faker, Regime, Scraper, Source, finite_or_none


def _probes(row: Mapping[str, Any]) -> dict[int, Any]:
    return {n: v for k, v in row.items() if (n := probe(k)) is not None}


class AdTempScraper(Scraper):
    def changed(self, sv: Sequence[Any]) -> bool:
        before, after = _probes(sv[0]), _probes(sv[-1])
        for n, v in after.items():
            a, b = finite_or_none(before.get(n)), finite_or_none(v)
            if (a is None) != (b is None):
                return True  # a probe appearing or vanishing is a change
            if a is not None and b is not None and abs(b - a) > self.threshold:
                return True
        return False

    def propagate(self, sv: Sequence[Any]) -> Iterable[Mapping[str, Any]]:
        yield {f"Temp_PT{n}": finite_or_none(v) for n, v in sorted(_probes(sv[-1]).items())}


class AdTempFaker(Faker):
    def base(self, table: str, column: str) -> float:
        return float((probe(column) or 0) * 10)


class AdTemp(Regime):
    target = "DcsAdTemp"
    sources = (Source("DBNS_SAB_Temp"),)
    scraper = AdTempScraper
    faker = AdTempFaker
