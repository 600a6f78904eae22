"""The exception tree of scraperd, and the exit code each branch ends the process with.

    ScraperdError                 exit 1   anything we anticipated but cannot fix here
    ├── ConfigError               exit 78  bad INI key/value, bad .spec, unknown my.cnf section,
    │   └── SpecError                      seeding refused, ... (supervisord: FATAL, no restart storm)
    ├── SourceError               exit 1   a source table or column vanished (the daemon retries it)
    ├── DataError                 exit 1   a write that cannot be done as asked (e.g. empty record)
    └── WriteConflict             (none)   another writer changed a context this process writes: the
                                           write did nothing; the daemon resumes from the target

Exit 0 is a clean stop (signal, maxiter). argparse keeps its own 2 for a malformed command line.
Errors are caught once, in cli.py, and printed as one line.
"""

from __future__ import annotations

import os

EX_CONFIG = getattr(os, "EX_CONFIG", 78)


class ScraperdError(Exception):
    """Base of every error scraperd raises on purpose."""

    exit_code = 1


class ConfigError(ScraperdError):
    """A configuration problem: one line naming file, section and key."""

    exit_code = EX_CONFIG

    def __init__(self, message: str, *, file: str | None = None, section: str | None = None,
                 key: str | None = None) -> None:
        self.file, self.section, self.key, self.message = file, section, key, message
        super().__init__(self.line())

    def line(self) -> str:
        where = []
        if self.file:
            where.append(str(self.file))
        if self.section:
            where.append(f"[{self.section}]")
        head = " ".join(where)
        if self.key:
            head = f"{head} {self.key}:" if head else f"{self.key}:"
        elif head:
            head = f"{head}:"
        return f"{head} {self.message}".strip()


class SpecError(ConfigError):
    """A malformed DybDbi .spec file: names the file and the line."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        self.lineno = line
        super().__init__(message, file=f"{file}:{line}" if line else file)


class SourceError(ScraperdError):
    """The source database no longer looks as expected (table or column gone)."""


class DataError(ScraperdError):
    """A record that cannot be written as asked."""


class WriteConflict(ScraperdError):
    """A fenced write found a record of its context written since this process last looked.

    Nothing was written. Another copy of the section (a hand run beside supervisord's, a second host)
    wrote first; the daemon resumes from the target as at start-up (lifecycle.py).
    """

    def __init__(self, table: str, context: dict[str, int], expected: int | None, found: int | None) -> None:
        self.table, self.context, self.expected, self.found = table, context, expected, found
        super().__init__(f"{table}: the last record of context {context} is SEQNO {found}, "
                         f"not {expected} as this process expected")
