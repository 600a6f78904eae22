"""`scraperd watchdog`: supervisord's event listener for the fleet (PROCESS_STATE, TICK_60 or TICK_5).

    supervisord ──event──▶ stdin   handle()   ──▶ stdout RESULT 2 OK (always, even when handle() failed)
                           READY ◀─────────────── the listener protocol (supervisor.childutils.listener)

    PROCESS_STATE_FATAL, EXITED not expected   a notification (check `watchdog`), once per event, naming
                                               the program and the last lines of its log
    TICK                                       every RUNNING program of a section: its heartbeat
                                               (heartbeat.py) older than stuck_after → `stuck` event, a
                                               notification and a restart (stopProcess/startProcess, in
                                               a thread of its own), at most once per restart_backoff;
                                               phase `retrying` is not stuck (a `retrying` event); a
                                               restart that brings no fresh heartbeat is reported once,
                                               then left to the operator

stdout is the protocol: every log event goes to stderr (the listener's own log file). Delivery is the
Notifier's background worker: a slow mail server never holds the protocol. Whatever goes wrong in
handle() is logged (`watchdog_error`) and the event still acknowledged: a listener that stops
answering would hold supervisord's event buffer, never the fleet.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from supervisor import childutils

from scraperd import config, heartbeat, logsetup
from scraperd.errors import ConfigError
from scraperd.notify import routing
from scraperd.notify.message import Message, iso_utc
from scraperd.notify.notifier import deliveries_for
from scraperd.supervisor.ini import logfile_for

log = logsetup.get_logger("scraperd.watchdog")

NAME = "scraperd_watchdog"
CHECK = "watchdog"
STUCK_FLOOR = timedelta(minutes=2)
LOG_LINES = 20


def tail(path: Path | None, lines: int = LOG_LINES) -> str:
    """The last lines of a log file ("" when it cannot be read)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 64 * 1024, 0))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Watched:
    """What the watchdog remembers of one program."""

    restarted_at: float | None = None   # time.time() of our last restart
    restart_pid: int | None = None      # the pid that was stuck then
    gave_up: bool = False               # a restart brought no fresh heartbeat: reported, not repeated
    retrying_said: bool = False


@dataclass
class Watchdog:
    """The listener's state and decisions; rpc is supervisord's XML-RPC (childutils.getRPCInterface)."""

    settings: config.WatchdogSection
    sections: dict[str, config.Program]     # the config's sections supervisord runs as programs
    rpc_factory: Callable[[], Any]
    notify: Callable[[Message], None]
    watched: dict[str, Watched] = field(default_factory=dict)

    def stuck_after(self, beat: heartbeat.Beat | None) -> float:
        if self.settings.stuck_after is not None:
            return self.settings.stuck_after.total_seconds()
        sleep = beat.sleep_s if beat is not None and beat.sleep_s else 0.0
        return max(3 * sleep, STUCK_FLOOR.total_seconds())

    # --- events ---------------------------------------------------------------------------------------

    def handle(self, headers: dict[str, str], payload: str) -> None:
        name = headers.get("eventname", "")
        if name.startswith("PROCESS_STATE_"):
            body, _ = childutils.eventdata(payload + "\n")
            self.process_state(name.removeprefix("PROCESS_STATE_"), body)
        elif name.startswith("TICK_"):
            self.tick(time.time())

    def process_state(self, state: str, body: dict[str, str]) -> None:
        program = body.get("processname", "")
        if program not in self.sections:
            return
        if state == "FATAL":
            self._notify(program, "FATAL", f"{program} is FATAL: supervisord gave up starting it")
        elif state == "EXITED" and body.get("expected") == "0":
            self._notify(program, "EXITED", f"{program} exited unexpectedly (pid {body.get('pid')})")

    def tick(self, now: float) -> None:
        infos = self.rpc_factory().supervisor.getAllProcessInfo()
        for info in infos:
            program = info["name"]
            if program in self.sections and info["statename"] == "RUNNING":
                self.check(program, info, now)

    def check(self, program: str, info: dict[str, Any], now: float) -> None:
        w = self.watched.setdefault(program, Watched())
        beat = heartbeat.read(heartbeat.path_for(heartbeat.run_dir(self.sections[program]), program))
        pid = int(info.get("pid") or 0)
        ours = beat is not None and beat.pid == pid
        last = max(beat.ts.timestamp() if ours and beat is not None else 0.0, float(info.get("start") or 0))
        age, limit = now - last, self.stuck_after(beat if ours else None)
        if ours and beat is not None and beat.phase == "retrying":
            if not w.retrying_said:
                log.warning("retrying", program=program, age_s=round(age, 1), action="not stuck: waiting out a database")
                w.retrying_said = True
            return
        w.retrying_said = False
        if age <= limit:
            if w.gave_up or w.restarted_at is not None and pid != w.restart_pid:
                w.gave_up = False
            return
        if w.gave_up:
            return
        if w.restarted_at is not None and pid != w.restart_pid and now - w.restarted_at >= limit:
            w.gave_up = True  # a fresh process that never beat
            log.error("restart_failed", program=program, age_s=round(age, 1), action="not restarted again")
            self._notify(program, "restart_failed", f"{program}: restarted, but no fresh heartbeat for {age:.0f}s",
                         beat)
            return
        if w.restarted_at is not None and now - w.restarted_at < self.settings.restart_backoff.total_seconds():
            return
        log.error("stuck", program=program, pid=pid, age_s=round(age, 1), stuck_after_s=limit,
                  phase=beat.phase if ours and beat is not None else None, action="restarting")
        self._notify(program, "stuck", f"{program} (pid {pid}): no heartbeat for {age:.0f}s (limit {limit:.0f}s); "
                     "restarting it", beat)
        w.restarted_at, w.restart_pid = now, pid
        threading.Thread(target=self._restart, args=(program,), name=f"restart-{program}", daemon=True).start()

    def _restart(self, program: str) -> None:
        """stop (SIGCONT first: a SIGSTOPped process hears the SIGTERM) then start, on a proxy of its own."""
        try:
            rpc = self.rpc_factory()
            try:
                rpc.supervisor.signalProcess(program, "CONT")
            except Exception:  # not running any more: stopProcess says so
                pass
            try:
                rpc.supervisor.stopProcess(program, True)
            except Exception as exc:
                log.warning("restart", program=program, step="stop", error=str(exc))
            rpc.supervisor.startProcess(program, False)
            log.info("restart", program=program, step="started")
        except Exception as exc:
            log.error("watchdog_error", program=program, error=f"{type(exc).__name__}: {exc}", action="restart")

    def _notify(self, program: str, state: str, summary: str, beat: heartbeat.Beat | None = None) -> None:
        details = tail(self.logfile(program))
        self.notify(Message(check=CHECK, state=state, previous_state=None, summary=summary, details=details,
                            section=program, ts=iso_utc(datetime.now(UTC))))

    def logfile(self, program: str) -> Path | None:
        try:
            info = self.rpc_factory().supervisor.getProcessInfo(program)
            if info.get("stdout_logfile"):
                return Path(info["stdout_logfile"])
        except Exception:
            pass
        return logfile_for(program)


def serve(wd: Watchdog, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """The listener protocol until stdin closes: READY, an event, handle() it, RESULT OK."""
    while True:
        try:
            headers, payload = childutils.listener.wait(stdin, stdout)
        except (EOFError, ValueError, KeyError):
            return 0
        try:
            wd.handle(headers, payload)
        except Exception as exc:
            log.error("watchdog_error", error=f"{type(exc).__name__}: {exc}", eventname=headers.get("eventname"))
        childutils.listener.ok(stdout)


def settings_of(cfg: config.ConfigFile) -> tuple[str, config.WatchdogSection]:
    """The file's watchdog section (the first with mode = watchdog), else the defaults."""
    for name, keys in cfg.sections.items():
        if {**cfg.defaults, **keys}.get("mode") == "watchdog":
            return name, config.validate(cfg, name).of(config.WatchdogSection).settings
    return NAME, config.WatchdogSection.model_validate({"mode": "watchdog"})


def programs_of(cfg: config.ConfigFile) -> dict[str, config.Program]:
    """Every section supervisord runs as a program, with its settings (a broken one: the defaults)."""
    out: dict[str, config.Program] = {}
    for name, keys in cfg.sections.items():
        if {**cfg.defaults, **keys}.get("mode") in config.NOT_PROGRAMS:
            continue
        try:
            out[name] = config.validate(cfg, name).settings
        except ConfigError:
            out[name] = config.Program.model_validate({})
    return out


def notifier(settings: config.WatchdogSection, section: str) -> Callable[[Message], None]:
    """Queue a message to every recipient of check `watchdog` (the Notifier's worker sends; never blocks)."""
    deliveries = deliveries_for(settings, section)
    recipients = routing.recipients(settings, CHECK)

    def send(m: Message) -> None:
        log.warning("watchdog_notify", program=m.section, state=m.state, summary=m.summary,
                    recipients=[routing.shown(r) for r in recipients] if deliveries else [])
        if deliveries is not None:
            for to in recipients:
                deliveries.put(Message(**{**m.__dict__, "recipients": recipients}), to)

    return send


def cmd_watchdog(args: Any) -> int:
    logsetup.configure(json=True, stream=sys.stderr)  # stdout is the listener protocol
    cfg = config.read_file(config.config_path(args.config))
    section, settings = settings_of(cfg)
    logsetup.bind(section=section)
    wd = Watchdog(settings, programs_of(cfg), lambda: childutils.getRPCInterface(os.environ), notifier(settings, section))
    log.info("startup", mode="watchdog", programs=sorted(wd.sections), tick=settings.tick,
             stuck_after_s=settings.stuck_after.total_seconds() if settings.stuck_after else None)
    return serve(wd)


def register(sub: Any) -> None:
    p = sub.add_parser("watchdog", help="supervisord event listener: notify FATAL/unexpected exits, restart "
                       "stuck programs", description=(__doc__ or "").splitlines()[0])
    p.set_defaults(func=cmd_watchdog)
