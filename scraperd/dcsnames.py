"""DCS tables encode content in their names; this room reads it back.

Table names carry the site and the detector: `DBNS_AD1_HV` is site DBNS, detector AD1;
`DBNS_SAB_Temp` is the SAB site (the last site token wins); `AD1_LidSensor` has no site token and
defaults to DBNS. sitemask = 1 << site index, subsite = detector index. Temperature tables have no
detector and take subsite 1, as the original scraper did.

Column names carry channels: `L<ladder>C<col>R<ring>` (PMT HV) and `..._PT<n>` (temperature probes).
Pure: no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SITES = ("DBNS", "LANS", "FARS", "MIDS", "Aberdeen", "SAB")
DETECTORS = ("Unknown", "AD1", "AD2", "AD3", "AD4", "IWS", "OWS", "RPC")

_LCR = re.compile(r"^(?:P_)?L(\d)C(\d)R(\d)$")
_PT = re.compile(r"^.*_PT(\d+)$")


@dataclass(frozen=True)
class DcsName:
    """What a DCS table name says: site, detector and the DBI context they map to."""

    table: str
    site: str
    detector: str
    sitemask: int
    subsite: int


def parse_table(table: str) -> DcsName:
    """Site and detector of a DCS table name."""
    tokens = table.split("_")
    sites = [t for t in tokens if t in SITES]
    site = sites[-1] if sites else SITES[0]
    dets = [t for t in tokens if t in DETECTORS]
    detector = dets[0] if dets else DETECTORS[0]
    subsite = DETECTORS.index(detector)
    if detector == "Unknown" and any(t.lower() == "temp" for t in tokens):
        subsite = 1  # the original scraper forced subsite 1 for temperature tables
    return DcsName(table=table, site=site, detector=detector, sitemask=1 << SITES.index(site),
                   subsite=subsite)


def lcr(column: str) -> tuple[int, int, int] | None:
    """(ladder, col, ring) of a PMT channel column such as L3C2R8, else None."""
    m = _LCR.match(column)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def probe(column: str) -> int | None:
    """The probe number of a temperature column such as DBNS_SAB_Temp_PT3, else None."""
    m = _PT.match(column)
    return int(m[1]) if m else None
