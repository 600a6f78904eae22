"""The exception tree of scraperd, and the exit code each branch ends the process with.

    ScraperdError                 exit 1   anything we anticipated but cannot fix here
    ├── ConfigError               exit 78  bad INI key/value, bad .spec, unknown my.cnf section,
    │   ├── ConfigErrors                   seeding refused, ... (supervisord: FATAL, no restart storm);
    │   └── SpecError                      ConfigErrors: several at once, a line each
    ├── SourceError               exit 1   a source table or column vanished (the daemon retries it)
    ├── DataError                 exit 1   a write that cannot be done as asked (e.g. empty record)
    ├── NoDatabaseFile            exit 1   an SQLite file named in the config is missing (status reads
    │                                      only: it never creates one)
    ├── Disconnected              (none)   a database went away: retry.side() raises it, retry.py's
    │                                      reconnecting() waits and the daemon starts again
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


class ConfigErrors(ConfigError):
    """Several configuration problems; str() is one line each."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        first = problems[0]
        super().__init__(first.message, file=first.file, section=first.section, key=first.key)

    def __str__(self) -> str:
        return "\n".join(p.line() for p in self.problems)

    def lines(self) -> list[str]:
        return [p.line() for p in self.problems]

    @staticmethod
    def combined(problems: list[ConfigError]) -> ConfigError:
        """One problem as itself, several as ConfigErrors."""
        return problems[0] if len(problems) == 1 else ConfigErrors(problems)


def error_lines(exc: ConfigError) -> list[str]:
    """The one-line messages of a ConfigError (several for ConfigErrors)."""
    return exc.lines() if isinstance(exc, ConfigErrors) else [exc.line()]


class SpecError(ConfigError):
    """A malformed DybDbi .spec file: names the file and the line."""

    def __init__(self, message: str, *, file: str, line: int | None = None) -> None:
        self.lineno = line
        super().__init__(message, file=f"{file}:{line}" if line else file)


class SourceError(ScraperdError):
    """The source database no longer looks as expected (table or column gone)."""


class DataError(ScraperdError):
    """A record that cannot be written as asked."""


class NoDatabaseFile(ScraperdError):
    """An SQLite database named in the config does not exist (status never creates one)."""


class Disconnected(ScraperdError):
    """A database went away (or a source table vanished); `db` says which side (source, target)."""

    def __init__(self, db: str, error: BaseException) -> None:
        self.db, self.error = db, error
        super().__init__(f"{db}: {error.__class__.__name__}")


class WriteConflict(ScraperdError):
    """A fenced write found a record of its context written since this process last looked.

    Nothing was written. Another copy of the section (a hand run beside supervisord's, a second host)
    wrote first; the daemon resumes from the target as at start-up (lifecycle.py).
    """

    def __init__(self, table: str, context: dict[str, int], expected: int | None, found: int | None) -> None:
        self.table, self.context, self.expected, self.found = table, context, expected, found
        super().__init__(f"{table}: the last record of context {context} is SEQNO {found}, "
                         f"not {expected} as this process expected")
