"""What every `scraperd` command line shares, kept light (no SQLAlchemy, no pydantic): the top-level
parser with -c and --debug, and running a parsed command with the one-line errors and exit codes of
cli.py's docstring. cli.py builds the whole parser on it; entry.py the backup commands' alone, so
that `scraperd backup` from cron does not pay for importing every other command.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from scraperd.errors import EX_CONFIG, ConfigError, ScraperdError, error_lines

PROG = "scraperd"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose -h may wait for the rest of the line (see cli._HelpAfterParsing)."""

    help_wanted = False

    def error(self, message: str) -> NoReturn:
        if self.help_wanted:  # `run --help` without SECTION: the generic help, as argparse gives it
            self.print_help()
            self.exit(0)
        super().error(message)


def top_parser() -> tuple[Parser, Any]:
    """The `scraperd` parser with its global options, and its subparsers to add commands to."""
    p = Parser(
        prog=PROG,
        description="Scrape DCS slow-control tables into a DBI conditions database, under supervisord.",
        epilog="Config: -c PATH, else $SCRAPER_CFG, else etc/scraper.cfg. "
               "Run `scraperd COMMAND --help` for each command.",
    )
    p.add_argument("-c", "--config", metavar="PATH", help="config file (default $SCRAPER_CFG or etc/scraper.cfg)")
    p.add_argument("--debug", action="store_true", help="print tracebacks on errors")
    return p, p.add_subparsers(dest="command", metavar="COMMAND", required=True)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
        commands: Mapping[str, Callable[[argparse.Namespace], Any]] | None = None) -> int:
    """Parse argv and run its command; errors are caught here, once, and printed as one line."""
    args, extra = parser.parse_known_args(argv)
    # argparse gives a `nargs="*"` positional only the words before the first option: `backup DB --dir D
    # TABLE` leaves TABLE over. Commands with a TABLE list take such words; any other leftover is an error.
    if extra and hasattr(args, "tables") and not any(e.startswith("-") for e in extra):
        args.tables = [*args.tables, *extra]
    elif extra:  # the subcommand's own parser says it (backup, restore, verify: exit 78)
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        func = getattr(args, "func", None) or (commands or {})[args.command]
        return int(func(args))
    except ConfigError as exc:
        # the line as the issue gives it: `scraper.cfg [adtemp_scraper] maxage: cannot parse ...`
        for line in error_lines(exc):
            print(line, file=sys.stderr)
        return exc.exit_code
    except ScraperdError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        if args.debug:
            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `scraperd logs X | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug: one line; the traceback with --debug, or in the JSON log
        _internal_error(exc, debug=args.debug)
        return 1


def _internal_error(exc: Exception, *, debug: bool) -> None:
    """A bug's one line on stderr; its traceback on the screen (--debug) or in the JSON log."""
    first = (str(exc).strip().splitlines() or [""])[0]
    print(f"{PROG}: internal error: {exc.__class__.__name__}: {first}", file=sys.stderr)
    if debug:
        traceback.print_exc()
    elif not sys.stdout.isatty():
        try:
            from scraperd import logsetup

            logsetup.get_logger().error("internal_error", error=repr(exc), exc_info=True)
        except Exception:
            pass


def arguments_are_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A malformed command line of p's command is a configuration error: exit 78 in one line, as cron
    and the operator expect of a bad --chunk or a missing --dir (argparse would exit 2 after its usage)."""

    def error(message: str) -> NoReturn:
        p.exit(EX_CONFIG, f"{p.prog}: error: {message} (see {p.prog} --help)\n")

    p.error = error  # type: ignore[method-assign]
    p.set_defaults(parser=p)  # run() reports leftover words through it too
    return p
