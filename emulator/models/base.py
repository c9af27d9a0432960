"""What a model offers the runtime: telemetry it can sample, commands it answers, faults it accepts.

Pure: no asyncio, no sockets, no wall clock. The runtime (``emulator/runtime.py``) collects a
model's :class:`Interface`, registers its topics in the catalogue, publishes its telemetry at
the configured rates, routes validated commands to its handlers and fault requests from the
control plane to its fault hooks. So the runtime never assumes the satellite's shape.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.protocol.catalogue import Kind, Payload, Plane, SchemaField, SchemaRef, TopicSpec
from emulator.protocol.templates import PackedPayload


@dataclass(frozen=True)
class Telemetry:
    """A periodic telemetry topic and how to sample it (returns msgpack primitives, or the payload encoded already:
    a :class:`~emulator.protocol.templates.PackedPayload`)."""

    spec: TopicSpec
    sample: Callable[[], dict[str, Any] | PackedPayload]


@dataclass(frozen=True)
class Command:
    """A command topic and its handler.

    The handler gets the validated payload model, may raise :class:`~emulator.errors.CommandError`
    (naming the field and the valid values; it must then change nothing), and returns the
    reply's ``data`` map or None.
    """

    spec: TopicSpec
    handle: Callable[[Any], dict[str, Any] | None]


@dataclass(frozen=True)
class Fault:
    """A fault the control plane can inject (``fault.inject`` with ``name`` and ``params``).

    ``inject`` gets the validated params model; ``clear`` undoes it (None if the fault is
    permanent, e.g. a cell that is lost). The runtime handles ``duration_s`` by calling
    ``clear`` at the right sim time.
    """

    name: str
    #: the params' class (given as the class or as a SchemaRef, imported on first use)
    params: type[Payload] = SchemaField()  # type: ignore[assignment]  # noqa: RUF009 - a descriptor, one per class
    doc: str
    inject: Callable[[Any], None]
    clear: Callable[[Any], None] | None = None


@dataclass
class Interface:
    telemetry: list[Telemetry] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    #: event topics this model may emit through ``drain_events`` (kind EVENT)
    events: list[TopicSpec] = field(default_factory=list)

    def extend(self, other: Interface) -> None:
        self.telemetry += other.telemetry
        self.commands += other.commands
        self.faults += other.faults
        self.events += other.events


def telemetry_spec(topic: str, schema: type[Payload] | SchemaRef, doc: str, rate_hz: float,
                   plane: Plane = Plane.BOARD) -> TopicSpec:
    return TopicSpec(topic=topic, kind=Kind.TELEMETRY, plane=plane, schema=schema, doc=doc, rate_hz=rate_hz)


def command_spec(topic: str, schema: type[Payload] | SchemaRef, doc: str, plane: Plane = Plane.BOARD,
                 reply: type[Payload] | SchemaRef | None = None) -> TopicSpec:
    """A command topic; ``reply``: the schema of its reply's ``data`` (documented, and checked by the tests)."""
    return TopicSpec(topic=topic, kind=Kind.COMMAND, plane=plane, schema=schema, doc=doc, reply=reply)


def event_spec(topic: str, schema: type[Payload] | SchemaRef, doc: str, plane: Plane = Plane.BOARD) -> TopicSpec:
    return TopicSpec(topic=topic, kind=Kind.EVENT, plane=plane, schema=schema, doc=doc)


class SpacecraftModel(ABC):
    """The whole simulated spacecraft as the runtime sees it."""

    #: spacecraft in the model: 1 for a satellite (scalars in its truth); a fleet's truth holds lists of this length
    fleet_size: int = 1

    @abstractmethod
    def interface(self) -> Interface: ...

    @abstractmethod
    def step(self, t_ns: int, dt_ns: int) -> None:
        """Advance the state from ``t_ns`` to ``t_ns + dt_ns`` (integer nanoseconds since epoch)."""

    @abstractmethod
    def truth(self) -> dict[str, Any]:
        """Ground truth of every model, msgpack primitives only (control plane ``truth.get``)."""

    def truth_getter(self, path: Sequence[str | int]) -> Callable[[], Any] | None:
        """A function that reads the value at ``path`` (dict keys and list indexes) of :meth:`truth` now, without
        building the tree: what a run's requirements read at every step. None where the model offers none (the
        reader then builds the tree). A getter must give exactly the tree's value."""
        return None

    def names(self) -> dict[str, list[str]]:
        """The names payload fields refer to, by field name (``rail``, ``heater``, ``node``, ``channel``, ...):
        scenarios are checked against them before a run. Empty if the model names nothing."""
        return {}

    def drain_events(self) -> list[tuple[str, dict[str, Any]]]:
        """Events since the last call, as (topic, payload); topics are declared in ``Interface.events``."""
        return []

    def has_events(self) -> bool:
        """There are events to drain. A model that cannot tell cheaply says True (the runtime then looks after
        every step)."""
        return True

    #: :meth:`step_sampled` may sample telemetry between the steps of a batch: :meth:`has_events` is exact and the
    #: telemetry samplers read only the model's state (a model that cannot promise both leaves this False)
    batch_sampling: bool = False

    def sampled_topics(self) -> frozenset[str]:
        """Telemetry topics a batch samples as truth rows (:meth:`capture`) and reads together afterwards
        (:meth:`sampled`): sensor banks read many samples in one vectorised call."""
        return frozenset()

    def capture(self, topic: str) -> Any:
        """The truth ``topic``'s sample is read from, now (a topic of :meth:`sampled_topics`)."""
        raise NotImplementedError(topic)

    def capturer(self, topic: str) -> Callable[[], Any]:
        """:meth:`capture` of ``topic`` as a function of nothing (a batch calls it at every step it samples)."""
        return functools.partial(self.capture, topic)

    def sampled(self, topic: str, rows: list[Any]) -> list[dict[str, Any] | PackedPayload]:
        """The samples of ``topic`` from :meth:`capture` rows, in order: what sampling at each row's step would
        have given (the same draws in the same order). A sample may come encoded already
        (:class:`~emulator.protocol.templates.PackedPayload`: the runtime publishes its bytes as they are)."""
        raise NotImplementedError(topic)

    def step_sampled(self, t_ns: int, dt_ns: int, steps: int, sample_after: Sequence[int],
                     sample: Callable[[int], None]) -> int:
        """:meth:`step_many` with ``sample(k)`` called right after the k-th step for each k of ``sample_after``
        (ascending, each at most ``steps``), unless that step left events to drain: the batch then ends there,
        unsampled (the runtime publishes its events before its telemetry). Returns the steps taken."""
        done = 0
        step_many, has_events = self.step_many, self.has_events
        for k in sample_after:
            done += step_many(t_ns + done * dt_ns, dt_ns, k - done)
            if done < k or has_events():
                return done
            sample(k)
        if done < steps:
            done += step_many(t_ns + done * dt_ns, dt_ns, steps - done)
        return done

    def step_many(self, t_ns: int, dt_ns: int, steps: int) -> int:
        """Take up to ``steps`` steps of ``dt_ns`` from ``t_ns``, stopping early after a step that left events to
        drain (they are published with that step's time). Returns the steps taken (at least 1). The same as
        calling :meth:`step` that many times: a cost knob only."""
        step, has_events = self.step, self.has_events
        for k in range(steps):
            step(t_ns + k * dt_ns, dt_ns)
            if has_events():
                return k + 1
        return steps
