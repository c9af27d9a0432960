"""A peer over its rate limit is dropped unread, and a flood of drops pauses the link (docs/reliability.md)."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from emulator.errors import CodecError
from emulator.protocol.codec import encode_message
from emulator.protocol.envelope import Message
from emulator.transports import base
from emulator.transports.base import ServerLink
from emulator.transports.url import parse_transport_url

PING = encode_message(Message("ping", {}, seq=1, t_ns=0, src="x"))


class QueueLink(ServerLink):
    """A server link whose requests come from a list, as fast as asked."""

    def __init__(self, url: str, requests: list[tuple[bytes, bytes]]) -> None:
        super().__init__(parse_transport_url(url))
        self.requests = deque(requests)
        self.taken = 0

    def _publish_bytes(self, data: bytes, event: bool) -> None:
        pass

    async def _recv_raw(self) -> tuple[bytes, bytes | None, CodecError | None]:
        peer, data = self.requests.popleft()
        self.taken += 1
        return peer, data, None

    async def _send_to(self, peer: bytes, msg: Message) -> None:
        pass

    async def _aclose(self) -> None:
        pass


@pytest.mark.parametrize("flood", [15, 16, 50])
async def test_a_flood_over_the_limit_is_dropped_and_pauses_the_link(monkeypatch: pytest.MonkeyPatch,
                                                                     flood: int) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        pauses.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(base.asyncio, "sleep", sleep)
    # the flooder's bucket holds one request; the rest of its flood arrives at once, then a board's request
    link = QueueLink("loop://flood?peer_rate_hz=0.001&peer_burst=1",
                     [(b"flooder", PING)] * (2 + flood) + [(b"board", PING)])
    first = await link.recv()
    assert first.peer == b"flooder" and first.message is not None  # within its burst
    refused = await link.recv()
    assert refused.peer == b"flooder" and refused.message is None  # the first over the limit is answered
    assert refused.error is not None and refused.error.code == "rate_limited"
    board = await link.recv()  # the rest of the flood is dropped unread, then the board is served
    assert board.peer == b"board" and board.message is not None
    assert link.taken == 3 + flood
    assert link.stats.drops == {"rate_limited": 1 + flood}
    assert link.stats.rx == 2
    # a pause after every DROPS_PER_PAUSE drops in a row, and no other sleep
    assert pauses == [ServerLink.DROP_PAUSE_S] * (flood // ServerLink.DROPS_PER_PAUSE)
    await link.aclose()


async def test_the_default_limit_is_generous_for_a_board_and_low_for_a_flood() -> None:
    link = QueueLink("loop://default", [])
    # boards shipped with flatsat send at most ~1,700 requests a second (docs/transports.md); a flood ~15,000+
    assert 2_000 <= link.limiter.rate_hz <= 5_000
    await link.aclose()
