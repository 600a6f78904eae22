"""The target side shared by scraper and averager: which DBI table, its context per source, seeding.

A source's context (SITEMASK, SUBSITE) comes from its table name (dcsnames.py); SIMMASK and TASK
from config. Seeding plants one record in an empty context so that scraping knows where in time it
is; it is refused for a database named offline_db.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, Engine

from scraperd import config, databases
from scraperd.dbi import spec as specmod
from scraperd.dbi.writer import Context
from scraperd.errors import ConfigError
from scraperd.regimes.base import Regime, Source

PROTECTED_DATABASES = ("offline_db",)


def target_spec(loaded: config.Loaded, regime: type[Regime]) -> specmod.Spec:
    """The .spec of the target: `kls` when given (GDcsAdTemp or DcsAdTemp), else the regime's."""
    s = loaded.settings
    assert isinstance(s, config.TargetCommon)
    spec_dir = Path(s.spec_dir) if s.spec_dir else specmod.DEFAULT_SPEC_DIR
    name = s.kls or regime.target
    try:
        return specmod.find_spec(name, spec_dir)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=loaded.file.display, section=loaded.name,
                          key="kls" if s.kls else "regime") from None


def context_for(source: Source, settings: config.TargetCommon) -> Context:
    dcs = source.dcs
    return Context(sitemask=dcs.sitemask, subsite=dcs.subsite, simmask=settings.simmask, task=settings.task)


def context_fields(ctx: Context) -> dict[str, int]:
    return {"sitemask": ctx.sitemask, "subsite": ctx.subsite, "simmask": ctx.simmask, "task": ctx.task}


def refuse_protected(url: URL, loaded: config.Loaded, what: str, key: str) -> None:
    """ConfigError when `what` (seeding, dropping) would touch a protected database."""
    name = databases.database_name(url)
    if name in PROTECTED_DATABASES:
        raise ConfigError(f"{what} refused: the target database is {name}", file=loaded.file.display,
                          section=loaded.name, key=key)


def seed_payload(regime: Regime, source: Source, spec: specmod.Spec) -> list[dict[str, Any]]:
    columns = [c.name for c in spec.columns]
    row = dict(regime.seed(source))
    unknown = set(row) - set(columns)
    if unknown:
        raise ConfigError(f"seed() of {type(regime).__name__} gives unknown columns {sorted(unknown)}")
    return [row]


def needs_seed_message(loaded: config.Loaded, table: str, source: Source, ctx: Context) -> ConfigError:
    return ConfigError(
        f"target {table} has no validity record for source {source.name} "
        f"(sitemask={ctx.sitemask} subsite={ctx.subsite}): seed it by setting seed_target_tables = True, "
        f"seed_timestart and seed_timeend (local times) in this section, or run once with "
        f"--set seed_target_tables=True --set seed_timestart=... --set seed_timeend=...; "
        f"seeding is refused for offline_db",
        file=loaded.file.display, section=loaded.name, key="seed_target_tables")


def open_target(loaded: config.Loaded, regime: type[Regime]) -> tuple[URL, Engine, specmod.Spec]:
    s = loaded.settings
    assert isinstance(s, config.TargetCommon)
    spec = target_spec(loaded, regime)
    try:
        url = databases.resolve(s.target)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=loaded.file.display, section=loaded.name, key="target") from None
    return url, databases.make_engine(url), spec


def open_source(loaded: config.Loaded, *, readonly: bool) -> tuple[URL, Engine]:
    try:
        url = databases.resolve(loaded.settings.source)
    except ConfigError as exc:
        raise ConfigError(exc.message, file=loaded.file.display, section=loaded.name, key="source") from None
    return url, databases.make_engine(url, readonly=readonly)


def target_columns(spec: specmod.Spec) -> Sequence[str]:
    return [c.name for c in spec.columns]
