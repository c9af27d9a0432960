"""The documents stay true to the code."""

from __future__ import annotations

from pathlib import Path

from emulator.protocol_docs import main as protocol_docs

ROOT = Path(__file__).resolve().parents[2]


def test_protocol_topic_tables_match_the_catalogue() -> None:
    assert protocol_docs([str(ROOT / "docs" / "protocol.md"), "--check"]) == 0, \
        "docs/protocol.md is stale: run python -m emulator.protocol_docs"


def test_readme_gives_the_two_commands_and_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    for target in ("docs/protocol.md", "docs/transports.md", "docs/models.md", "docs/hil.md", "docs/bench.md"):
        assert target in readme
        assert (ROOT / target).exists(), target


def test_numbers_are_traced_to_docs_physics_sources_not_outside_the_repository() -> None:
    import re

    sources = (ROOT / "docs" / "physics-sources.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## §(\d+)", sources, flags=re.MULTILINE))
    assert sections == {str(n) for n in range(1, 8)}
    cited = 0
    for path in [*ROOT.glob("configs/**/*.toml"), *ROOT.glob("docs/*.md"), *ROOT.glob("emulator/**/*.py"),
                 *ROOT.glob("hil/**/*.py"), *ROOT.glob("bench/*.py"), *ROOT.glob("tests/**/*.py"),
                 *ROOT.glob("tests/**/*.toml"), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        if path.name != "test_docs.py":
            assert "shared/reference" not in text, f"{path} cites a file outside the repository"
        for m in re.finditer(r"physics-sources\.md,? (?:§|section )(\d+)", text):
            cited += 1
            assert m.group(1) in sections, f"{path}: cites physics-sources.md §{m.group(1)}, which does not exist"
    assert cited > 100


def test_every_standard_requirement_says_why_it_matters() -> None:
    import tomllib

    for path in sorted((ROOT / "configs" / "scenarios").glob("*.toml")):
        for i, req in enumerate(tomllib.loads(path.read_text(encoding="utf-8")).get("requirement", [])):
            assert req.get("why"), f"{path.name}: requirement[{i}] has no why (the report's 'why it matters')"


def test_configs_md_shows_the_override_error_the_loader_gives() -> None:
    import pytest

    from emulator.config import load_config
    from emulator.errors import ConfigError

    text = " ".join((ROOT / "docs" / "configs.md").read_text(encoding="utf-8").split())
    with pytest.raises(ConfigError) as exc:
        load_config("suncatcher-proto", {"power.rails.payloda.max_retries": 0})
    assert exc.value.message in text
    assert "configs/suncatcher-cluster.toml" in text and "extends" in text

