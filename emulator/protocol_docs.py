"""Render the topic tables of ``docs/protocol.md`` from the live catalogue (a tool for the repository's docs).

It builds the reference satellite in an emulator to read its catalogue, so it sits above the runtime, not in
``emulator.protocol``, which the runtime depends on.

``python -m emulator.protocol_docs [docs/protocol.md] [--config FILE] [--check]`` rewrites the
text between ``<!-- topics:begin -->`` and ``<!-- topics:end -->``; with ``--check`` it only
reports whether the file is current (a test runs that, so the docs stay true to the code).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN = "<!-- topics:begin -->"
END = "<!-- topics:end -->"
#: the docs are the repository's: this tool runs from a source checkout
REPO = Path(__file__).resolve().parents[1]


def render_topics(config_path: str | Path | None = None) -> str:
    from emulator.config import load_config
    from emulator.runtime import Emulator

    cfg = load_config(config_path or "suncatcher-proto")
    emu = Emulator.from_config(cfg, board_url=None, control_url=None, record_path=None)
    faults = emu.fault_list()
    names = emu.model.names()
    shown = {"rail": "rails (`eps.rail.set` / `eps.rail.reset` `rail`, `eps.telemetry` `rails[].name`)",
             "heater": "heaters (`thermal.heater.set` `heater`, `thermal.telemetry` `heaters[].name`)",
             "thermistor": "thermistors (`thermal.telemetry` `temps_degc` keys)",
             "node": "thermal nodes", "array": "solar arrays", "level": "DVFS levels (`accel.dvfs.set` `level`)",
             "channel": "sensor channels (`sensor.*` faults)"}
    lines = [f"### Names on this satellite ({cfg.satellite.name})\n",
             ("Payload values that name a part must be one of these (they come from the satellite's config; "
             "another satellite has others, and an unknown name is refused with `valid` listing them).\n"),
             "| what | names |", "| --- | --- |"]
    for key, text in shown.items():
        if names.get(key):
            lines.append(f"| {text} | {', '.join(f'`{n}`' for n in names[key])} |")
    lines.append("")
    accel = getattr(cfg.satellite, "accelerator", None)
    if accel is not None:
        lines.append(f"The accelerator board is fed by the rail `{accel.rail}` (`[accelerator] rail` in the config): "
                     "when that rail is off, shed or tripped, the board is unpowered (`accel.power` with "
                     "`on: false`) and its jobs are lost.\n")
    lines += [emu.catalogue.markdown(), "### control plane: faults (`fault.inject` names)\n",
             "| name | parameters | clearable | meaning |", "| --- | --- | --- | --- |"]
    for f in faults:
        params = ", ".join(f"`{k}`" for k in f["params"].get("properties", {})) or "(none)"
        lines.append(f"| `{f['name']}` | {params} | {'yes' if f['clearable'] else 'no'} | {f['doc']} |")
    return "\n".join(lines) + "\n"


def splice(text: str, tables: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"markers {BEGIN} / {END} not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{tables}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", default=str(REPO / "docs" / "protocol.md"))
    parser.add_argument("--config", default=None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.path)
    text = path.read_text(encoding="utf-8")
    new = splice(text, render_topics(args.config))
    if args.check:
        if new != text:
            print(f"{path} is out of date: run python -m emulator.protocol_docs", file=sys.stderr)
            return 1
        return 0
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
