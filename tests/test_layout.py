"""The floor plan (README "Layout"), measured from the code: the imports between the product's files form
layers that only import downward, with no circle; no product file is over 500 lines; no command imports a
command; private Keras is named in one module only. `python tests/test_layout.py` prints the measurements."""
import ast
import os
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = ("prepare_data.py", "spatial_train.py", "temporal_train.py", "fuse_test.py", "demo.py")
# Lowest first: a file may import files of its own layer or of the layers before it.
LAYERS = ("twostream/errors.py", "twostream/storage", "twostream/video", "twostream/datasets", "twostream/protocol",
          "twostream/loading", "twostream/networks", "twostream/train", "twostream/scoring",
          ("generators.py", "models.py"), COMMANDS)
MAX_LINES = 500
KERAS_INTERNALS = "twostream/train/keras_internals.py"  # the one module that may use private Keras
# Private names of the standard library the product uses by design
STANDARD_PRIVATE = {"_exit", "_getframe", "_current_frames", "_current_exceptions", "_asdict", "_replace", "_fields",
                    "_make"}


def product_files():
    top = sorted(name for name in os.listdir(REPO) if name.endswith(".py"))
    package = sorted(os.path.relpath(os.path.join(folder, name), REPO)
                     for folder, _, names in os.walk(os.path.join(REPO, "twostream")) for name in names
                     if name.endswith(".py"))
    return top + package


def module_file(module):
    """The product file that `module` (dotted) names, or None for anything else."""
    base = module.replace(".", "/")
    for path in (base + ".py", base + "/__init__.py"):
        if os.path.isfile(os.path.join(REPO, path)):
            return path
    return None


def imports_of(path):
    """The product files `path` imports, anywhere in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(open(os.path.join(REPO, path)).read())):
        if isinstance(node, ast.Import):
            found.update(module_file(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(module_file(node.module))
            found.update(module_file(f"{node.module}.{alias.name}") for alias in node.names)
    found.discard(None)
    found.discard(path)
    return {name for name in found if not name.endswith("__init__.py")}


def import_graph():
    return {path: imports_of(path) for path in product_files()}


def layer_of(path):
    for index, layer in enumerate(LAYERS):
        members = layer if isinstance(layer, tuple) else (layer,)
        if any(path == member or path.startswith(member + "/") for member in members):
            return index
    raise AssertionError(f"{path} belongs to no layer of tests/test_layout.py's LAYERS: add it to one")


def upward_imports(graph):
    return sorted((path, target) for path, targets in graph.items() for target in targets
                  if layer_of(target) > layer_of(path))


def circles(graph):
    """Each import circle once, as the files on it (Tarjan's strongly connected components)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def long_files():
    lengths = {path: sum(1 for _ in open(os.path.join(REPO, path))) for path in product_files()}
    return {path: length for path, length in lengths.items() if length > MAX_LINES}


def private_names(path):
    """Private Keras that `path` reaches: keras.src, a private attribute the file does not define itself, or a private
    method of a class built on a Keras class (an override of Keras's)."""
    source = open(os.path.join(REPO, path)).read()
    names = {"keras.src"} if re.search(r"\bkeras\.src\b", source) else set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef) and any("keras" in ast.unparse(base) for base in node.bases):
            names.update(item.name for item in node.body if isinstance(item, ast.FunctionDef)
                         and item.name.startswith("_") and not item.name.startswith("__"))
    own = set(re.findall(r"(?:def |self\.|^)(_[a-z]\w*)\s*(?:\(|=[^=])", source, re.M))
    used = set(re.findall(r"\.(_[a-z]\w*)", source))
    return names | (used - own - STANDARD_PRIVATE)


def test_the_imports_have_no_circle():
    assert circles(import_graph()) == []


def test_no_file_imports_a_layer_above_its_own():
    assert upward_imports(import_graph()) == []


def test_nothing_imports_a_command():
    graph = import_graph()
    assert [(path, target) for path in graph for target in graph[path] if target in COMMANDS] == []


def test_no_product_file_is_over_500_lines():
    assert long_files() == {}


def test_private_keras_is_named_in_one_module_only():
    assert {path: names for path in product_files() if path != KERAS_INTERNALS
            for names in [private_names(path)] if names} == {}


def test_the_measurements_can_fail():
    graph = {"a.py": {"b.py"}, "b.py": {"c.py"}, "c.py": {"a.py"}, "d.py": {"a.py"}}
    assert circles(graph) == [["a.py", "b.py", "c.py"]]
    assert upward_imports({"twostream/errors.py": {"models.py"}, "models.py": set()}) == \
        [("twostream/errors.py", "models.py")]


if __name__ == "__main__":
    graph = import_graph()
    print(f"{len(graph)} files, {sum(map(len, graph.values()))} imports between them")
    print("circles:", circles(graph))
    print("upward imports:", *upward_imports(graph), sep="\n  ")
    print("over 500 lines:", long_files())
    print("private names:", {path: names for path in product_files() for names in [private_names(path)] if names})
    sys.exit(0)
