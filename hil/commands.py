"""The ``flatsat`` subcommands hil adds (entry-point group ``flatsat.commands``): test, replay, plot, export,
campaign. Only names and help live here; each command's module is imported when that command runs."""

from __future__ import annotations

from emulator.cli import Command

COMMANDS = [
    Command("test", "run scenario files headless: exit code, JUnit XML, HTML report", "hil.cli:add_test_arguments",
            "hil.cli:cmd_test",
            "Run each SCENARIO (TOML, a path or the name of a shipped one) against the emulator with a board process "
            "(--board CMD; '--url URL' is appended, or '{url}' replaced) or a real board (--board-url URL, the "
            "emulator listens there). Exit code 0: all passed, 1: any failed, 2: bad input."),
    Command("replay", "play a recording's messages back at sim-time pacing", "hil.cli:add_replay_arguments",
            "hil.cli:cmd_replay",
            "Publish a recording's outgoing messages (board plane by default) at URL, paced by their sim time x "
            "--speed, to whoever subscribes there (a board, flatsat monitor)."),
    Command("plot", "plot a recording's ground truth (truth.sample) to a PNG", "hil.cli:add_plot_arguments",
            "hil.cli:cmd_plot",
            "Plot battery, bus, power, temperatures and eclipses from a recording's truth.sample messages."),
    Command("export", "export a recording's ground truth to CSV / Parquet", "hil.cli:add_export_arguments",
            "hil.cli:cmd_export",
            "Write a recording's truth.sample stream as a table (t_s and one column per flattened signal, e.g. "
            "satellite.power.bus_v); --topic adds the fields of other topics (columns TOPIC.FIELD)."),
    Command("campaign", "run scenarios x seeds x config sweeps in parallel; Monte Carlo summary",
            "hil.campaign.cli:add_arguments", "hil.campaign.cli:cmd_campaign",
            "Run every scenario of CAMPAIGN (TOML, a path or a shipped name) with every seed and every combination "
            "of its [[sweep]] values, on a local process pool or a Dask cluster (--scheduler). Writes results.jsonl "
            "(as runs finish), results.csv, summary.json/.md and report.html to --out. Exit code 0: every run "
            "passed, 1: any failed, 2: bad input."),
]
