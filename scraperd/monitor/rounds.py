"""One round of checks: what `scraperd monitor` prints once and what the monitor daemon does every `every`.

    m = Monitor.load(cfg, name, overrides)      the [monitor] section and the sections it watches
    results = m.round(now)                      list[CheckResult], in check order
    summary(results)                            the nagios-style line; worst(...).value is the exit code

Every database is opened afresh each round (one engine per database, read only) and closed after, so
a server that went away and came back is simply read again next round; what cannot be read is a
CRITICAL result naming the error, never an exception out of round(). Nothing is written anywhere
but the notifier's state file and, for --gen-expected, the expected file.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from scraperd import config, databases
from scraperd.errors import ConfigError, error_lines
from scraperd.monitor import checks, expected
from scraperd.monitor.results import CheckResult, State, worst
from scraperd.status.compute import Databases, brief, collect
from scraperd.supervisor import SUPERVISORD_CONF

DEFAULT_NAME = "monitor"  # the implicit monitor of a file without a [monitor] section
MONITOR_DIR = config.REPO_ROOT / "var" / "monitor"  # default home of the expected and state files


@dataclass(frozen=True)
class Monitor:
    """A monitor section, and the sections it watches (validated; the broken ones with their errors)."""

    loaded: config.Loaded[config.MonitorSection]
    sections: tuple[checks.Watched, ...]
    broken: tuple[tuple[str, str], ...]   # (section, its first error line)

    @property
    def settings(self) -> config.MonitorSection:
        return self.loaded.settings

    @property
    def name(self) -> str:
        return self.loaded.name

    @classmethod
    def load(cls, cfg: config.ConfigFile, name: str | None, overrides: dict[str, str] | None = None) -> Monitor:
        return cls.of(monitor_section(cfg, name, overrides))

    @classmethod
    def of(cls, loaded: config.Loaded[config.MonitorSection]) -> Monitor:
        """The monitor of a validated section: its `sections` must name sections of the file."""
        cfg, s = loaded.file, loaded.settings
        for name in s.sections:
            if name not in cfg.sections:
                raise loaded.error("sections", f"no section {name!r} in the file")
        if s.supervisor_conf is not None and not Path(s.supervisor_conf).exists():
            raise loaded.error("supervisor_conf", f"no such file {s.supervisor_conf}")
        if "email" in s.notify:  # the SMTP login's secret file and section are there (never printed)
            from scraperd.notify import channels

            with loaded.placing():
                channels.login(s)
        for name in s.chain:  # a ~/.my.cnf section that is not there: exit 78 before any round
            try:
                databases.resolve(name)
            except ConfigError as exc:
                raise loaded.error("chain", f"{name}: {exc.message}" + (f" ({exc.file})" if exc.file else "")) from None
        names = s.sections or [n for n in cfg.sections if _mode(cfg, n) not in ("monitor", *config.NOT_PROGRAMS)]
        sections, broken = [], []
        for name in names:
            try:
                sections.append(checks.watched(config.validate(cfg, name)))
            except ConfigError as exc:
                broken.append((name, error_lines(exc)[0]))
        return cls(loaded, tuple(sections), tuple(broken))

    def supervisor_conf(self) -> Path | None:
        if self.settings.supervisor_conf:
            return Path(self.settings.supervisor_conf)
        return SUPERVISORD_CONF if SUPERVISORD_CONF.exists() else None

    def round(self, now: datetime | None = None) -> list[CheckResult]:
        """Every enabled check, once."""
        now = now or utcnow()
        enabled = set(self.settings.checks)
        names = [w.name for w in self.sections]
        conf = self.supervisor_conf() if "fleet" in enabled else None
        with Databases() as dbs:
            fleet = collect(self.loaded.file, names, conf, dbs, now=now)
            out = [CheckResult(check="config", state=State.UNKNOWN, section=name, summary=f"cannot check: {line}")
                   for name, line in self.broken]
            if "freshness" in enabled:
                out += checks.freshness(fleet, self.sections, self.settings, now)
            if "source" in enabled:
                out += checks.sources(fleet, self.sections, self.settings, now)
            if "expected" in enabled:
                out += self._expected(dbs, now)
            if "replication" in enabled and self.settings.chain:
                from scraperd.monitor import replication

                out += replication.check_chain(self.settings.chain, self.settings.replica_max_seqnos,
                                               self.settings.replica_max_lag,
                                               lambda n: dbs.engine(n, readonly=True))
            # supervisord not answering at the checkout's default socket is no news (as for `status`): this
            # node may run the monitor from cron; one named by supervisor_conf must answer (else UNKNOWN)
            explicit = self.settings.supervisor_conf is not None
            if "fleet" in enabled and conf is not None and (fleet.supervisord.reachable or explicit):
                from scraperd.monitor import fleet as fleetmod

                out += fleetmod.fleet_checks(fleet)
        return [_masked(r, dbs) for r in out]

    def _expected(self, dbs: Databases, now: datetime) -> list[CheckResult]:
        """The expected pairs; UNKNOWN when the list cannot be read, is missing although named (by
        expected_file or checks), or names a target no watched section writes."""
        path = expected.expected_path(self.loaded)
        if not path.exists():
            named = self.loaded.origin.get("expected_file", "default") != "default" or \
                self.loaded.origin.get("checks", "default") != "default"
            return [CheckResult(check="expected", state=State.UNKNOWN, details=str(path),
                                summary=f"no expected file {path}: run scraperd monitor --gen-expected")] if named else []
        try:
            pairs = expected.read(path)
        except ConfigError as exc:  # an operator's edit gone wrong: the other checks go on
            return [CheckResult(check="expected", state=State.UNKNOWN, summary=exc.line(), details=str(path))]
        names = expected.targets(self.sections)
        out = [CheckResult(check="expected", state=State.UNKNOWN, context=target, details=str(path),
                           summary=f"{target} (in {path}) is the target of no watched section: "
                                   "fix the section or delete its lines")
               for target in sorted({p.target for p in pairs} - set(names))]
        return out + expected.check(pairs, lambda n: dbs.engine(n, readonly=True), names,
                                    self.settings.expected_period, now, self.sections, brief)

    def gen_expected(self) -> tuple[Path, list[expected.Pair], int, list[str]]:
        """Add what holds a record now to the expected file: (file, added, already expected, errors)."""
        path = expected.expected_path(self.loaded)
        found: list[expected.Pair] = []
        errors = []
        with Databases() as dbs:
            for shown, target in expected.targets(self.sections).items():
                try:
                    with dbs.engine(target, readonly=True).connect() as conn:
                        found += expected.present(conn, shown)
                except Exception as exc:  # one target unreadable: the others are still recorded
                    errors.append(f"{shown}: {dbs.mask(brief(exc))}")
        added, had = expected.add(path, found)
        return path, added, had, errors

    def notifier(self):  # type: ignore[no-untyped-def]  # scraperd.notify.Notifier, imported when used
        """The notifier of this monitor: its state file under var/monitor/ unless state_file says."""
        from scraperd.notify import Notifier

        s = self.settings
        path = Path(s.state_file) if s.state_file else MONITOR_DIR / f"{self.name}.state.sqlite"
        with self.loaded.placing():
            try:
                return Notifier(s, self.name, renotify=s.renotify, state_path=path)
            except (OSError, sqlite3.Error) as exc:
                raise self.loaded.error("state_file", f"cannot open {path}: {exc}") from None


def _masked(r: CheckResult, dbs: Databases) -> CheckResult:
    """A result without any password met while resolving its databases."""
    return replace(r, summary=dbs.mask(r.summary), details=dbs.mask(r.details))


def _mode(cfg: config.ConfigFile, name: str) -> str:
    return (cfg.sections[name].get("mode") or cfg.defaults.get("mode") or "scraper").strip()


def monitor_section(cfg: config.ConfigFile, name: str | None,
                    overrides: dict[str, str] | None = None) -> config.Loaded[config.MonitorSection]:
    """The named monitor section; without a name, the file's only one, or an implicit one with every
    default (watching every section) when the file has none."""
    if name is None:
        monitors = [n for n in cfg.sections if _mode(cfg, n) == "monitor"]
        if len(monitors) > 1:
            raise ConfigError(f"{len(monitors)} monitor sections ({', '.join(monitors)}): name one", file=cfg.display)
        if not monitors:  # every default, validated (and --set placed) as a section of the file would be
            implicit = replace(cfg, sections={**cfg.sections, DEFAULT_NAME: {"mode": "monitor"}})
            return config.validate(implicit, DEFAULT_NAME, overrides).of(config.MonitorSection)
        name = monitors[0]
    return config.validate(cfg, name, overrides).of(config.MonitorSection)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def counts(results: Sequence[CheckResult]) -> dict[str, int]:
    c = Counter(r.state.name for r in results)
    return {s.name.lower(): c.get(s.name, 0) for s in (State.CRITICAL, State.UNKNOWN, State.WARNING, State.OK)}


def summary(results: Sequence[CheckResult]) -> str:
    """`SCRAPERD CRITICAL - 1 critical, 0 unknown, 2 warning, 9 ok: freshness adtemp_scraper ... | critical=1 ...`"""
    state = worst(r.state for r in results)
    n = counts(results)
    text = ", ".join(f"{v} {k}" for k, v in n.items())
    bad = [r for r in results if r.state is state and state is not State.OK]
    first = f": {bad[0].check} {' '.join(p for p in (bad[0].section, bad[0].table) if p)}".rstrip() if bad else ""
    perf = " ".join(f"{k}={v}" for k, v in n.items())
    return f"SCRAPERD {state.name} - {text}{first} | {perf}"
