"""Run a scraper section, and freeze it (sleep) right after its K-th sample, printing PAUSED.

Used by the SIGKILL test to kill a scraper at an exact point of its run: whatever it sampled and
propagated after its last commit is then lost, and the restart must write it again, unchanged.
Usage: python tests/scrape_paused.py CONFIG SECTION K [FLUSH_RECORDS]
"""

from __future__ import annotations

import sys
import threading
import time

from scraperd import config, logsetup
from scraperd.scrape import daemon, sampling, schedule


def main() -> None:
    cfg, section, k = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if len(sys.argv) > 4:  # commit catch-up batches this often, so the kill finds some committed
        schedule.FLUSH_RECORDS = int(sys.argv[4])
    count = 0
    decide = sampling.decide

    def deciding(*args, **kw):
        nonlocal count
        decision = decide(*args, **kw)
        count += 1
        if count == k:
            print("PAUSED", flush=True)
            time.sleep(3600)
        return decision

    sampling.decide = deciding  # type: ignore[assignment]
    logsetup.configure(json=True, stream=sys.stderr)  # stdout carries only PAUSED / DONE
    loaded = config.load_section(cfg, section)
    daemon.run(loaded, threading.Event(), until_caught_up=True)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
