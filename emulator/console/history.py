"""Bounded, decimating history of every telemetry field, the eclipses and the ground track (pure: no I/O).

Telemetry can arrive at 1 kHz and a page must plot hours of it, so samples are kept the way RRDtool keeps
them: in rings of fixed-width sim-time bins, one ring per resolution (:data:`LEVELS`), each bin holding the
minimum and maximum of every field over its width. A query takes the finest ring that still covers the
window and, if that gives more bins than the plot has room for, merges neighbours; every bin becomes one
point (or two, min and max, at the same time: the envelope, so a spike between samples is never lost).
Memory is fixed by the level table and the number of fields; the work per sample is a few numpy calls.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

NS_PER_S = 1_000_000_000

#: (bin width in sim seconds, bins kept): 1 h at 1 s, 10 h at 10 s, 48 h at 1 min, 30 days at 10 min
LEVELS: tuple[tuple[float, int], ...] = ((1.0, 3600), (10.0, 3600), (60.0, 2880), (600.0, 4320))
#: fields beyond this are not kept (counted in ``History.fields_dropped``); a satellite's truth has ~200
MAX_FIELDS = 2048


class _Level:
    """One ring of bins of ``width_ns``; the newest, still filling, bin is ``cur_*``."""

    def __init__(self, width_ns: int, capacity: int, ncols: int) -> None:
        self.width_ns = width_ns
        self.capacity = capacity
        self.t_ns = np.zeros(capacity, dtype=np.int64)
        self.lo = np.full((capacity, ncols), np.nan, dtype=np.float32)
        self.hi = np.full((capacity, ncols), np.nan, dtype=np.float32)
        self.count = 0  # bins in the ring
        self.head = 0  # where the next closed bin goes
        self.cur_t: int | None = None
        self.cur_lo = np.full(ncols, np.nan)
        self.cur_hi = np.full(ncols, np.nan)

    def grow(self, ncols: int) -> None:
        add = ncols - self.lo.shape[1]
        pad = np.full((self.capacity, add), np.nan, dtype=np.float32)
        self.lo = np.hstack([self.lo, pad])
        self.hi = np.hstack([self.hi, pad.copy()])
        self.cur_lo = np.concatenate([self.cur_lo, np.full(add, np.nan)])
        self.cur_hi = np.concatenate([self.cur_hi, np.full(add, np.nan)])

    def oldest_ns(self) -> int | None:
        if self.count:
            return int(self.t_ns[(self.head - self.count) % self.capacity])
        return self.cur_t

    def bins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every bin, oldest first, the filling one last: (start t_ns, lo, hi)."""
        idx = (np.arange(self.count) + self.head - self.count) % self.capacity
        t, lo, hi = self.t_ns[idx], self.lo[idx], self.hi[idx]
        if self.cur_t is not None:
            t = np.append(t, self.cur_t)
            lo = np.vstack([lo, self.cur_lo.astype(np.float32)[None, :]])
            hi = np.vstack([hi, self.cur_hi.astype(np.float32)[None, :]])
        return t, lo, hi


@dataclass(frozen=True)
class SeriesData:
    """One field's decimated samples: ``t_ns`` with values ``y`` (NaN: no sample)."""

    field: str
    t_ns: np.ndarray
    y: np.ndarray
    bin_s: float


class History:
    """Min/max bins of every numeric field at several resolutions. Feed with :meth:`add`, read with :meth:`query`."""

    def __init__(self, levels: Iterable[tuple[float, int]] = LEVELS, max_fields: int = MAX_FIELDS) -> None:
        self._level_spec = [(round(w * NS_PER_S), n) for w, n in levels]
        self.max_fields = max_fields
        self.clear()

    def clear(self) -> None:
        self.columns: dict[str, int] = {}
        self.fields_dropped = 0
        self._ncols = 0
        self._index_cache: dict[tuple[str, ...], np.ndarray] = {}
        self.levels = [_Level(w, n, 16) for w, n in self._level_spec]
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self.samples = 0

    def _indices(self, names: tuple[str, ...]) -> np.ndarray:
        idx = self._index_cache.get(names)
        if idx is not None:
            return idx
        out = []
        for name in names:
            col = self.columns.get(name)
            if col is None:
                if len(self.columns) >= self.max_fields:
                    self.fields_dropped += 1
                    out.append(-1)
                    continue
                col = self.columns[name] = len(self.columns)
            out.append(col)
        if len(self.columns) > self.levels[0].lo.shape[1]:
            ncols = max(len(self.columns), 2 * self.levels[0].lo.shape[1])
            for lv in self.levels:
                lv.grow(ncols)
        idx = np.asarray(out, dtype=np.int64)
        if len(self._index_cache) > 1024:  # shapes that keep changing: do not let the cache grow
            self._index_cache.clear()
        self._index_cache[names] = idx
        return idx

    def add(self, t_ns: int, values: Mapping[str, float]) -> None:
        """Add one sample of some fields (one message's flattened payload) at sim time ``t_ns``."""
        if not values:
            return
        if self.last_ns is not None and t_ns < self.last_ns - self._level_spec[0][0]:
            self.clear()  # time went back: a new run on the same link
        idx = self._indices(tuple(values))
        vals = np.fromiter(values.values(), dtype=float, count=len(values))
        if (idx < 0).any():
            keep = idx >= 0
            idx, vals = idx[keep], vals[keep]
        self.samples += 1
        self.first_ns = t_ns if self.first_ns is None else self.first_ns
        self.last_ns = t_ns if self.last_ns is None else max(self.last_ns, t_ns)
        self._into(0, t_ns, idx, vals, vals)

    def _into(self, k: int, t_ns: int, idx: np.ndarray | None, lo: np.ndarray, hi: np.ndarray) -> None:
        lv = self.levels[k]
        start = t_ns - t_ns % lv.width_ns
        if lv.cur_t is None:
            lv.cur_t = start
        elif start > lv.cur_t:
            self._close(k)
            lv.cur_t = start
        if idx is None:
            np.fmin(lv.cur_lo, lo, out=lv.cur_lo)
            np.fmax(lv.cur_hi, hi, out=lv.cur_hi)
        else:
            lv.cur_lo[idx] = np.fmin(lv.cur_lo[idx], lo)
            lv.cur_hi[idx] = np.fmax(lv.cur_hi[idx], hi)

    def _close(self, k: int) -> None:
        lv = self.levels[k]
        assert lv.cur_t is not None
        lv.t_ns[lv.head] = lv.cur_t
        lv.lo[lv.head] = lv.cur_lo
        lv.hi[lv.head] = lv.cur_hi
        lv.head = (lv.head + 1) % lv.capacity
        lv.count = min(lv.count + 1, lv.capacity)
        if k + 1 < len(self.levels):
            self._into(k + 1, lv.cur_t, None, lv.cur_lo, lv.cur_hi)
        lv.cur_lo = np.full(lv.cur_lo.shape, np.nan)
        lv.cur_hi = np.full(lv.cur_hi.shape, np.nan)

    def fields(self) -> list[str]:
        return sorted(self.columns)

    def query(self, fields: Iterable[str], t0_ns: int, t1_ns: int, max_points: int = 1200) -> list[SeriesData]:
        """Each field between ``t0_ns`` and ``t1_ns`` in at most ``max_points`` points (min/max envelope)."""
        fields = [f for f in fields if f in self.columns]
        if not fields or self.last_ns is None:
            return [SeriesData(f, np.zeros(0, np.int64), np.zeros(0), 0.0) for f in fields]
        level = self.levels[-1]
        for lv in self.levels:  # the finest that reaches back to t0
            oldest = lv.oldest_ns()
            if oldest is not None and oldest <= max(t0_ns, self.first_ns or 0):
                level = lv
                break
        t, lo, hi = level.bins()
        sel = (t + level.width_ns > t0_ns) & (t <= t1_ns)
        cols = [self.columns[f] for f in fields]
        t, lo, hi = t[sel], lo[sel][:, cols], hi[sel][:, cols]
        width = level.width_ns
        buckets = max(1, max_points // 2)
        if len(t) > buckets:  # merge neighbours: k bins per bucket
            k = math.ceil(len(t) / buckets)
            starts = np.arange(0, len(t), k)
            with np.errstate(all="ignore"):
                lo = np.fmin.reduceat(lo, starts, axis=0)
                hi = np.fmax.reduceat(hi, starts, axis=0)
            t = t[starts]
            width *= k
        mid = np.clip(t + width // 2, t0_ns, t1_ns)  # a bin's middle, kept inside the window
        out = []
        for j, name in enumerate(fields):
            a, b = lo[:, j].astype(float), hi[:, j].astype(float)
            has = ~(np.isnan(a) & np.isnan(b))  # bins where only other topics' fields had samples: no point
            a, b, tm = a[has], b[has], mid[has]
            same = (a == b) | np.isnan(a) | np.isnan(b)
            # one point where min == max, else min and max at the same instant (a vertical stroke)
            reps = np.where(same, 1, 2)
            tt = np.repeat(tm, reps)
            yy = np.empty(int(reps.sum()))
            pos = np.cumsum(reps) - reps
            yy[pos] = np.where(np.isnan(a), b, a)
            two = pos[~same] + 1
            yy[two] = b[~same]
            out.append(SeriesData(name, tt, yy, width / NS_PER_S))
        return out


class EclipseLog:
    """Eclipse intervals seen so far (sunlit fraction below one half), bounded: the oldest are dropped."""

    def __init__(self, maxlen: int = 4000) -> None:
        self.closed: deque[tuple[int, int]] = deque(maxlen=maxlen)
        self.open_ns: int | None = None
        self.last_ns: int | None = None

    def clear(self) -> None:
        self.closed.clear()
        self.open_ns = self.last_ns = None

    def add(self, t_ns: int, in_shadow: bool) -> None:
        if self.last_ns is not None and t_ns < self.last_ns:
            self.clear()
        if in_shadow and self.open_ns is None:
            self.open_ns = t_ns
        elif not in_shadow and self.open_ns is not None:
            self.closed.append((self.open_ns, t_ns))
            self.open_ns = None
        self.last_ns = t_ns

    def between(self, t0_ns: int, t1_ns: int, now_ns: int | None = None) -> list[tuple[int, int]]:
        """Intervals overlapping [t0, t1]; an eclipse still under way ends at ``now_ns`` (default: last sample)."""
        out = [(a, b) for a, b in self.closed if b >= t0_ns and a <= t1_ns]
        if self.open_ns is not None and self.open_ns <= t1_ns:
            out.append((self.open_ns, now_ns if now_ns is not None else (self.last_ns or self.open_ns)))
        return out

    def at(self, t_ns: int) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
        """(the eclipse containing t_ns, the next one after it), from what was logged (recordings)."""
        cur = nxt = None
        spans = list(self.closed) + ([(self.open_ns, self.last_ns or self.open_ns)] if self.open_ns is not None
                                     else [])
        for a, b in spans:
            if a <= t_ns < b or (a == self.open_ns and a <= t_ns <= b):  # the one under way includes its last sample
                cur = (a, b)
            elif a > t_ns:
                nxt = (a, b)
                break
        return cur, nxt


@dataclass(frozen=True)
class TrackPoint:
    t_ns: int
    lat_deg: float
    lon_deg: float
    sunlit_frac: float
    in_saa: bool


#: most sim time between two track points across which an ascending node is placed (a low orbit moves its
#: latitude by a few degrees in this time: the crossing is still a straight line between them)
MAX_NODE_GAP_S = 300.0


class TrackLog:
    """Sub-satellite points at least ``spacing_s`` of sim time apart, bounded (the oldest are dropped)."""

    def __init__(self, spacing_s: float = 20.0, maxlen: int = 12000) -> None:
        self.spacing_ns = round(spacing_s * NS_PER_S)
        self.points: deque[TrackPoint] = deque(maxlen=maxlen)
        self._period: tuple[tuple[int, int], float | None] | None = None  # (points, last t_ns): period

    def nodal_period_s(self) -> float | None:
        """The orbital period measured on the track kept: the mean time between ascending nodes (the latitude
        crossing zero northward), the nodal period `flatsat orbit` reports; None before two nodes were seen."""
        if not self.points:
            return None
        key = (len(self.points), self.points[-1].t_ns)
        if self._period is None or self._period[0] != key:
            self._period = (key, self._measure_period_s())
        return self._period[1]

    def _measure_period_s(self) -> float | None:
        t = np.fromiter((p.t_ns for p in self.points), np.float64, len(self.points))
        lat = np.fromiter((p.lat_deg for p in self.points), np.float64, len(self.points))
        # a crossing counts only between close samples: across a gap in the track it is not known where it was
        up = np.nonzero((lat[:-1] <= 0.0) & (lat[1:] > 0.0) & (np.diff(t) <= MAX_NODE_GAP_S * NS_PER_S))[0]
        nodes = t[up] + (t[up + 1] - t[up]) * -lat[up] / (lat[up + 1] - lat[up])
        if nodes.size < 2:
            return None
        gaps = np.diff(nodes)
        gaps = gaps[gaps < 1.5 * gaps.min()]  # a node missed in a gap would count as two orbits
        return float(gaps.mean()) / NS_PER_S

    def add(self, point: TrackPoint) -> None:
        if self.points and point.t_ns < self.points[-1].t_ns:
            self.points.clear()
        if not self.points or point.t_ns - self.points[-1].t_ns >= self.spacing_ns:
            self.points.append(point)

    def between(self, t0_ns: int, t1_ns: int) -> list[TrackPoint]:
        return [p for p in self.points if t0_ns <= p.t_ns <= t1_ns]


def finite_or_none(values: np.ndarray) -> list[Any]:
    """A float array as a JSON-safe list (NaN and inf become None: a gap in the plot)."""
    return [v if math.isfinite(v) else None for v in values.tolist()]
