"""Finds Kafka error numbers written outside the one table (pylog.protocol.error_codes).

Two kinds, both found on the syntax tree (so strings and comments never match):

- re-declared: a name spelled like a table entry bound to an int
  (`UNKNOWN_TOPIC_OR_PARTITION = 3`, `_NOT_COORDINATOR = 16`), or a dict
  literal mapping ints to table names (a private copy of the table);
- bare: a nonzero int literal given to, assigned to or compared with an
  error-code name (`error_code=3`, `code = 15`, `code = 3 if t else 5`,
  `if err == 6:`, `if code in (3, 6):`, `{"error_code": 3}`,
  `COORDINATOR_ERRORS = frozenset({14, 15, 16})`), or passed first to a
  function that takes a code (`error_for(7, ...)`, `check(3)`).

A line that binds a table name to something else (codecs' `NONE = 0` is the
compression type) says so with a trailing `# not an error code`.

`0` (NONE) is allowed: it is the absence of an error, and writing Errors.NONE
everywhere would say nothing more. Used by tests/test_error_table.py.
"""
from __future__ import annotations

import ast
import re

from pylog.protocol.error_codes import Errors

_TABLE_NAMES = frozenset(e.name for e in Errors)
# The last part of a name that holds an error code.
_CODE_NAME = re.compile(r"^_*(?:\w*_)?(?:error_code|err_code|errcode|error|err|code|ec)s?$", re.I)
# ... but not these, which hold other numbers.
_NOT_CODE = re.compile(r"(?:exit|status|return|api|op|key|char|hash|country|zip|opcode|rc)_?code$"
                       r"|^_*(?:encode|decode)$", re.I)


# Functions whose first argument is an error code (pylog.client.errors, pylog.errors).
_TAKES_CODE = frozenset({"error_for", "check", "for_code", "error_name", "Errors"})


def _name_of(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    # getattr(e, "error_code", None)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
        return node.args[1].value
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) \
            and isinstance(node.slice.value, str):
        return node.slice.value
    return None


def _is_code_name(name: str | None) -> bool:
    return bool(name) and bool(_CODE_NAME.match(name)) and not _NOT_CODE.search(name)


def _int_literal(node) -> int | None:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        v = _int_literal(node.operand)
        return None if v is None else -v
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    return None


def _nonzero_ints(node) -> list[int]:
    """The nonzero int literals node is, or holds as a tuple/list/set display."""
    v = _int_literal(node)
    if v is not None:
        return [v] if v else []
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [x for elt in node.elts for x in _nonzero_ints(elt)]
    # 3 if t is None else (t.error_code or 5)
    if isinstance(node, ast.IfExp):
        return _nonzero_ints(node.body) + _nonzero_ints(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [x for v in node.values for x in _nonzero_ints(v)]
    # frozenset({14, 15, 16}) and the like
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in ("frozenset", "set", "tuple", "list") and len(node.args) == 1:
        return _nonzero_ints(node.args[0])
    return []


class _Finder(ast.NodeVisitor):
    def __init__(self):
        self.found: list[tuple[int, str]] = []

    def _hit(self, node, what):
        self.found.append((node.lineno, what))

    # NAME = 3 / self.error_code = 3 / code: int = 3
    def _assign(self, node, targets, value):
        for t in targets:
            # A, B = 22, 25
            if isinstance(t, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
                    and len(t.elts) == len(value.elts):
                self._assign(node, t.elts, None)
                for elt, v in zip(t.elts, value.elts):
                    self._assign(node, [elt], v)
                continue
            if value is None:
                continue
            name = _name_of(t)
            if name is None:
                continue
            v = _int_literal(value)
            if v is not None and name.lstrip("_").upper() in _TABLE_NAMES:
                self._hit(node, f"re-declares {name} = {v}")
            elif _is_code_name(name) and _nonzero_ints(value):
                self._hit(node, f"bare error number: {name} = {ast.unparse(value)}")

    def visit_Assign(self, node):
        self._assign(node, node.targets, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self._assign(node, [node.target], node.value)
        self.generic_visit(node)

    # f(error_code=3), error_for(7, "...")
    def visit_Call(self, node):
        func = _name_of(node.func)
        if func in _TAKES_CODE and node.args and _nonzero_ints(node.args[0]):
            self._hit(node, f"bare error number: {ast.unparse(node.func)}({ast.unparse(node.args[0])}, ...)")
        for kw in node.keywords:
            if _is_code_name(kw.arg) and _nonzero_ints(kw.value):
                self._hit(node, f"bare error number: {kw.arg}={ast.unparse(kw.value)}")
        self.generic_visit(node)

    # code == 15, err in (3, 6), 6 != e.error_code
    def visit_Compare(self, node):
        operands = [node.left, *node.comparators]
        for left, right in zip(operands, operands[1:]):
            for a, b in ((left, right), (right, left)):
                if _is_code_name(_name_of(a)) and _nonzero_ints(b):
                    self._hit(node, f"bare error number: {ast.unparse(node)}")
        self.generic_visit(node)

    # {"error_code": 3} and {3: "UNKNOWN_TOPIC_OR_PARTITION", ...}
    def visit_Dict(self, node):
        table_values = 0
        for k, v in zip(node.keys, node.values):
            if isinstance(k, ast.Constant) and isinstance(k.value, str) and _is_code_name(k.value) \
                    and _nonzero_ints(v):
                self._hit(node, f"bare error number: {k.value!r}: {ast.unparse(v)}")
            if _int_literal(k) is not None and isinstance(v, ast.Constant) and v.value in _TABLE_NAMES:
                table_values += 1
        if table_values >= 2:
            self._hit(node, "re-declares part of the error table as a dict")
        self.generic_visit(node)

    # def f(error_code=3)
    def visit_arguments(self, node):
        positional = [*node.posonlyargs, *node.args]
        for arg, default in zip(positional[len(positional) - len(node.defaults):], node.defaults):
            if _is_code_name(arg.arg) and _nonzero_ints(default):
                self._hit(default, f"bare error number: default {arg.arg}={ast.unparse(default)}")
        for arg, default in zip(node.kwonlyargs, node.kw_defaults):
            if default is not None and _is_code_name(arg.arg) and _nonzero_ints(default):
                self._hit(default, f"bare error number: default {arg.arg}={ast.unparse(default)}")
        self.generic_visit(node)


def scan_source(source: str, filename: str = "<snippet>") -> list[tuple[int, str]]:
    """(line, what) for every error number written outside the table."""
    finder = _Finder()
    finder.visit(ast.parse(source, filename))
    lines = source.splitlines()
    return sorted((n, what) for n, what in finder.found if not lines[n - 1].rstrip().endswith(_NOT_A_CODE))


_NOT_A_CODE = "# not an error code"
