"""The databases of a section, checked before anything connects; the target's table, contexts, seeding.

preflight() is what `check-config` and every daemon's start run: the source and target names
resolve (my.cnf section or URL), the target .spec exists and takes what the regime writes, and no
protected database would be seeded or dropped. A source's context (SITEMASK, SUBSITE) comes from
its table name (dcsnames.py); SIMMASK and TASK from config. Seeding plants one record in a context
that holds no record at all, so that scraping knows where in time it is. Seeding and dropping are
refused for offline_db, recognised by its database name or by the ~/.my.cnf section naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, Engine

from scraperd import config, databases
from scraperd.dbi import spec as specmod
from scraperd.dbi.context import Context
from scraperd.errors import ConfigError
from scraperd.regimes.base import Regime, Source

PROTECTED_DATABASES = ("offline_db",)  # never seeded, never dropped
REAL_DCS_DATABASES = ("dybdcsdb",)       # the real DCS: a faker never drops it


def target_spec(loaded: config.Loaded, regime: type[Regime]) -> specmod.Spec:
    """The .spec of the target: `kls` when given (GDcsAdTemp or DcsAdTemp), else the regime's."""
    s = loaded.settings
    assert isinstance(s, config.TargetCommon)
    spec_dir = Path(s.spec_dir) if s.spec_dir else specmod.DEFAULT_SPEC_DIR
    name = s.kls or regime.target
    try:
        return specmod.find_spec(name, spec_dir)
    except ConfigError as exc:
        raise loaded.error("kls" if s.kls else "regime", exc.message) from None


def context_for(source: Source, settings: config.TargetCommon) -> Context:
    dcs = source.dcs
    return Context(sitemask=dcs.sitemask, subsite=dcs.subsite, simmask=settings.simmask, task=settings.task)


def protected(url: URL, name: str, names: Sequence[str] = PROTECTED_DATABASES) -> str | None:
    """How a database is protected: "offline_db" (its name in the URL), or "my.cnf section offline_db"
    (named by that section, as `target = offline_db` or a URL's read_default_group, whatever database
    it holds); else None."""
    database = databases.database_name(url)
    if database in names:
        return database
    group = name if not databases.is_url(name) else url.query.get("read_default_group")
    if isinstance(group, str) and group in names:
        return f"my.cnf section {group}"
    return None


def refuse_protected(url: URL, loaded: config.Loaded, what: str, key: str) -> None:
    """ConfigError when `what` (seeding, dropping) would touch a protected database."""
    assert isinstance(loaded.settings, config.TargetCommon)
    found = protected(url, loaded.settings.target)
    if found:
        raise loaded.error(key, f"{what} refused: the target database is {found}")


def seed_payload(regime: Regime, source: Source, spec: specmod.Spec) -> list[dict[str, Any]]:
    """The seed record's payload; ConfigError when the regime writes columns the .spec lacks."""
    columns = [c.name for c in spec.columns]
    row = dict(regime.seed(source))
    unknown = set(row) - set(columns)
    if unknown:
        raise ConfigError(f"{type(regime).__name__} writes columns {sorted(unknown)} that {spec.table} "
                          f"({spec.path}) does not have: kls and regime do not match")
    return [row]


def resolve(loaded: config.Loaded, key: str) -> URL:
    """The URL of the section's `source` or `target`; ConfigError naming file, section and key."""
    try:
        return databases.resolve(getattr(loaded.settings, key))
    except ConfigError as exc:
        where = f" ({exc.file})" if exc.file else ""
        raise loaded.error(key, exc.message + where) from None


@dataclass(frozen=True)
class Checked:
    """What preflight() found: the URLs, and the target spec for scrapers and averagers."""

    source: URL
    target: URL | None = None
    spec: specmod.Spec | None = None


def preflight(loaded: config.Loaded) -> Checked:
    """Everything about a section that can be checked without connecting (exit 78 on a problem)."""
    s = loaded.settings
    regime = s.regime_cls
    src = resolve(loaded, "source")
    if isinstance(s, config.FakerSection):
        found = protected(src, s.source, PROTECTED_DATABASES + REAL_DCS_DATABASES)
        if s.faker_dropsrc and found:
            raise loaded.error("faker_dropsrc", f"faker_dropsrc refused: the source database is {found}")
        return Checked(source=src)
    assert isinstance(s, config.TargetCommon)
    tgt = resolve(loaded, "target")
    spec = target_spec(loaded, regime)
    if s.seed_target_tables:
        refuse_protected(tgt, loaded, "seeding", "seed_target_tables")
    try:
        seed_payload(regime(target_columns(spec)), regime.sources[0], spec)
    except ConfigError as exc:
        raise loaded.error("kls" if s.kls else "regime", exc.message) from None
    return Checked(source=src, target=tgt, spec=spec)


def needs_seed_message(loaded: config.Loaded, table: str, source: Source, ctx: Context) -> ConfigError:
    return loaded.error(
        "seed_target_tables",
        f"target {table} has no validity record for source {source.name} "
        f"(sitemask={ctx.sitemask} subsite={ctx.subsite}): seed it by setting seed_target_tables = True, "
        f"seed_timestart and seed_timeend (local times) in this section, or run once with "
        f"--set seed_target_tables=True --set seed_timestart=... --set seed_timeend=...; "
        f"seeding is refused for offline_db")


def open_target(loaded: config.Loaded[Any]) -> tuple[URL, Engine, specmod.Spec]:
    checked = preflight(loaded)
    assert checked.target is not None and checked.spec is not None
    return checked.target, databases.make_engine(checked.target), checked.spec


def open_source(loaded: config.Loaded, *, readonly: bool) -> tuple[URL, Engine]:
    url = resolve(loaded, "source")
    return url, databases.make_engine(url, readonly=readonly)


def target_columns(spec: specmod.Spec) -> Sequence[str]:
    return [c.name for c in spec.columns]
