"""scraperd under supervisord: the program files it reads, and asking it what runs.

    ini.py   `scraperd gen-ini`: one [program:<section>] file per config section, and where each logs
    rpc.py   supervisord's XML-RPC over its unix socket: each program's state, read by `status`

The names below are the package's interface (`from scraperd import supervisor; supervisor.ALL`).
"""

from scraperd.supervisor.ini import (
    ALL,
    DEFAULT_CONF_DIR,
    DEFAULT_LOG_DIR,
    GENERATED_MARK,
    SUPERVISOR_KEYS,
    Program,
    cmd_gen_ini,
    env_pair,
    generate,
    generated_from,
    load_sections,
    logfile_for,
    program_environment,
    program_ini,
    register,
    scraperd_command,
    select,
)
from scraperd.supervisor.rpc import SUPERVISORD_CONF, ProgramState, programs, proxy, supervisor_url

__all__ = [
    "ALL", "DEFAULT_CONF_DIR", "DEFAULT_LOG_DIR", "GENERATED_MARK", "SUPERVISORD_CONF", "SUPERVISOR_KEYS",
    "Program", "ProgramState", "cmd_gen_ini", "env_pair", "generate", "generated_from", "load_sections",
    "logfile_for", "program_environment", "program_ini", "programs", "proxy", "register", "scraperd_command",
    "select", "supervisor_url",
]
