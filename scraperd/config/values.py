"""How one config value is read from its INI text, and written back.

The parsers (parse_*, check_*) take the string configparser gives and return the value, or raise
ValueError with the text that follows "key:" in the error line; each is wrapped in an Annotated
type (Duration, Interval, OptWhen, ...) that the models in models.py declare their keys with.
format_value() writes a value as the INI file would hold it. Nothing here knows a section or a file.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator

if TYPE_CHECKING:
    from scraperd.regimes.base import Regime

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


def _number(kind: Callable[[str], object], what: str) -> Callable[[object], object]:
    """A parser of numbers written as `kind` reads them; `what` names the kind in the error."""
    def parse(value: object) -> object:
        if isinstance(value, str):
            try:
                return kind(value.strip())
            except ValueError:
                raise ValueError(f"cannot parse {value!r} as {what}") from None
        return value

    return parse


parse_int = _number(int, "a whole number")
parse_float = _number(float, "a number")


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
            raise ValueError(f"unknown aggregate function {fn!r}{did_you_mean(low, AGGREGATE_FUNCTIONS)}")
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
        raise ValueError(f"cannot import {ref!r}: module has no {cls_name!r}{did_you_mean(cls_name, names)}")
    if not (isinstance(kls, type) and issubclass(kls, Regime)):
        raise ValueError(f"{ref!r} is not a scraperd Regime")
    return kls


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Interval = Annotated[timedelta, BeforeValidator(parse_interval)]
Level = Annotated[str, BeforeValidator(parse_level)]
OptWhen = Annotated[datetime | None, BeforeValidator(_optional(parse_datetime))]
Int = Annotated[int, BeforeValidator(parse_int)]
OptInt = Annotated[int | None, BeforeValidator(_optional(parse_int))]
Float = Annotated[float, BeforeValidator(parse_float)]
OptFloat = Annotated[float | None, BeforeValidator(_optional(parse_float))]
Bool = Annotated[bool, BeforeValidator(parse_bool)]
TimeZone = Annotated[ZoneInfo, BeforeValidator(parse_timezone)]
Names = Annotated[tuple[str, ...], BeforeValidator(_split_list)]
Aggregates = Annotated[tuple[str, ...], BeforeValidator(parse_aggregate)]
Filter = Annotated[str | None, BeforeValidator(check_filter)]
RegimeRef = Annotated[str, BeforeValidator(check_regime)]
OptDuration = Annotated[timedelta | None, BeforeValidator(_optional(parse_duration))]
OptPath = Annotated[Path | None, BeforeValidator(_optional(lambda v: v))]

NOTIFY_CHANNELS = ("email", "http")


def parse_channels(value: object) -> object:
    """`notify = email, http`: the channels, each known; empty for none."""
    names = _split_list(value)
    if isinstance(names, tuple):
        for name in names:
            if name not in NOTIFY_CHANNELS:
                raise ValueError(f"{name!r} is not a channel (email, http){did_you_mean(name, NOTIFY_CHANNELS)}")
    return names


def parse_routes(value: object) -> object:
    """`routes = source: dcs@lab.org; freshness, fleet: ops@lab.org, http://mon:8080/hook`: which
    checks go to which recipients (an e-mail address, or an http(s) URL for a POST); `*` is every
    check no other route names. Returns ((checks, recipients), ...)."""
    if not isinstance(value, str):
        return value
    routes = []
    for part in (p.strip() for p in value.split(";")):
        if not part:
            continue
        checks, sep, recipients = part.partition(":")
        names, to = _split_list(checks), _split_list(recipients)
        assert isinstance(names, tuple) and isinstance(to, tuple)
        if not sep or not names or not to or recipients.lstrip().startswith("//"):
            raise ValueError(f"cannot parse route {part!r} (use CHECK[, CHECK]: RECIPIENT[, RECIPIENT]; ...)")
        routes.append((names, to))
    return tuple(routes)


Channels = Annotated[tuple[str, ...], BeforeValidator(parse_channels)]
Routes = Annotated[tuple[tuple[tuple[str, ...], tuple[str, ...]], ...], BeforeValidator(parse_routes)]


def did_you_mean(word: str, choices: Any) -> str:
    """' (did you mean 'x'?)' when a choice is close to word, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):  # routes
        return "; ".join(f"{', '.join(checks)}: {', '.join(to)}" for checks, to in value)
    if isinstance(value, tuple):
        return ",".join(value)
    if value is None:
        return ""
    return str(value)
