"""The documents stay true to the code."""

from __future__ import annotations

from pathlib import Path

from emulator.protocol.docs import main as protocol_docs

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_topic_tables_match_the_catalogue() -> None:
    assert protocol_docs([str(ROOT / "docs" / "protocol.md"), "--check"]) == 0, \
        "docs/protocol.md is stale: run python -m emulator.protocol.docs"


def test_readme_gives_the_two_commands_and_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for target in ("docs/protocol.md", "docs/transports.md", "docs/models.md", "docs/hil.md", "docs/bench.md"):
        assert target in readme
        assert (ROOT / target).exists(), target
