"""The shape of the package holds: the dependency rule between the rooms, no provider
branching in the use cases, and modules small enough to read (docs/architecture.md).

These read the source with ``ast`` (every import, including imports inside functions
and under ``TYPE_CHECKING``), so a shortcut that breaks a rule fails here first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "mailsync" / "mailsync"
MAX_MODULE_LINES = 600
PROVIDER_NAMES = {"imap", "google", "microsoft", "gmail", "graph"}


def _modules(room: str = "") -> list[Path]:
    return sorted((PACKAGE / room).rglob("*.py"))


def _imports(path: Path, root: Path = PACKAGE.parent) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in a file; relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:  # `from mailsync import store` imports the room
                yield node.lineno, f"{base}.{alias.name}"


def _violations(room: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in _modules(room):
        for line, module in _imports(path):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    return found


def test_domain_depends_on_no_other_room_and_no_aws_or_http() -> None:
    """Ports live in the domain; adapters import the domain, never the other way round."""
    forbidden = (
        "mailsync.store",
        "mailsync.providers",
        "mailsync.connectors",
        "mailsync.api",
        "mailsync.usecases",
        "boto3",
        "botocore",
        "pynamodb",
        "requests",
        "aws_lambda_powertools",
    )
    assert _violations("domain", forbidden) == []


def test_use_cases_reach_dynamodb_s3_and_sqs_only_through_store() -> None:
    forbidden = ("pynamodb", "boto3", "botocore", "mailsync.store.models", "mailsync.store.aws")
    assert _violations("usecases", forbidden) == []


def test_store_and_providers_do_not_import_use_cases_or_the_api() -> None:
    forbidden = ("mailsync.usecases", "mailsync.api")
    assert _violations("store", forbidden) + _violations("providers", forbidden) == []


def test_use_cases_never_test_a_provider_name_or_dispatch_with_hasattr() -> None:
    """Provider differences live in one connector per provider, found by a registry."""
    found = []
    for path in _modules("usecases"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            where = f"{path.relative_to(PACKAGE)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                names = {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)}
                for v in values:  # `x in ("google", "microsoft")`
                    if isinstance(v, ast.Tuple | ast.List | ast.Set):
                        names |= {e.value for e in v.elts if isinstance(e, ast.Constant)}
                if names & PROVIDER_NAMES:
                    found.append(f"{where} compares with {sorted(names & PROVIDER_NAMES)}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "hasattr":
                found.append(f"{where} calls hasattr")
    assert found == []


def test_no_module_of_the_package_is_over_600_lines() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    assert {p: n for p, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_import_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The checks above would catch a broken rule: imports inside functions, under
    TYPE_CHECKING, relative and ``from package import room`` are all seen."""
    module = tmp_path / "mailsync" / "domain" / "probe.py"
    module.parent.mkdir(parents=True)
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import boto3\n"
        "def f():\n    from mailsync import store\n"
        "from ..providers import imap\n"
    )
    seen = {m for _, m in _imports(module, root=tmp_path)}
    assert {"boto3", "mailsync.store", "mailsync.providers", "mailsync.providers.imap"} <= seen
