"""PMT high voltage: one source row (HV ⋈ HVPw on id) becomes 192 payload rows, one per PMT.

Columns L<ladder>C<col>R<ring> of DBNS_ADn_HV hold the voltage; the same names in DBNS_ADn_HVPw,
joined with the prefix P_, hold the power flag. Changed when any power flag differs or any
voltage moves by more than threshold (volts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scraperd.dcsnames import lcr
from scraperd.regimes.base import Faker, Regime, Scraper, Source, finite_or_none


def channels(row: Mapping[str, Any]) -> dict[tuple[int, int, int], tuple[Any, Any]]:
    """(ladder, col, ring) -> (voltage, pw) of one joined source row."""
    out: dict[tuple[int, int, int], tuple[Any, Any]] = {}
    for k, v in row.items():
        if k.startswith("P_") or (key := lcr(k)) is None:
            continue
        out[key] = (v, row.get("P_" + k))
    return out


class PmtHvScraper(Scraper):
    def changed(self, sv: Sequence[Any]) -> bool:
        before = channels(sv[0])
        for key, (volt, pw) in channels(sv[-1]).items():
            v0, p0 = before.get(key, (None, None))
            if p0 != pw:
                return True
            a, b = finite_or_none(v0), finite_or_none(volt)
            if (a is None) != (b is None):
                return True
            if a is not None and b is not None and abs(b - a) > self.threshold:
                return True
        return False

    def propagate(self, sv: Sequence[Any]) -> Iterable[Mapping[str, Any]]:
        for (ladder, col, ring), (volt, pw) in sorted(channels(sv[-1]).items()):
            yield {"ladder": ladder, "col": col, "ring": ring, "voltage": finite_or_none(volt),
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

    def seed(self, source: Source, target_columns: Sequence[str]) -> Mapping[str, Any]:
        return {"ladder": 0, "col": 0, "ring": 0, "voltage": 0, "pw": 0}
