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
    BackupSection,
    FakerSection,
    MonitorSection,
    Program,
    ScraperSection,
    Section,
    WatchdogSection,
    _KeyError,
)
from scraperd.config.values import did_you_mean
from scraperd.errors import ConfigError, ConfigErrors
from scraperd.paths import CONFIG_ENV, DEFAULT_CONFIG, REPO_ROOT, config_path  # noqa: F401 - re-exported


@dataclass
class ConfigFile:
    """The INI file as read: DEFAULT keys and each section's own keys, all strings."""

    path: Path
    display: str
    defaults: dict[str, str]
    sections: dict[str, dict[str, str]]


S = TypeVar("S", bound=Program)
T = TypeVar("T", bound=Program)


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
            wanted = next((f"a {m} section" for m, k in MODELS.items() if k is kind), kind.__name__)
            raise self.error("mode", f"is a {self.mode} section, not {wanted}")
        return self  # type: ignore[return-value]  # settings checked above


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
    overrides = overrides or {}
    mode = _mode(cfg, name, overrides)
    model = MODELS[mode]
    keys = _gather(cfg, name, mode, overrides)
    settings = _validated(model, keys, cfg, name)
    if keys.problems or settings is None:
        raise ConfigErrors.combined(keys.problems)
    for key in model.model_fields:
        keys.origin.setdefault(key, "default")
    assert isinstance(settings, ScraperSection | FakerSection | AveragerSection | MonitorSection | WatchdogSection
                                | BackupSection)
    return Loaded(name=name, file=cfg, settings=settings, origin=keys.origin, ignored=keys.ignored)


@dataclass
class _Keys:
    """A section's values as its mode reads them, each with its origin, and the problems found so far."""

    values: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)   # key -> "[section]", "[DEFAULT]", "--set"
    ignored: dict[str, str] = field(default_factory=dict)  # DEFAULT keys this mode does not use
    problems: list[ConfigError] = field(default_factory=list)


def _mode(cfg: ConfigFile, name: str, overrides: dict[str, str]) -> str:
    """The section's mode: --set, else the section's, else [DEFAULT]'s, else scraper."""
    own = cfg.sections[name]
    mode = (overrides.get("mode") or own.get("mode") or cfg.defaults.get("mode") or "scraper").strip()
    if mode not in MODELS:
        message = f"{mode!r} is not one of {', '.join(MODELS)}{did_you_mean(mode, MODELS)}"
        raise ConfigErrors.combined([_placed(cfg, name, None, "mode", message)])
    return mode


def _gather(cfg: ConfigFile, name: str, mode: str, overrides: dict[str, str]) -> _Keys:
    """[DEFAULT], then the section, then --set, each overriding the one before; a key the mode does
    not read is a problem, except in [DEFAULT] when another mode reads it (DEFAULT is shared)."""
    fields = MODELS[mode].model_fields
    keys = _Keys()
    for where, written in (("[DEFAULT]", cfg.defaults), (f"[{name}]", cfg.sections[name]), ("--set", overrides)):
        for key, value in written.items():
            if key in fields:
                keys.values[key], keys.origin[key] = value, where
            elif where == "[DEFAULT]" and key in ALL_KEYS:
                keys.ignored[key] = value
            else:
                keys.problems.append(_placed(cfg, name, where, key, _refused(key, mode, where)))
    keys.values["mode"] = mode
    keys.origin.setdefault("mode", "default")
    return keys


def _refused(key: str, mode: str, where: str) -> str:
    """Why a key written in `where` is not read by this mode, with the key it may have meant."""
    if where == "--set":
        return f"unknown key for mode = {mode}{did_you_mean(key, list(MODELS[mode].model_fields))}"
    if key in ALL_KEYS:  # [DEFAULT] ignores other modes' keys; the section's own are errors
        users = ", ".join(m for m, kls in MODELS.items() if key in kls.model_fields)
        return f"not used by mode = {mode} (it is a {users} key)"
    return f"unknown key{did_you_mean(key, ALL_KEYS)}"


def _validated(model: type[Program], keys: _Keys, cfg: ConfigFile, name: str) -> Program | None:
    """The model's settings; None when it refuses them, with its problems added to keys.problems."""
    try:
        return model.model_validate(keys.values)
    except ValidationError as exc:
        keys.problems += _model_problems(exc, keys.origin, cfg, name)
        return None


def _model_problems(exc: ValidationError, origin: dict[str, str], cfg: ConfigFile, name: str) -> list[ConfigError]:
    """The first pydantic error of each key, one line each, placed where that key's value was written."""
    seen: set[str] = set()
    problems = []
    for err in exc.errors():
        key = _problem_key(err)
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        problems.append(_placed(cfg, name, origin.get(key) if key else None, key, _pydantic_message(err)))
    return problems


def _problem_key(err: Any) -> str | None:
    """The key a pydantic error is about: the one a cross-key rule names (_KeyError), else its field."""
    ctx_err = err.get("ctx", {}).get("error")
    if isinstance(ctx_err, _KeyError):
        return ctx_err.key
    loc = err.get("loc") or ()
    return str(loc[0]) if loc else None


def _placed(cfg: ConfigFile, name: str, where: str | None, key: str | None, message: str) -> ConfigError:
    """A problem placed where its value was written: the --set line, [DEFAULT] or the section."""
    if where == "--set":
        return ConfigError(message, file="--set", key=key)
    section = "DEFAULT" if where == "[DEFAULT]" else name
    return ConfigError(message, file=cfg.display, section=section, key=key)


def load_section(path: Path | str, name: str, overrides: dict[str, str] | None = None) -> Loaded[Section]:
    """Read the file and validate one section."""
    return validate(read_file(Path(path)), name, overrides)
