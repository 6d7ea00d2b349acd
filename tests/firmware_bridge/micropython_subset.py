"""Static check that firmware source stays inside the Python subset MicroPython runs.

The firmware files run unchanged on the board and on CPython, and CPython
accepts everything MicroPython rejects, so only a check of the source itself
catches a CPython-only construct before a board does. ``violations(source)``
lists them; an empty list means the file is in the subset. Typing helpers are
allowed the way the firmware uses them: imported inside ``try``/``except
ImportError`` and referenced only from annotations (MicroPython never
evaluates annotations).
"""

from __future__ import annotations

import ast
import re

# Modules MicroPython does not have, or whose use would break at runtime there.
FORBIDDEN_MODULES = frozenset(
    {
        "__future__",
        "dataclasses",
        "enum",
        "abc",
        "contextlib",
        "functools",
        "pathlib",
        "typing_extensions",
        "numpy",
    }
)
# Modules the firmware may import only for annotations, guarded by ``except ImportError``.
ANNOTATION_ONLY_MODULES = frozenset({"typing", "collections.abc"})
FORBIDDEN_NAMES = frozenset({"dataclass", "__slots__"})
# str/bytes methods MicroPython's core types do not have.
MISSING_METHODS = frozenset(
    {
        "removeprefix",
        "removesuffix",
        "casefold",
        "format_map",
        "isascii",
        "expandtabs",
        "zfill",
        "ljust",
        "rjust",
        "swapcase",
        "isidentifier",
        "maketrans",
    }
)
# ``{expr=}``, ``{expr=!r}``, ``{expr=:>8}``: an ``=`` that is not part of ``==``, ``!=``,
# ``<=`` or ``>=``, right before the conversion, format spec or closing brace.
_DEBUG_SPECIFIER = re.compile(r"(?<![=!<>])=\s*(?:![rsa])?(?::[^{}]*)?\}")
_BUILTIN_TYPES = frozenset(
    {"int", "str", "bytes", "bytearray", "float", "list", "dict", "tuple", "set", "bool", "None"}
)


def violations(source: str) -> list[str]:
    """Every CPython-only construct in ``source``, as ``line N: what`` strings."""
    tree = ast.parse(source)
    annotation_nodes = _annotation_node_ids(tree)
    guarded_imports = _import_nodes_guarded_by_import_error(tree)
    found: list[str] = []
    annotation_only_names: set[str] = set()

    def report(node: ast.AST, what: str) -> None:
        found.append(f"line {getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module in FORBIDDEN_MODULES or module.split(".")[0] in FORBIDDEN_MODULES:
                    report(node, f"imports {module}")
                elif module in ANNOTATION_ONLY_MODULES:
                    if id(node) not in guarded_imports:
                        report(node, f"imports {module} outside try/except ImportError")
                    for alias in node.names:
                        annotation_only_names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.Match):
            report(node, "match statement")
        elif isinstance(node, ast.TryStar):
            report(node, "except*")
        elif isinstance(node, ast.ClassDef):
            if any(kw.arg == "metaclass" for kw in node.keywords):
                report(node, "metaclass= keyword")
        elif isinstance(node, ast.Call):
            if any(kw.arg == "strict" for kw in node.keywords):
                report(node, "strict= keyword (zip/map strict is CPython-only)")
        elif isinstance(node, ast.Starred) and isinstance(node.ctx, ast.Load):
            pass  # *args in a call is fine; displays are checked below
        elif isinstance(node, ast.List | ast.Tuple | ast.Set) and isinstance(
            getattr(node, "ctx", ast.Load()), ast.Load
        ):
            if any(isinstance(elt, ast.Starred) for elt in node.elts):
                report(node, "* unpacking inside a list/tuple/set display")
        elif isinstance(node, ast.Dict):
            if any(key is None for key in node.keys):
                report(node, "** unpacking inside a dict display")
        elif isinstance(node, ast.JoinedStr):
            if _DEBUG_SPECIFIER.search(ast.get_source_segment(source, node) or ""):
                report(node, "f-string '=' specifier")
        elif (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and id(node) not in annotation_nodes
            and _is_type_name(node.left)
            and _is_type_name(node.right)
        ):
            report(node, "X | Y type union evaluated at runtime")
        if isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in FORBIDDEN_NAMES:
                report(node, f"uses {name}")
            elif isinstance(node, ast.Attribute) and name in MISSING_METHODS:
                report(node, f"calls .{name}(), which MicroPython lacks")

    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Name)
            and node.id in annotation_only_names
            and id(node) not in annotation_nodes
        ):
            report(node, f"uses typing name {node.id} at runtime")
    return found


def _annotation_node_ids(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (arguments, returns, annotated assignments)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(sub) for root in roots for sub in ast.walk(root)}


def _import_nodes_guarded_by_import_error(tree: ast.AST) -> set[int]:
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        catches_import_error = any(
            handler.type is not None
            and any(
                isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError")
                for name in ast.walk(handler.type)
            )
            for handler in node.handlers
        )
        if catches_import_error:
            guarded.update(
                id(stmt) for stmt in node.body if isinstance(stmt, ast.Import | ast.ImportFrom)
            )
    return guarded


def _is_type_name(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_name(node.left) and _is_type_name(node.right)
    return isinstance(node, ast.Name) and node.id in _BUILTIN_TYPES
