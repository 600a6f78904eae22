"""Scraper catch-up speed: 7 days of 3 s data on 4 sources (~800k rows) on MariaDB.

Times, side by side in one run: (a) one plain SELECT of the same rows, fetched to Python; (b) the
real scraper daemon catching up into an empty target (scrapers read in batches and step the same
state machine as row-at-a-time sampling). Prints source rows/s of (b) and the ratio (b)/(a).
(b) runs twice, heartbeat files off then on (heartbeat.ENABLED, a switch for this bench only): their
ratio shows what heartbeats cost while catching up (target: within noise, ≤ 1.05).
Target: >= 50,000 rows/s. The original slept ~1 s per sample: a week of 10 s data took ~17 h.
"""

from __future__ import annotations

import resource
import threading
import time
from datetime import datetime
from pathlib import Path
from tempfile import TemporaryDirectory

import sqlalchemy as sa
from sqlalchemy.engine import URL

from scraperd import config, databases, heartbeat, logsetup
from scraperd.regimes.adtemp import AdTempFaker, AdTempScraper
from scraperd.regimes.base import Regime, Source

DB = "scraperd_bench_catchup"
TABLES = ("DBNS_AD1_Temp", "DBNS_AD2_Temp", "LANS_AD1_Temp", "LANS_AD2_Temp")
START = datetime(2011, 2, 1)
TARGET_ROWS_PER_S = 50_000


class FourTemps(Regime):
    """Four temperature tables, adtemp's logic: the bench's regime (4 sources, 4 contexts)."""

    target = "DcsAdTemp"
    sources = tuple(Source(t) for t in TABLES)
    scraper = AdTempScraper
    faker = AdTempFaker


def url(database: str | None = DB) -> URL:
    return URL.create("mysql+mysqldb", username="root", host="127.0.0.1", port=3306, database=database,
                      query={"charset": "utf8mb4"})


def build(rows_per_table: int) -> None:
    """Source tables of `rows_per_table` rows every 3 s (one INSERT ... SELECT from seq_1_to_N each)."""
    databases.ensure_database(url())
    engine = databases.make_engine(url())
    with engine.begin() as conn:
        for t in TABLES:
            n = conn.execute(sa.text(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{DB}' "
                                     f"AND table_name = '{t}'")).scalar()
            if n and conn.execute(sa.text(f"SELECT COUNT(*) FROM `{t}`")).scalar() == rows_per_table:
                continue
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS `{t}`")
            cols = ", ".join(f"`{t}_PT{p}` decimal(5,2) DEFAULT NULL" for p in range(1, 6))
            conn.exec_driver_sql(f"CREATE TABLE `{t}` (`id` int(10) unsigned NOT NULL AUTO_INCREMENT, "
                                 f"`date_time` datetime NOT NULL, {cols}, PRIMARY KEY (`id`), "
                                 f"KEY `date_time` (`date_time`)) ENGINE=InnoDB")
            # temperatures drift by 0.1 per 40 rows (so changes past 1.0 come every ~7 minutes of data)
            vals = ", ".join(f"20 + {p} + MOD(seq DIV 40, 25) * 0.1" for p in range(1, 6))
            conn.exec_driver_sql(f"INSERT INTO `{t}` SELECT seq, '{START:%Y-%m-%d %H:%M:%S}' + INTERVAL seq * 3 SECOND, "
                                 f"{vals} FROM seq_1_to_{rows_per_table}")
    engine.dispose()


def plain_select() -> tuple[float, int]:
    engine = databases.make_engine(url())
    t0 = time.perf_counter()
    n = 0
    with engine.connect() as conn:
        for t in TABLES:
            tab = sa.Table(t, sa.MetaData(), autoload_with=conn)
            n += len(conn.execute(sa.select(tab).order_by(tab.c.date_time, tab.c.id)).all())
    dt = time.perf_counter() - t0
    engine.dispose()
    return dt, n


def catch_up(workdir: Path, beats: bool = True) -> tuple[float, int]:
    target = url("scraperd_bench_catchup_tgt")
    databases.drop_database(target)
    databases.ensure_database(target)
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = workdir / "bench.cfg"
    cfg.write_text(f"""[catchup]
regime = bench.bench_catchup:FourTemps
mode = scraper
source = {url().render_as_string(hide_password=False)}
target = {target.render_as_string(hide_password=False)}
interval = 10s
maxage = 10m
threshold = 1.0
sleep = 0s
heartbeat = 3s
batch_size = 5000
log_samples = False
run_dir = {workdir / "run"}
seed_target_tables = True
seed_timestart = 2011-01-31 23:59:00
seed_timeend = 2011-02-01 00:00:00
""")
    loaded = config.load_section(cfg, "catchup")
    from scraperd.scrape import daemon

    heartbeat.ENABLED = beats
    with open("/dev/null", "w") as devnull:
        logsetup.configure(json=True, stream=devnull)
        t0 = time.perf_counter()
        daemon.run(loaded, threading.Event(), until_caught_up=True)
        dt = time.perf_counter() - t0
    heartbeat.ENABLED = True
    assert (workdir / "run" / "catchup.heartbeat").exists() == beats
    engine = databases.make_engine(target)
    with engine.connect() as conn:
        records = conn.execute(sa.text("SELECT COUNT(*) FROM DcsAdTempVld")).scalar() or 0
    engine.dispose()
    databases.drop_database(target)
    return dt, records


def main(full: bool) -> None:
    rows_per_table = 7 * 86400 // 3 if full else 7 * 86400 // 3  # a week either way: it builds in seconds
    t0 = time.perf_counter()
    build(rows_per_table)
    print(f"source: {len(TABLES)} tables x {rows_per_table} rows (3 s data, 7 days), built in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    sel_s, n = plain_select()
    print(f"plain SELECT of the same rows: {sel_s:.2f} s ({n / sel_s:,.0f} rows/s)", flush=True)
    with TemporaryDirectory() as tmp:
        off_s, _ = catch_up(Path(tmp) / "off", beats=False)
    print(f"scraper catch-up without heartbeat files: {off_s:.2f} s ({n / off_s:,.0f} source rows/s)", flush=True)
    with TemporaryDirectory() as tmp:
        cu_s, records = catch_up(Path(tmp) / "on")
    print(f"heartbeats (on / off): {cu_s / off_s:.3f}", flush=True)
    rate = n / cu_s
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scraper catch-up: {cu_s:.2f} s, {rate:,.0f} source rows/s, {records} validity records, "
          f"peak RSS of this process {rss_mb:.0f} MB (includes (a)'s fetched rows)")
    print(f"ratio (catch-up / plain SELECT): {cu_s / sel_s:.2f}")
    verdict = "PASS" if rate >= TARGET_ROWS_PER_S else "FAIL"
    print(f"rows/s: {rate:,.0f} (target >= {TARGET_ROWS_PER_S:,}) {verdict}", flush=True)
