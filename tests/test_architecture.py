"""The shape of app/ (docs/architecture.md, "Layers"): no import cycle, no import from a lower
layer back up, no module past ~500 lines.

Every import counts for the layers: at module level, inside a function, under `TYPE_CHECKING`,
and a custom tool's handler named as a "module:function" string. Only module-level imports can
make a cycle at import time, so only they count for the cycle.
"""

from __future__ import annotations

import ast
import re
import graphlib
from dataclasses import dataclass
from pathlib import Path

import app

APP = Path(app.__file__).parent
MAX_LINES = 500

# Lowest first. A module may import its own area (`app.x`) and any area of a lower layer; areas of
# one layer do not import each other.
LAYERS: list[tuple[str, ...]] = [
    ("app", "app.settings", "app.logs", "app.metrics", "app.repo_config"),  # no app imports at all
    ("app.store",),
    ("app.errors",),  # classifies failures, StoreUnavailable among them
    ("app.github", "app.routing"),  # the GitHub client; webhook → jobs (pure)
    ("app.tools",),  # the custom-tool contract and its registry
    ("app.agents",),  # agent definitions name the custom tools
    ("app.sessions",),  # runs a session, answers its tool calls
    ("app.pipelines",),  # review, fix: brief, session, publish
    ("app.server", "app.worker", "app.doctor"),
    ("app.setup",),  # first-run setup and the webhook proxy: around the server, below the wiring
    ("app.runtime",),  # wires the process
    ("app.oneshot",),  # `prmedic run`: one job inline, through the runtime's pipeline table
    ("app.action",),  # `prmedic action`: a workflow's event, routed, run through the oneshot engine
    ("app.cli",),
    ("app.__main__",),
]

# Inside app.pipelines: the shared pieces at the top of the folder sit below the feature folders,
# and one feature does not import another.
PIPELINE_FEATURES = ("app.pipelines.review", "app.pipelines.fix", "app.pipelines.commands", "app.pipelines.action")

# Today's imports that run against the layers (importer, imported area or module): each is to be
# removed, and so is its entry here; the test fails on an entry that no longer matches anything.
UPWARD_ALLOWED: dict[tuple[str, str], str] = {
    ("app.tools.registry", "app.pipelines"):
        "ToolContext names the pipelines' state types under TYPE_CHECKING",
    ("app.tools.schemas", "app.pipelines"):
        "CUSTOM_TOOLS names handlers in the pipelines as 'module:function' (loaded by app.tools.catalog)",
    ("app.pipelines.session", "app.pipelines.review"):
        "the shared session helper names the review's tool state under TYPE_CHECKING",
    ("app.pipelines.session", "app.pipelines.fix"):
        "the shared session helper names the fix's tool state under TYPE_CHECKING",
    ("app.pipelines.session", "app.pipelines.commands"):
        "the shared session helper names /describe's tool state under TYPE_CHECKING",
}

# Today's modules over MAX_LINES, being split (path under app/ → its line count, roughly).
OVERSIZED_ALLOWED: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    how: str  # "module" | "function" | "type_checking" | "handler"
    line: int

    def __str__(self) -> str:
        return f"{self.importer}:{self.line} imports {self.imported} ({self.how})"


def app_modules() -> dict[str, Path]:
    found = {}
    for path in APP.rglob("*.py"):
        parts = path.relative_to(APP.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = app_modules()


def resolve(name: str) -> str | None:
    """The app module an import name lands in (`app.store.Job` → `app.store`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.AST, package: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        return [f"{base}.{alias.name}" for alias in node.names] if base else []
    return []


def imports_of(module: str, path: Path) -> list[Import]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def walk(node: ast.AST, how: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = how
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function" if how == "module" else how
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                inner = "type_checking"
            for name in _imported_names(child, package):
                target = resolve(name) if name.startswith("app") else None
                if target and target != module:
                    found.append(Import(module, target, how, child.lineno))
            if isinstance(child, ast.Constant) and isinstance(child.value, str):
                head, sep, attr = child.value.partition(":")
                if sep and head in MODULES and head != module and attr.isidentifier():
                    found.append(Import(module, head, "handler", child.lineno))
            walk(child, inner)

    walk(ast.parse(path.read_text(encoding="utf-8")), "module")
    return found


ALL_IMPORTS = [imp for module, path in sorted(MODULES.items()) for imp in imports_of(module, path)]


def area(module: str) -> str:
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int:
    for index, areas in enumerate(LAYERS):
        if area(module) in areas:
            return index
    raise AssertionError(f"{module} is in no layer: add its area to LAYERS (and to docs/architecture.md)")


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def allowed(imp: Import) -> bool:
    return any(imp.importer == importer and within(imp.imported, target) for importer, target in UPWARD_ALLOWED)


def feature(module: str) -> str | None:
    return next((f for f in PIPELINE_FEATURES if within(module, f)), None)


def breaks_layers(imp: Import) -> str | None:
    """Why this import runs against the layers, or None."""
    if area(imp.importer) == area(imp.imported):
        if area(imp.importer) != "app.pipelines":
            return None
        mine, theirs = feature(imp.importer), feature(imp.imported)
        if theirs and mine != theirs:
            return f"{'the shared ' + imp.importer if mine is None else mine} reaches into {theirs}"
        return None
    ours, theirs = layer(imp.importer), layer(imp.imported)
    if theirs > ours:
        return f"{area(imp.importer)} (layer {ours}) reaches up to {area(imp.imported)} (layer {theirs})"
    if theirs == ours:
        return f"{area(imp.importer)} and {area(imp.imported)} share layer {ours}"
    return None


def test_every_area_of_app_has_a_layer():
    for module in MODULES:
        layer(module)


def test_no_import_cycle_at_module_level():
    graph = {module: set() for module in MODULES}
    for imp in ALL_IMPORTS:
        if imp.how == "module":
            graph[imp.importer].add(imp.imported)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle: {' → '.join(exc.args[1])}") from None


def test_no_import_runs_back_up_a_layer():
    broken = [f"{imp}: {why}" for imp in ALL_IMPORTS if (why := breaks_layers(imp)) and not allowed(imp)]
    assert not broken, "imports against the layers:\n" + "\n".join(broken)


def test_the_allow_list_names_only_todays_offenders():
    offending = [imp for imp in ALL_IMPORTS if breaks_layers(imp)]
    stale = [key for key in UPWARD_ALLOWED
             if not any(imp.importer == key[0] and within(imp.imported, key[1]) for imp in offending)]
    assert not stale, f"fixed, so drop from UPWARD_ALLOWED: {stale}"


def test_no_module_is_longer_than_one_sitting():
    sizes = {str(path.relative_to(APP.parent)): len(path.read_text(encoding="utf-8").splitlines())
             for path in MODULES.values()}
    too_long = {path: n for path, n in sizes.items() if n > MAX_LINES and path not in OVERSIZED_ALLOWED}
    assert not too_long, f"modules over {MAX_LINES} lines (split them): {too_long}"
    stale = [path for path in OVERSIZED_ALLOWED if sizes.get(path, 0) <= MAX_LINES]
    assert not stale, f"no longer over {MAX_LINES} lines, so drop from OVERSIZED_ALLOWED: {stale}"


def test_docstrings_cite_sections_of_this_repositorys_architecture_page():
    root = APP.parent
    sections = set(re.findall(r"^## (.+)$", (root / "docs" / "architecture.md").read_text(encoding="utf-8"), re.M))
    outside, unknown = [], []
    for path in [*root.glob("app/**/*.py"), *root.glob("tests/**/*.py"), *root.glob("bench/*.py"),
                 root / "pyproject.toml"]:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root)
        outside += [f"{where}: {m}" for m in re.findall(r"DESIGN §[\d.]+", text)]
        unknown += [f"{where}: {m!r}" for m in re.findall(r'docs/architecture\.md, "([^"]+)"', text)
                    if m not in sections]
    assert not outside, f"cite docs/architecture.md by section instead: {outside}"
    assert not unknown, f"no such section in docs/architecture.md: {unknown}"
