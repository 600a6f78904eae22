"""What a regime is: the table-specific code of one scraper, and nothing else.

A regime names its source tables (each source a table, or tables joined on `id`), its target
(a .spec table), a Scraper with `changed(sv)` and `propagate(sv)`, a Faker with
`fake(inst, id, dt)`, and optionally `seed(source)`. Sampling, writing, retries and logging are
shared (scrape/), never copied in here.

    class AdTemp(Regime):
        target = "DcsAdTemp"
        sources = (Source("DBNS_SAB_Temp"),)
        scraper = AdTempScraper
        faker = AdTempFaker

Config names a regime as `regime = scraperd.regimes.adtemp:AdTemp`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

from scraperd.dcsnames import DcsName, parse_table


@dataclass(frozen=True)
class Source:
    """One source of a regime: a DCS table, or several joined on `id` (the first gives date_time).

    Columns of a joined table that collide with earlier ones are prefixed (`P_` by default), as in
    the original: DBNS_AD1_HV ⋈ DBNS_AD1_HVPw gives L1C1R1 (voltage) and P_L1C1R1 (power).
    """

    table: str
    joins: tuple[str, ...] = ()
    join_prefix: str = "P_"

    @property
    def tables(self) -> tuple[str, ...]:
        return (self.table, *self.joins)

    @property
    def name(self) -> str:
        return self.table

    @property
    def dcs(self) -> DcsName:
        return parse_table(self.table)


class Instance(dict):  # type: ignore[type-arg]
    """A fake source row under construction: column -> value, plus the table it goes to."""

    def __init__(self, table: str, columns: Iterable[str]) -> None:
        super().__init__((c, None) for c in columns)
        self.table = table


class Scraper:
    """Judges change and turns a source vector into target rows. Subclass per regime.

    sv[0] is the last propagated (or first collected) source row, sv[-1] the latest; each is a
    mapping of source columns with `.id`, `.date_time` (local) and `.aggd` (aggregates, or None).
    """

    #: With `aggregate` configured, the aggregate query runs at every full sample, so that changed()
    #: finds sv[-1].aggd filled, as the manual promises. A regime whose changed() never reads it sets
    #: False: the query then runs only before a propagation (same records, far fewer queries).
    changed_uses_aggregates: ClassVar[bool] = True

    def __init__(self, *, threshold: float, target_columns: Sequence[str], aggregate_count: str = "count",
                 aggregate_none: float | None = None) -> None:
        self.threshold = threshold
        self.target_columns = tuple(target_columns)
        self.aggregate_count = aggregate_count
        self.aggregate_none = aggregate_none

    def changed(self, sv: Sequence[Any]) -> bool:
        """True when sv[-1] differs enough from sv[0] to propagate; maxage is handled outside."""
        return False

    def propagate(self, sv: Sequence[Any]) -> Iterable[Mapping[str, Any]]:
        """The target payload rows (dicts keyed by .spec column names) for sv[-1]."""
        raise NotImplementedError


class AggregateScraper(Scraper):
    """Generic aggregation: one payload row from sv[-1].aggd, keyed `<column>_<fn>` like the target."""

    changed_uses_aggregates = False  # changed() is the base one: never changed, maxage decides

    def propagate(self, sv: Sequence[Any]) -> Iterable[Mapping[str, Any]]:
        aggd = sv[-1].aggd or {}
        row = {c: aggd.get(c) for c in self.target_columns}
        if self.aggregate_count in self.target_columns:
            row[self.aggregate_count] = aggd.get(self.aggregate_count, 0)
        yield row


class Faker:
    """Fills fake source rows. `profile` chooses the values; random_walk is seeded, so reproducible."""

    def __init__(self, *, profile: str = "modulo_ramp", seed: int = 0) -> None:
        self.profile = profile
        self.seed = seed
        self._walk: dict[tuple[str, str], float] = {}

    def prime(self, table: str, last: Mapping[str, Any] | None) -> None:
        """Continue a random walk from the table's last row (so a restarted faker changes nothing)."""
        for k, v in (last or {}).items():
            f = finite_or_none(v)
            if f is not None and k not in ("id", "date_time"):
                self._walk[(table, k)] = f

    def fake(self, inst: Instance, id: int, dt: datetime) -> None:  # noqa: A002 - the manual's signature
        """Set id, date_time and every value column of inst."""
        inst["id"] = id
        inst["date_time"] = dt
        for k in inst:
            if k not in ("id", "date_time"):
                inst[k] = self.value(inst.table, k, id)

    def base(self, table: str, column: str) -> float:
        """The constant a column centres on; regimes override for realistic magnitudes."""
        return 10.0

    def value(self, table: str, column: str, id: int) -> float:  # noqa: A002
        base = self.base(table, column)
        if self.profile == "constant":
            return base
        if self.profile == "modulo_ramp":
            return base + float(id % 10)
        # random_walk: steps of ±1 % of the base, drawn from (seed, table, column, id): reproducible
        key = (table, column)
        cur = self._walk.get(key, base)
        step = random.Random(f"{self.seed}:{table}:{column}:{id}").uniform(-1, 1) * max(abs(base), 1.0) * 0.01
        cur = round(cur + step, 2)  # the walk goes on from what the table holds (DCS decimals have 2 places)
        self._walk[key] = cur
        return cur


class Regime:
    """The umbrella of one regime; subclasses set the class attributes."""

    target: ClassVar[str]
    sources: ClassVar[tuple[Source, ...]]
    scraper: ClassVar[type[Scraper]] = Scraper
    faker: ClassVar[type[Faker]] = Faker

    def __init__(self, target_columns: Sequence[str] = ()) -> None:
        self.target_columns = tuple(target_columns)  # the .spec columns, for seed()

    def seed(self, source: Source) -> Mapping[str, Any]:
        """The payload of the seed record planted in an empty target: zeros by default."""
        return {c: 0 for c in self.target_columns}


@lru_cache(maxsize=16)
def _exact_decimal(threshold: float) -> Decimal:
    """The float's exact value as a Decimal: comparing with it is what comparing with the float does
    (Python compares Decimal and float exactly), at a quarter of the cost."""
    return Decimal(threshold)


def moved(before: Any, after: Any, threshold: float) -> bool:
    """True when `after` differs from `before` by more than threshold; a value appearing or vanishing
    (NULL, NaN) counts as a move. Decimal and float both work; equal values cost one comparison."""
    if before == after:
        return False
    try:  # two numbers: no conversions
        delta = abs(after - before)
        if delta == delta:  # not NaN
            if type(delta) is Decimal:  # DCS DECIMAL columns
                return bool(delta > _exact_decimal(threshold))
            return bool(delta > threshold)
    except (TypeError, ArithmeticError):
        pass
    a, b = finite_or_none(before), finite_or_none(after)
    if a is None or b is None:
        return (a is None) != (b is None)
    return abs(b - a) > threshold


def finite_or_none(value: Any) -> float | None:
    """A float for a DB value; None for NULL or non-finite (bad rows must not crash changed())."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None
