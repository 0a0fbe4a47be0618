"""The package's layers (ARCHITECTURE.md) hold: imports go downward, modules stay small, and
no caller outside ``methods/`` decides anything by a method's name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "thinslice"
#: Layer of each top-level part, lowest first; a module may import its own part or lower layers.
LAYERS = {
    "errors": 0, "checks": 0.05, "volume": 0.1, "grid": 0.2, "device": 0.2, "ct": 0.3, "memory": 0.3, "profile": 0.4,
    "distributed": 0.4,
    "io": 1, "model": 2, "methods": 3, "training": 4, "evaluation": 4, "pipeline": 5, "cli": 6,
}  # fmt: skip


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "thinslice" else None


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out.append((".".join(p for p in rel.parts if p != "__init__"), path))
    return out


def test_every_part_has_a_layer() -> None:
    parts = {_part(name) for name, _ in _modules()} - {None, "__main__"}
    assert parts <= set(LAYERS), parts - set(LAYERS)


def test_imports_go_downward() -> None:
    wrong = []
    for name, path in _modules():
        own = _part(name)
        if own is None:  # the package's __init__: lazy re-exports of the public API
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                other = _part(target)
                if other in LAYERS and other != own and LAYERS[other] >= LAYERS[own]:
                    wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_modules_stay_readable() -> None:
    big = [(name, n) for name, path in _modules() if (n := len(path.read_text().splitlines())) > 500]
    assert not big, big


def test_no_method_name_tests_outside_methods() -> None:
    pattern = re.compile(r"""method\w*\s*(==|!=|\bin\b)\s*[("'\[]""")
    found = [
        f"{name}:{i}"
        for name, path in _modules()
        if _part(name) != "methods"
        for i, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, found


def test_the_public_api_is_listed_and_loads_on_first_use() -> None:
    """Every name in ``thinslice.__all__`` is in ``dir(thinslice)`` (tab completion, help)
    and resolves, though the package imports none of them up front."""
    import thinslice

    for name in thinslice.__all__:
        assert name in dir(thinslice) and getattr(thinslice, name) is not None


def test_the_cli_and_classical_methods_start_without_torch_or_simpleitk() -> None:
    """``thinslice --help`` is meant to be instant and a Lanczos job not to pay for torch
    (about a second to import): both had crept in through module-level imports."""
    import subprocess
    import sys

    code = (
        "import sys, thinslice.cli; print(sorted(m for m in ('torch', 'SimpleITK') if m in sys.modules)); "
        "import thinslice.methods, thinslice.pipeline.single; print('torch' in sys.modules)"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert got == "[]\nFalse\n"
