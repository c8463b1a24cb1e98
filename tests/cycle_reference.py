"""The cycle indicator per symbol, bar by bar in plain Python (the old scanner's loops, with its
definitions made causal and four-quadrant as workers/indicators/cycle.py documents), for the tests and
the benchmark's baseline."""
import math


def _std(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def cycle_series(prices):
    """Per bar {smooth, inphase, quadrature, phase, cycle, momentum} (None until defined) and the
    rows where a peak / bottom sits (confirmed five bars later), for one symbol's closes (no NaN)."""
    n = len(prices)
    smooth = [None] * n
    for i in range(3, n):
        smooth[i] = (prices[i] + 2 * prices[i - 1] + 2 * prices[i - 2] + prices[i - 3]) / 6
    inphase, quadrature, phase, momentum = [None] * n, [None] * n, [None] * n, [None] * n
    for i in range(n):
        if i >= 10:
            inphase[i] = (smooth[i] - smooth[i - 7]) / 2
        if i >= 6:
            quadrature[i] = (smooth[i] - smooth[i - 2] + 2 * (smooth[i - 1] - smooth[i - 3])) / 4
        if inphase[i] is not None and quadrature[i] is not None:
            phase[i] = math.degrees(math.atan2(quadrature[i], inphase[i])) % 360
        if i >= 8:
            momentum[i] = smooth[i] - smooth[i - 5]
    detrended = [None] * n
    for i in range(23, n):
        detrended[i] = smooth[i] - sum(smooth[i - 20:i]) / 20
    cycle = [None] * n
    for i in range(43, n):
        spread = _std(detrended[i - 20:i])
        cycle[i] = detrended[i] / spread if spread > 0 else 0.0
    peaks, bottoms = [], []
    for j in range(n - 5):
        window = cycle[j - 5:j + 6] if j >= 5 else []
        if cycle[j] is None or len(window) < 11 or any(v is None for v in window):
            continue
        ph, c, strength = phase[j], cycle[j], abs(cycle[j])
        if (ph >= 315 or ph <= 45) and c > 1.5 and strength > 1.0 and c == max(window):
            peaks.append(j)
        if 120 <= ph <= 240 and c < -1.3 and strength > 0.8 and momentum[j] < 0 and c == min(window):
            bottoms.append(j)
    return {"smooth": smooth, "inphase": inphase, "quadrature": quadrature, "phase": phase, "cycle": cycle,
            "momentum": momentum, "peaks": peaks, "bottoms": bottoms}


def scan_symbol(prices):
    """The scan of the last bar: (signal_type, extremum row or None, last peak row, last bottom row)."""
    s = cycle_series(prices)
    last, j = len(prices) - 1, len(prices) - 6
    ph, c, m = s["phase"][last], s["cycle"][last], s["momentum"][last]
    if c is None:
        return None
    if j in s["peaks"]:
        kind = "PEAK"
    elif j in s["bottoms"]:
        kind = "BOTTOM"
    elif 270 <= ph < 315 and c > 1.2 and abs(c) > 0.8:
        kind = "APPROACHING_PEAK"
    elif 75 <= ph < 120 and c < -1.0 and abs(c) > 0.6 and m < 0:
        kind = "APPROACHING_BOTTOM"
    else:
        kind = "NONE"
    return (kind, j if kind in ("PEAK", "BOTTOM") else None, max(s["peaks"], default=None),
            max(s["bottoms"], default=None))
