"""The layout and the layers, read from the code itself: each folder is its import
name, the built wheel holds every module, and imports go one way only.

    vesselzip.cli                        the command, on top of everything
    vesselzip_api     vesselzip_worker   the two services, never each other
    vesselzip_queue                      RQ glue both services use
    vesselzip                            the domain: no FastAPI, no RQ, no service

Imports inside functions count as much as those at the top of a module."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "vesselzip": ROOT / "shared" / "vesselzip",
    "vesselzip_queue": ROOT / "shared" / "vesselzip_queue",
    "vesselzip_api": ROOT / "services" / "api" / "vesselzip_api",
    "vesselzip_worker": ROOT / "services" / "worker" / "vesselzip_worker",
}
WEB = {"fastapi", "starlette", "uvicorn", "multipart"}
QUEUE = {"rq"}
#: Module prefixes each layer must not import.
FORBIDDEN = {
    "vesselzip": WEB | QUEUE | {"vesselzip_queue", "vesselzip_api", "vesselzip_worker"},
    "vesselzip_queue": WEB | {"vesselzip_api", "vesselzip_worker", "vesselzip.cli"},
    "vesselzip_worker": WEB | {"vesselzip_api", "vesselzip.cli"},
    "vesselzip_api": {"vesselzip_worker", "vesselzip.cli"},
}
#: The command sits on top: it may import anything.
TOP = ("vesselzip.cli", "vesselzip.__main__")


def module_files() -> dict[str, Path]:
    """Every module of the four packages, by its dotted name."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path) -> set[str]:
    """The modules `name` imports anywhere in its file, as absolute dotted names."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def layer_of(module: str) -> str | None:
    if module.startswith(TOP):
        return None
    return next((p for p in PACKAGES if module == p or module.startswith(p + ".")), None)


def test_each_package_folder_is_its_import_name():
    for package, folder in PACKAGES.items():
        assert folder.name == package and (folder / "__init__.py").is_file()


def test_layers_are_not_crossed():
    crossings = []
    for module, path in module_files().items():
        layer = layer_of(module)
        if layer is None:
            continue
        for imported in imports_of(module, path):
            for banned in FORBIDDEN[layer]:
                if imported == banned or imported.startswith(banned + "."):
                    crossings.append(f"{module} imports {imported}")
    assert not crossings, "\n".join(sorted(crossings))


def test_the_module_graph_has_no_cycles():
    modules = module_files()
    graph = {
        module: {m for m in imports_of(module, path) if m in modules and m != module}
        for module, path in modules.items()
    }
    # A package's __init__ importing its own submodules is how a package presents
    # them, not a dependency of the package on itself.
    for module in graph:
        graph[module] = {m for m in graph[module] if not m.startswith(module + ".")}

    cycles, state, stack = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


@pytest.mark.slow
def test_the_built_wheel_holds_every_module(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("shared", "services"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("vesselzip-*.whl")
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        f"{module.replace('.', '/')}{'/__init__' if path.name == '__init__.py' else ''}.py"
        for module, path in module_files().items()
    }
    assert not expected - in_wheel, sorted(expected - in_wheel)
    weights = {
        f"vesselzip/model/weights/{p.name}"
        for p in (PACKAGES["vesselzip"] / "model" / "weights").iterdir()
        if p.suffix in (".pt", ".json", ".md")
    }
    assert weights and not weights - in_wheel, sorted(weights - in_wheel)


#: What only the worker extra installs, and the one optional library the gateway may
#: use (figures: the `figures` extra), by the module allowed to import it.
WORKER_STACK = {"torch", "monai", "mamba_ssm", "causal_conv1d"}
GATEWAY_OPTIONAL = {"matplotlib": {"vesselzip.sweeps.figures"}}


def reachable_from(start: str) -> dict[str, set[str]]:
    """Every first-party module `start` can import (anywhere in a function too, and
    each package's __init__ on the way), with the third-party modules each imports."""
    modules = module_files()
    seen: dict[str, set[str]] = {}
    todo = [start]
    while todo:
        module = todo.pop()
        if module in seen or module not in modules:
            continue
        imported = imports_of(module, modules[module])
        seen[module] = {
            m.split(".")[0]
            for m in imported
            if layer_of(m) is None and m.split(".")[0] not in PACKAGES
        }
        for name in imported:
            parts = name.split(".")
            todo += [".".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return seen


def test_the_gateway_never_imports_the_model_stack():
    reached = reachable_from("vesselzip_api.main")
    assert "vesselzip_api.routers.jobs" in reached and "vesselzip.store.s3" in reached
    offending = sorted(
        f"{module} imports {library}"
        for module, libraries in reached.items()
        for library in libraries
        if library in WORKER_STACK
        or (library in GATEWAY_OPTIONAL and module not in GATEWAY_OPTIONAL[library])
    )
    assert not offending, "\n".join(offending)
