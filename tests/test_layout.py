"""The package layout: the library never imports the experiment tooling (``lightning_segqa.experiments``)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_segqa"
#: modules outside ``experiments/`` allowed to import it: the command line runs the demo, audit and benchmark
ALLOWED = {"cli.py"}
EXPERIMENTS = "lightning_segqa.experiments"


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level (lazy) imports included
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_core_does_not_import_experiments():
    core = [p for p in PACKAGE.rglob("*.py") if "experiments" not in p.relative_to(PACKAGE).parts]
    assert len(core) > 20
    offenders = {
        str(p.relative_to(PACKAGE)): sorted(
            m for m in _imported_modules(p) if m.startswith("lightning_segqa.experiments")
        )
        for p in core
        if str(p.relative_to(PACKAGE)) not in ALLOWED
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_experiments_hold_the_tooling():
    names = sorted(p.name for p in (PACKAGE / "experiments").glob("*.py"))
    assert names == [
        "__init__.py", "benchmark.py", "benchmark_cache.py", "models.py", "pipelines.py", "synthetic.py",
        "tables.py", "training.py",
    ]  # fmt: skip
    for old in ("benchmark.py", "benchmark_cache.py", "benchmark_tables.py", "pipelines.py", "models.py"):
        assert not (PACKAGE / old).exists()
    assert not (PACKAGE / "data" / "synthetic.py").exists()
