"""The configuration: one INI file, one section per scraper, faker or averager, `[DEFAULT]` shared.

The pydantic models below are the only home of the keys, their defaults, types and help text;
`scraperd show`, `--help` and gen-ini read them from here. configparser reads the file into
strings; `load_section()` picks the model for the section's `mode`, validates every key and turns
the first problem of each key into one line naming file, section and key:

    scraper.cfg [adtemp_scraper] maxage: cannot parse '10 minutes' as a duration (use 10s, 1m, 1h)
    scraper.cfg [adtemp_scraper] intervall: unknown key (did you mean 'interval'?)

A key from `[DEFAULT]` that the section's mode does not use is ignored (DEFAULT is shared by all
modes); a key unknown to every mode is an error wherever it stands. Nothing here connects to a
database: a broken section fails within supervisord's startsecs with exit 78.
"""

from __future__ import annotations

import configparser
import difflib
import functools
import importlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from scraperd.errors import ConfigError, ConfigErrors

if TYPE_CHECKING:
    from scraperd.regimes.base import Regime

CONFIG_ENV = "SCRAPER_CFG"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = Path("etc") / "scraper.cfg"

# ----------------------------------------------------------------------------------------------------------
# Value parsers: each raises ValueError with the text that follows "key:" in the error line.

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
DAY = timedelta(days=1)


def parse_duration(value: object) -> object:
    """Read durations as the manual writes them: 10s, 5m, 1h, 1d (a bare number is seconds)."""
    if not isinstance(value, str):
        return value
    m = _DURATION.fullmatch(value.strip().lower())
    if m is None:
        raise ValueError(f"cannot parse {value!r} as a duration (use 10s, 1m, 1h)")
    return timedelta(seconds=float(m[1]) * _SECONDS[m[2]])


DATETIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d")


def parse_datetime(value: object) -> object:
    """A naive datetime: 2011-02-01 00:00:00 (also 2011-02-01T00:00:00, 2011-02-01)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    for fmt in DATETIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise ValueError(f"cannot parse {value!r} as a datetime (use YYYY-MM-DD HH:MM:SS)")


def parse_timezone(value: object) -> object:
    if isinstance(value, ZoneInfo):
        return value
    text = str(value).strip()
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {text!r} (use an IANA name such as Asia/Shanghai)") from None


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    return value


def parse_int(value: object) -> object:
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"cannot parse {value!r} as a whole number") from None
    return value


def parse_float(value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"cannot parse {value!r} as a number") from None
    return value


_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def parse_bool(value: object) -> object:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"cannot parse {value!r} as true/false")
    return value


def parse_interval(value: object) -> object:
    """A duration of whole seconds, at least 1 s: DCS and DBI times have one-second precision."""
    d = parse_duration(value)
    if isinstance(d, timedelta) and (d.total_seconds() < 1 or d.total_seconds() != int(d.total_seconds())):
        raise ValueError(f"must be whole seconds, at least 1s (DBI times have one-second precision), got {value!r}")
    return d


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_level(value: object) -> object:
    text = str(value).strip().upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"{value!r} is not one of {', '.join(LOG_LEVELS)}")
    return text


def _optional(parser: Any) -> Any:
    def inner(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return parser(value)

    return inner


AGGREGATE_FUNCTIONS = ("avg", "min", "max", "std", "stddev", "stddev_pop", "stddev_samp", "variance",
                       "var_pop", "var_samp", "sum", "count")


def parse_aggregate(value: object) -> object:
    items = _split_list(value)
    if not isinstance(items, tuple):
        return items
    out = []
    for fn in items:
        low = fn.lower()
        if low not in AGGREGATE_FUNCTIONS:
            raise ValueError(f"unknown aggregate function {fn!r}{_did_you_mean(low, AGGREGATE_FUNCTIONS)}")
        out.append(low)
    return tuple(out)


_FILTER_FORBIDDEN = (";", "--", "/*", "*/", "#")


def check_filter(value: object) -> object:
    """The operator's own SQL condition: trusted, but one condition, no statement separators or comments."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    text = str(value).strip()
    for bad in _FILTER_FORBIDDEN:
        if bad in text:
            raise ValueError(f"must be one SQL condition: {bad!r} is not allowed")
    return text


def check_regime(value: object) -> object:
    """`package.module:Class`, importable, a scraperd Regime."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", text):
        raise ValueError(f"expected package.module:Class, got {text!r}")
    load_regime(text)
    return text


@functools.cache
def load_regime(ref: str) -> type[Regime]:
    """Import `package.module:Class` and check it is a Regime (once per process: validation and the
    daemons share the import)."""
    from scraperd.regimes.base import Regime

    module_name, _, cls_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {ref!r}: {exc}") from None
    kls = getattr(module, cls_name, None)
    if kls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Regime)]
        raise ValueError(f"cannot import {ref!r}: module has no {cls_name!r}{_did_you_mean(cls_name, names)}")
    if not (isinstance(kls, type) and issubclass(kls, Regime)):
        raise ValueError(f"{ref!r} is not a scraperd Regime")
    return kls


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Interval = Annotated[timedelta, BeforeValidator(parse_interval)]
Level = Annotated[str, BeforeValidator(parse_level)]
OptDuration = Annotated[timedelta | None, BeforeValidator(_optional(parse_duration))]
When = Annotated[datetime, BeforeValidator(parse_datetime)]
OptWhen = Annotated[datetime | None, BeforeValidator(_optional(parse_datetime))]
Int = Annotated[int, BeforeValidator(parse_int)]
Float = Annotated[float, BeforeValidator(parse_float)]
OptFloat = Annotated[float | None, BeforeValidator(_optional(parse_float))]
Bool = Annotated[bool, BeforeValidator(parse_bool)]
OptBool = Annotated[bool | None, BeforeValidator(_optional(parse_bool))]
TimeZone = Annotated[ZoneInfo, BeforeValidator(parse_timezone)]
Names = Annotated[tuple[str, ...], BeforeValidator(_split_list)]
Aggregates = Annotated[tuple[str, ...], BeforeValidator(parse_aggregate)]
Filter = Annotated[str | None, BeforeValidator(check_filter)]
RegimeRef = Annotated[str, BeforeValidator(check_regime)]

# ----------------------------------------------------------------------------------------------------------
# The models


class Common(BaseModel):
    """Keys every mode reads."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    mode: Literal["scraper", "faker", "averager"] = Field(
        "scraper", description="What the section runs: scraper, faker or averager.")
    regime: RegimeRef = Field(description="Regime class, e.g. scraperd.regimes.adtemp:AdTemp.")
    source: str = Field(description="~/.my.cnf section or SQLAlchemy URL of the DCS (source) database.")
    source_tz: TimeZone = Field(ZoneInfo("Asia/Shanghai"),
                                description="Time zone of the DCS date_time stamps (the target is UTC).")
    interval: Interval = Field(timedelta(seconds=10), description="DB time quantum: tcursor step after a "
                               "propagation; the faker's step between fake rows.")
    sleep: Duration = Field(timedelta(seconds=3), description="Real-time pause between iterations "
                            "(scrapers tune it from the lag).")
    maxiter: Int = Field(0, ge=0, description="Iterations to run, 0 for no limit.")
    timeformat: str = Field("%Y-%m-%d %H:%M:%S", description="strftime format of datetimes in logs.")
    host: str = Field("", description="Machine that runs this section (gen-ini --host picks by it).")
    reconnect_max_wait: Duration = Field(timedelta(seconds=60),
                                         description="Cap of the exponential backoff between reconnects.")
    log_samples: Bool = Field(True, description="Log every `sample` event; false keeps propagations, "
                              "tune and warnings only.")
    dbi_loglevel: Level = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    supervisor_autostart: Bool = Field(True, description="supervisord autostart for this program.")
    supervisor_startsecs: Int = Field(5, ge=0, description="supervisord startsecs.")
    supervisor_startretries: Int = Field(3, ge=0, description="supervisord startretries.")
    supervisor_stopwaitsecs: Int = Field(30, ge=1, description="supervisord stopwaitsecs.")
    supervisor_logfile_maxbytes: str = Field("50MB", description="supervisord stdout_logfile_maxbytes.")
    supervisor_logfile_backups: Int = Field(5, ge=0, description="supervisord stdout_logfile_backups.")
    supervisor_priority: Int = Field(999, ge=0, description="supervisord priority (fakers start first).")

    @property
    def regime_cls(self) -> type[Regime]:
        """The regime class `regime` names (imported once, at validation)."""
        return load_regime(self.regime)

    def fmt(self, t: datetime | None) -> str | None:
        """A datetime as the logs show it (timeformat); None stays None."""
        return t.strftime(self.timeformat) if t is not None else None


class TargetCommon(Common):
    """Keys of the modes that write DBI records (scraper, averager)."""

    target: str = Field(description="~/.my.cnf section or SQLAlchemy URL of the DBI (target) database.")
    kls: str | None = Field(None, description="Target DybDbi class or table (GDcsAdTemp); default from the "
                            "regime.")
    spec_dir: Path | None = Field(None, description="Directory of the .spec files (default etc/spec).")
    timefloor: OptWhen = Field(None, description="Local time before which the scraper has no interest "
                               "(limits the last-validity query).")
    seed_target_tables: Bool = Field(False, description="Seed an empty target with the regime's seed() "
                                     "record (refused for offline_db).")
    seed_timestart: OptWhen = Field(None, description="Seed validity start (source local time).")
    seed_timeend: OptWhen = Field(None, description="Seed validity end (source local time).")
    aggregate: Aggregates = Field((), description="MySQL aggregate functions for generic aggregation, "
                                  "e.g. avg,min,max,std.")
    aggregate_count: str = Field("count", description="Name of the sample-count attribute.")
    aggregate_skips: Names = Field((), description="Source columns not aggregated, e.g. id,date_time.")
    aggregate_filter: Filter = Field(None, description="SQL condition applied to aggregated rows, "
                                     "e.g. Quality != 0.")
    aggregate_none: OptFloat = Field(None, description="Value replacing None aggregates. Scraper: a zero-sample "
                                     "range is then written with it (unset: skipped with a warning). Averager: "
                                     "all-NULL columns get it (unset: NULL); a bin the filter empties writes no "
                                     "record either way.")
    task: Int = Field(0, description="DBI TASK of the written records.")
    simmask: Int = Field(1, description="DBI SIMMASK of the written records (1 = data).")
    status_maxlag: Duration = Field(timedelta(hours=1), description="`scraperd status` exits 1 when the "
                                    "lag exceeds this.")

    @property
    def timefloor_utc(self) -> datetime | None:
        """timefloor (source local time) in UTC, as the target's TIMESTART holds it; None when unset."""
        from scraperd.scrape.sampling import to_utc

        return to_utc(self.timefloor, self.source_tz) if self.timefloor is not None else None

    @model_validator(mode="after")
    def _seed_range(self) -> TargetCommon:
        if self.seed_target_tables:
            if self.seed_timestart is None:
                raise _KeyError("seed_timestart", "required when seed_target_tables = True")
            if self.seed_timeend is None:
                raise _KeyError("seed_timeend", "required when seed_target_tables = True")
        if self.seed_timestart and self.seed_timeend and self.seed_timeend <= self.seed_timestart:
            raise _KeyError("seed_timeend", "must be after seed_timestart")
        return self


class ScraperSection(TargetCommon):
    """mode = scraper: sample the source vector, propagate changes as validity records."""

    heartbeat: Duration = Field(timedelta(seconds=3), description="Approximate source update period "
                                "(sleep tuning).")
    offset: Int = Field(0, ge=0, description="Read every (offset+1)th source row.")
    maxage: Duration = Field(timedelta(minutes=10), description="Propagate at least this often (DB time), "
                             "changed or not.")
    threshold: Float = Field(1.0, description="Change threshold handed to the regime's changed().")
    tunesleepmod: Int = Field(1, ge=1, description="Tune the sleep after every Nth propagation.")
    batch_size: Int = Field(2000, ge=1, description="Source rows read per query when catching up.")
    source_delay: Duration = Field(timedelta(0), description="Read a source row only once its date_time is at "
                                   "least this far behind now (source_tz): rows the DCS commits up to this late are "
                                   "still read in order (Kafka Connect's timestamp.delay), and rows held back are no "
                                   "lag. 0: at once, believing a DCS clock up to a day ahead. Scrapers only (the "
                                   "averager reads complete past bins).")

    @property
    def effective_heartbeat(self) -> timedelta:
        """heartbeat × (offset + 1): how often a collected source row is expected; lag is counted in it."""
        return self.heartbeat * (self.offset + 1)


class FakerSection(Common):
    """mode = faker: insert fake rows into the source tables, for testing."""

    faker_dropsrc: Bool = Field(False, description="Drop and recreate the source database from "
                                "faker_sql at start.")
    faker_sql: Path | None = Field(None, description="No-data mysqldump of the source DDL "
                                   "(default etc/fake_dcs.sql).")
    faker_timestart: OptWhen = Field(None, description="date_time of row id n is faker_timestart + "
                                     "n × interval; unset = now() in source_tz.")
    profile: Literal["modulo_ramp", "constant", "random_walk"] = Field(
        "modulo_ramp", description="Fake values: modulo_ramp, constant or random_walk.")
    faker_seed: Int = Field(0, description="Random seed of the random_walk profile.")


class AveragerSection(TargetCommon):
    """mode = averager: binned historical aggregation with grouped queries."""

    territory: Duration = Field(timedelta(days=1), description="Territory bin: one grouped query each "
                                "(aligned on local midnight): a whole multiple of binsize that divides "
                                "a day or is whole days.")
    binsize: Duration = Field(timedelta(hours=1), description="Group size inside a territory bin; one "
                              "record per group. Divides a day (e.g. 10m, 1h, 6h) or is whole days, so "
                              "that bins fall on every local midnight.")
    workers: Int = Field(2, ge=1, le=16, description="Territory-bin queries running at once on a MySQL source "
                         "(SQLite: 1); lower it to spare a busy DCS replica.")
    maxiter: Int = Field(0, ge=0, description="Territory-grid cells to average in one run (each is one "
                         "territory bin of every source), 0 for all complete bins.")

    @model_validator(mode="after")
    def _needs_aggregate(self) -> AveragerSection:
        if not self.aggregate:
            raise _KeyError("aggregate", "the averager needs aggregate functions, e.g. avg,min,max,std")
        return self

    @model_validator(mode="after")
    def _bins_on_midnight(self) -> AveragerSection:
        for key in ("binsize", "territory"):
            size: timedelta = getattr(self, key)
            seconds = size.total_seconds()
            if seconds < 1 or seconds != int(seconds):
                raise _KeyError(key, f"must be a whole number of seconds, at least 1s, got {format_value(size)}")
            if DAY % size and size % DAY:
                raise _KeyError(key, f"must divide a day (e.g. 10m, 1h, 6h) or be whole days, so that it falls "
                                     f"on every local midnight, got {format_value(size)}")
        if self.territory < self.binsize or self.territory % self.binsize:
            raise _KeyError("territory", f"must be a whole multiple of binsize ({format_value(self.binsize)}), "
                                         f"got {format_value(self.territory)}: a bin must not straddle two queries")
        return self


class ProgramKeys(BaseModel):
    """What supervisord needs of a section, readable even when the rest of the section is broken."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mode: str = "scraper"
    host: str = Common.model_fields["host"].default
    supervisor_autostart: Bool = Common.model_fields["supervisor_autostart"].default
    supervisor_startsecs: Int = Field(Common.model_fields["supervisor_startsecs"].default, ge=0)
    supervisor_startretries: Int = Field(Common.model_fields["supervisor_startretries"].default, ge=0)
    supervisor_stopwaitsecs: Int = Field(Common.model_fields["supervisor_stopwaitsecs"].default, ge=1)
    supervisor_logfile_maxbytes: str = Common.model_fields["supervisor_logfile_maxbytes"].default
    supervisor_logfile_backups: Int = Field(Common.model_fields["supervisor_logfile_backups"].default, ge=0)
    supervisor_priority: Int = Field(Common.model_fields["supervisor_priority"].default, ge=0)


def program_keys(cfg: ConfigFile, name: str) -> ProgramKeys:
    """The supervisord keys of a section as written ([DEFAULT], then the section); a broken one is
    replaced by its default, so that a broken section still gets a program that ends FATAL."""
    raw = {k: v for k, v in {**cfg.defaults, **cfg.sections[name]}.items() if k in ProgramKeys.model_fields}
    while True:
        try:
            return ProgramKeys.model_validate(raw)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
            if not bad & set(raw):
                return ProgramKeys.model_validate({})
            raw = {k: v for k, v in raw.items() if k not in bad}


class _KeyError(ValueError):
    """A cross-key problem, attributed to one key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


MODELS: dict[str, type[Common]] = {"scraper": ScraperSection, "faker": FakerSection, "averager": AveragerSection}
ALL_KEYS = sorted({k for m in MODELS.values() for k in m.model_fields})
Section = ScraperSection | FakerSection | AveragerSection

# ----------------------------------------------------------------------------------------------------------
# Loading


@dataclass
class ConfigFile:
    """The INI file as read: DEFAULT keys and each section's own keys, all strings."""

    path: Path
    display: str
    defaults: dict[str, str]
    sections: dict[str, dict[str, str]]


S = TypeVar("S", bound=Common)
T = TypeVar("T", bound=Common)


@dataclass(frozen=True)
class Loaded(Generic[S]):
    """One validated section with where each value came from; Loaded[ScraperSection] is a scraper's."""

    name: str
    file: ConfigFile
    settings: S
    origin: dict[str, str] = field(default_factory=dict)   # key -> "[section]", "[DEFAULT]", "--set", "default"
    ignored: dict[str, str] = field(default_factory=dict)  # DEFAULT keys this mode does not use

    @property
    def mode(self) -> str:
        return self.settings.mode

    def error(self, key: str | None, message: str) -> ConfigError:
        """A ConfigError placed at this section's file, section and key (raise it)."""
        return ConfigError(message, file=self.file.display, section=self.name, key=key)

    @contextmanager
    def placing(self) -> Iterator[None]:
        """A ConfigError raised inside that names no file and no section (found while running: a
        column aggregate_filter names, a refused password) is raised again placed at this section."""
        try:
            yield
        except ConfigError as exc:
            if exc.file is None and exc.section is None and not isinstance(exc, ConfigErrors):
                raise self.error(exc.key, exc.message) from None
            raise

    def of(self, kind: type[T]) -> Loaded[T]:
        """This section as a section of `kind` (a daemon's entry point narrows what it was given)."""
        if not isinstance(self.settings, kind):
            raise self.error("mode", f"is a {self.mode} section, not {kind.__name__}")
        return self  # type: ignore[return-value]  # settings checked above


def config_path(cli_path: str | None) -> Path:
    """`-c PATH`, else $SCRAPER_CFG, else etc/scraper.cfg (here, then in the scraperd checkout)."""
    if cli_path:
        return Path(cli_path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return REPO_ROOT / DEFAULT_CONFIG


def read_file(path: Path) -> ConfigFile:
    display = str(path)
    if not path.exists():
        raise ConfigError(f"no such config file (use -c PATH or set {CONFIG_ENV})", file=display)
    parser = configparser.ConfigParser(interpolation=None, strict=True, inline_comment_prefixes=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    try:
        parser.read(path)
    except configparser.DuplicateOptionError as exc:
        raise ConfigError("key given twice in this section", file=display, section=exc.section,
                          key=exc.option) from None
    except configparser.DuplicateSectionError as exc:
        raise ConfigError("section given twice", file=display, section=exc.section) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(f"line {exc.lineno}: text before the first [section] header", file=display) from None
    except configparser.ParsingError as exc:
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        raise ConfigError(f"cannot parse line {lines} (expected key = value)", file=display) from None
    defaults = {k.lower(): v for k, v in parser.defaults().items()}
    sections = {}
    for name in parser.sections():
        own = parser._sections[name]  # type: ignore[attr-defined]  # the section's own keys, without DEFAULT
        sections[name] = {k.lower(): v for k, v in own.items()}
    return ConfigFile(path=path, display=display, defaults=defaults, sections=sections)


def _did_you_mean(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """`--set key=value` pairs."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip().lower()] = value.strip()
    return out


def _pydantic_message(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", ""))
    value = err.get("input")
    if kind == "missing":
        return "missing (required key)"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{value!r} is not one of {expected}"
    if kind in ("greater_than_equal", "greater_than"):
        bound = err["ctx"].get("ge", err["ctx"].get("gt"))
        return f"must be {'>=' if kind.endswith('equal') else '>'} {bound}, got {value!r}"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    return msg


def validate(cfg: ConfigFile, name: str, overrides: dict[str, str] | None = None) -> Loaded[Section]:
    """Validate one section; raise ConfigError with every problem, one line each."""
    if name not in cfg.sections:
        known = ", ".join(cfg.sections) or "none"
        raise ConfigError(f"no such section{_did_you_mean(name, cfg.sections)} (sections: {known})",
                          file=cfg.display, section=name)
    own = cfg.sections[name]
    overrides = overrides or {}
    problems: list[ConfigError] = []

    def problem(key: str | None, message: str, section: str = name) -> None:
        problems.append(ConfigError(message, file=cfg.display, section=section, key=key))

    mode = (overrides.get("mode") or own.get("mode") or cfg.defaults.get("mode") or "scraper").strip()
    if mode not in MODELS:
        problem("mode", f"{mode!r} is not one of scraper, faker, averager{_did_you_mean(mode, MODELS)}")
        raise ConfigErrors.combined(problems)
    model = MODELS[mode]
    fields = model.model_fields

    values: dict[str, str] = {}
    origin: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for key, value in cfg.defaults.items():
        if key in fields:
            values[key], origin[key] = value, "[DEFAULT]"
        elif key in ALL_KEYS:
            ignored[key] = value
        else:
            problem(key, f"unknown key{_did_you_mean(key, ALL_KEYS)}", section="DEFAULT")
    for key, value in own.items():
        if key in fields:
            values[key], origin[key] = value, f"[{name}]"
        elif key in ALL_KEYS:
            users = ", ".join(m for m, kls in MODELS.items() if key in kls.model_fields)
            problem(key, f"not used by mode = {mode} (it is a {users} key)")
        else:
            problem(key, f"unknown key{_did_you_mean(key, ALL_KEYS)}")
    for key, value in overrides.items():
        if key in fields:
            values[key], origin[key] = value, "--set"
        else:
            problems.append(ConfigError(f"unknown key for mode = {mode}{_did_you_mean(key, list(fields))}",
                                        file="--set", key=key))
    values["mode"] = mode
    origin.setdefault("mode", "default")

    settings = None
    try:
        settings = model.model_validate(values)
    except ValidationError as exc:
        seen: set[str] = set()
        for err in exc.errors():
            loc = err.get("loc") or ()
            bad: str | None = str(loc[0]) if loc else None
            ctx_err = err.get("ctx", {}).get("error")
            if isinstance(ctx_err, _KeyError):
                bad = ctx_err.key
            if bad in seen:
                continue
            seen.add(str(bad))
            section = name if origin.get(str(bad), f"[{name}]") != "[DEFAULT]" else "DEFAULT"
            if origin.get(str(bad)) == "--set":
                problems.append(ConfigError(_pydantic_message(err), file="--set", key=bad))
            else:
                problem(bad, _pydantic_message(err), section=section)
    if problems or settings is None:
        raise ConfigErrors.combined(problems)
    for key in fields:
        origin.setdefault(key, "default")
    assert isinstance(settings, ScraperSection | FakerSection | AveragerSection)
    return Loaded(name=name, file=cfg, settings=settings, origin=origin, ignored=ignored)


def load_section(path: Path | str, name: str, overrides: dict[str, str] | None = None) -> Loaded[Section]:
    """Read the file and validate one section."""
    return validate(read_file(Path(path)), name, overrides)


def format_value(value: Any) -> str:
    """A setting as it would be written in the INI file."""
    if isinstance(value, timedelta):
        secs = value.total_seconds()
        for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
            if secs >= n and secs % n == 0:
                return f"{int(secs // n)}{unit}"
        return f"{secs:g}s"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, ZoneInfo):
        return value.key
    if isinstance(value, tuple):
        return ",".join(value)
    if value is None:
        return ""
    return str(value)
