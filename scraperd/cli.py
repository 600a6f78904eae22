"""The `scraperd` entry point: subcommands, exit codes, one-line errors.

Configuration errors print as the bare line `FILE [SECTION] KEY: message`; other errors start with
`scraperd:`. Exit codes: 0 success or clean stop; 78 configuration error (supervisord then leaves the program
FATAL instead of restarting it forever); 1 any other failure; argparse keeps 2 for a malformed
command line. Errors are caught here, once, and printed as one line; the traceback goes to the
log, or to the screen with --debug.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scraperd import clirun, config, databases, logsetup, preflight
from scraperd.errors import EX_CONFIG, ConfigError, error_lines

PROG = clirun.PROG


def _settings_help(model: type[config.Program]) -> str:
    lines = []
    for key, f in model.model_fields.items():
        default = "" if f.is_required() else f" [{config.format_value(f.default)}]"
        lines.append(f"  {key:<28}{f.description or ''}{default}")
    return "\n".join(lines)


RUN_EPILOG = f"""\
example:
  scraperd -c etc/scraper.cfg run adtemp_scraper --set maxiter=100 --set sleep=0s

The section's `mode` decides what runs. SIGTERM/SIGINT finish the current write, log
`shutdown` and exit 0. Exit 78 on a configuration error.

keys of mode = scraper:
{_settings_help(config.ScraperSection)}

keys only of mode = faker:
{chr(10).join(line for line in _settings_help(config.FakerSection).splitlines()
              if line.split()[0] not in config.Common.model_fields)}

keys only of mode = averager:
{chr(10).join(line for line in _settings_help(config.AveragerSection).splitlines()
              if line.split()[0] not in config.TargetCommon.model_fields)}

keys of mode = monitor (see `scraperd monitor --help`):
{chr(10).join(line for line in _settings_help(config.MonitorSection).splitlines()
              if line.split()[0] not in config.Program.model_fields)}
"""


CHECK_CONFIG_DESCRIPTION = """\
Validate every section of the config file; exit 78 if any is broken.

Checked without connecting to any database: every key's value and the rules between keys
(durations, binsize/territory on local midnight, seeding), the ~/.my.cnf sections named and the
target specs. What needs the databases themselves (the columns aggregate_skips and
aggregate_filter name, refused credentials) is checked when the program starts, before it
writes anything: exit 78 there too, so supervisord marks it FATAL (a database that does
not answer is retried: db_retry events).

The ENGINE column (unless --no-connect) is read from each valid scraper's and averager's
target: the storage engine of its three tables (<T>, <T>Vld, LOCALSEQNO; read only: nothing
is written, no SQLite file is created): InnoDB or sqlite (one transaction per write),
"MyISAM (LOCK TABLES)" (any other engine: written under LOCK TABLES, see README), each
table's engine when they differ (- for one not created yet), "no tables yet" or "no database
yet" (the daemon creates them InnoDB), "no driver" or "unreachable" (the reason follows
its row; the exit code does not change). A broken section's errors follow its row too."""


class _HelpAfterParsing(argparse.Action):
    """`run`'s -h/--help: noted, not acted on at once, so that `run SECTION --help` is answered by
    cmd_run with the whole line parsed (-c, --set) and the section's own keys."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, True)
        if isinstance(parser, clirun.Parser):
            parser.help_wanted = True


def build_parser() -> argparse.ArgumentParser:
    p, sub = clirun.top_parser()
    for add in (_add_run, _add_check_config, _add_show, _add_ddl):
        add(sub)

    # operator commands: gen-ini, status, logs (each module registers its own subparser)
    from scraperd import backup, logview, monitor, query, status, supervisor, watchdog

    for module in (supervisor, status, monitor, logview, watchdog, backup, query):
        module.register(sub)
    return p


Subparsers = argparse._SubParsersAction  # what add_subparsers() returns; argparse names it no other way


def _add_run(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="run one section (scraper, faker, averager or monitor) until maxiter or a signal",
                         description="Run one config section in the foreground; supervisord runs this.",
                         epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                         add_help=False)
    run.add_argument("-h", "--help", action=_HelpAfterParsing,
                     help="show this help and exit; with SECTION, its keys with their effective values")
    run.add_argument("section", help="config section, e.g. adtemp_scraper")
    run.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                     help="override a config key for this run (repeatable)")
    run.add_argument("--catch-up", action="store_true",
                     help="scraper: exit 0 as soon as every source is caught up (a one-shot backfill)")
    run.add_argument("--drop-target", action="store_true",
                     help="averager: drop and recreate the target tables first (refused for offline_db)")
    run.set_defaults(run_parser=run)


def _add_check_config(sub: Subparsers) -> None:
    chk = sub.add_parser("check-config", help="validate every section and print a summary table",
                         description=CHECK_CONFIG_DESCRIPTION,
                         epilog="examples:\n  scraperd -c etc/scraper.cfg check-config\n"
                                "  scraperd -c etc/scraper.cfg check-config --no-connect   # connect to nothing",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    chk.add_argument("--no-connect", dest="connect", action="store_false",
                     help="connect to no database: no ENGINE column (the storage engine of each target's tables)")


def _add_show(sub: Subparsers) -> None:
    show = sub.add_parser("show", help="print a section's effective settings and where each came from",
                          description="Effective settings of one section: value and origin "
                                      "([section], [DEFAULT], --set or default).",
                          epilog="example:\n  scraperd show adtemp_scraper --set maxage=1h",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("section")
    show.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[])
    show.add_argument("--json", action="store_true")


def _add_ddl(sub: Subparsers) -> None:
    ddl = sub.add_parser("ddl", help="print the CREATE TABLE statements of a target .spec",
                         description="Print the DDL of a DBI table pair (payload, Vld) and LOCALSEQNO.",
                         epilog="example:\n  scraperd ddl DcsAdTemp --dialect mysql",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ddl.add_argument("spec", help="table or class name (DcsAdTemp, GDcsAdTemp) or a .spec path")
    ddl.add_argument("--dialect", choices=["mysql", "sqlite"], default="mysql")
    ddl.add_argument("--spec-dir", metavar="DIR", help="directory of .spec files (default etc/spec)")


# ----------------------------------------------------------------------------------------------------------
# Commands


def cmd_check_config(args: argparse.Namespace) -> int:
    path = config.config_path(args.config)
    cfg = config.read_file(path)
    rows = [_check_section(cfg, name, connect=args.connect) for name in cfg.sections]
    bad = sum(row["status"] != "ok" for row in rows)
    if args.json:
        print(json.dumps({"config": str(path), "sections": rows, "errors": bad}, indent=2))
        return EX_CONFIG if bad else 0
    columns = ["section", "mode", "regime", "source", "target"] + ["engine"] * args.connect + ["status"]
    header, *lines = _table_lines(rows, columns)
    print(header)
    for row, line in zip(rows, lines, strict=True):
        print(line)
        _reasons_under(row)
    print(f"{len(rows)} sections, {bad} with errors ({path})")
    _mycnf_hint(rows)
    return EX_CONFIG if bad else 0


def _check_section(cfg: config.ConfigFile, name: str, *, connect: bool) -> dict[str, Any]:
    """One check-config row: what the section names (as far as it validates), its status and errors."""
    row: dict[str, Any] = {"section": name, "mode": cfg.sections[name].get("mode", cfg.defaults.get("mode", "scraper")),
                           "regime": "", "source": "", "target": "", "status": "ERROR", "errors": []}
    try:
        loaded = config.validate(cfg, name)
        s = loaded.settings
        row.update(mode=s.mode, regime=getattr(s, "regime", "").rsplit(":", 1)[-1],
                   source=databases.describe_text(getattr(s, "source", "") or ""),
                   target=databases.describe_text(getattr(s, "target", "") or ""))
        if isinstance(s, config.WatchdogSection | config.BackupSection):  # no database of their own
            if "email" in s.notify:  # the SMTP login's secret is there (as `scraperd backup` checks first)
                from scraperd.notify import channels

                with loaded.placing():
                    channels.login(s)
            row["status"] = "ok"
            return row
        if isinstance(s, config.MonitorSection):
            from scraperd.monitor import Monitor

            Monitor.of(loaded.of(config.MonitorSection))  # its `sections` name sections of the file
            row["status"] = "ok"
            return row
        checked = preflight.preflight(loaded)
    except ConfigError as exc:
        row["errors"] = error_lines(exc)
        return row
    row["status"] = "ok"
    if connect:
        row.update(_target_engine(checked))
    return row


def _reasons_under(row: dict[str, Any]) -> None:
    """A row's errors and unreached target on stderr, right under the row (stdout flushed first)."""
    reasons = list(row["errors"])
    if row.get("engine_error"):
        reasons.append(f"{PROG}: [{row['section']}] target not reached: {row['engine_error']}")
    _print_errors(reasons)


def _mycnf_hint(rows: Sequence[dict[str, Any]]) -> None:
    """What to do when sections fail for want of the MySQL option file (a newcomer's first run)."""
    mycnf = databases.mycnf_path()
    if mycnf.exists() or not any(str(mycnf) in line for row in rows for line in row["errors"]):
        return
    example = config.REPO_ROOT / "etc" / "my.cnf.example"
    with contextlib.suppress(ValueError):
        example = example.relative_to(Path.cwd())
    _print_errors([f"{PROG}: {mycnf} does not exist: copy {example} there (chmod 600) and fill in each "
                   f"section's password, or point {databases.MYCNF_ENV} at such a file"])


def _target_engine(checked: preflight.Checked) -> dict[str, Any]:
    """The engine fields of a check-config row: engine (text), engines (by table) and engine_error."""
    import sqlalchemy as sa

    from scraperd.dbi import tables

    if checked.target is None or checked.spec is None:  # a faker: no target
        return {"engine": "", "engines": None, "engine_error": None}
    url = checked.target
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not Path(url.database).exists():
        return {"engine": "no database yet", "engines": None, "engine_error": None}
    try:
        engine = databases.make_engine(url, readonly=True)
    except (sa.exc.ArgumentError, ImportError) as exc:  # no such dialect, or its driver is not installed
        return {"engine": "no driver", "engines": None, "engine_error": str(exc).splitlines()[0]}
    try:
        with engine.connect() as conn:
            found = tables.engines(conn, tables.tables_for(checked.spec))
    except sa.exc.DBAPIError as exc:  # the driver's message names no password
        code = next(iter(getattr(exc.orig, "args", ())), None)
        missing = code == 1049  # the server answers; the database does not exist
        return {"engine": "no database yet" if missing else "unreachable", "engines": None,
                "engine_error": str(exc.orig)}
    finally:
        engine.dispose()
    return {"engine": tables.describe_engines(found), "engines": found, "engine_error": None}


def cmd_show(args: argparse.Namespace) -> int:
    path = config.config_path(args.config)
    loaded = config.load_section(path, args.section, config.parse_overrides(args.overrides))
    rows = _settings_rows(loaded)
    if args.json:
        print(json.dumps({"section": loaded.name, "config": str(path), "settings": rows,
                          "ignored": loaded.ignored}, indent=2))
        return 0
    print(f"[{loaded.name}]  mode = {loaded.mode}   ({path})")
    _table(rows, ["key", "value", "from"])
    _print_ignored(loaded)
    return 0


def _settings_rows(loaded: config.Loaded) -> list[dict[str, str]]:
    """key, value (as the INI file writes it; no password) and origin of each effective setting."""
    def shown(key: str, value: Any) -> str:
        if key in ("source", "target"):
            return databases.describe_text(config.format_value(value))
        if key == "chain":
            return ",".join(databases.describe_text(name) for name in value)
        if key in ("http_url", "routes"):  # a URL recipient's user:password@ never shown
            from scraperd.notify.routing import shown as recipient

            return re.sub(r"https?://\S+?(?=[,;\s]|$)", lambda m: recipient(m.group(0)), config.format_value(value))
        return config.format_value(value)

    return [{"key": k, "value": shown(k, v), "from": loaded.origin.get(k, "default")}
            for k, v in loaded.settings.model_dump().items()]


def _print_ignored(loaded: config.Loaded) -> None:
    for k in loaded.ignored:
        print(f"  ({k} from [DEFAULT] is not used by mode = {loaded.mode})")


def cmd_ddl(args: argparse.Namespace) -> int:
    from scraperd.dbi import spec as specmod
    from scraperd.dbi import tables

    if args.spec.endswith(".spec") or Path(args.spec).exists():
        spec = specmod.load_spec(Path(args.spec))
    else:
        spec = specmod.find_spec(args.spec, Path(args.spec_dir) if args.spec_dir else specmod.DEFAULT_SPEC_DIR)
    print(tables.ddl(spec, args.dialect))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.help:
        return _run_help(args)
    path = config.config_path(args.config)
    loaded = config.load_section(path, args.section, config.parse_overrides(args.overrides))
    for flag, mode in (("catch_up", "scraper"), ("drop_target", "averager")):
        if getattr(args, flag) and loaded.mode != mode:
            print(f"{PROG}: --{flag.replace('_', '-')} is for mode = {mode}; [{loaded.name}] is a {loaded.mode}",
                  file=sys.stderr)
            return 2
    logsetup.configure(level=loaded.settings.dbi_loglevel)
    logsetup.bind(section=loaded.name)
    if loaded.mode == "scraper":
        from scraperd.scrape import daemon

        return daemon.run(loaded.of(config.ScraperSection), until_caught_up=args.catch_up)
    if loaded.mode == "faker":
        from scraperd import faker

        return faker.run(loaded.of(config.FakerSection))
    if loaded.mode == "watchdog":
        print(f"{PROG}: [{loaded.name}] is the watchdog: supervisord runs it as `scraperd watchdog` (gen-ini ALL)",
              file=sys.stderr)
        return 2
    if loaded.mode == "backup":
        print(f"{PROG}: [{loaded.name}] holds the settings of `scraperd backup` and `scraperd restore` "
              "(run them from cron; see `scraperd backup --help`)", file=sys.stderr)
        return 2
    if loaded.mode == "monitor":
        from scraperd.monitor import daemon as monitor_daemon

        return monitor_daemon.run(loaded.of(config.MonitorSection))
    from scraperd import averager

    return averager.run(loaded.of(config.AveragerSection), drop_target=args.drop_target)


def _run_help(args: argparse.Namespace) -> int:
    """`run SECTION --help`: usage and options, then SECTION's keys with their effective values, where
    each came from and what it means. A SECTION not in the file: the generic help and one line saying
    so (exit 0). A broken section, or no readable file: its one-line errors after the usage (exit 78)."""
    parser: argparse.ArgumentParser = args.run_parser
    path = config.config_path(args.config)
    try:
        cfg = config.read_file(path)
    except ConfigError as exc:
        parser.print_help()
        _print_errors(error_lines(exc))
        return EX_CONFIG
    try:
        loaded = config.validate(cfg, args.section, config.parse_overrides(args.overrides))
    except ConfigError as exc:
        unknown = args.section not in cfg.sections
        if unknown:
            parser.print_help()
        else:
            print(_usage_and_options(parser))
        _print_errors(error_lines(exc))
        return 0 if unknown else EX_CONFIG
    print(_usage_and_options(parser))
    print(f"keys of [{loaded.name}]  mode = {loaded.mode}   ({path}):")
    fields = type(loaded.settings).model_fields
    _table([{**row, "description": fields[row["key"]].description or ""} for row in _settings_rows(loaded)],
           ["key", "value", "from", "description"])
    _print_ignored(loaded)
    return 0


def _usage_and_options(parser: argparse.ArgumentParser) -> str:
    """The parser's help without its epilog (run's lists every mode's keys: the section's replace it)."""
    head = copy.copy(parser)
    head.epilog = None
    return head.format_help()


def _print_errors(lines: Sequence[str]) -> None:
    """One-line errors on stderr, after what stdout printed so far."""
    if lines:
        sys.stdout.flush()
        for line in lines:
            print(line, file=sys.stderr)
        sys.stderr.flush()


COMMANDS = {"run": cmd_run, "check-config": cmd_check_config, "show": cmd_show, "ddl": cmd_ddl}


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    for line in _table_lines(rows, columns):
        print(line)


def _table_lines(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """The header line, then one line per row, columns padded to their widest value."""
    widths = {c: max([len(c)] + [len(str(r.get(c, ""))) for r in rows]) for c in columns}
    header = "  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()
    return [header] + ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip() for r in rows]


def main(argv: Sequence[str] | None = None) -> int:
    return clirun.run(build_parser(), argv, COMMANDS)


if __name__ == "__main__":
    raise SystemExit(main())
