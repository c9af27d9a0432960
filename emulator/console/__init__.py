"""``flatsat console``: a bench console in the browser (see ``docs/console.md``).

:mod:`~emulator.console.app` is the command (imported by the CLI for its arguments only), :mod:`.server` the
aiohttp server and WebSocket feed, :mod:`.sources` the live control-plane client and the recording reader,
:mod:`.state` and :mod:`.history` what the page shows (pure). The web server is imported only when it runs.
"""
