"""Checks a built Lambda layer: every ELF file is for the layer's architecture, no dev tools inside.

Usage: python infra/check-layer.py <built layer dir> <arm64|x86_64>

Reads the ELF header of every file that starts with the ELF magic (the .so files of compiled
wheels and anything else native), e_machine at offset 18, and fails when one is built for
another machine, since a layer built on an x86_64 host with host wheels would import fine
here and crash on Graviton. Also fails when the dev tools (mailsync_local, the old
mailsync/local) ended up in the layer. Prints what it found, per top-level package.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

MACHINES = {183: "aarch64", 62: "x86_64", 3: "i386", 40: "arm"}
EXPECTED = {"arm64": 183, "x86_64": 62}
DEV_TOOLS = ("mailsync_local", "mailsync/local")


def elf_machine(path: Path) -> int | None:
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[2] not in EXPECTED:
        print(__doc__, file=sys.stderr)
        return 2
    root, arch = Path(argv[1]), argv[2]
    site = root / "python"
    if not site.is_dir():
        print(f"check-layer: {site} is missing (no built layer?)", file=sys.stderr)
        return 1
    ok: Counter[str] = Counter()
    wrong: list[str] = []
    for path in sorted(p for p in site.rglob("*") if p.is_file() and not p.is_symlink()):
        machine = elf_machine(path)
        if machine is None:
            continue
        rel = path.relative_to(site)
        if machine == EXPECTED[arch]:
            ok[rel.parts[0]] += 1
        else:
            wrong.append(f"{rel} ({MACHINES.get(machine, f'e_machine {machine}')})")
    dev = [d for d in DEV_TOOLS if (site / d).exists()]
    want = MACHINES[EXPECTED[arch]]
    found = ", ".join(f"{k} {v}" for k, v in sorted(ok.items())) or "none"
    print(f"check-layer: {sum(ok.values())} of {sum(ok.values()) + len(wrong)} ELF files are {want}: {found}")
    if wrong:
        print(f"check-layer: {len(wrong)} ELF files are not {want}:", *wrong, sep="\n  ", file=sys.stderr)
    if dev:
        print(f"check-layer: dev tools inside the layer: {', '.join(dev)}", file=sys.stderr)
    if not ok:
        print("check-layer: no compiled code at all: the layer's wheels are missing", file=sys.stderr)
    if wrong or dev or not ok:
        return 1
    print(f"check-layer: no dev tools in the layer ({', '.join(DEV_TOOLS)} absent)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
