"""Vectorised technical indicators for the MACD, VPB, TTM Squeeze and cycle scanners.

Inputs are wide frames (index: ascending trading dates, columns: symbols, float64);
a symbol with a shorter history has NaN in its leading rows and its indicators start
at its own first valid bar.  ``compute_*`` return per-bar frames, ``*_arrays`` the same
on NumPy arrays, and ``scan_*`` one row per symbol for the last bar with the API fields
of its scanner (without ``scanned_at``, which the writer stamps); symbols without
enough history are left out of a scan.
"""
from .cycle import CYCLE_FIELDS, CycleResult, cycle_arrays, scan_cycles
from .macd import MACD_FIELDS, MACDResult, compute_macd, macd_arrays, macd_lookback, scan_macd
from .ttm import TTM_FIELDS, TTMResult, compute_ttm, scan_ttm, ttm_arrays
from .vpb import VPB_FIELDS, VPBResult, compute_vpb, scan_vpb, vpb_arrays

__all__ = [
    "CYCLE_FIELDS", "CycleResult", "cycle_arrays", "scan_cycles",
    "MACD_FIELDS", "MACDResult", "compute_macd", "macd_arrays", "macd_lookback", "scan_macd",
    "TTM_FIELDS", "TTMResult", "compute_ttm", "scan_ttm", "ttm_arrays",
    "VPB_FIELDS", "VPBResult", "compute_vpb", "scan_vpb", "vpb_arrays",
]
