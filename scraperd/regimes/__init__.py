"""Regimes: the table-specific plug-ins (pmthv, adtemp, adlidsensor). See regimes/base.py."""
