"""AD lid sensors: generic aggregation (avg/min/max/std and count) of 18 quantities, no own logic.

The payload comes straight from sv[-1].aggd, whose keys `<column>_<fn>` are the target columns.
Quality is the source's own flag; `aggregate_filter = Quality != 0` keeps the good rows.
"""

from __future__ import annotations

from typing import Any

from scraperd.regimes.base import AggregateScraper, Faker, Instance, Regime, Source

QUANTITIES = (
    "Ultrasonic_GdLS", "Ultrasonic_LS", "Temp_GdLS", "Temp_LS",
    "Tiltx_Sensor1", "Tilty_Sensor1", "Tiltx_Sensor2", "Tilty_Sensor2", "Tiltx_Sensor3", "Tilty_Sensor3",
    "Capacitance_GdLS", "Capacitance_Temp_GdLS", "Capacitance_LS", "Capacitance_Temp_LS",
    "Capacitance_MO", "Capacitance_Temp_MO", "PS_Output_V", "PS_Output_I",
)
_BASE = {"Ultrasonic_GdLS": 237.0, "Ultrasonic_LS": 301.0, "Temp_GdLS": 18.77, "Temp_LS": 18.95,
         "Capacitance_GdLS": 5.0, "Capacitance_LS": 10.0, "Capacitance_MO": 1.0, "PS_Output_V": 18.0,
         "PS_Output_I": 0.82}


class AdLidSensorFaker(Faker):
    def fake(self, inst: Instance, id: int, dt: Any) -> None:  # noqa: A002
        super().fake(inst, id, dt)
        if "Quality" in inst:
            # every 7th row is flagged bad, so aggregate_filter has something to remove
            inst["Quality"] = 0 if (self.profile != "constant" and id % 7 == 0) else 1

    def base(self, table: str, column: str) -> float:
        if column.startswith("Tilt"):
            return 0.5
        if column.startswith("Capacitance_Temp"):
            return 19.0
        return _BASE.get(column, 10.0)


class AdLidSensor(Regime):
    target = "DcsAdLidSensor"
    sources = (Source("AD1_LidSensor"), Source("AD2_LidSensor"))
    scraper = AggregateScraper
    faker = AdLidSensorFaker
