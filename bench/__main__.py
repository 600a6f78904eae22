"""`python -m bench [--full]`: run every bench/bench_*.py module's main(full) in turn.

Each benchmark prints its own `name: value` lines and a final `ratio: X (target ≤ Y) PASS|FAIL`.
The small run is part of the habit (a couple of minutes); --full builds the big tables (minutes).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="the full-size tables (slow; run it rarely)")
    p.add_argument("names", nargs="*", help="only these benchmarks, e.g. averager")
    args = p.parse_args()
    found = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    for name in found:
        if args.names and name.removeprefix("bench_") not in args.names:
            continue
        print(f"== {name} ==", flush=True)
        importlib.import_module(f"bench.{name}").main(args.full)


if __name__ == "__main__":
    main()
