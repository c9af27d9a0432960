"""Bench instruments at the edge of the emulator: programmable supplies that play rails of the emulated bus.

The models stay pure: a supply loop (:mod:`emulator.instruments.bench`) reads what a rail delivers
(:meth:`~emulator.models.satellite.Satellite.rail_delivery`), sets the supply to it, measures what the real board
draws and feeds that back as the rail's ``supply`` load (:meth:`~emulator.models.satellite.Satellite.set_supply_load`).
Everything that talks to an instrument lives here; pyvisa is imported only when a supply is opened (optional extra
``bench``: ``pip install 'flatsat[bench]'``).

Modules: :mod:`~emulator.instruments.dialects` (SCPI command templates per supply family),
:mod:`~emulator.instruments.config` (``[bench.supply]``), :mod:`~emulator.instruments.supply` (one channel over
VISA, synchronous, in a worker thread), :mod:`~emulator.instruments.bench` (the asyncio loop the runtime starts),
:mod:`~emulator.instruments.guard` (the separate process that turns outputs off if the emulator dies).
"""
