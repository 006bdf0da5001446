"""``--filter EXPR``: a small, safe expression language over a decoded message.

Examples::

    body.symbol == "BTC-USD" and body.qty > 0.1
    source in ["engine", "safety"]
    type == "heartbeat" and body.stats.uptime_s > 60
    startswith(topic, "md.") and not body.bid < body.ask

Names: ``topic``, ``source``, ``type``, ``epoch``, ``seq``, ``ts_ns`` (publish time), ``recv_ns``,
``age`` (seconds), ``size`` (bytes), ``body`` (fields by ``.name``; map keys by ``.key`` or
``["key"]``; list items by ``[0]``), ``true``/``false``/``null``. Operators: ``and or not``,
``== != < <= > >=``, ``in``/``not in``, ``+ - * / %``, unary ``-``. Functions: ``len abs
startswith endswith contains matches`` (``matches`` is a regular-expression search).

Why Python's ``ast`` and not ``eval``: parsing is free and exact, and the parsed tree is walked
against a whitelist here and turned into closures; nothing of the user's text is ever executed by
the interpreter, attributes starting with ``_`` are refused (no ``__class__`` escapes), calls name
only the functions above, and length and depth are bounded (no memory or recursion bombs).

A field a message does not have is *missing*: any comparison with it is false (``!=`` too), so
``body.symbol == "X"`` simply does not match a heartbeat. A comparison of incomparable values (a
string with a number) is false as well, never an error.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

MAX_LENGTH = 2000
MAX_DEPTH = 40


class FilterError(ValueError):
    """The expression is not valid in the filter language (with the reason)."""


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()
ROOTS = ("topic", "source", "type", "epoch", "seq", "ts_ns", "recv_ns", "age", "size", "body", "v")
CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}

Getter = Callable[[Mapping[str, Any]], Any]

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod,
}


def _regex(pattern: Any) -> re.Pattern[str]:
    if not isinstance(pattern, str) or len(pattern) > 200:
        raise TypeError("matches() takes a pattern string of at most 200 characters")
    return re.compile(pattern)


def _str_call(fn: Callable[[str, str], bool]) -> Callable[[Any, Any], bool]:
    return lambda s, x: isinstance(s, str) and isinstance(x, str) and fn(s, x)


FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "len": (1, len),
    "abs": (1, abs),
    "startswith": (2, _str_call(str.startswith)),
    "endswith": (2, _str_call(str.endswith)),
    "contains": (2, lambda a, b: b in a),
    "matches": (2, lambda s, p: isinstance(s, str) and _regex(p).search(s) is not None),
}


def _field(value: Any, name: str) -> Any:
    """``value.name`` for a decoded message struct, or ``value["name"]`` for a map; else missing."""
    if value is MISSING or value is None:
        return MISSING
    if isinstance(value, Mapping):
        return value.get(name, MISSING)
    fields = getattr(type(value), "__struct_fields__", None)  # msgspec structs: their fields only
    if fields is not None and name in fields:
        return getattr(value, name)
    return MISSING


def _plain(value: Any) -> Any:
    """Enums compare by their wire value (``body.new == "live"``)."""
    return getattr(value, "value", value) if hasattr(value, "_value_") else value


class Filter:
    """A compiled expression: ``Filter(text)(context)`` is True when the message matches."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise FilterError(f"expression longer than {MAX_LENGTH} characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise FilterError(f"syntax error at column {exc.offset}: {exc.msg}") from None
        self.text = text
        self._fn = self._compile(tree.body, 0)

    def __call__(self, context: Mapping[str, Any]) -> bool:
        try:
            result = self._fn(context)
        except (TypeError, ValueError, ZeroDivisionError, re.error, OverflowError):
            return False
        return bool(result) and result is not MISSING

    # -- compiling: every node type not named here is refused ----------------------------------

    def _compile(self, node: ast.AST, depth: int) -> Getter:
        if depth > MAX_DEPTH:
            raise FilterError("expression nested too deeply")
        d = depth + 1
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (str, int, float, bool, type(None))):
                raise FilterError(f"constant {node.value!r} is not allowed")
            value = node.value
            return lambda _c: value
        if isinstance(node, ast.Name):
            return self._name(node.id)
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_"):
                raise FilterError(f"field {node.attr!r}: names starting with '_' are not allowed")
            inner, attr = self._compile(node.value, d), node.attr
            return lambda c: _field(inner(c), attr)
        if isinstance(node, ast.Subscript):
            return self._subscript(node, d)
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v, d) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda c: all(_truthy(p(c)) for p in parts)
            return lambda c: any(_truthy(p(c)) for p in parts)
        if isinstance(node, ast.UnaryOp):
            operand = self._compile(node.operand, d)
            if isinstance(node.op, ast.Not):
                return lambda c: not _truthy(operand(c))
            if isinstance(node.op, ast.USub):
                return lambda c: _neg(operand(c))
            raise FilterError(f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node, ast.Compare):
            return self._compare(node, d)
        if isinstance(node, ast.BinOp):
            op = _ARITH.get(type(node.op))
            if op is None:
                raise FilterError(f"operator {type(node.op).__name__} is not allowed")
            left, right = self._compile(node.left, d), self._compile(node.right, d)
            return lambda c: _arith(op, left(c), right(c))
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self._compile(e, d) for e in node.elts]
            return lambda c: [i(c) for i in items]
        if isinstance(node, ast.Call):
            return self._call(node, d)
        raise FilterError(f"{type(node).__name__} is not allowed in a filter")

    def _name(self, name: str) -> Getter:
        if name in CONSTANTS:
            value = CONSTANTS[name]
            return lambda _c: value
        if name not in ROOTS:
            raise FilterError(f"unknown name {name!r}; known: {', '.join(ROOTS)}")
        return lambda c: c.get(name, MISSING)

    def _subscript(self, node: ast.Subscript, d: int) -> Getter:
        if isinstance(node.slice, ast.Slice):
            raise FilterError("slices are not allowed")
        inner, key = self._compile(node.value, d), self._compile(node.slice, d)

        def get(c: Mapping[str, Any]) -> Any:
            value, k = inner(c), key(c)
            if isinstance(k, str):
                return _field(value, k) if not k.startswith("_") else MISSING
            if isinstance(k, int) and isinstance(value, (list, tuple)) and -len(value) <= k < len(value):
                return value[k]
            return MISSING

        return get

    def _compare(self, node: ast.Compare, d: int) -> Getter:
        ops = []
        for op in node.ops:
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise FilterError(f"comparison {type(op).__name__} is not allowed")
            ops.append(fn)
        operands = [self._compile(node.left, d)] + [self._compile(c, d) for c in node.comparators]

        def compare(c: Mapping[str, Any]) -> bool:
            left = _plain(operands[0](c))
            for fn, getter in zip(ops, operands[1:]):
                right = _plain(getter(c))
                if left is MISSING or right is MISSING:
                    return False
                if isinstance(right, list):
                    right = [_plain(x) for x in right]
                try:
                    if not fn(left, right):
                        return False
                except TypeError:
                    return False
                left = right
            return True

        return compare

    def _call(self, node: ast.Call, d: int) -> Getter:
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise FilterError(f"only these functions may be called: {', '.join(FUNCTIONS)}")
        if node.keywords:
            raise FilterError("keyword arguments are not allowed")
        arity, fn = FUNCTIONS[node.func.id]
        if len(node.args) != arity:
            raise FilterError(f"{node.func.id}() takes {arity} argument(s)")
        args = [self._compile(a, d) for a in node.args]

        def call(c: Mapping[str, Any]) -> Any:
            values = [_plain(a(c)) for a in args]
            if any(v is MISSING for v in values):
                return MISSING
            return fn(*values)

        return call


def _truthy(value: Any) -> bool:
    return value is not MISSING and bool(value)


def _neg(value: Any) -> Any:
    return MISSING if value is MISSING else -value


def _arith(op: Callable[[Any, Any], Any], a: Any, b: Any) -> Any:
    if a is MISSING or b is MISSING:
        return MISSING
    # Bound what a filter can allocate: "x" * 10**9 would take the sniffer down.
    if op is operator.mul and (isinstance(a, (str, list)) or isinstance(b, (str, list))):
        raise TypeError("repetition is not allowed")
    if isinstance(a, int) and isinstance(b, int) and max(abs(a), abs(b)) > 1 << 64 and op is operator.mul:
        raise OverflowError("integer too large")
    return op(a, b)
