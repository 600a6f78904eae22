"""Where scraperd finds its config file: kept apart from scraperd.config (pydantic) so that a light
command (entry.py) can look without importing the models."""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_ENV = "SCRAPER_CFG"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = Path("etc") / "scraper.cfg"


def config_path(cli_path: str | None) -> Path:
    """`-c PATH`, else $SCRAPER_CFG, else etc/scraper.cfg (here, then in the scraperd checkout)."""
    if cli_path:
        return Path(cli_path)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if DEFAULT_CONFIG.exists():
        return DEFAULT_CONFIG
    return REPO_ROOT / DEFAULT_CONFIG
