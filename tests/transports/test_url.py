"""Transport URLs: strict parsing, errors that teach, canonical str() that round-trips; the registry front door."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.errors import InvalidTransportURL, TransportUnavailableError
from emulator.transports import TRANSPORTS, connect, listen, parse_transport_url
from emulator.transports.url import SCHEMES, TransportURL, is_loopback_host, split_host_port


def test_zmq_tcp_url_parses_with_typed_options() -> None:
    url = parse_transport_url("zmq+tcp://127.0.0.1:5550?hwm=100&linger_ms=5")
    assert (url.kind, url.carrier, url.location) == ("zmq", "tcp", "127.0.0.1:5550")
    assert url.options == {"hwm": 100, "linger_ms": 5}
    assert url.get("hwm") == 100
    assert url.get("connect_timeout_s") == 5.0  # default from the scheme table
    assert url.scheme == "zmq+tcp"


def test_serial_device_paths_keep_their_case() -> None:
    assert parse_transport_url("serial://COM3?baud=115200").location == "COM3"
    dev = parse_transport_url("serial:///dev/serial/by-id/usb-FTDI_FT232R-if00?baud=921600&parity=e")
    assert dev.location == "/dev/serial/by-id/usb-FTDI_FT232R-if00"
    assert dev.options == {"baud": 921600, "parity": "E"}
    assert str(dev) == "serial:///dev/serial/by-id/usb-FTDI_FT232R-if00?baud=921600&parity=E"


def test_serial_options_are_typed() -> None:
    url = parse_transport_url("serial:///dev/ttyUSB0?stopbits=1.5&bytesize=7&rtscts=yes&pace=1&reopen_s=0.5&hwm=8")
    assert url.options == {"stopbits": 1.5, "bytesize": 7, "rtscts": True, "pace": True, "reopen_s": 0.5, "hwm": 8}
    assert str(url) == "serial:///dev/ttyUSB0?bytesize=7&hwm=8&pace=1&reopen_s=0.5&rtscts=1&stopbits=1.5"


def test_loop_without_a_name_is_the_default_channel() -> None:
    assert parse_transport_url("loop://").location == "default"
    assert str(parse_transport_url("loop://")) == "loop://default"


def test_unknown_option_lists_the_valid_ones_and_suggests() -> None:
    with pytest.raises(InvalidTransportURL) as err:
        parse_transport_url("serial:///dev/ttyUSB0?baudrate=9600")
    text = str(err.value)
    assert "unknown option 'baudrate'" in text
    assert "did you mean 'baud'" in text
    assert ("baud, ber, ber_seed, bytesize, exclusive, hwm, name, pace, parity, peer_burst, peer_rate_hz, reopen_s, "
            "rtscts, stopbits") in text
    assert err.value.field == "baudrate"
    assert "baud" in (err.value.valid or [])


def test_repeated_option_is_an_error() -> None:
    with pytest.raises(InvalidTransportURL, match="given twice"):
        parse_transport_url("zmq+tcp://127.0.0.1:1?hwm=1&hwm=2")


@pytest.mark.parametrize(("url", "option", "expected"), [
    ("serial:///dev/x?baud=fast", "baud", "int >= 1"),
    ("serial:///dev/x?baud=0", "baud", "int >= 1"),
    ("serial:///dev/x?parity=X", "parity", "one of N, E, O"),
    ("serial:///dev/x?stopbits=3", "stopbits", "one of 1, 1.5, 2"),
    ("serial:///dev/x?bytesize=9", "bytesize", "int in 5..8"),
    ("serial:///dev/x?pace=maybe", "pace", "bool"),
    ("serial:///dev/x?reopen_s=0", "reopen_s", "number > 0"),
    ("zmq+tcp://127.0.0.1:1?cmd_port=70000", "cmd_port", "int in 0..65535"),
    ("zmq+tcp://127.0.0.1:1?drop=some", "drop", "one of peer, all"),
    ("zmq+tcp://127.0.0.1:1?connect_timeout_s=nan", "connect_timeout_s", "number >= 0"),
    ("loop://x?name=", "name", "non-empty string"),
])
def test_bad_value_names_the_option_and_type(url: str, option: str, expected: str) -> None:
    with pytest.raises(InvalidTransportURL) as err:
        parse_transport_url(url)
    assert err.value.field == option
    assert f"option {option}=" in str(err.value) and expected in str(err.value)


def test_option_of_another_carrier_is_refused() -> None:
    with pytest.raises(InvalidTransportURL, match="unknown option 'cmd_port'"):
        parse_transport_url("zmq+ipc:///tmp/x?cmd_port=5")


def test_unknown_kind_lists_known_kinds() -> None:
    with pytest.raises(InvalidTransportURL) as err:
        parse_transport_url("zqm+tcp://127.0.0.1:5550")
    assert "known kinds: loop, serial, zmq" in str(err.value)
    assert "did you mean 'zmq'" in str(err.value)


def test_unknown_carrier_lists_the_valid_schemes() -> None:
    with pytest.raises(InvalidTransportURL, match="valid schemes for zmq: zmq\\+tcp, zmq\\+ipc, zmq\\+inproc"):
        parse_transport_url("zmq+udp://127.0.0.1:5550")
    with pytest.raises(InvalidTransportURL, match="valid schemes for zmq"):
        parse_transport_url("zmq://127.0.0.1:5550")


@pytest.mark.parametrize("text", [
    "127.0.0.1:5550", "zmq+tcp://127.0.0.1", "zmq+tcp://127.0.0.1:99999", "zmq+tcp://::1:5550",
    "zmq+tcp://127.0.0.1:1#frag", "zmq+tcp://127.0.0.1:1?hwm", "serial://", "serial+socket://host",
    "zmq+inproc://", "loop://a/b",
])
def test_malformed_urls_are_refused(text: str) -> None:
    with pytest.raises(InvalidTransportURL):
        parse_transport_url(text)


def test_ipv6_and_loopback_helpers() -> None:
    assert split_host_port("[::1]:5550", "x") == ("::1", 5550)
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and is_loopback_host("LOCALHOST")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("*") and not is_loopback_host("10.0.0.1")


def test_str_and_repr_are_canonical() -> None:
    url = parse_transport_url("zmq+tcp://127.0.0.1:5550?name=board&hwm=10")
    assert str(url) == "zmq+tcp://127.0.0.1:5550?hwm=10&name=board"
    assert repr(url) == "TransportURL('zmq+tcp://127.0.0.1:5550?hwm=10&name=board')"
    assert url.label == "board"
    assert url == parse_transport_url(str(url)) and hash(url) == hash(parse_transport_url(str(url)))
    assert url.replace(hwm=None) == parse_transport_url("zmq+tcp://127.0.0.1:5550?name=board")


_location_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30)


@st.composite
def urls(draw: st.DrawFn) -> TransportURL:
    kind = draw(st.sampled_from(sorted(SCHEMES)))
    carrier = draw(st.sampled_from(SCHEMES[kind].carriers))
    if kind == "zmq" and carrier == "tcp":
        location = f"127.0.0.{draw(st.integers(1, 254))}:{draw(st.integers(0, 65535))}"
    elif kind == "serial" and carrier in ("socket", "rfc2217"):
        location = f"host:{draw(st.integers(0, 65535))}"
    elif kind == "serial" and carrier == "fd":
        location = str(draw(st.integers(0, 10**9 - 1)))
    elif kind == "loop":
        location = draw(_location_text.filter(lambda s: "/" not in s))
    else:
        location = "/" + draw(_location_text)
    options = {}
    table = SCHEMES[kind].option_table()
    raw_values = st.one_of(st.integers(0, 70000).map(str), st.floats(0, 1e4).map(repr),
                           st.sampled_from(["N", "e", "1.5", "2", "yes", "off", "peer", "all"]),
                           st.text(min_size=1, max_size=12))
    for name in draw(st.lists(st.sampled_from(sorted(table)), unique=True, max_size=4)):
        option = table[name]
        if option.carriers is not None and carrier not in option.carriers:
            continue
        try:
            options[name] = option.parse(draw(raw_values))
        except ValueError:
            continue
    return TransportURL(kind, carrier, location, options)


@given(urls())
def test_str_round_trips(url: TransportURL) -> None:
    again = parse_transport_url(str(url))
    assert again == url
    assert str(again) == str(url)


def test_registry_and_url_table_agree() -> None:
    assert sorted(TRANSPORTS) == sorted(SCHEMES)


async def test_a_missing_backend_package_is_unavailable_not_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "emulator.transports.zmq", raising=False)
    monkeypatch.setitem(sys.modules, "zmq", None)  # makes `import zmq` fail as if pyzmq were not installed
    with pytest.raises(TransportUnavailableError, match="pip install pyzmq"):
        await listen("zmq+tcp://127.0.0.1:0")
    with pytest.raises(TransportUnavailableError, match="pyzmq"):
        await connect("zmq+inproc://x")


async def test_front_door_refuses_bad_urls_before_touching_the_medium() -> None:
    with pytest.raises(InvalidTransportURL):
        await listen("can://vcan0")
    with pytest.raises(InvalidTransportURL):
        await connect("serial:///dev/ttyUSB0?speed=9600")


def test_every_option_is_documented() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "transports.md").read_text()
    for kind, scheme in SCHEMES.items():
        for name in scheme.option_table():
            assert f"`{name}`" in docs or f"`{name}=" in docs, f"{kind} option {name} missing from docs/transports.md"
