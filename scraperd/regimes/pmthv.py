"""PMT high voltage: one source row (HV ⋈ HVPw on id) becomes 192 payload rows, one per PMT.

Columns L<ladder>C<col>R<ring> of DBNS_ADn_HV hold the voltage; the same names in DBNS_ADn_HVPw,
joined with the prefix P_, hold the power flag. Changed when any power flag differs or any
voltage moves by more than threshold (volts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from scraperd.dcsnames import lcr
from scraperd.regimes.base import Faker, Regime, Scraper, Source, finite_or_none, moved


@lru_cache(maxsize=64)
def channel_columns(columns: tuple[str, ...]) -> tuple[tuple[tuple[int, int, int], str, str], ...]:
    """((ladder, col, ring), voltage column, power column) of a joined row's columns, sorted; once per set."""
    names = set(columns)
    return tuple(sorted((key, c, "P_" + c) for c in columns
                        if not c.startswith("P_") and (key := lcr(c)) is not None and "P_" + c in names))


class PmtHvScraper(Scraper):
    def changed(self, sv: Sequence[Any]) -> bool:
        before, after = sv[0], sv[-1]
        return any(before.get(pcol) != after[pcol] or moved(before.get(vcol), after[vcol], self.threshold)
                   for _, vcol, pcol in channel_columns(tuple(after)))

    def propagate(self, sv: Sequence[Any]) -> Iterable[Mapping[str, Any]]:
        latest = sv[-1]
        for (ladder, col, ring), vcol, pcol in channel_columns(tuple(latest)):
            pw = latest[pcol]
            yield {"ladder": ladder, "col": col, "ring": ring, "voltage": finite_or_none(latest[vcol]),
                   "pw": None if pw is None else int(pw)}


class PmtHvFaker(Faker):
    def fake(self, inst: Any, id: int, dt: Any) -> None:  # noqa: A002
        super().fake(inst, id, dt)
        if inst.table.endswith("Pw"):
            for k in inst:
                if lcr(k):
                    inst[k] = 1  # power flags stay on

    def base(self, table: str, column: str) -> float:
        ladder, col, ring = lcr(column) or (0, 0, 0)
        return float(ladder * 100 + col * 10 + ring)


class PmtHv(Regime):
    target = "DcsPmtHv"
    sources = (Source("DBNS_AD1_HV", joins=("DBNS_AD1_HVPw",)),
               Source("DBNS_AD2_HV", joins=("DBNS_AD2_HVPw",)))
    scraper = PmtHvScraper
    faker = PmtHvFaker

    def seed(self, source: Source) -> Mapping[str, Any]:
        return {"ladder": 0, "col": 0, "ring": 0, "voltage": 0, "pw": 0}
