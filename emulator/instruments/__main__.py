"""``python -m emulator.instruments check --config FILE``: look at every bench supply of a config without changing it.

For each ``[bench.supply]``: open the resource, check ``*IDN?`` against the driver, read the channel's set points,
OVP level and output state and the error queue (queries only: no setting, no output change), and print what flatsat
would set (voltage range, current limit, OVP). Exit status 0 if every supply answered as its driver expects, 1 if
not, 2 on a bad config. Run it before the first power-on (docs/hardware.md section 8).
"""

from __future__ import annotations

import argparse
import logging
import sys

from emulator.errors import EmulatorError, InstrumentError


def check(config: str) -> int:
    from emulator.config import load_config
    from emulator.instruments.supply import Supply

    cfg = load_config(config)
    supplies = cfg.run.bench.supply
    if not supplies:
        print(f"{config}: no [bench.supply] table")
        return 1
    sat = cfg.satellite
    rails = {r.name: r for r in sat.power.rails}
    failed = 0
    for s in supplies:
        r = rails[s.rail]
        b = sat.power.battery
        if r.kind == "regulated":
            volts = f"{r.voltage_v:g} V"
            if r.dropout_v is not None:
                volts += f" (browns out with the bus below {r.voltage_v + r.dropout_v:g} V)"
        else:
            volts = f"the bus, up to {b.end_of_charge_v_cell * b.cells_series:g} V"
        limit = min(s.max_a, r.current_limit_a * (1 + s.limit_margin))
        d = s.dialect()
        print(f"{s.name}: {s.resource} channel {s.channel}, driver {s.driver} ({d.title})")
        print(f"  plays rail {s.rail!r}: {volts}; current limit {limit:.3f} A (limiter {r.current_limit_a:g} A "
              f"+ {s.limit_margin:.0%}); hard limits {s.max_v:g} V / {s.max_a:g} A; OVP "
              f"{'at max_v' if s.ovp and d.set_ovp else 'none (flatsat clamps only)'}")
        if s.dry_run:
            print("  dry_run = true: not opened")
            continue
        sup = Supply(s)
        try:
            sup.open()
            idn = sup.identify()
            print(f"  *IDN? {idn!r}: matches /{d.idn}/")
            for old in sup.drain_errors():
                print(f"  error queue held: {old}")
            settings = sup.read_settings()
            shown = ", ".join(f"{k} {v}" for k, v in settings.items()) or "(the dialect cannot query them)"
            print(f"  now: {shown}")
            if settings.get("output"):
                print("  WARNING: the output is ON; flatsat switches it off before it takes over")
        except (InstrumentError, ValueError) as exc:
            print(f"  FAILED: {exc}")
            failed += 1
        finally:
            sup.close()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.instruments",
                                     description="Bench supply tools (docs/hardware.md section 8).")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="identity, settings and errors of every [bench.supply]; changes nothing")
    c.add_argument("--config", required=True, help="the run's TOML config")
    c.add_argument("-v", "--verbose", action="store_true", help="log every SCPI line")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return check(args.config)
    except EmulatorError as exc:
        print(f"python -m emulator.instruments check: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
