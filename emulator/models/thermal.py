"""Lumped-node thermal network: absorbed solar, albedo and Earth IR, radiation to space, conduction, heaters.

Each node i has a heat capacity C_i (J/K) and temperature T_i (K):

    C_i dT_i/dt = Q_i + sum_j G_ij (T_j - T_i) - k_i (T_i^4 - T_sink^4),   k_i = sigma * sum_surfaces(eps A)

Q_i is the absorbed environment flux (solar and albedo with the solar absorptivity, Earth IR with the
emissivity, by Kirchhoff) plus every electrical dissipation the satellite routes to the node.

The solver is backward Euler with the T^4 term linearised, T_new^4 ~ T^4 + 4 T_lin^3 (T_new - T), which is
unconditionally stable for the linear part and exact at steady state. With A = C/dt + L + diag(4 k T_lin^3)
the whole update is one precomputed product, T_new = A^-1 [diag(cdt) | -k_r | I | k T_sink^4] @ [T, T_r^4, q, 1]
(T_r: the radiating nodes), built once by :class:`ImplicitOperator` and reused (~1.3 us per step at N <= 32);
the step builds that vector from plain floats (:meth:`ThermalNetwork.advance`). The fleet
(:class:`emulator.models.cluster.ThermalBatch`) steps N members with the same operator (more columns, one
matrix product); the heater thermostat is one function too (:func:`thermostat_on`). A is refreshed when dt changes or a
radiating node has moved more than ``relinearise_k`` from T_lin (checked every ~10 s of sim time; a
frozen-Jacobian Newton step: the fixed point is still the exact steady state).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from emulator.errors import CommandError, ModelError, suggest
from emulator.models.power_kernels import SCALAR
from emulator.validation import ConfigModel

SIGMA = 5.670374419e-8  # Stefan-Boltzmann constant, W m^-2 K^-4 (CODATA 2018, exact)
KELVIN = 273.15
FACES = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")  # same order as emulator.models.environment.FACES
HEATER_MODES = ("auto", "on", "off")
SurfaceFace = Literal["+X", "-X", "+Y", "-Y", "+Z", "-Z", "sun", "none"]


_Strict = ConfigModel  # this module's tables


class NodeConfig(_Strict):
    name: str = Field(min_length=1)
    #: mass x specific heat, J/K (e.g. 1 kg aluminium ~ 900 J/K); a huge value makes a fixed-temperature boundary
    capacity_j_k: float = Field(gt=0, le=1e18)
    initial_temp_degc: float = Field(20.0, ge=-270, le=500)


class LinkConfig(_Strict):
    a: str
    b: str
    #: conductance G, W/K
    conductance_w_k: float = Field(gt=0, le=1e6)


class SurfaceConfig(_Strict):
    """An external surface of a node. face: a body face (FACES), "sun" (a sun-tracking side: gets the tracking
    flux, sees no Earth) or "none" (radiates only, e.g. the back of a wing)."""

    node: str
    area_m2: float = Field(gt=0, le=10000)
    face: SurfaceFace
    #: solar absorptivity (coatings table, physics-sources.md §4)
    absorptivity: float = Field(ge=0, le=1)
    #: IR emissivity (coatings table, physics-sources.md §4)
    emissivity: float = Field(ge=0, le=1)


class HeaterConfig(_Strict):
    name: str = Field(min_length=1)
    node: str
    power_w: float = Field(gt=0, le=100000)
    #: PDU rail feeding it
    rail: str = "heaters"
    #: thermostat: on below, off above (battery charging needs > 0 °C, physics-sources.md §4)
    on_below_degc: float = 5.0
    off_above_degc: float = 10.0
    mode: Literal["auto", "on", "off"] = "auto"

    @model_validator(mode="after")
    def _band(self) -> HeaterConfig:
        if not self.on_below_degc < self.off_above_degc:
            raise ValueError(f"heater {self.name!r}: on_below_degc ({self.on_below_degc}) must be below "
                             f"off_above_degc ({self.off_above_degc})")
        return self


class ThermalConfig(_Strict):
    nodes: list[NodeConfig] = Field(min_length=1)
    links: list[LinkConfig] = Field(default_factory=list)
    surfaces: list[SurfaceConfig] = Field(default_factory=list)
    heaters: list[HeaterConfig] = Field(default_factory=list)
    #: deep-space sink, ~3 K (physics-sources.md §4 "Deep-space sink")
    sink_temp_k: float = Field(3.0, ge=0, le=400)
    #: refresh the linearisation when a node moves this far from it (K); 1 K keeps the radiative
    #: derivative within ~1.5 % at 200 K
    relinearise_k: float = Field(1.0, gt=0, le=100)

    @model_validator(mode="after")
    def _refs(self) -> ThermalConfig:
        names = [n.name for n in self.nodes]
        seen: set[str] = set()
        for n in names:
            if n in seen:
                raise ValueError(f"nodes: duplicate node name {n!r}; names must be unique")
            seen.add(n)

        def known(path: str, node: str) -> None:
            if node not in seen:
                raise ValueError(f"{path}: unknown node {node!r}{suggest(node, names)}; valid nodes: "
                                 f"{', '.join(names)}")

        for i, ln in enumerate(self.links):
            known(f"links[{i}].a", ln.a)
            known(f"links[{i}].b", ln.b)
            if ln.a == ln.b:
                raise ValueError(f"links[{i}]: a link must join two different nodes, got {ln.a!r} twice")
        for i, s in enumerate(self.surfaces):
            known(f"surfaces[{i}].node", s.node)
        hn: set[str] = set()
        for i, h in enumerate(self.heaters):
            known(f"heaters[{i}].node", h.node)
            if h.name in hn:
                raise ValueError(f"heaters: duplicate heater name {h.name!r}")
            hn.add(h.name)
        return self


def thermostat_on(temp_k: Any, on: Any, auto: Any, forced_on: Any, on_below_k: Any, off_above_k: Any,
                  ops: Any) -> Any:
    """A heater's state after its thermostat: in auto, on below ``on_below_k``, off above ``off_above_k`` and as it
    was in between; forced (not auto), ``forced_on``. Floats and :data:`~emulator.models.power_kernels.SCALAR` or arrays of
    members and :data:`~emulator.models.power_kernels.ARRAY`."""
    return ops.where(auto, ops.where(temp_k < on_below_k, True, ops.where(temp_k > off_above_k, False, on)),
                     forced_on)


def heater_demand_w(on: Any, power_w: Any, ops: Any) -> Any:
    """A heater's electrical demand (W): its power when on."""
    return ops.where(on, power_w, 0.0)


def heater_index(names: list[str], name: str) -> int:
    """The heater called ``name`` (a heater.set command's ``heater``), or a CommandError naming the valid ones."""
    if name not in names:
        raise CommandError(f"unknown heater {name!r}{suggest(name, names)}; valid heaters: "
                           f"{', '.join(names) or '(none)'}", field="payload.heater", valid=list(names))
    return names.index(name)


def heater_band(mode: str, on_below_degc: float, off_above_degc: float, new_on_below_degc: float | None,
                new_off_above_degc: float | None) -> tuple[float, float]:
    """A heater.set command's new thermostat band (degC; absent values keep the present ones), checked whole: the
    mode must be one of HEATER_MODES and on_below below off_above (CommandError otherwise)."""
    lo = on_below_degc if new_on_below_degc is None else new_on_below_degc
    hi = off_above_degc if new_off_above_degc is None else new_off_above_degc
    if not lo < hi:
        raise CommandError(f"on_below_degc ({lo}) must be below off_above_degc ({hi})", field="payload.on_below_degc")
    if mode not in HEATER_MODES:
        raise CommandError(f"unknown heater mode {mode!r}", field="payload.mode", valid=list(HEATER_MODES))
    return lo, hi


def relinearise_every(dt_s: float) -> int:
    """Steps between checks of the radiating nodes' drift from T_lin: ~10 s of sim time (they move slowly)."""
    return max(1, int(10.0 / dt_s))


class ImplicitOperator:
    """The backward-Euler step of ``net`` linearised about T_lin as one matrix, ``T_new = B @ X``, with

        X = [T; T_j^4 (j in t4_nodes); q; F; 1],   B = A^-1 [diag(cdt) | -k e_j | I | features | k T_sink^4 + q_static]

    where ``A = L + diag(cdt)``, ``cdt = C/dt + d`` and ``d = 4 k T_lin^3`` (the linearised radiation).
    ``t4_nodes``: the nodes whose T^4 is a row of X (at least the radiating ones; None: every node), ``features``
    (nodes x F): where each extra heat input F goes, ``static_q_w``: constant heat per node. The single satellite
    (one column, its radiating nodes) and the fleet (N columns, every node, the electrical features) both step with
    it; :meth:`build` makes B for a new T_lin or dt (the structure is set up once: a refresh is one 7 x 7 inverse
    and a few products)."""

    def __init__(self, net: ThermalNetwork, *, t4_nodes: list[int] | None = None, features: np.ndarray | None = None,
                 static_q_w: np.ndarray | None = None) -> None:
        n = net.n
        self.n = n
        self.C, self.L, self.k = net.C, net.L, net.k_rad
        self._k4 = 4.0 * self.k
        nr = n if t4_nodes is None else len(t4_nodes)
        nf = 0 if features is None else features.shape[1]
        self.cols = 2 * n + nr + nf + 1
        # G = [diag(cdt) | -k e_j | I | features | 0], cdt set per build: B = A^-1 G is one product (the first three
        # blocks have one non-zero term per column: exact whatever the summation order); the constant column is
        # A^-1 (k T_sink^4 + q_static), a matrix-vector product of its own (the same bits in every form)
        g = np.zeros((n, self.cols))
        t4 = list(range(n)) if t4_nodes is None else list(t4_nodes)
        for c, j in enumerate(t4):
            g[j, n + c] = -self.k[j]
        g[:, n + nr:2 * n + nr] = np.eye(n)
        if features is not None:
            g[:, 2 * n + nr:2 * n + nr + nf] = features
        const = self.k * net.sink4
        self.const = const if static_q_w is None else const + static_q_w
        self._g = g
        # a node without a radiating surface (k = 0) in t4_nodes: its column is A^-1 x -0.0, signed zeros as an
        # element-wise product gives them (a matrix product's sum gives +0.0)
        zero = [c for c, j in enumerate(t4) if self.k[j] == 0.0]
        self._zero_cols = np.array([n + c for c in zero], dtype=np.intp) if zero else None
        self._zero_nodes = np.array([t4[c] for c in zero], dtype=np.intp)
        self._dt = -1.0
        self._c_dt = self.C
        # work arrays and views of their diagonals, set up once: a refresh writes into them (no flatiter, no copy)
        self._a = np.empty((n, n))
        self._a_diag = self._a.reshape(-1)[::n + 1]
        self._g_diag = g.reshape(-1)[:n * self.cols:self.cols + 1]

    def build(self, t_lin_k: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(B, d)`` for the linearisation point ``t_lin_k`` (K, per node) and step ``dt_s``."""
        if dt_s != self._dt:
            self._dt = dt_s
            self._c_dt = self.C / dt_s
        d = self._k4 * t_lin_k ** 3  # 4 k T_lin^3
        cdt = self._c_dt + d
        A = self._a
        A[...] = self.L
        self._a_diag += cdt
        inv = np.linalg.inv(A)
        self._g_diag[...] = cdt
        B = inv.dot(self._g)
        B[:, -1] = inv.dot(self.const)
        if self._zero_cols is not None:
            B[:, self._zero_cols] = inv[:, self._zero_nodes] * -0.0
        return B, d


class ThermalNetwork:
    """The node temperatures and their implicit update. Temperatures are kept in kelvin (``T``)."""

    def __init__(self, config: ThermalConfig, *, track_energy: bool = False) -> None:
        self.config = config
        self.names = [n.name for n in config.nodes]
        self.index = {n: i for i, n in enumerate(self.names)}
        n = len(self.names)
        self.n = n
        self.C = np.array([nd.capacity_j_k for nd in config.nodes], dtype=float)
        self.T = np.array([nd.initial_temp_degc + KELVIN for nd in config.nodes], dtype=float)
        L = np.zeros((n, n))
        for ln in config.links:
            a, b, g = self.index[ln.a], self.index[ln.b], ln.conductance_w_k
            L[a, a] += g
            L[b, b] += g
            L[a, b] -= g
            L[b, a] -= g
        self.L = L
        k = np.zeros(n)
        self.m_solar = np.zeros((6, n))   # W per (W/m^2) of face flux: alpha A
        self.m_albedo = np.zeros((6, n))  # alpha A
        self.m_ir = np.zeros((6, n))      # eps A
        self.v_track = np.zeros(n)        # alpha A of sun-tracking surfaces
        for s in config.surfaces:
            i = self.index[s.node]
            k[i] += SIGMA * s.emissivity * s.area_m2
            if s.face == "sun":
                self.v_track[i] += s.absorptivity * s.area_m2
            elif s.face != "none":
                f = FACES.index(s.face)
                self.m_solar[f, i] += s.absorptivity * s.area_m2
                self.m_albedo[f, i] += s.absorptivity * s.area_m2
                self.m_ir[f, i] += s.emissivity * s.area_m2
        self.k_rad = k
        self._rad_nodes = np.flatnonzero(k > 0)
        self._rad_l = self._rad_nodes.tolist()
        self._m_cols = 2 * n + len(self._rad_l) + 1  # the per-step vector [T, T_r^4, q, 1]
        # ... packed into one array kept for it: cheaper than a new array from the list every step (np.fromiter)
        self._x = np.empty(self._m_cols)
        self._x_pack = struct.Struct(f"{self._m_cols}d").pack_into
        self._check_every = 1
        self._countdown = 1
        self.sink4 = config.sink_temp_k ** 4
        self.tol_k = config.relinearise_k
        self._dt = -1.0
        self._t_lin = self.T.copy()
        self._d = np.zeros(n)
        self._operator = ImplicitOperator(self, t4_nodes=self._rad_l)
        self.refreshes = 0
        self.track_energy = track_energy
        self.heat_in_j = 0.0
        self.radiated_j = 0.0
        # heaters
        self.heaters = config.heaters
        self.heater_index = {h.name: i for i, h in enumerate(config.heaters)}
        self.heater_node = [self.index[h.node] for h in config.heaters]
        self.heater_mode = [h.mode for h in config.heaters]
        self.heater_on_below = [h.on_below_degc + KELVIN for h in config.heaters]
        self.heater_off_above = [h.off_above_degc + KELVIN for h in config.heaters]
        self.heater_on = [False] * len(config.heaters)
        self.heater_power_w = [h.power_w for h in config.heaters]
        #: per heater (node, lo, hi): the temperatures (K) at which its thermostat leaves it as it is (see _bands)
        self.heater_bands: list[tuple[int, float, float]] = []
        self._bands()

    # -- environment ------------------------------------------------------------------------------------------
    def environment_heat(self, face_solar_w_m2: np.ndarray, face_albedo_w_m2: np.ndarray,
                         face_ir_w_m2: np.ndarray, tracking_solar_w_m2: np.ndarray) -> np.ndarray:
        """Absorbed environment heat per node, (n, N) W, for a chunk of samples (vectorised)."""
        return (np.asarray(face_solar_w_m2) @ self.m_solar + np.asarray(face_albedo_w_m2) @ self.m_albedo
                + np.asarray(face_ir_w_m2) @ self.m_ir
                + np.asarray(tracking_solar_w_m2)[:, None] * self.v_track[None, :])

    # -- solver ---------------------------------------------------------------------------------------------
    @property
    def radiating_nodes(self) -> list[int]:
        """Indices of the nodes with a radiating surface (k_rad > 0): the only ones with a T^4 term."""
        return self._rad_l

    def _refresh(self, dt_s: float) -> None:
        # only radiating nodes have a linearised term; they move slowly (time constants of minutes), so their
        # drift from T_lin is checked every ~10 s of sim time rather than every step
        self._check_every = self._countdown = relinearise_every(dt_s)
        self._t_lin = self.T.copy()
        # the per-step path is one product on plain floats: T_new = M @ [T, T_r^4, q, 1] (ImplicitOperator)
        self._M, self._d = self._operator.build(self._t_lin, dt_s)
        self._dt = dt_s
        self._tlin_l = self._t_lin.tolist()
        self.refreshes += 1

    def step(self, dt_s: float, q_w: np.ndarray, extra_w: np.ndarray | list[float] | None = None) -> None:
        """Advance by ``dt_s`` with node heat inputs ``q_w`` (W, shape (N,)) plus ``extra_w`` (W, N, optional)."""
        q = q_w.tolist() if isinstance(q_w, np.ndarray) else list(q_w)
        if extra_w is not None:
            ex = extra_w.tolist() if isinstance(extra_w, np.ndarray) else extra_w
            q = [a + b for a, b in zip(q, ex, strict=True)]
        if self.track_energy:
            T0 = self.T
            self.advance(dt_s, T0.tolist(), q)
            t2 = T0 * T0
            rad = self.k_rad * (t2 * t2 - self.sink4)
            self.heat_in_j += float(np.sum(q)) * dt_s
            self.radiated_j += float(np.sum(rad + self._d * (self.T - T0))) * dt_s
        else:
            self.advance(dt_s, self.T.tolist(), q)

    def advance(self, dt_s: float, temps_k: list[float], q_w: list[float]) -> None:
        """:meth:`step` on plain floats: ``temps_k`` must be ``T.tolist()`` now, ``q_w`` the total heat input per
        node (W)."""
        x = temps_k.copy()
        for j in self._rad_l:
            t = temps_k[j]
            t2 = t * t
            x.append(t2 * t2)
        x += q_w
        x.append(1.0)
        self.advance_x(dt_s, x)

    def advance_x(self, dt_s: float, x: list[float]) -> None:
        """:meth:`advance` given its vector ``x = [T, T_r^4, q, 1]`` (plain floats): ``T`` the node temperatures now
        (``T.tolist()``), ``T_r^4`` as ``(t * t) * (t * t)`` of each radiating node in :attr:`radiating_nodes`
        order, ``q`` the total heat input per node (W). The hot path of
        :class:`~emulator.models.satellite.Satellite` (one small matrix-vector product)."""
        if dt_s != self._dt:
            if not dt_s > 0:
                raise ModelError(f"dt_s must be > 0, got {dt_s}", field="dt_s")
            self._refresh(dt_s)
        self._countdown -= 1
        if self._countdown <= 0:
            self._countdown = self._check_every
            tl = self._tlin_l
            tol = self.tol_k
            for j in self._rad_l:
                if abs(x[j] - tl[j]) > tol:
                    self._refresh(dt_s)
                    break
        xa = self._x
        self._x_pack(xa, 0, *x)
        self.T = self._M.dot(xa)  # a new array: T is never written in place

    def internal_energy_j(self) -> float:
        """sum C_i T_i (J, relative to 0 K); its change equals heat in minus radiated."""
        return float(self.C @ self.T)

    def temps_degc(self) -> list[float]:
        return (self.T - KELVIN).tolist()

    def temp_degc(self, node: str) -> float:
        return float(self.T[self.node(node)]) - KELVIN

    def node(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            raise ModelError(f"unknown thermal node {name!r}{suggest(name, self.names)}", field="node",
                             valid=self.names)
        return i

    # -- heaters --------------------------------------------------------------------------------------------
    def heater_demand(self, temps_k: list[float] | None = None) -> list[float]:
        """Thermostats on the current temperatures (``temps_k``: ``T.tolist()`` if the caller has it); returns
        each heater's electrical demand (W)."""
        self.thermostat(self.T.tolist() if temps_k is None else temps_k)
        return [heater_demand_w(on, p, SCALAR) for p, on in zip(self.heater_power_w, self.heater_on, strict=True)]

    def thermostat(self, temps_k: list[float]) -> bool:
        """Run the thermostats on ``temps_k`` (kelvin, per node); True if a heater switched on or off."""
        for node, lo, hi in self.heater_bands:  # the usual step: every heater inside the band that keeps it
            if not lo <= temps_k[node] <= hi:
                break
        else:
            return False
        modes = self.heater_mode
        on = self.heater_on
        lo, hi = self.heater_on_below, self.heater_off_above
        changed = False
        for h, node in enumerate(self.heater_node):
            mode = modes[h]
            new = thermostat_on(temps_k[node], on[h], mode == "auto", mode == "on", lo[h], hi[h], SCALAR)
            if new is not on[h]:
                on[h] = new
                changed = True
        self._bands()
        return changed

    def _bands(self) -> None:
        """Per heater, the temperatures at which its thermostat leaves it as it is: on in auto, up to the off
        threshold; off in auto, down to the on threshold; forced and already so, any (an empty band forces a
        full pass: after set_heater, or a forced heater not yet switched)."""
        inf = float("inf")
        bands = []
        for h, node in enumerate(self.heater_node):
            mode = self.heater_mode[h]
            if mode == "auto":
                bands.append((node, -inf, self.heater_off_above[h]) if self.heater_on[h]
                             else (node, self.heater_on_below[h], inf))
            elif self.heater_on[h] is (mode == "on"):
                bands.append((node, -inf, inf))
            else:
                bands.append((node, inf, -inf))
        self.heater_bands = bands

    def set_heater(self, name: str, mode: str, on_below_degc: float | None = None,
                   off_above_degc: float | None = None) -> dict[str, object]:
        """Command a heater; validated as a whole, nothing changes on error."""
        h = heater_index(list(self.heater_index), name)
        lo, hi = heater_band(mode, self.heater_on_below[h] - KELVIN, self.heater_off_above[h] - KELVIN, on_below_degc,
                             off_above_degc)
        self.heater_mode[h] = mode
        self.heater_on_below[h] = lo + KELVIN
        self.heater_off_above[h] = hi + KELVIN
        self._bands()
        return {"heater": name, "mode": mode, "on_below_degc": lo, "off_above_degc": hi}

    def truth(self) -> dict[str, object]:
        return {
            "temps_degc": dict(zip(self.names, self.temps_degc(), strict=True)),
            "heaters": {h.name: {"mode": self.heater_mode[i], "on": self.heater_on[i], "rail": h.rail,
                                 "on_below_degc": self.heater_on_below[i] - KELVIN,
                                 "off_above_degc": self.heater_off_above[i] - KELVIN}
                        for i, h in enumerate(self.heaters)},
        }

    def truth_getter(self, path: Sequence[Any]) -> Callable[[], Any] | None:
        """A function reading ``path`` of :meth:`truth` now without building it (a run's per-step requirement
        reads), or None for a path it has none for (the tree is read)."""
        if len(path) == 2 and path[0] == "temps_degc" and path[1] in self.names:
            i = self.names.index(path[1])
            return lambda: float(self.T[i]) - KELVIN  # T is replaced at every step: read where it is now
        if len(path) == 3 and path[0] == "heaters":
            names = [h.name for h in self.heaters]
            if path[1] not in names:
                return None
            i = names.index(path[1])
            if path[2] == "on":
                return lambda: self.heater_on[i]
            if path[2] in ("on_below_degc", "off_above_degc"):
                attr = "heater_on_below" if path[2] == "on_below_degc" else "heater_off_above"
                return lambda: getattr(self, attr)[i] - KELVIN
        return None
