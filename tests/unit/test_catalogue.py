"""Topic catalogue: refusals that name the field and teach the fix; markdown tables with units and ranges."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from emulator.errors import CodecError
from emulator.protocol import (
    Catalogue,
    Kind,
    Message,
    Payload,
    Plane,
    TopicSpec,
    decode_message,
    encode_message,
    field,
)
from emulator.protocol.system import system_topics

#: a refusal echoes the bad value; it must stay short whatever the value (it goes back on the wire)
ERROR_MESSAGE_MAX_CHARS = 400


class RailSet(Payload):
    rail: Literal["payload", "heater", "radio"] = field(doc="PDU rail to switch")
    on: bool = field(doc="true: switch on")


class EpsTelemetry(Payload):
    bus_v: float = field("V", "main bus voltage", ge=0, le=40)
    load_a: float = field("A", "total load current", ge=0)
    temps_degc: list[float] = field("degC", "battery cell temperatures", max_length=8)
    mode: str = field(doc="power mode", default="nominal", max_length=16)


class Inject(Payload):
    name: str = field(doc="fault name")
    duration_s: float | None = field("s", "clear after this long", default=None, gt=0)


@pytest.fixture
def cat() -> Catalogue:
    return Catalogue([
        TopicSpec("eps.telemetry", Kind.TELEMETRY, Plane.BOARD, EpsTelemetry, "Power system state.",
                  rate_hz=1.0),
        TopicSpec("eps.rail.set", Kind.COMMAND, Plane.BOARD, RailSet, "Switch a rail."),
        TopicSpec("fault.inject", Kind.COMMAND, Plane.CONTROL, Inject, "Inject a fault."),
    ])


def refusal(cat: Catalogue, topic: str, payload: Any, **kw: Any) -> CodecError:
    with pytest.raises(CodecError) as info:
        cat.validate(topic, payload, **kw)
    assert len(info.value.message) <= ERROR_MESSAGE_MAX_CHARS
    return info.value


GOOD_TELEMETRY = {"bus_v": 7.4, "load_a": 1.2, "temps_degc": [21.0, 22.5]}


def test_valid_payload_gives_the_typed_model(cat: Catalogue) -> None:
    model = cat.validate("eps.telemetry", GOOD_TELEMETRY, plane=Plane.BOARD, kind=Kind.TELEMETRY)
    assert isinstance(model, EpsTelemetry)
    assert (model.bus_v, model.mode) == (7.4, "nominal")


def test_payload_decoded_from_the_wire_validates(cat: Catalogue) -> None:
    msg = decode_message(encode_message(Message("eps.rail.set", {"rail": "heater", "on": False})))
    model = cat.validate(msg.topic, msg.payload, plane=Plane.BOARD, kind=Kind.COMMAND)
    assert model == RailSet(rail="heater", on=False)


@pytest.mark.parametrize(
    ("payload", "field_path", "words"),
    [
        ({"rail": "payload", "on": "yes"}, "payload.on", ["bool", "'yes'"]),
        ({"rail": "payload", "on": 1}, "payload.on", ["bool"]),  # strict: no int-as-bool
        ({"rail": "payload"}, "payload.on", ["missing"]),
        ({"rail": 3, "on": True}, "payload.rail", []),
    ],
)
def test_wrong_or_missing_field_is_named(cat: Catalogue, payload: dict[str, Any], field_path: str,
                                         words: list[str]) -> None:
    err = refusal(cat, "eps.rail.set", payload)
    assert err.field == field_path
    assert f"eps.rail.set: {field_path}:" in err.message
    for word in words:
        assert word in err.message


def test_a_misspelt_field_is_named_first_with_the_missing_one_beside_it(cat: Catalogue) -> None:
    """`{ speeed = 3 }` said "payload.speed: required field is missing (+1 more)", hiding the typo."""
    err = refusal(cat, "eps.rail.set", {"rail": "payload", "onn": True})
    assert err.field == "payload.onn"
    assert err.message == ("eps.rail.set: payload.onn: unknown field (did you mean 'on'?), got True "
                           "(also payload.on: required field is missing)")
    three = refusal(cat, "eps.rail.set", {"onn": True, "x": 1})
    assert three.message.endswith("; +2 more)")


def test_out_of_range_value_is_named_with_its_bound(cat: Catalogue) -> None:
    err = refusal(cat, "eps.telemetry", {**GOOD_TELEMETRY, "bus_v": 41.0})
    assert err.field == "payload.bus_v"
    assert "40" in err.message and "41.0" in err.message
    assert refusal(cat, "eps.telemetry", {**GOOD_TELEMETRY, "load_a": -0.1}).field == "payload.load_a"
    assert refusal(cat, "fault.inject", {"name": "sel", "duration_s": 0.0}).field == "payload.duration_s"


def test_nested_item_is_named_by_index(cat: Catalogue) -> None:
    err = refusal(cat, "eps.telemetry", {**GOOD_TELEMETRY, "temps_degc": [20.0, "hot"]})
    assert err.field == "payload.temps_degc.1"
    err = refusal(cat, "eps.telemetry", {**GOOD_TELEMETRY, "temps_degc": [0.0] * 9})
    assert err.field == "payload.temps_degc"


def test_unknown_field_lists_the_valid_ones_and_suggests_a_close_match(cat: Catalogue) -> None:
    err = refusal(cat, "eps.telemetry", {**GOOD_TELEMETRY, "bus_vv": 7.0})
    assert err.field == "payload.bus_vv"
    assert err.valid == ["bus_v", "load_a", "mode", "temps_degc"]
    assert "did you mean 'bus_v'" in err.message


def test_unknown_field_without_a_close_match_still_lists_the_valid_ones(cat: Catalogue) -> None:
    err = refusal(cat, "eps.rail.set", {"rail": "radio", "on": True, "zzzzzz": 1})
    assert err.valid == ["on", "rail"]
    assert "did you mean" not in err.message


def test_wrong_choice_lists_the_choices(cat: Catalogue) -> None:
    err = refusal(cat, "eps.rail.set", {"rail": "payloads", "on": True})
    assert err.field == "payload.rail"
    assert err.valid == ["payload", "heater", "radio"]


@pytest.mark.parametrize("payload", [[1, 2], "rail=payload", None, 5])
def test_payload_that_is_not_a_map_is_refused(cat: Catalogue, payload: Any) -> None:
    assert refusal(cat, "eps.rail.set", payload).field == "payload"


def test_unknown_topic_suggests_and_lists_topics_of_the_plane(cat: Catalogue) -> None:
    err = refusal(cat, "eps.rail.st", {}, plane=Plane.BOARD, kind=Kind.COMMAND)
    assert err.field == "topic"
    assert "did you mean 'eps.rail.set'" in err.message
    assert err.valid == ["eps.rail.set"]  # only what this plane and kind accept


def test_control_topic_on_the_board_plane_is_refused(cat: Catalogue) -> None:
    err = refusal(cat, "fault.inject", {"name": "sel"}, plane=Plane.BOARD, kind=Kind.COMMAND)
    assert err.field == "topic"
    assert "control-plane command" in err.message and "board-plane" in err.message
    assert "fault.inject" not in (err.valid or [])


def test_telemetry_topic_sent_as_a_command_is_refused(cat: Catalogue) -> None:
    err = refusal(cat, "eps.telemetry", GOOD_TELEMETRY, plane=Plane.BOARD, kind=Kind.COMMAND)
    assert err.field == "topic"
    assert "telemetry" in err.message
    assert err.valid == ["eps.rail.set"]


def test_huge_bad_value_is_not_echoed_in_full(cat: Catalogue) -> None:
    err = refusal(cat, "eps.rail.set", {"rail": "x" * 1_000_000, "on": True})
    assert err.field == "payload.rail"


def test_refusal_travels_in_a_reply(cat: Catalogue) -> None:
    req = Message("eps.rail.set", {"rail": "payload", "on": True, "bus_v": 3}, seq=12)
    err = refusal(cat, req.topic, req.payload)
    rep = decode_message(encode_message(req.reply(ok=False, t_ns=1, src="emulator", error=err.to_wire())))
    assert rep.payload["id"] == 12
    assert rep.payload["error"]["field"] == "payload.bus_v"
    assert rep.payload["error"]["valid"] == ["on", "rail"]


def test_topic_registered_twice_is_an_error(cat: Catalogue) -> None:
    with pytest.raises(ValueError, match="twice"):
        cat.register(TopicSpec("eps.rail.set", Kind.COMMAND, Plane.BOARD, RailSet, "again"))


def test_topics_filter_by_plane_and_kind(cat: Catalogue) -> None:
    assert [s.topic for s in cat.topics(plane=Plane.CONTROL)] == ["fault.inject"]
    assert [s.topic for s in cat.topics(kind=Kind.TELEMETRY)] == ["eps.telemetry"]
    assert "eps.rail.set" in cat and "nope" not in cat
    assert len(list(cat)) == 3


# -- markdown ----------------------------------------------------------------------------------------------

def _table_after(md: str, heading: str) -> list[str]:
    lines = md.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| field |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_markdown_has_a_table_per_topic_with_units_and_ranges(cat: Catalogue) -> None:
    md = cat.markdown()
    assert md.count("| field | type | unit | valid | meaning |") == 3
    assert "### board plane: telemetry" in md and "### board plane: command" in md
    assert "### control plane: command" in md
    assert "Default rate 1 Hz." in md
    rows = _table_after(md, "#### `eps.telemetry`")
    assert "| `bus_v` | float | V | >= 0, <= 40 | main bus voltage |" in rows
    assert "| `load_a` | float | A | >= 0 | total load current |" in rows
    assert "| `temps_degc` | array of float | degC | items <= 8 | battery cell temperatures |" in rows
    assert "| `mode` | str (optional) |  | len <= 16 | power mode |" in rows
    rows = _table_after(md, "#### `eps.rail.set`")
    assert "| `rail` | str |  | `payload`, `heater`, `radio` | PDU rail to switch |" in rows
    rows = _table_after(md, "#### `fault.inject`")
    assert "| `duration_s` | float or nil (optional) | s | > 0 | clear after this long |" in rows


def test_markdown_of_the_system_topics_covers_every_topic() -> None:
    cat = Catalogue(system_topics())
    md = cat.markdown()
    for spec in cat:
        assert f"#### `{spec.topic}`" in md
    # one table per topic, one per command's reply data, one per nested map shape (error, faults[], ...)
    sections = md.split("#### ")[1:]
    assert len(sections) == len(list(cat))
    for section in sections:
        topic = section.split("`", 2)[1]
        tables = section.count("| field | type | unit | valid | meaning |")
        if cat.get(topic).kind == "command":
            assert "Reply `data`:" in section and tables >= 2, topic
        else:
            assert tables >= 1, topic
    assert "| (none) | | | | |" in md  # topics without payload fields say so


# -- payload classes named by reference, defined on first use -----------------------------------------------------
SCHEMA_MODULES = {  # module that names the classes -> module that defines them
    "emulator.protocol.system": "emulator.protocol.system_schemas",
    "emulator.models.satellite": "emulator.models.satellite_schemas",
    "emulator.models.accelerator": "emulator.models.accelerator_schemas",
}


def test_a_schema_reference_is_imported_on_first_read_and_kept() -> None:
    from emulator.models.base import Fault
    from emulator.protocol.catalogue import SchemaRef

    ref = SchemaRef(__name__, "RailSet")
    spec = TopicSpec("eps.rail.set", Kind.COMMAND, Plane.BOARD, ref, "Switch a rail.",
                     reply=SchemaRef(__name__, "Inject"))
    assert spec.__dict__["_schema_value"] is ref  # nothing imported or looked up yet
    assert spec.schema is RailSet and spec.reply is Inject
    assert spec.__dict__["_schema_value"] is RailSet
    assert spec == TopicSpec("eps.rail.set", Kind.COMMAND, Plane.BOARD, RailSet, "Switch a rail.", reply=Inject)
    assert Catalogue([spec]).validate("eps.rail.set", {"rail": "radio", "on": True}) == RailSet(rail="radio", on=True)
    assert Fault("x", SchemaRef(__name__, "Inject"), "doc", print).params is Inject
    assert TopicSpec("t", Kind.EVENT, Plane.BOARD, RailSet, "doc").reply is None


def test_a_schema_reference_to_something_else_is_an_error_on_first_read() -> None:
    from emulator.protocol.catalogue import SchemaRef

    spec = TopicSpec("x", Kind.COMMAND, Plane.BOARD, SchemaRef(__name__, "ERROR_MESSAGE_MAX_CHARS"), "doc")
    with pytest.raises(TypeError, match="ERROR_MESSAGE_MAX_CHARS is not a pydantic model class"):
        _ = spec.schema
    with pytest.raises(AttributeError):
        _ = TopicSpec("x", Kind.COMMAND, Plane.BOARD, SchemaRef(__name__, "NoSuchClass"), "doc").schema


@pytest.mark.parametrize("names_module", sorted(SCHEMA_MODULES))
def test_every_payload_class_is_named_and_reachable_where_it_used_to_be(names_module: str) -> None:
    import importlib
    import inspect

    names, defines = importlib.import_module(names_module), importlib.import_module(SCHEMA_MODULES[names_module])
    classes = {n for n, obj in vars(defines).items()
               if inspect.isclass(obj) and issubclass(obj, Payload) and obj.__module__ == defines.__name__}
    assert names.SCHEMA_NAMES == classes
    for name in classes:  # `from emulator.models.satellite import RailSet` as before the split
        assert getattr(names, name) is getattr(defines, name)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        _ = names.NoSuchThing


def test_building_and_starting_a_run_defines_no_payload_class_until_one_is_used() -> None:
    """The ~80 payload classes of the topics are defined when a message needs one, not at start-up (a quiet run
    never does); a command then validates as before, refusals naming the field."""
    import subprocess
    import sys

    code = """
import asyncio, sys
from emulator.config import load_config
from emulator.errors import CodecError
from emulator.runtime import Emulator

cfg = load_config("suncatcher-proto", {"sim.duration_s": 3, "links.board": "zmq+tcp://127.0.0.1:0",
                                       "links.control": "zmq+tcp://127.0.0.1:0"})

async def main():
    async with Emulator.from_config(cfg) as emu:
        await emu.run()
    print(sorted(m for m in sys.modules if m.endswith("_schemas")))
    try:
        emu.catalogue.validate("eps.rail.set", {"rail": "payload", "on": "yes"})
    except CodecError as exc:
        print(exc.field)
    print(sorted(m for m in sys.modules if m.endswith("_schemas")))

asyncio.run(main())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lines = out.stdout.splitlines()
    assert lines == ["[]", "payload.on", "['emulator.models.satellite_schemas']"], out.stderr
