"""The console's web server: aiohttp serves the page, its scripts and plotly.js, and one WebSocket per page.

Why aiohttp: one well-kept package gives the HTTP server, static files and WebSockets on the asyncio loop the
control-plane client already runs on (no second server process, no thread), with back-pressure we can see.

The feed is pushed by the server and decimated there, so the page's cost does not grow with the telemetry rate:
the panels at most :data:`VIEW_HZ` times a second, the plots (each at most ``max_points`` points, min/max
envelope) every :data:`SERIES_S` seconds, the ground track every :data:`MAP_S`. Each page has a mailbox of one
frame per kind: a page that reads slowly skips frames (counted), it never holds up the others or the source.

Frames (JSON) from the server: ``meta`` (source, fault schemas, field names, recording span), ``view``
(panels), ``series`` (plots), ``map`` (ground track), ``reply`` (a command's outcome, worded by the emulator).
From the page: ``{"op": "command", "id", "topic", "payload"}``, ``{"op": "plots", "plots": [{"id", "fields",
"window_s"}]}``, ``{"op": "seek", "t_ns"}``, ``{"op": "play", "speed"}``, ``{"op": "pause"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from emulator.clock import WallSource

log = logging.getLogger("flatsat.console")

NS_PER_S = 1_000_000_000
VIEW_HZ = 4.0
SERIES_S = 1.0
MAP_S = 5.0
MAX_PLOTS = 12
MAX_FIELDS_PER_PLOT = 8
MAX_WINDOW_S = 30 * 86400.0
COOKIE = "flatsat_console_token"
#: control-plane topics a page may send (everything a bench operator steers with; no sim.stop from a browser)
ALLOWED_TOPICS = frozenset({"clock.pause", "clock.resume", "clock.step", "clock.run_until", "clock.set_speed",
                            "clock.set_mode", "clock.status", "fault.list", "fault.inject", "fault.clear",
                            "truth.get", "stats.get", "board.command", "orbit.predict"})


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), default=_default, allow_nan=False)


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def _clean(obj: Any) -> Any:
    """NaN and inf are not JSON: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


@dataclass(eq=False)
class Page:
    """One connected page: its WebSocket, its plots and its mailbox (the newest frame of each kind)."""

    ws: web.WebSocketResponse
    plots: list[dict[str, Any]] = field(default_factory=list)
    mailbox: dict[str, str] = field(default_factory=dict)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    skipped: int = 0
    meta_version: int = -1
    fields_seen: int = -1
    last_text: dict[str, str] = field(default_factory=dict)
    #: the cluster member this page shows (None: the default one; a single satellite: unused)
    member: int | None = None

    def post(self, kind: str, text: str) -> None:
        if self.last_text.get(kind) == text:
            return  # nothing new (a paused run): the page does no work for it
        self.last_text[kind] = text
        if kind in self.mailbox:
            self.skipped += 1
        self.mailbox[kind] = text
        self.ready.set()


class ConsoleServer:
    """Serves one source (live or recording) to any number of pages."""

    def __init__(self, source: Any, *, token: str | None = None, loopback: bool = True,
                 wall: WallSource | None = None, loading: str | None = None) -> None:
        self.source = source
        #: why the source cannot be shown yet (a recording being read): every request gets 503 and this
        self.loading = loading
        self.state = source.state
        self.token = token
        self.loopback = loopback
        self.wall = wall or WallSource()
        self.pages: set[Page] = set()
        self.app = web.Application(middlewares=[self._guard])
        self.app.router.add_get("/", self._index)
        self.app.router.add_get("/ws", self._websocket)
        self.app.router.add_get("/api/view", self._api_view)
        self.app.router.add_get("/vendor/plotly.min.js", self._plotly)
        self.app.router.add_get("/static/{name:[A-Za-z0-9_.-]+}", self._static)
        self.app.router.add_get("/vendor/topojson/{name:[A-Za-z0-9_.-]+}", self._topojson)
        self._tasks: list[asyncio.Task[None]] = []
        self._commands: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.url = ""
        #: the port listened on (the one picked, for port 0)
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> str:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        addresses = self._runner.addresses  # the bound (host, port, ...) of each listening socket
        self.port = addresses[0][1] if addresses else port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self._tasks = [asyncio.create_task(self._push(), name="console-push")]
        return self.url

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for page in list(self.pages):
            with contextlib.suppress(Exception):
                await page.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- access -------------------------------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.loopback and request.host.rsplit(":", 1)[0].strip("[]") not in ("127.0.0.1", "localhost", "::1") \
                and not request.host.startswith("127."):
            # a page from elsewhere that resolves its own name to 127.0.0.1 (DNS rebinding) is refused
            return web.Response(status=403, text=f"flatsat console: unexpected Host {request.host!r}\n")
        if self.token is not None:
            given = request.query.get("token") or request.cookies.get(COOKIE) or ""
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return web.Response(status=401, text="flatsat console: this console needs its token; open the URL "
                                                     "that `flatsat console` printed (ending in ?token=...)\n")
        if self.loading is not None:
            return web.Response(status=503, text=f"flatsat console: {self.loading}\n", headers={"Retry-After": "2"})
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and origin.split("://", 1)[-1] != request.host:
                # a WebSocket opened by another site's page in the same browser: never let it steer
                return web.Response(status=403, text=f"flatsat console: cross-origin WebSocket from {origin!r}\n")
        response = await handler(request)
        if self.token is not None and request.query.get("token"):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="Strict")
        return response

    # -- files --------------------------------------------------------------------------------------------------
    async def _index(self, request: web.Request) -> web.StreamResponse:
        return self._package_file("index.html", "text/html")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        types = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".png": "image/png"}
        ctype = next((v for k, v in types.items() if name.endswith(k)), None)
        if ctype is None:
            raise web.HTTPNotFound()
        return self._package_file(name, ctype)

    def _package_file(self, name: str, ctype: str) -> web.StreamResponse:
        path = resources.files("emulator.console") / "static" / name
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type=ctype, headers={"Cache-Control": "no-cache"})

    async def _topojson(self, request: web.Request) -> web.StreamResponse:
        path = resources.files("emulator.console") / "static" / "vendor" / request.match_info["name"]
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.Response(body=path.read_bytes(), content_type="application/json",
                            headers={"Cache-Control": "max-age=86400"})

    async def _plotly(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=plotly_js(), content_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    async def _api_view(self, request: web.Request) -> web.StreamResponse:
        """The panels as JSON; ``?member=K`` (an index or a name): that cluster member's, as the page shows it."""
        member = None
        given = request.query.get("member")
        if given is not None:
            try:
                member = self._member_index(given)
            except ValueError as exc:
                error = {"code": "console", "field": "member", "message": str(exc),
                         "valid": (self.state.cluster or {}).get("names")}
                return web.Response(status=400, text=_json({"ok": False, "error": error}),
                                    content_type="application/json")
        return web.Response(text=_json(_clean(self.source.view(member))), content_type="application/json")

    def _member_index(self, given: Any) -> int:
        """Cluster member ``given`` (an index: a number or all digits; or a member's name) as an index; a
        ValueError that says what is wrong and names the valid members."""
        cluster = self.state.cluster
        if cluster is None:
            if "truth.sample" not in self.state.latest:
                raise ValueError("member: not known yet whether this run is a cluster (no truth from it so far)")
            raise ValueError("member: this run is a single satellite, not a cluster")
        n, names = cluster["n"], cluster["names"]
        if isinstance(given, str) and given.isascii() and given.isdigit():
            given = int(given)
        if type(given) is int and 0 <= given < n:
            return given
        if isinstance(given, str) and given in names:
            return names.index(given)
        raise ValueError(f"member: no member {given!r}; give an index 0..{n - 1} or a name: {', '.join(names)}")

    # -- the feed -----------------------------------------------------------------------------------------------
    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        page = Page(ws)
        page.last_text.clear()
        self.pages.add(page)
        self._post_all(page, force=True)
        sender = asyncio.create_task(self._send_loop(page), name="console-send")
        try:
            async for raw in ws:
                if raw.type != WSMsgType.TEXT:
                    continue
                try:
                    req = json.loads(raw.data)
                    if not isinstance(req, dict):
                        raise TypeError("a frame must be a JSON object")
                except (TypeError, ValueError) as exc:
                    page.post("error", _json({"type": "error", "message": f"bad frame: {exc}"}))
                    continue
                await self._handle(page, req)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self.pages.discard(page)
        return ws

    async def _handle(self, page: Page, req: dict[str, Any]) -> None:
        op = req.get("op")
        if op == "command":
            task = asyncio.create_task(self._command(page, req), name="console-command")
            self._commands.add(task)
            task.add_done_callback(self._commands.discard)
        elif op == "plots":
            plots = []
            for p in (req.get("plots") or [])[:MAX_PLOTS]:
                if not isinstance(p, dict):
                    continue
                fields = [str(f) for f in (p.get("fields") or [])][:MAX_FIELDS_PER_PLOT]
                try:
                    window_s = min(max(float(p.get("window_s", 1800.0)), 1.0), MAX_WINDOW_S)
                except (TypeError, ValueError):
                    window_s = 1800.0
                plots.append({"id": str(p.get("id", len(plots))), "fields": fields, "window_s": window_s})
            page.plots = plots
            self._post_series(page)
        elif op == "member":
            error = self._pick_member(page, req.get("member"))
            if error:
                page.post("error", _json({"type": "error", "message": error}))
            else:
                self._post_all(page, force=False)
        elif op in ("seek", "play", "pause") and self.source.kind == "recording":
            if op == "seek":
                with contextlib.suppress(TypeError, ValueError):
                    self.source.seek(int(req.get("t_ns", 0)))
            elif op == "play":
                with contextlib.suppress(TypeError, ValueError):
                    self.source.play(float(req["speed"]) if "speed" in req else None)
            else:
                self.source.pause()
            self._post_all(page, force=False)
        else:
            page.post("error", _json({"type": "error", "message": f"unknown op {op!r}"}))

    def _pick_member(self, page: Page, member: Any) -> str | None:
        """Show cluster member ``member`` (an index or a name; None: the default one) on this page; what is wrong
        with it, if anything."""
        if member is None and self.state.cluster is not None:
            page.member = None
            return None
        try:
            page.member = self._member_index(member)
        except ValueError as exc:
            return str(exc)
        self.state.watch(page.member)
        return None

    async def _command(self, page: Page, req: dict[str, Any]) -> None:
        topic = str(req.get("topic", ""))
        payload = req.get("payload") or {}
        if topic not in ALLOWED_TOPICS:
            reply = {"ok": False, "error": {"code": "console", "message": f"the console does not send {topic!r}; it "
                                            f"sends {', '.join(sorted(ALLOWED_TOPICS))}"}}
        elif not isinstance(payload, dict):
            reply = {"ok": False, "error": {"code": "console", "message": "payload must be a JSON object"}}
        else:
            reply = await self.source.request(topic, payload)
        frame = {"ok": reply.get("ok", False), "data": reply.get("data"), "error": reply.get("error"),
                 "type": "reply", "id": req.get("id"), "topic": topic, "payload": payload}
        page.post(f"reply:{req.get('id')}", _json(_clean(frame)))
        # what the command changed shows at once, not at the next tick
        self._post_all(page, force=False)

    def _post_series(self, page: Page) -> None:
        if not page.plots:
            return
        out = {p["id"]: {**self.source.series(p["fields"], p["window_s"], page.member), "fields": p["fields"],
                         "window_s": p["window_s"]} for p in page.plots}
        page.post("series", _json({"type": "series", "plots": out}))

    def _post_all(self, page: Page, *, force: bool) -> None:
        self._post_meta(page, force)
        page.post("view", _json(_clean({"type": "view", **self.source.view(page.member)})))
        page.post("map", _json(_clean({"type": "map", **self.source.map_data(page.member)})))
        self._post_series(page)

    def _post_meta(self, page: Page, force: bool) -> None:
        nfields = len(self.state.history.columns)
        if force or page.meta_version != self.source.meta_version or page.fields_seen != nfields:
            page.meta_version, page.fields_seen = self.source.meta_version, nfields
            page.post("meta", _json(_clean({"type": "meta", **self.source.meta(),
                                             "fields": self.state.history.fields()})))

    async def _push(self) -> None:
        period = round(NS_PER_S / VIEW_HZ)
        next_ns = self.wall.now_ns()
        tick = 0
        while True:
            next_ns += period
            await self.wall.sleep_until(next_ns)
            if next_ns < self.wall.now_ns() - 5 * period:  # fell far behind (a suspended laptop): no burst
                next_ns = self.wall.now_ns()
            tick += 1
            if not self.pages:
                continue
            map_due = tick % max(1, round(MAP_S * VIEW_HZ)) == 0
            series_due = tick % max(1, round(SERIES_S * VIEW_HZ)) == 0
            views: dict[int | None, str] = {}  # one per member shown (a single satellite: one)
            maps: dict[int | None, str] = {}
            for page in list(self.pages):
                self._post_meta(page, False)
                if page.member not in views:
                    views[page.member] = _json(_clean({"type": "view", **self.source.view(page.member)}))
                page.post("view", views[page.member])
                if map_due:
                    if page.member not in maps:
                        maps[page.member] = _json(_clean({"type": "map", **self.source.map_data(page.member)}))
                    page.post("map", maps[page.member])
                if series_due:
                    self._post_series(page)

    async def _send_loop(self, page: Page) -> None:
        while not page.ws.closed:
            await page.ready.wait()
            page.ready.clear()
            frames, page.mailbox = page.mailbox, {}
            # meta first: the page needs the field list and schemas before the data that refers to them
            for kind in sorted(frames, key=lambda k: k != "meta"):
                await page.ws.send_str(frames[kind])


@functools.cache
def plotly_js() -> bytes:
    """plotly.js as the plotly Python package ships it (served by flatsat; the page needs no internet)."""
    return (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
