"""Inter-satellite links: range and line of sight per pair, a link budget, and transfer times (pair, ring all-reduce).

Pure and vectorised over pairs with numpy. Positions are geocentric (TEME or any inertial frame), km, shape (N, 3).

* **Line of sight.** The straight segment between two satellites must stay above a grazing altitude ``h_g``
  (an optical beam through the atmosphere is refused): with ``a``, ``b`` the positions and
  ``s* = clip(-a.(b - a) / |b - a|^2, 0, 1)`` the closest point of the segment to the Earth's centre,
  the pair sees each other iff ``|a + s* (b - a)| >= R_E + h_g`` (spherical Earth of the WGS84 equatorial radius).
* **Link budget.** Free-space optical power at the receiver falls as 1/d^2 beyond the near field, so at a fixed
  energy per bit the rate is ``rate = min(max_gbps, k / d^2)``, ``k = max_gbps * d_full^2`` (the range up to which a
  link runs at its full rate), and 0 (outage) when occluded, beyond ``max_range_km`` or below ``min_gbps``.
  ``max_gbps = transceivers * gbps_per_transceiver``; the default is one pair at the 800 Gbps bench demo
  (physics-sources.md §1 "ISL bench demo"); Suncatcher's goal of "tens of Tbps" (physics-sources.md §1) is tens of pairs.
* **Transfer time.** One message of ``size_gb`` GB over one link: ``8 size_gb / rate + d / c + hop_latency_s``.
  A ring all-reduce of ``size_gb`` across P members (bandwidth-optimal ring: reduce-scatter then all-gather,
  Patarasuk & Yuan, J. Parallel Distrib. Comput. 69 (2009) 117) takes ``2 (P - 1)`` rounds; in each round every
  ring link carries ``size_gb / P`` at once, so a round lasts as long as its slowest link:
  ``T = 2 (P - 1) * max_l (8 size_gb / (P rate_l) + d_l / c + hop_latency_s)``. With equal links that is the
  textbook ``2 (P - 1) / P * 8 size_gb / rate`` plus the latency terms. A ring with a link in outage never
  finishes: the time is ``inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import Field, model_validator

from emulator.errors import CommandError
from emulator.models.orbit import R_EARTH_KM
from emulator.validation import ConfigModel

SPEED_OF_LIGHT_KM_S = 299_792.458  # exact (SI)


class IslConfig(ConfigModel):
    """The optical inter-satellite links of a cluster (every pair of members can point a terminal at each other)."""

    #: one transceiver pair moves 800 Gbps each way (physics-sources.md §1 "ISL bench demo", COTS DWDM, conf. H)
    gbps_per_transceiver: float = Field(800.0, gt=0, le=1e6)
    #: transceiver pairs per link; 1 = the bench demo. "Tens of Tbps" (physics-sources.md §1 "ISL requirement") needs ~13-40
    transceivers: int = Field(1, ge=1, le=1000)
    #: the link keeps its full rate up to this range (km), then falls as 1/d^2. Chosen: Suncatcher flies members
    #: "kilometers or less" apart to reach data-centre rates (physics-sources.md §1 "Formation requirement"), so 2 km
    full_rate_range_km: float = Field(2.0, gt=0, le=1e5)
    #: beyond this range the terminals cannot acquire each other: outage (chosen, pointing and acquisition limit)
    max_range_km: float = Field(100.0, gt=0, le=1e5)
    #: below this rate the link does not close: outage (chosen: 1 Gbps, the slowest DWDM channel class)
    min_gbps: float = Field(1.0, ge=0, le=1e6)
    #: the beam must pass above this altitude (km): 100 km, the Karman line (chosen; refraction and absorption
    #: below it are not modelled)
    grazing_alt_km: float = Field(100.0, ge=0, le=1e4)
    #: per-hop latency of the terminals and the switch (s); chosen 10 us (serialisation and forwarding)
    hop_latency_s: float = Field(10e-6, ge=0, le=10)

    @model_validator(mode="after")
    def _ranges(self) -> IslConfig:
        if self.full_rate_range_km > self.max_range_km:
            raise ValueError(f"full_rate_range_km ({self.full_rate_range_km:g} km) must not exceed max_range_km "
                             f"({self.max_range_km:g} km)")
        if self.min_gbps > self.max_gbps:
            raise ValueError(f"min_gbps ({self.min_gbps:g}) must not exceed the link's maximum "
                             f"transceivers x gbps_per_transceiver = {self.max_gbps:g} Gbps")
        return self

    @property
    def max_gbps(self) -> float:
        return self.transceivers * self.gbps_per_transceiver

    @property
    def k_gbps_km2(self) -> float:
        """``k`` of ``rate = min(max_gbps, k / d^2)``."""
        return self.max_gbps * self.full_rate_range_km ** 2


def line_of_sight(a_km: np.ndarray, b_km: np.ndarray, grazing_alt_km: float = 0.0) -> np.ndarray:
    """True where the segment a-b stays at least ``grazing_alt_km`` above a spherical Earth (broadcasting (..., 3))."""
    a = np.asarray(a_km, float)
    b = np.asarray(b_km, float)
    d = b - a
    dd = np.einsum("...k,...k->...", d, d)
    s = np.where(dd > 0, -np.einsum("...k,...k->...", a, d) / np.where(dd > 0, dd, 1.0), 0.0)
    s = np.clip(s, 0.0, 1.0)
    p = a + s[..., None] * d
    r_min = R_EARTH_KM + grazing_alt_km
    return np.einsum("...k,...k->...", p, p) >= r_min * r_min


def pair_geometry(r_km: np.ndarray, grazing_alt_km: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Range (N, N) km and line of sight (N, N) bool for every pair of positions (N, 3). The diagonal is 0 / True."""
    r = np.asarray(r_km, float)
    diff = r[None, :, :] - r[:, None, :]
    rng = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    los = line_of_sight(r[:, None, :], r[None, :, :], grazing_alt_km)
    return rng, los


def link_rate_gbps(range_km: np.ndarray, los: np.ndarray, cfg: IslConfig) -> np.ndarray:
    """The link budget: min(max_gbps, k / d^2), 0 when occluded, beyond max range or below min_gbps."""
    d = np.asarray(range_km, float)
    with np.errstate(divide="ignore"):
        rate = np.minimum(cfg.max_gbps, cfg.k_gbps_km2 / (d * d))
    up = np.asarray(los, bool) & (d <= cfg.max_range_km) & (rate >= cfg.min_gbps)
    return np.where(up, rate, 0.0)


@dataclass(frozen=True)
class Transfer:
    """The outcome of a transfer estimate. ``time_s`` is inf when a link it needs is down."""

    time_s: float
    bottleneck_gbps: float
    slowest_link: tuple[int, int]
    links_down: list[tuple[int, int]]
    members: list[int]

    def to_dict(self) -> dict[str, object]:
        return {"time_s": self.time_s if math.isfinite(self.time_s) else -1.0, "finite": math.isfinite(self.time_s),
                "bottleneck_gbps": self.bottleneck_gbps, "slowest_link": list(self.slowest_link),
                "links_down": [list(p) for p in self.links_down], "members": list(self.members)}


def ring_order(r_km: np.ndarray) -> list[int]:
    """A short ring through every position: greedy nearest neighbour from index 0 (deterministic)."""
    r = np.asarray(r_km, float)
    n = len(r)
    if n == 0:
        return []
    left = np.ones(n, bool)
    order = [0]
    left[0] = False
    cur = 0
    for _ in range(n - 1):
        d = np.einsum("ij,ij->i", r - r[cur], r - r[cur])
        d[~left] = np.inf
        cur = int(np.argmin(d))
        order.append(cur)
        left[cur] = False
    return order


class IslNetwork:
    """Link rates and transfer times for members at positions ``r_km`` (N, 3), with forced outages."""

    def __init__(self, cfg: IslConfig, n_members: int) -> None:
        self.cfg = cfg
        self.n = n_members
        #: pairs forced down by a fault (i < j)
        self.forced_down: set[tuple[int, int]] = set()

    def check_member(self, k: int, field: str) -> int:
        if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < self.n:
            raise CommandError(f"{field}: member {k!r} is out of range; valid members are 0..{self.n - 1}",
                               field=field, valid=[0, self.n - 1])
        return k

    def links(self, a_km: np.ndarray, b_km: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
        """Range (km) and rate (Gbps) of the links a[l]-b[l] between members ia[l], ib[l]."""
        d = np.linalg.norm(np.asarray(b_km) - np.asarray(a_km), axis=-1)
        los = line_of_sight(a_km, b_km, self.cfg.grazing_alt_km)
        rate = link_rate_gbps(d, los, self.cfg)
        if self.forced_down:
            for l_, (i, j) in enumerate(zip(ia.tolist(), ib.tolist(), strict=True)):
                if (min(i, j), max(i, j)) in self.forced_down:
                    rate[l_] = 0.0
        return d, rate

    def matrix(self, r_km: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Range (N, N), line of sight (N, N) and rate (N, N) of every pair (diagonal rate 0)."""
        rng, los = pair_geometry(r_km, self.cfg.grazing_alt_km)
        rate = link_rate_gbps(rng, los, self.cfg)
        np.fill_diagonal(rate, 0.0)
        for i, j in self.forced_down:
            rate[i, j] = rate[j, i] = 0.0
        return rng, los, rate

    def pair_transfer(self, r_km: np.ndarray, size_gb: float, src: int, dst: int) -> Transfer:
        """One message of ``size_gb`` GB from ``src`` to ``dst`` over their direct link."""
        self.check_member(src, "payload.src")
        self.check_member(dst, "payload.dst")
        if src == dst:
            return Transfer(0.0, math.inf, (src, dst), [], [src])
        r = np.asarray(r_km, float)
        d, rate = self.links(r[[src]], r[[dst]], np.array([src]), np.array([dst]))
        if rate[0] <= 0.0:
            return Transfer(math.inf, 0.0, (src, dst), [(src, dst)], [src, dst])
        t = 8.0 * size_gb / rate[0] + d[0] / SPEED_OF_LIGHT_KM_S + self.cfg.hop_latency_s
        return Transfer(float(t), float(rate[0]), (src, dst), [], [src, dst])

    def allreduce(self, r_km: np.ndarray, size_gb: float, members: list[int] | None = None) -> Transfer:
        """Ring all-reduce of ``size_gb`` GB across ``members`` (default all), ring by :func:`ring_order`."""
        r = np.asarray(r_km, float)
        mem = list(range(len(r))) if members is None else [self.check_member(k, "payload.members") for k in members]
        if len(set(mem)) != len(mem):
            raise CommandError("payload.members: a member is listed twice", field="payload.members")
        p = len(mem)
        if p < 2:
            return Transfer(0.0, math.inf, (mem[0], mem[0]) if mem else (-1, -1), [], mem)
        sub = r[mem]
        ring = [mem[i] for i in ring_order(sub)]
        ia = np.array(ring)
        ib = np.roll(ia, -1)
        d, rate = self.links(r[ia], r[ib], ia, ib)
        down = [(int(a), int(b)) for a, b, x in zip(ia, ib, rate, strict=True) if x <= 0.0]
        worst = int(np.argmin(rate))
        if down:
            return Transfer(math.inf, 0.0, (int(ia[worst]), int(ib[worst])), down, ring)
        per_round = 8.0 * size_gb / p / rate + d / SPEED_OF_LIGHT_KM_S + self.cfg.hop_latency_s
        slow = int(np.argmax(per_round))
        t = 2.0 * (p - 1) * float(per_round[slow])
        return Transfer(t, float(rate[worst]), (int(ia[slow]), int(ib[slow])), [], ring)

    def ring_summary(self, r_km: np.ndarray, order: list[int]) -> dict[str, object]:
        """Cheap summary for truth: the N links of the ring ``order`` (not the N^2 pairs)."""
        r = np.asarray(r_km, float)
        n = len(order)
        if n < 2:
            return {"ring_links": 0, "ring_down": 0, "ring_min_gbps": 0.0, "ring_max_km": 0.0}
        ia = np.asarray(order)
        ib = np.roll(ia, -1)
        d, rate = self.links(r[ia], r[ib], ia, ib)
        return {"ring_links": n, "ring_down": int(np.sum(rate <= 0.0)), "ring_min_gbps": float(rate.min()),
                "ring_max_km": float(d.max())}
