"""The `scraperd` console script and `python -m scraperd`: the backup commands (run from cron, often,
on big tables) are parsed and run without importing the rest of the CLI; everything else by cli.py."""

from __future__ import annotations

import sys
from collections.abc import Sequence

LIGHT = ("backup", "restore", "verify")
_GLOBAL_WITH_VALUE = ("-c", "--config")


def command_word(argv: Sequence[str]) -> str | None:
    """The command of a `scraperd` command line: its first word that is not a global option."""
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
        elif word in ("-h", "--help"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if command_word(args) in LIGHT:
        from scraperd import backup, clirun

        parser, sub = clirun.top_parser()
        backup.register(sub)
        return clirun.run(parser, args)
    from scraperd import cli

    return cli.main(args)
