"""Reading the INI file and validating one section of it, with where each value came from.

configparser reads the file into strings (ConfigFile); `validate()` picks the model for the
section's `mode` (models.py), validates every key and turns the first problem of each key into one
line naming file, section and key:

    scraper.cfg [adtemp_scraper] maxage: cannot parse '10 minutes' as a duration (use 10s, 1m, 1h)
    scraper.cfg [adtemp_scraper] intervall: unknown key (did you mean 'interval'?)

A key from `[DEFAULT]` that the section's mode does not use is ignored (DEFAULT is shared by all
modes); a key unknown to every mode is an error wherever it stands. Nothing here connects to a
database: a broken section fails within supervisord's startsecs with exit 78.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from scraperd.config.models import (
    ALL_KEYS,
    MODELS,
    AveragerSection,
    Common,
    FakerSection,
    ScraperSection,
    Section,
    _KeyError,
)
from scraperd.config.values import did_you_mean
from scraperd.errors import ConfigError, ConfigErrors

CONFIG_ENV = "SCRAPER_CFG"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = Path("etc") / "scraper.cfg"


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
        raise ConfigError(f"no such section{did_you_mean(name, cfg.sections)} (sections: {known})",
                          file=cfg.display, section=name)
    own = cfg.sections[name]
    overrides = overrides or {}
    problems: list[ConfigError] = []

    def problem(key: str | None, message: str, section: str = name) -> None:
        problems.append(ConfigError(message, file=cfg.display, section=section, key=key))

    mode = (overrides.get("mode") or own.get("mode") or cfg.defaults.get("mode") or "scraper").strip()
    if mode not in MODELS:
        problem("mode", f"{mode!r} is not one of scraper, faker, averager{did_you_mean(mode, MODELS)}")
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
            problem(key, f"unknown key{did_you_mean(key, ALL_KEYS)}", section="DEFAULT")
    for key, value in own.items():
        if key in fields:
            values[key], origin[key] = value, f"[{name}]"
        elif key in ALL_KEYS:
            users = ", ".join(m for m, kls in MODELS.items() if key in kls.model_fields)
            problem(key, f"not used by mode = {mode} (it is a {users} key)")
        else:
            problem(key, f"unknown key{did_you_mean(key, ALL_KEYS)}")
    for key, value in overrides.items():
        if key in fields:
            values[key], origin[key] = value, "--set"
        else:
            problems.append(ConfigError(f"unknown key for mode = {mode}{did_you_mean(key, list(fields))}",
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
