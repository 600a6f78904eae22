"""The configuration: one INI file, one section per scraper, faker or averager, `[DEFAULT]` shared.

Where to look:

    values.py   how one value is read from its text and written back: parse_duration, Duration,
                Interval, ..., check_regime/load_regime, format_value
    models.py   the pydantic models, the only home of keys, defaults, types and help text:
                Common, TargetCommon, ScraperSection, FakerSection, AveragerSection, ProgramKeys
    loading.py  the file and one section of it: config_path, read_file, validate, load_section,
                Loaded (the validated section, with where each value came from)

Everything other modules use is importable from here: `from scraperd import config;
config.load_section(...)`.
"""

from scraperd.config.loading import (
    CONFIG_ENV,
    REPO_ROOT,
    ConfigFile,
    Loaded,
    config_path,
    load_section,
    parse_overrides,
    read_file,
    validate,
)
from scraperd.config.models import (
    ALL_KEYS,
    CHECKS,
    MODELS,
    NOT_PROGRAMS,
    AveragerSection,
    BackupSection,
    Common,
    FakerSection,
    MonitorSection,
    Notify,
    Program,
    ProgramKeys,
    ScraperSection,
    Section,
    TargetCommon,
    WatchdogSection,
    program_keys,
)
from scraperd.config.values import (
    format_value,
    load_regime,
    parse_datetime,
    parse_duration,
)

__all__ = [
    "ALL_KEYS",
    "CONFIG_ENV",
    "MODELS",
    "REPO_ROOT",
    "NOT_PROGRAMS",
    "AveragerSection",
    "BackupSection",
    "Common",
    "ConfigFile",
    "CHECKS",
    "FakerSection",
    "MonitorSection",
    "WatchdogSection",
    "Notify",
    "Program",
    "Loaded",
    "ProgramKeys",
    "ScraperSection",
    "Section",
    "TargetCommon",
    "config_path",
    "format_value",
    "load_regime",
    "load_section",
    "parse_datetime",
    "parse_duration",
    "parse_overrides",
    "program_keys",
    "read_file",
    "validate",
]
