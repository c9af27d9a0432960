"""Clean layers, checked: the import contracts of pyproject.toml ([tool.importlinter], docs/architecture.md), no
import cycles, and no private name taken from another module."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import grimp
from importlinter import cli as importlinter_cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("emulator", "firmware_stubs", "hil")


def test_import_contracts_hold(capsys) -> None:  # type: ignore[no-untyped-def]
    # import-linter's CLI configures logging with dictConfig, which disables every logger that exists then (flatsat's
    # too) for the rest of the process: a later test in this process would see no log record; keep them as they were
    loggers = [lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    disabled = [lg.disabled for lg in loggers]
    try:
        code = importlinter_cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                                             no_logo=True)
    finally:
        for lg, was in zip(loggers, disabled, strict=True):
            lg.disabled = was
    assert code == 0, capsys.readouterr().out


def test_no_import_cycles() -> None:
    graph = grimp.build_graph(*PACKAGES)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.append(f"{module} -> {imported} -> ... -> {module}")
    assert not cycles, "\n".join(cycles)


def test_no_private_name_is_imported_from_another_module() -> None:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                    found += [f"{path.relative_to(ROOT)}:{node.lineno} from {node.module} import {a.name}"
                              for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, "\n".join(found)
