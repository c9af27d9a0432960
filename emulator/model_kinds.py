"""The model registry: which kind of model a config describes, how its tables validate, how the model is built.

A config file is one run: the run tables (``[sim]``, ``[links]``, ... : :mod:`emulator.config`) and the tables of one
model kind. The kind is picked from the config itself: a config with a ``[cluster]`` table is a cluster (N members of
one satellite design, :mod:`emulator.models.cluster`), any other is a single satellite
(:mod:`emulator.models.satellite`). :func:`emulator.config.load_config` validates both parts into one
:class:`~emulator.config.Config` (the run spec); :func:`build` makes the model the runtime steps.

A new model kind is one :class:`ModelKind` given to :func:`register` (its table, how it validates, how it builds);
``flatsat run``, ``flatsat test`` and ``flatsat campaign`` then accept its configs. Each kind imports its model module
only when a config of that kind is loaded (the physics modules take most of a run's start-up time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from emulator.errors import ConfigError
from emulator.validation import config_error


class RunSpecLike(Protocol):
    """What a kind's ``build`` reads of :class:`emulator.config.Config` (the run spec)."""

    run: Any
    model: Any
    kind: str
    source: str


#: labels: pydantic path -> (override key, how it was given): see emulator.config.origins
Labels = Mapping[str, tuple[str, str]]


@dataclass(frozen=True)
class ModelKind:
    """One kind of model a config can describe."""

    name: str
    #: the top-level table that makes a config this kind (``cluster``); None: the kind of a config with none of them
    table: str | None
    #: the top-level keys of its config besides the run tables (for "valid keys here" in errors)
    keys: Callable[[], list[str]]
    #: validate the model's tables of a config dict (run tables already taken out; ``run`` is their RunConfig):
    #: ``(raw, run, source, labels, valid_top_keys) -> the kind's config``; raises ConfigError
    validate: Callable[[dict[str, Any], Any, str, Labels, list[str]], Any]
    #: build the model from the run spec
    build: Callable[[RunSpecLike], Any]
    #: the satellite design of the kind's config (a cluster: its members' design)
    design: Callable[[Any], Any]
    #: the run's name (the satellite's, the cluster's)
    title: Callable[[Any], str]


KINDS: dict[str, ModelKind] = {}


def register(kind: ModelKind) -> None:
    """Add a model kind (a table name may pick only one kind)."""
    taken = [k.name for k in KINDS.values() if k.table == kind.table and k.name != kind.name]
    if taken:
        raise ValueError(f"model kind {kind.name!r}: table {kind.table!r} already picks {taken[0]!r}")
    KINDS[kind.name] = kind


def get(name: str) -> ModelKind:
    """The kind named ``name``; ConfigError naming the known kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown model kind {name!r}; known kinds: {', '.join(KINDS)}", field="kind",
                          valid=list(KINDS)) from None


def kind_of(raw: Mapping[str, Any]) -> ModelKind:
    """The kind a config dict describes: the kind whose table it has, else the default kind (table None)."""
    for kind in KINDS.values():
        if kind.table is not None and kind.table in raw:
            return kind
    return next(k for k in KINDS.values() if k.table is None)


def top_keys() -> list[str]:
    """Every top-level model key of every kind (their tables and their config keys), in registry order."""
    out: list[str] = []
    for kind in KINDS.values():
        for key in ([kind.table] if kind.table else []) + kind.keys():
            if key not in out:
                out.append(key)
    return out


def build(spec: RunSpecLike) -> Any:
    """The model of a run spec (of its ``kind``), ready for :class:`emulator.runtime.Emulator`."""
    return get(spec.kind).build(spec)


# -- the single satellite ------------------------------------------------------------------------------------------
def _satellite_keys() -> list[str]:
    from emulator.models.satellite import SatelliteConfig

    return list(SatelliteConfig.model_fields)


def _validate_satellite(raw: dict[str, Any], run: Any, source: str, labels: Labels, valid: list[str]) -> Any:
    from emulator.instruments.config import check_against_satellite
    from emulator.models.satellite import SatelliteConfig

    try:
        sat = SatelliteConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, SatelliteConfig, source, extra_valid=valid, labels=dict(labels)) from None
    if run is not None and run.bench.supply:  # (None: the run tables are wrong themselves, reported with these)
        try:
            check_against_satellite(run.bench.supply, sat)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}", field="bench.supply") from None
    return sat


def _build_satellite(spec: RunSpecLike) -> Any:
    from emulator.models.satellite import Satellite

    sim = spec.run.sim
    return Satellite(spec.model, epoch_utc=sim.epoch_utc, seed=sim.seed, step_s=sim.step_s)


# -- the cluster -------------------------------------------------------------------------------------------------
def _validate_cluster(raw: dict[str, Any], run: Any, source: str, labels: Labels, valid: list[str]) -> Any:
    """The member design (the single-satellite tables) and ``[cluster]``, members cross-checked."""
    from emulator.models.cluster import ClusterConfig, ClusterSpec, resolve_members
    from emulator.models.satellite import SatelliteConfig

    if run is not None and run.bench.supply:
        raise ConfigError(f"{source}: [bench.supply] powers one real board from one satellite's bus; a cluster run "
                          "has no single bus to play (run that member as a single-satellite config instead)",
                          field="bench.supply")
    cluster_raw = raw.pop("cluster")
    try:
        spec = ClusterSpec.model_validate(cluster_raw)
    except ValidationError as exc:
        raise config_error(exc, ClusterSpec, source, labels=dict(labels), prefix="cluster.") from None
    try:
        sat = SatelliteConfig.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, SatelliteConfig, source, extra_valid=valid, labels=dict(labels)) from None
    supplied = [ld.name for ld in sat.power.loads if ld.source == "supply"]
    if supplied:
        raise ConfigError(f"{source}: power.loads {', '.join(supplied)}: source = 'supply' (a board on a bench "
                          "supply) is for single-satellite runs; a cluster member's loads are fixed",
                          field="power.loads")
    cfg = ClusterConfig(satellite=sat, cluster=spec)
    resolve_members(cfg)
    return cfg


def _build_cluster(spec: RunSpecLike) -> Any:
    from emulator.models.cluster import ClusterModel

    return ClusterModel.from_config(spec)


register(ModelKind(name="satellite", table=None, keys=_satellite_keys, validate=_validate_satellite,
                   build=_build_satellite, design=lambda cfg: cfg, title=lambda cfg: cfg.name))
register(ModelKind(name="cluster", table="cluster", keys=_satellite_keys, validate=_validate_cluster,
                   build=_build_cluster, design=lambda cfg: cfg.satellite, title=lambda cfg: cfg.cluster.name))
