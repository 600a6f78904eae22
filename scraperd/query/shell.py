"""`scraperd shell`: an interactive Python on the fleet's databases, as the manual's NonDbi session was.

    open_namespace(section, db=...)  src, tgt (and db) sessions, kls_, session_, sa; NonDbi importable
    run(namespace, code=...)         -c code, else code on stdin, else IPython / Python's console
    session_(dbconf)                 NonDbi's: a Session whose .kls_(name) maps a table (automap)

A class is mapped per table and database, reflected on first use (SQLite DATETIMEs as the whole-second
text scraperd writes). A table without a primary key (a DCS table may have none) is mapped on the
first of `id`, (SEQNO, ROW_COUNTER) or SEQNO it has; a table with none of them is refused with a
message saying how to read it instead. Sessions are opened read-only as far as the database goes
(SQLite: deferred transactions): the shell writes nothing unless the code written in it commits.
"""

from __future__ import annotations

import ast
import code as console
import linecache
import sys
import traceback
import types
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.automap import automap_base
from sqlalchemy.orm import Session

from scraperd import config, databases, preflight
from scraperd.config.values import did_you_mean
from scraperd.errors import ConfigError

# The columns a table without a primary key is mapped on, in order of preference
INFERRED_KEYS = (("id",), ("SEQNO", "ROW_COUNTER"), ("SEQNO",))


class NoSuchTable(LookupError):
    """kls_(name) for a table the database does not hold, or cannot be mapped."""


class _Row:
    """The base of every mapped class: a repr naming the key and the row's time."""

    def __repr__(self) -> str:
        table: sa.Table = self.__table__  # type: ignore[attr-defined]
        shown = [c.name for c in table.primary_key.columns]
        shown += [c for c in ("date_time", "TIMESTART", "TIMEEND") if c in table.c and c not in shown]
        fields = " ".join(f"{c}={getattr(self, c)!s}" for c in shown)
        return f"<{type(self).__name__} {fields}>"


_classes: dict[tuple[str, str], type] = {}


def mapped_class(engine: Engine, name: str) -> type:
    """The automap class of table `name` in engine's database (cached per database and table)."""
    key = (engine.url.render_as_string(hide_password=False), name)
    if key in _classes:
        return _classes[key]
    names = sa.inspect(engine).get_table_names()
    real = name if name in names else next((n for n in names if n.lower() == name.lower()), None)
    if real is None:
        raise NoSuchTable(f"no table {name!r} in {databases.describe(engine.url)}{did_you_mean(name, names)}")
    metadata = databases.reflecting(sa.MetaData())
    table = sa.Table(real, metadata, autoload_with=engine)
    if not table.primary_key.columns:
        keys = next((k for k in INFERRED_KEYS if all(c in table.c for c in k)), None)
        if keys is None:
            raise NoSuchTable(f"{real} has no primary key and no id or SEQNO column: kls_ cannot map it; read it "
                              f"with t = sa.Table({real!r}, sa.MetaData(), autoload_with=session.get_bind()) and "
                              "session.execute(sa.select(t))")
        metadata = databases.reflecting(sa.MetaData())
        table = sa.Table(real, metadata, *(sa.Column(c, table.c[c].type, primary_key=True) for c in keys),
                         autoload_with=engine)
    base: Any = automap_base(metadata=metadata, cls=_Row)
    base.prepare()
    kls: type = getattr(base.classes, real)
    _classes[key] = kls
    return kls


class NonDbiSession(Session):
    """A Session on one database whose kls_(name) maps a table of it, as NonDbi's did."""

    def kls_(self, name: str) -> type:
        bind = self.get_bind()
        assert isinstance(bind, Engine)
        return mapped_class(bind, name)

    def __repr__(self) -> str:
        bind = self.get_bind()
        return f"<session on {databases.describe(bind.engine.url)}>"


def _engine(url: URL, what: str) -> Engine:
    return databases.reading_engine(url, what)


def session_(dbconf: str, *, what: str = "session_") -> NonDbiSession:
    """A session on a ~/.my.cnf section ($SCRAPERD_MYCNF) or an SQLAlchemy URL, as NonDbi.session_."""
    return NonDbiSession(bind=_engine(databases.resolve(dbconf), what))


def _nondbi_module() -> types.ModuleType:
    """`NonDbi`, so that the manual's `from NonDbi import session_` works as written."""
    module = types.ModuleType("NonDbi", "NonDbi's session_() for scraperd shell: session_(dbconf).kls_(table)")
    module.session_ = session_  # type: ignore[attr-defined]
    return module


def open_namespace(section: str | None, *, db: str | None,
                   config_path: str | None) -> tuple[dict[str, Any], list[str]]:
    """The shell's globals (src, tgt, db, kls_, session_, sa), and notes saying what is not open and why."""
    notes: list[str] = []
    src = tgt = dbs = None
    if section:
        loaded = config.validate(config.read_file(config.config_path(config_path)), section)
        s = loaded.settings
        for key, name in (("source", "src"), ("target", "tgt")):
            if not hasattr(s, key):
                notes.append(f"{name} = None: [{section}] is a {loaded.mode} section, it has no {key}")
                continue
            try:
                opened = NonDbiSession(bind=_engine(preflight.resolve(loaded, key), key))
            except ConfigError as exc:
                notes.append(f"{name} = None: {exc.line()}")
                continue
            if key == "source":
                src = opened
            else:
                tgt = opened
    if db:
        dbs = tgt = session_(db, what="--db")
    if not (section or db):
        notes.append("no SECTION and no --db: open a database with session_(DBCONF)")
    sessions = list({id(s): s for s in (dbs, src, tgt) if s is not None}.values())  # db is tgt: once

    def kls_(name: str) -> type:
        """A class mapped onto table `name`, from the first of db, src, tgt that holds it."""
        for s in sessions:
            bind = s.get_bind()
            if sa.inspect(bind).has_table(name) or any(n.lower() == name.lower()
                                                        for n in sa.inspect(bind).get_table_names()):
                return s.kls_(name)
        where = ", ".join(repr(s) for s in sessions) or "no database (use session_(DBCONF).kls_(name))"
        raise NoSuchTable(f"no table {name!r} in {where}")

    sys.modules["NonDbi"] = _nondbi_module()
    namespace = {"__name__": "__console__", "__doc__": None, "src": src, "tgt": tgt, "db": dbs, "kls_": kls_,
                 "session_": session_, "sa": sa}
    return namespace, notes


def banner(namespace: dict[str, Any], notes: list[str]) -> str:
    lines = ["scraperd shell: SQLAlchemy sessions on the conditions and DCS databases"]
    for name in ("src", "tgt", "db"):
        if namespace.get(name) is not None:
            lines.append(f"  {name:<4} = {namespace[name]!r}")
    lines += [f"  ({note})" for note in notes]
    lines += ["  kls_(name): the class of a table, e.g. q = tgt.query(kls_('DcsAdTempVld')); q.count(); q[0:3]",
              "  session_(DBCONF), also `from NonDbi import session_`: a session on any database; sa: sqlalchemy"]
    return "\n".join(lines)


def run(namespace: dict[str, Any], notes: list[str], *, code: str | None) -> int:
    """-c code, else stdin when it is not a terminal, else an interactive prompt; the exit code."""
    try:
        if code is not None or not sys.stdin.isatty():
            for note in notes:
                print(f"scraperd shell: {note}", file=sys.stderr)
            text, filename = (code, "<shell -c>") if code is not None else (sys.stdin.read(), "<stdin>")
            return run_source(text, filename, namespace)
        return _interactive(namespace, notes)
    finally:
        for name in ("src", "tgt", "db"):
            s = namespace.get(name)
            if isinstance(s, Session):
                s.close()
                bind = s.get_bind()
                if isinstance(bind, Engine):
                    bind.dispose()


def run_source(text: str, filename: str, namespace: dict[str, Any]) -> int:
    """Run code statement by statement as the prompt does (a bare expression's value is printed);
    0, or 1 after the first exception, whose traceback goes to stderr."""
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    try:
        tree = ast.parse(text, filename)
    except SyntaxError as exc:
        sys.stderr.writelines(traceback.format_exception_only(type(exc), exc))
        return 1
    for node in tree.body:
        compiled = compile(ast.Interactive(body=[node]), filename, "single")
        try:
            exec(compiled, namespace)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:
            sys.stdout.flush()
            # the traceback of the code run, without this function's frame
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None)
            return 1
        finally:
            sys.stdout.flush()
    return 0


def _interactive(namespace: dict[str, Any], notes: list[str]) -> int:
    start: Callable[..., Any] | None
    try:
        import IPython

        start = IPython.start_ipython
    except ImportError:
        start = None
    print(banner(namespace, notes))
    if start is not None:
        start(argv=[], user_ns=namespace)
        return 0
    try:
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(namespace).complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:  # no readline on this platform: a console without completion
        pass
    console.interact(banner="", local=namespace, exitmsg="")
    return 0
