"""Benchmark: the averager against the one hand-written GROUP BY query it replaces.

On the lid-sensor table of bench/lidsensor.py (1M rows; --full: 13.5M rows, ~470 days), side by side:

    (a) one `SELECT ... GROUP BY hour` of avg/min/max/std of the 18 columns with Quality != 0,
        every result row fetched: the database's own speed for this work;
    (b) the averager doing the same into an empty target, through the real code path (a config
        file and scraperd.averager.run), in a child process so its peak RSS is its own.

Prints `name: value` lines and `ratio: (b)/(a) (target ≤ 1.2) PASS|FAIL`. The machine may be
shared: in the small run each side is timed twice, alternately, and the faster time counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from bench import lidsensor
from scraperd import databases

TARGET_RATIO = 1.2
SMALL_ROWS = 1_000_000
FULL_ROWS = 13_500_000
TARGET_DB = "scraperd_bench_target"
SECTION = "adlid_averager"
FUNCTIONS = ("avg", "min", "max", "std")
REPO = Path(__file__).resolve().parents[1]


def group_by_sql() -> str:
    """(a): what an operator would type to get hourly statistics of the good rows."""
    aggs = ", ".join(f"{fn.upper()}(`{q}`)" for q in lidsensor.QUANTITIES for fn in FUNCTIONS)
    return (f"SELECT FLOOR(TO_SECONDS(date_time) / 3600) AS hour, {aggs} "
            f"FROM `{lidsensor.TABLE}` WHERE Quality != 0 GROUP BY hour")


def time_group_by(url: sa.engine.URL) -> tuple[float, int]:
    engine = databases.make_engine(url)
    try:
        with engine.connect() as conn:
            t0 = time.perf_counter()
            rows = conn.exec_driver_sql(group_by_sql()).fetchall()
            return time.perf_counter() - t0, len(rows)
    finally:
        engine.dispose()


def warm_up(url: sa.engine.URL) -> float:
    """Read the whole table once, so that neither side pays for a cold buffer pool."""
    engine = databases.make_engine(url)
    try:
        with engine.connect() as conn:
            t0 = time.perf_counter()
            conn.exec_driver_sql(f"SELECT SUM(Quality), MAX(date_time) FROM `{lidsensor.TABLE}`").fetchall()
            return time.perf_counter() - t0
    finally:
        engine.dispose()


def write_config(directory: Path, source: sa.engine.URL, target: sa.engine.URL) -> Path:
    path = directory / "bench.cfg"
    path.write_text(f"""\
[{SECTION}]
regime = scraperd.regimes.adlidsensor:AdLidSensor
mode = averager
source = {source.render_as_string(hide_password=False)}
target = {target.render_as_string(hide_password=False)}
source_tz = Asia/Shanghai
timefloor = 2010-01-01 00:00:00
territory = 1d
binsize = 1h
aggregate = avg,min,max,std
aggregate_count = count
aggregate_skips = id,date_time,Quality
aggregate_filter = Quality != 0
""")
    return path


def time_averager(cfg: Path, target: sa.engine.URL) -> dict[str, float]:
    """(b) in a child process, into a freshly emptied target database."""
    databases.drop_database(target)
    databases.ensure_database(target)
    proc = subprocess.run([sys.executable, "-m", "bench.bench_averager", "--child", str(cfg)], cwd=REPO,
                          stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which exec resets (ru_maxrss keeps the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def child(cfg: Path) -> None:
    """Run the section as `scraperd run` would; print elapsed seconds, records and peak RSS as JSON."""
    from scraperd import averager, config, logsetup

    logsetup.configure(json=True, stream=sys.stderr, level="WARNING")  # stdout carries the result
    loaded = config.load_section(cfg, SECTION)
    t0 = time.perf_counter()
    rc = averager.run(loaded)
    elapsed = time.perf_counter() - t0
    engine = databases.make_engine(databases.resolve(loaded.settings.target))  # type: ignore[union-attr]
    with engine.connect() as conn:
        records = conn.exec_driver_sql("SELECT COUNT(*) FROM DcsAdLidSensorVld").scalar()
    engine.dispose()
    print(json.dumps({"rc": rc, "elapsed_s": elapsed, "records": records, "peak_rss_mb": peak_rss_mb()}))


def main(full: bool) -> None:
    rows = FULL_ROWS if full else SMALL_ROWS
    url, reused, build_s = lidsensor.build(rows)
    print(f"averager.table: {lidsensor.BENCH_DB}.{lidsensor.TABLE} {rows} rows "
          f"({'reused' if reused else f'built in {build_s:.1f} s'})")
    print(f"averager.warm_up_s: {warm_up(url):.2f}")
    target = lidsensor.server_url(TARGET_DB)
    rounds = 1 if full else 2
    a_times, b_runs = [], []
    with tempfile.TemporaryDirectory(prefix="scraperd-bench-") as tmp:
        cfg = write_config(Path(tmp), url, target)
        for _ in range(rounds):
            a_s, groups = time_group_by(url)
            a_times.append(a_s)
            b_runs.append(time_averager(cfg, target))
    a_best = min(a_times)
    b_best = min(r["elapsed_s"] for r in b_runs)
    print(f"averager.group_by_s: {a_best:.2f}  (runs: {', '.join(f'{t:.2f}' for t in a_times)}; {groups} groups)")
    b_times = ", ".join(f"{r['elapsed_s']:.2f}" for r in b_runs)
    print(f"averager.averager_s: {b_best:.2f}  (runs: {b_times}; {b_runs[-1]['records']} records)")
    print(f"averager.rows_per_s: {rows / b_best:,.0f}")
    print(f"averager.peak_rss_mb: {max(r['peak_rss_mb'] for r in b_runs):.0f}")
    # the hand-written query also returns the last, incomplete hour, which the averager leaves for later
    expected = groups - 1
    if b_runs[-1]["records"] != expected:
        print(f"averager.check: FAIL: {b_runs[-1]['records']} records, expected {expected}")
    ratio = b_best / a_best
    print(f"ratio: {ratio:.2f} (target ≤ {TARGET_RATIO}) {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench [--full]  (this module runs as a child of it)")
