"""The package's layering: each floor imports only floors below it (or its own), so the tree reads as the
pipeline (data -> models -> world model -> envs -> agents), with shared basics at the bottom."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "genie_env"
CLI = Path(__file__).resolve().parents[1] / "training"  # installed as genie_env.cli

# bottom to top; a module's floor is that of its longest listed prefix
FLOORS = [
    ("ground", ["_compat", "_io", "games", "user_game", "metrics", "viz", "checkpoint"]),
    ("data", ["data"]),
    ("models", ["models", "trainer"]),
    ("world model", ["world_model", "evaluate"]),
    ("envs", ["envs"]),
    ("agents", ["agents", "agent"]),
    ("presets", ["presets"]),
    ("play", ["play"]),  # genie play and genie serve: a dream, the real game and an agent, for a human
    ("cli", ["cli", ""]),  # the CLIs and the package root (registration) stand on everything
]


def floor_of(module: str) -> int:
    """The floor of `genie_env.X.Y` (given as "X.Y")."""
    best, best_len = None, -1
    for level, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or prefix == "") and len(prefix) > best_len:
                best, best_len = level, len(prefix)
    return best


def module_name(path: Path, root: Path, prefix: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([p for p in [prefix, *parts] if p])


def imports_of(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, module under genie_env) of every import in a file, lazy ones inside functions included,
    relative imports resolved against `package`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names if node.module is None]
    return [(line, name[len("genie_env.") :]) for line, name in found if name.startswith("genie_env.")]


def all_modules() -> list[tuple[Path, str, str]]:
    """(file, its module under genie_env, its package) of every module, the CLIs as genie_env.cli."""
    out = []
    for root, prefix in ((PACKAGE, ""), (CLI, "cli")):
        for path in sorted(root.rglob("*.py")):
            if "assets" in path.parts:
                continue
            name = module_name(path, root, prefix)
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            out.append((path, name, f"genie_env.{package}".rstrip(".")))
    return out


def test_every_module_has_a_floor():
    unplaced = [name for _, name, _ in all_modules() if floor_of(name) is None]
    assert not unplaced


def test_no_module_imports_a_higher_floor():
    upward = []
    for path, name, package in all_modules():
        mine = floor_of(name)
        for line, target in imports_of(path, package):
            theirs = floor_of(target)
            if theirs is not None and theirs > mine:
                upward.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} ({FLOORS[mine][0]}) imports genie_env.{target} "
                    f"({FLOORS[theirs][0]})"
                )
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize(
    "source, target, expected",
    [
        ("data.collect", "agents.policies", True),  # what the test exists to catch
        ("checkpoint", "data.format", True),
        ("models.dynamics", "trainer", False),  # same floor
        ("envs.dream", "world_model", False),
        ("agents.train", "envs.dream", False),
    ],
)
def test_the_floors_catch_an_upward_import(source, target, expected):
    assert (floor_of(target) > floor_of(source)) is expected


def test_relative_imports_resolve_in_the_cli_package(tmp_path):
    file = tmp_path / "x.py"
    file.write_text("from .common import fail\nfrom . import train_dynamics\nfrom genie_env.games import NUM_ACTIONS\n")
    assert [t for _, t in imports_of(file, "genie_env.cli")] == ["cli.common", "cli", "cli.train_dynamics", "games"]
