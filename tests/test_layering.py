"""The supervisor knows no worker kind, and the workers know the supervisor only through its shared leaves.

- nothing under supervisor/ imports workers/ or api/;
- workers/ and api/ import from supervisor/ only supervisor.shared (the one
  exception: workers/service.py, the entry point that hands the registry to
  supervisor.main, and mdwctl its alert-test);
- supervisor/shared/ imports nothing of this project but supervisor.shared;
- workers/ imports nothing from api/ (the API reads what the workers write, never the reverse);
- the production registry holds no drill kind and no fault-injection wrapper.
"""
import ast
from pathlib import Path

import pytest

from workers import kinds

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("supervisor", "workers", "api")


def imports(path):
    """Every module name `path` imports (absolute, at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def files(package):
    return sorted((ROOT / package).rglob("*.py"))


def ours(names):
    return {n for n in names if n.split(".")[0] in PROJECT}


@pytest.mark.parametrize("path", files("supervisor"), ids=lambda p: str(p.relative_to(ROOT)))
def test_supervisor_imports_nothing_from_workers_or_api(path):
    assert not {n for n in ours(imports(path)) if not n.startswith("supervisor")}


@pytest.mark.parametrize("path", files("supervisor/shared"), ids=lambda p: str(p.relative_to(ROOT)))
def test_shared_leaves_import_only_each_other(path):
    assert all(n.startswith("supervisor.shared") for n in ours(imports(path)))


@pytest.mark.parametrize("path", files("workers") + files("api"), ids=lambda p: str(p.relative_to(ROOT)))
def test_workers_and_api_see_the_supervisor_only_through_its_shared_leaves(path):
    entry_point = ("supervisor.main", "supervisor.ctl", "supervisor.config", "supervisor")  # assembles mdwd, mdwctl
    allowed = ("supervisor.shared",) + (entry_point if path == ROOT / "workers" / "service.py" else ())
    used = {n for n in ours(imports(path)) if n.startswith("supervisor")}
    assert all(n.startswith(allowed[0]) or n in allowed[1:] for n in used), used


@pytest.mark.parametrize("path", files("workers"), ids=lambda p: str(p.relative_to(ROOT)))
def test_workers_import_nothing_from_the_api(path):
    assert not {n for n in ours(imports(path)) if n.split(".")[0] == "api"}


def test_the_service_registry_holds_no_drill_kind():
    assert not set(kinds.DRILL_KINDS) & set(kinds.REGISTRY.kinds)
    assert set(kinds.with_drills().kinds) == set(kinds.REGISTRY.kinds) | set(kinds.DRILL_KINDS)
    assert not (ROOT / "workers" / "providers" / "faults.py").exists()


def test_each_kind_sees_only_the_secrets_it_needs():
    from supervisor.shared.registry import hidden_secrets

    environ = {"SCHWAB_APP_KEY": "k", "SCHWAB_APP_SECRET": "s", "MDW_API_TOKEN": "t", "PATH": "/bin"}
    secret_env = kinds.REGISTRY.secret_env
    assert sorted(hidden_secrets(environ, secret_env, kinds.KINDS["api"].secrets)) == ["SCHWAB_APP_KEY",
                                                                                       "SCHWAB_APP_SECRET"]
    for scanner in ("watchlist", "whale_flows", "macd", "vpb", "ttm"):
        assert hidden_secrets(environ, secret_env, kinds.KINDS[scanner].secrets) == ["MDW_API_TOKEN"]
    assert sorted(hidden_secrets(environ, secret_env, ())) == ["MDW_API_TOKEN", "SCHWAB_APP_KEY",
                                                              "SCHWAB_APP_SECRET"]
