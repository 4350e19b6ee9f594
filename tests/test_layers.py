"""The package's declared layer table, and the tests that hold its imports to it.

Imports are read from the source with `ast` (nothing is imported, no database), so the check is fast
and sees every import, even ones that never run in a test. An import may only go down the table or
stay in its own room, and no modules may import each other in a loop. The checker's functions take
the package root as a parameter so the tests at the bottom can prove, on a tiny fake package, that
it does fail.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "consent_svc"

# Bottom to top. A room is a sub-folder of consent_svc or a named group of top-level modules; an entry
# names consent_svc/<name>.py or consent_svc/<name>/ and everything under it. A module may import its
# own room and rooms of lower layers only: rooms sharing a layer are siblings and may not import each other.
LAYERS: list[dict[str, list[str]]] = [
    # shared infrastructure: importing no domain
    {
        "core": [
            "settings",
            "errors",
            "ids",
            "bodies",
            "tasks",
            "telemetry",
            "openapi",
            "cursors",
            "db",
            "crypto",
            "idempotency",
            "auth",
            "health",
            "outbox",
            "signing",
            "exceptions",
        ]
    },
    # the audit trail: stored with core's db/ids/crypto, so a floor of its own above core, below every domain that writes to it
    {"audit": ["audit"]},
    # regional policy: the purposes and regimes every consent is checked against
    {"policies": ["policies"]},
    # the consent ledger
    {"consents": ["consents"]},
    # real-time consent checks
    {"decisions": ["decisions"]},
    # outbound webhooks (consumer of the outbox) and inbound CMP sync (producer): siblings
    {"webhooks": ["webhooks"], "cmp": ["cmp"]},
    # data-subject requests
    {"requests": ["requests"]},
    # the web faces' shared floor: pages, forms, brand, session guard
    {"web": ["web"]},
    # the operators' console and the data subjects' privacy centre: two faces, neither using the other
    {"console": ["console"], "privacy": ["privacy"]},
    # assembling and running the whole: the ASGI app and the command line
    {"wiring": ["app", "cli"]},
]

INIT = "__init__"


# --- reading the imports ------------------------------------------------------------------------


def is_exempt(path: Path, root: Path) -> bool:
    """An __init__.py holding nothing but a docstring, or the package's __main__.py: in no room, needing none."""
    if path == root / "__main__.py":
        return True
    if path.name != "__init__.py":
        return False
    body = ast.parse(path.read_text(encoding="utf-8"), filename=str(path)).body
    return not body or (
        len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    )


def module_of(path: Path, root: Path) -> str:
    """Dotted name of a source file; a package's __init__.py keeps its `.__init__` so the node names its file."""
    return ".".join(path.relative_to(root.parent).with_suffix("").parts)


def display(module: str) -> str:
    """The module's name as Python spells it (a package without `.__init__`)."""
    return module.removesuffix("." + INIT)


def source_file(module: str) -> str:
    return module.replace(".", "/") + ".py"


def module_imports(root: Path) -> dict[str, set[str]]:
    """Every module of the package (exempt files left out) -> the package's modules it imports.

    Every import in the file counts, including those inside functions and under `if TYPE_CHECKING:`:
    an import is a dependency wherever it sits (a lazy import still needs the module to exist and to
    make sense at that layer; a type-only import still ties the two modules' designs together).
    """
    package = root.name
    files = sorted(root.rglob("*.py"))
    existing = {module_of(path, root) for path in files}

    def resolve(name: str) -> str:
        # `a.b` names the module a/b.py, else the package a/b/__init__.py; a name found neither way
        # (moved, or not written yet) is kept as written so its room can still be judged.
        if name in existing:
            return name
        if f"{name}.{INIT}" in existing:
            return f"{name}.{INIT}"
        return name

    def resolve_from(base: str, names: list[str]) -> set[str]:
        # `from base import x` imports the submodule base.x when there is one, else takes x from base itself.
        found = set()
        for name in names:
            submodule = f"{base}.{name}"
            found.add(
                resolve(submodule)
                if submodule in existing or f"{submodule}.{INIT}" in existing
                else resolve(base)
            )
        return found

    graph: dict[str, set[str]] = {}
    for path in files:
        if is_exempt(path, root):
            continue
        module = module_of(path, root)
        # The package a relative import starts from: the module's own folder (for an __init__, that folder is the package).
        package_parts = module.split(".")[:-1]
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                imported |= {
                    resolve(alias.name) for alias in node.names if alias.name.split(".")[0] == package
                }
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = package_parts[: len(package_parts) - (node.level - 1)]
                    base = ".".join(base_parts + (node.module.split(".") if node.module else []))
                else:
                    base = node.module or ""
                if base.split(".")[0] == package:
                    imported |= resolve_from(base, [alias.name for alias in node.names])
        graph[module] = imported
    return graph


# --- judging them ---------------------------------------------------------------------------------


def room_table(layers: list[dict[str, list[str]]]) -> dict[str, list[tuple[str, int]]]:
    """Entry name -> every (room, layer) that lists it (more than one is itself a mistake)."""
    table: dict[str, list[tuple[str, int]]] = {}
    for layer, rooms in enumerate(layers):
        for room, entries in rooms.items():
            for entry in entries:
                table.setdefault(entry, []).append((room, layer))
    return table


def violations(graph: dict[str, set[str]], layers: list[dict[str, list[str]]]) -> list[str]:
    """One line per module in no room (or two) and per import going up the table or across to a sibling."""
    table = room_table(layers)

    def places(module: str) -> list[tuple[str, int]]:
        parts = display(module).split(".")
        return table.get(parts[1], []) if len(parts) > 1 else []

    found = []
    for module in sorted(graph):
        home = places(module)
        if not home:
            found.append(f"{source_file(module)} is in no room: add it to LAYERS")
            continue
        if len(home) > 1:
            found.append(
                f"{source_file(module)} is in {len(home)} rooms ({', '.join(room for room, _ in home)}): keep it in one in LAYERS"
            )
            continue
        room, layer = home[0]
        for target in sorted(graph[module]):
            there = places(target)
            # A target in no room is either reported above as a module of its own, or the bare package
            # (an __init__ holding only a docstring), or a module that does not exist (the import fails by itself).
            if len(there) != 1:
                continue
            target_room, target_layer = there[0]
            if target_room != room and target_layer >= layer:
                found.append(
                    f"{source_file(module)} imports {display(target)} (room {target_room}, layer {target_layer}) "
                    f"from room {room} (layer {layer})"
                )
    return found


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of the graph restricted to its own modules, each sorted, in discovery order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return components


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each set of modules that import each other in a loop (a module importing itself is a loop of one), sorted."""
    loops = [c for c in strongly_connected(graph) if len(c) > 1 or c[0] in graph[c[0]]]
    return sorted(loops)


def loop_path(loop: list[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest way round the loop from its first member back to it, so the message shows the imports to cut."""
    start, members = loop[0], set(loop)
    came_from: dict[str, str] = {start: start}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(graph[module] & members):
                if target == start:
                    path = [module]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [*reversed(path), start]
                if target not in came_from:
                    came_from[target] = module
                    following.append(target)
        frontier = following
    return loop  # not reached: every member of a loop leads back to its start


def floors(graph: dict[str, set[str]]) -> int:
    """Length, in modules, of the longest import path between the package's modules.

    Computed on the DAG of loops: modules in a loop cannot be stacked, so a loop counts as one floor.
    """
    components = strongly_connected(graph)
    component_of = {module: number for number, members in enumerate(components) for module in members}
    # Tarjan closes a component only after every component it reaches, so this order is bottom-up.
    height: dict[int, int] = {}
    for number, members in enumerate(components):
        below = {component_of[t] for m in members for t in graph[m] if t in component_of} - {number}
        height[number] = 1 + max((height[b] for b in below), default=0)
    return max(height.values(), default=0)


def by_folder(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between the package's folders (and top-level modules): a folder imports another if any of its
    modules does. Its floors are the house's floors, as a reader of the tree sees them."""

    def folder(module: str) -> str:
        return module.split(".")[1] if module.count(".") >= 1 else module

    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        rooms.setdefault(folder(module), set()).update(folder(t) for t in targets)
    for room, targets in rooms.items():
        targets.discard(room)
        for target in targets:
            rooms.setdefault(target, set())
    return rooms


def report(graph: dict[str, set[str]], layers: list[dict[str, list[str]]]) -> list[str]:
    """Every layer violation and every loop, one per line."""
    lines = violations(graph, layers)
    for loop in cycles(graph):
        path = " -> ".join(display(m) for m in loop_path(loop, graph))
        lines.append(f"import loop among {', '.join(display(m) for m in loop)}: {path}")
    return lines


# --- the real package -----------------------------------------------------------------------------


@functools.cache
def package_graph() -> dict[str, set[str]]:
    # Parsed once for both tests: reading the whole package is most of their time.
    return module_imports(PACKAGE_ROOT)


def test_package_imports_keep_to_the_layers_without_loops() -> None:
    problems = report(package_graph(), LAYERS)
    assert not problems, "\n" + "\n".join(problems)


def test_package_import_graph_fits_in_nine_floors() -> None:
    """Ten floors of folders before the house was reshaped (issue 20), nine after: no more."""
    assert floors(package_graph()) <= 9
    assert floors(by_folder(package_graph())) <= 9
    assert cycles(by_folder(package_graph())) == []  # the old consents <-> webhooks loop counted as one floor


# --- the checker can fail: a fake package with one of each mistake ----------------------------------

FAKE_LAYERS = [
    {"base": ["util", "clock"]},
    {"left": ["left"], "right": ["right"]},
    {"top": ["top"]},
]

FAKE_FILES = {
    "__init__.py": '"""A fake package: only a docstring, so in no room and needing none."""\n',
    "__main__.py": "from consent_svc import top\n",
    "util.py": "import os\n",
    # A function-level import going up: clock (layer 0) -> top (layer 2).
    "clock.py": "def later():\n    from consent_svc import top\n    return top\n",
    "left/__init__.py": "",
    # A sibling import across one layer: left -> right.
    "left/a.py": "from consent_svc.right import b\n",
    # Relative imports making a loop: c -> d (a submodule), d -> c (a name taken from module c); d -> util (up a package).
    "left/c.py": "from . import d\n",
    "left/d.py": "from .c import thing\nfrom ..util import later\n",
    # An upward import under TYPE_CHECKING: right (layer 1) -> top (layer 2).
    "right/b.py": "from typing import TYPE_CHECKING\n\nfrom consent_svc import util\n\nif TYPE_CHECKING:\n    from consent_svc.top import Top\n",
    # Allowed: downward, and from the package itself (`nothing` is not a module, so it comes from left/__init__).
    "top.py": "import consent_svc.left.c as c\nfrom consent_svc.left import nothing\nfrom consent_svc.util import *\n",
    "stray.py": "",
}


def fake_package(tmp_path: Path) -> Path:
    root = tmp_path / "consent_svc"
    for name, text in FAKE_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return root


def test_imports_are_read_everywhere_and_resolved(tmp_path: Path) -> None:
    assert module_imports(fake_package(tmp_path)) == {
        "consent_svc.util": set(),
        "consent_svc.clock": {"consent_svc.top"},
        "consent_svc.left.a": {"consent_svc.right.b"},
        "consent_svc.left.c": {"consent_svc.left.d"},
        "consent_svc.left.d": {"consent_svc.left.c", "consent_svc.util"},
        "consent_svc.right.b": {"consent_svc.util", "consent_svc.top"},
        "consent_svc.top": {"consent_svc.left.c", "consent_svc.left.__init__", "consent_svc.util"},
        "consent_svc.stray": set(),
    }


def test_checker_reports_exactly_the_fake_mistakes(tmp_path: Path) -> None:
    graph = module_imports(fake_package(tmp_path))
    assert violations(graph, FAKE_LAYERS) == [
        "consent_svc/clock.py imports consent_svc.top (room top, layer 2) from room base (layer 0)",
        "consent_svc/left/a.py imports consent_svc.right.b (room right, layer 1) from room left (layer 1)",
        "consent_svc/right/b.py imports consent_svc.top (room top, layer 2) from room right (layer 1)",
        "consent_svc/stray.py is in no room: add it to LAYERS",
    ]
    assert cycles(graph) == [["consent_svc.left.c", "consent_svc.left.d"]]
    assert report(graph, FAKE_LAYERS)[-1] == (
        "import loop among consent_svc.left.c, consent_svc.left.d: "
        "consent_svc.left.c -> consent_svc.left.d -> consent_svc.left.c"
    )
    # left.a -> right.b -> top -> (left.c, left.d) -> util: the loop counts as one floor.
    assert floors(graph) == 5


def test_a_module_importing_itself_is_a_loop() -> None:
    graph = {"consent_svc.a": {"consent_svc.a"}, "consent_svc.b": {"consent_svc.a"}}
    assert cycles(graph) == [["consent_svc.a"]]
    assert report(graph, [{"x": ["a", "b"]}]) == [
        "import loop among consent_svc.a: consent_svc.a -> consent_svc.a"
    ]


def test_a_module_listed_in_two_rooms_is_reported() -> None:
    assert violations({"consent_svc.a": set()}, [{"x": ["a"]}, {"y": ["a"]}]) == [
        "consent_svc/a.py is in 2 rooms (x, y): keep it in one in LAYERS"
    ]


def test_floors_count_modules_on_the_longest_path_with_a_loop_as_one() -> None:
    chain = {"a": {"b"}, "b": {"c", "d"}, "c": {"d"}, "d": set()}
    assert floors(chain) == 4
    assert floors({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == 2
    assert floors({}) == 0
