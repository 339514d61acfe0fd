"""The lock files: every install (make install/test/run, the layer) takes hashed pins from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_LOCK = ROOT / "requirements-dev.lock"
LAYER_LOCK = ROOT / "layers" / "mailsync" / "requirements.lock"
LAYER_REQUIREMENTS = ROOT / "layers" / "mailsync" / "requirements.txt"

pytestmark = pytest.mark.unit

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    entries = re.split(r"\n(?=\S)", lock.read_text(encoding="utf-8"))
    for entry in entries:
        match = PIN.match(entry)
        if match is None:
            continue
        assert "--hash=sha256:" in entry, f"{lock.name}: {match.group(1)} has no hash"
        pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(_canonical(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    return names


def test_layer_lock_pins_every_layer_requirement_with_hashes() -> None:
    pins = _pins(LAYER_LOCK)
    assert _requirement_names(LAYER_REQUIREMENTS) <= set(pins)
    assert "boto3" not in pins  # the Lambda runtime provides it


def test_the_layer_ships_the_versions_the_tests_run() -> None:
    layer, dev = _pins(LAYER_LOCK), _pins(DEV_LOCK)
    assert layer
    different = {
        name: (version, dev.get(name)) for name, version in layer.items() if dev.get(name) != version
    }
    assert not different, f"layer lock vs dev lock (run `make lock`): {different}"


def test_dev_lock_pins_the_tools_the_makefile_uses() -> None:
    pins = _pins(DEV_LOCK)
    assert {"ruff", "mypy", "cfn-lint", "pytest", "moto", "uv", "setuptools", "wheel"} <= set(pins)


def test_locks_name_no_index() -> None:
    for lock in (DEV_LOCK, LAYER_LOCK):
        text = lock.read_text(encoding="utf-8")
        assert "--index-url" not in text and "--extra-index-url" not in text and "://" not in text
