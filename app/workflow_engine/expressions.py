"""A whitelist expression evaluator for gateway conditions, timers and service-task parameters.

Expressions are parsed with :mod:`ast` and interpreted node by node: only task-data names,
literals, comparisons, ``and``/``or``/``not`` and arithmetic are understood. Nothing is ever
passed to ``eval``/``exec``/``compile``, so attribute access, calls, subscripts, lambdas and
comprehensions cannot run: they are refused when the definition is deployed and again at run time.
"""

from __future__ import annotations

import ast
import operator
from collections import ChainMap
from functools import lru_cache
from typing import Any

MAX_LENGTH = 500
MAX_STRING = 10_000


class UnsafeExpression(ValueError):
    """The expression uses something the whitelist does not allow (or does not parse)."""


_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_UNARY = {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos}
_LITERALS = (str, int, float, bool, type(None))


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access", ast.Call: "function calls", ast.Lambda: "lambdas",
        ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions", ast.GeneratorExp: "comprehensions",
        ast.Subscript: "subscripts", ast.Pow: "powers", ast.Starred: "starred expressions",
        ast.NamedExpr: "assignment expressions", ast.IfExp: "conditional expressions",
        ast.JoinedStr: "f-strings", ast.Await: "await", ast.Yield: "yield", ast.Dict: "dicts",
    }
    return names.get(type(node), type(node).__name__)


def parse(expression: str) -> ast.Expression:
    """Parse and check an expression; raise UnsafeExpression naming what is not allowed.

    Checked trees are cached per expression text (a process runs the same few expressions over
    and over); a refused expression is never cached, so it is refused again on every call.
    """
    if not isinstance(expression, str):
        raise UnsafeExpression("The expression is not text.")
    return _parse_checked(expression)


@lru_cache(maxsize=2048)
def _parse_checked(expression: str) -> ast.Expression:
    """The checked tree of ``expression`` (treat as read-only: it is shared through the cache)."""
    if len(expression) > MAX_LENGTH:
        raise UnsafeExpression(f"The expression is longer than {MAX_LENGTH} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"The expression does not parse: {exc.msg}.") from None
    _check(tree.body)
    return tree


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _LITERALS):
            raise UnsafeExpression("Only text, number, true/false and None literals are allowed.")
        return
    if isinstance(node, ast.Name):
        if not isinstance(node.ctx, ast.Load) or node.id.startswith("_"):
            raise UnsafeExpression(f"The name {node.id!r} is not allowed.")
        return
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value)
        return
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        _check(node.operand)
        return
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        _check(node.left)
        _check(node.right)
        return
    if isinstance(node, ast.Compare) and all(type(op) in _CMPOPS for op in node.ops):
        _check(node.left)
        for comparator in node.comparators:
            _check(comparator)
        return
    if isinstance(node, (ast.List, ast.Tuple)) and isinstance(node.ctx, ast.Load):
        for elt in node.elts:
            _check(elt)
        return
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        raise UnsafeExpression(f"Not allowed in expressions: the operator {type(node.op).__name__}.")
    raise UnsafeExpression(f"Not allowed in expressions: {_describe(node)}.")


def validate(expression: str) -> None:
    """Raise UnsafeExpression if the expression would be refused at run time."""
    parse(expression)


def evaluate(expression: str, data: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    """Evaluate a whitelisted expression against task data (names resolve to data keys)."""
    tree = parse(expression)
    scope = ChainMap(extra, data) if extra else data  # read-only: _eval never writes to scope
    return _eval(tree.body, scope)


def _eval(node: ast.AST, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("true", "True"):
            return True
        if node.id in ("false", "False"):
            return False
        if node.id not in scope:
            raise NameError(f"'{node.id}' is not in the task data.")
        value = scope[node.id]
        return value
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result = True
            for value in node.values:
                result = _eval(value, scope)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, scope)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, scope))
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, scope), _eval(node.right, scope)
        if isinstance(node.op, ast.Mult) and not (_is_number(left) and _is_number(right)):
            raise UnsafeExpression("Only numbers may be multiplied.")
        result = _BINOPS[type(node.op)](left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > MAX_STRING:
            raise UnsafeExpression("The result is too long.")
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, scope)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.List):
        return [_eval(e, scope) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, scope) for e in node.elts)
    raise UnsafeExpression(f"Not allowed in expressions: {_describe(node)}.")  # pragma: no cover


def _is_number(value) -> bool:
    return isinstance(value, (int, float))
