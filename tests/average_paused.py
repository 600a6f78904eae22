"""Run an averager section, and freeze it (sleep) right after its K-th committed batch, printing PAUSED.

Used by the SIGKILL test to kill an averager between two batches of a run: the queries it has done
since are lost, and the restart must write what one uninterrupted run writes, SEQNOs included.
Usage: python tests/average_paused.py CONFIG SECTION K BATCH_RECORDS
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from scraperd import averager, config, logsetup
from scraperd.averager import daemon
from scraperd.dbi import writer


def main() -> None:
    cfg, section, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    daemon.BATCH_RECORDS = int(sys.argv[4])
    daemon.BATCH_SECONDS = 3600.0  # batches by size only: the kill point depends on nothing else
    count = 0
    write_many = writer.write_many

    def writing(*args: Any, **kw: Any) -> list[int]:
        nonlocal count
        seqnos = write_many(*args, **kw)  # committed when it returns
        count += 1
        if count == k:
            print("PAUSED", flush=True)
            time.sleep(3600)
        return seqnos

    writer.write_many = writing  # type: ignore[assignment]
    logsetup.configure(json=True, stream=sys.stderr)  # stdout carries only PAUSED / DONE
    averager.run(config.load_section(cfg, section), stop=threading.Event())
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
