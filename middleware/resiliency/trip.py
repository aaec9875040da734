"""Circuit breaker `trip` expressions, the part of CEL that Dapr users write.

Dapr evaluates `trip` as a CEL expression over sony/gobreaker's counts
(`consecutiveFailures > 5`, `requests > 10 && totalFailures * 2 > requests`). This is a
small tokenizer and recursive-descent parser for that subset, type-checked when compiled,
so a mistake in a Resiliency file is reported at load with its column, never at the
first failure in production. Nothing is passed to `eval`.

Semantics follow CEL: 64-bit integers, `/` and `%` truncate toward zero, `&&` and `||`
absorb an error on one side when the other side decides (`x / 0 > 1 || true` is true).
An expression whose evaluation fails (division by zero, overflow) does not trip, as in Dapr.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


@dataclass(slots=True)
class Counts:
    """What a circuit breaker has seen in its current generation (gobreaker's `Counts`)."""

    requests: int = 0
    total_successes: int = 0
    total_failures: int = 0
    consecutive_successes: int = 0
    consecutive_failures: int = 0

    def on_request(self) -> None:
        self.requests += 1

    def on_success(self) -> None:
        self.total_successes += 1
        self.consecutive_successes += 1
        self.consecutive_failures = 0

    def on_failure(self) -> None:
        self.total_failures += 1
        self.consecutive_failures += 1
        self.consecutive_successes = 0


VARIABLES = {
    "requests": "requests",
    "totalSuccesses": "total_successes",
    "totalFailures": "total_failures",
    "consecutiveSuccesses": "consecutive_successes",
    "consecutiveFailures": "consecutive_failures",
}
"""The names a trip expression may use (Dapr's), and the `Counts` field each reads."""

Trip = Callable[[Counts], bool]
"""A compiled trip expression: true when the breaker should open."""


class TripError(ValueError):
    """A trip expression that cannot be compiled, with the 1-based column of the problem."""

    def __init__(self, expression: str, column: int, reason: str) -> None:
        super().__init__(f"trip expression {expression!r}, column {column}: {reason}")
        self.expression = expression
        self.column = column
        self.reason = reason


class _EvalError(Exception):
    """A value CEL has no answer for (division by zero, overflow): the expression errs."""


_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?P<fraction>\.\d*)?[A-Za-z_]*)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%()])|(?P<other>\S))"
)
_LONE = {"&": "&&", "|": "||", "=": "=="}


@dataclass(frozen=True, slots=True)
class _Token:
    kind: Literal["number", "name", "op", "end"]
    text: str
    column: int

    def shown(self) -> str:
        return "the end" if self.kind == "end" else repr(self.text)


def _tokenize(expression: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while (match := _TOKEN.match(expression, position)) is not None:
        column = match.start(match.lastgroup or 0) + 1
        text = match.group(match.lastgroup or 0)
        position = match.end()
        if match.lastgroup == "other":
            hint = f"; did you mean {_LONE[text]!r}?" if text in _LONE else ""
            raise TripError(expression, column, f"unexpected character {text!r}{hint}")
        if match.lastgroup == "number" and not text.isdigit():
            reason = (
                "counts are whole numbers: compare ratios by multiplying, e.g. 'totalFailures * 2 > requests'"
                if match.group("fraction")
                else "a number cannot be followed by letters"
            )
            raise TripError(expression, column, f"{text!r}: {reason}")
        tokens.append(_Token(match.lastgroup, text, column))  # type: ignore[arg-type]
    tokens.append(_Token("end", "", len(expression.rstrip()) + 1))
    return tokens


_Eval = Callable[[Counts], int]
"""A compiled sub-expression; booleans are Python bools (a subclass of int)."""


@dataclass(frozen=True, slots=True)
class _Node:
    type: Literal["int", "bool"]
    fn: _Eval
    column: int


_TYPE_NAMES = {"int": "a number", "bool": "true/false"}


def _checked(value: int) -> int:
    if not _INT_MIN <= value <= _INT_MAX:
        raise _EvalError("integer overflow")
    return value


def _divide(a: int, b: int) -> int:
    if b == 0:
        raise _EvalError("division by zero")
    quotient = abs(a) // abs(b)
    return _checked(quotient if (a < 0) == (b < 0) else -quotient)


def _modulo(a: int, b: int) -> int:
    if b == 0:
        raise _EvalError("modulus by zero")
    return a - b * _divide(a, b)


_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: _checked(a + b),
    "-": lambda a, b: _checked(a - b),
    "*": lambda a, b: _checked(a * b),
    "/": _divide,
    "%": _modulo,
}
_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


class _Parser:
    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _tokenize(expression)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def error(self, column: int, reason: str) -> TripError:
        return TripError(self.expression, column, reason)

    def take(self, *ops: str) -> _Token | None:
        token = self.token
        if token.kind == "op" and token.text in ops:
            self.index += 1
            return token
        return None

    def expect_type(self, node: _Node, wanted: str, operator: _Token, side: str) -> None:
        if node.type != wanted:
            raise self.error(
                node.column,
                f"{operator.text!r} (column {operator.column}) needs {_TYPE_NAMES[wanted]} on its "
                f"{side}, found {_TYPE_NAMES[node.type]}",
            )

    def parse(self) -> _Node:
        node = self.logical_or()
        if self.token.kind != "end":
            raise self.error(self.token.column, self._expected("an operator or the end"))
        if node.type != "bool":
            raise self.error(
                node.column, "the expression must be true or false, e.g. 'consecutiveFailures > 5'"
            )
        return node

    def _expected(self, what: str) -> str:
        token = self.token
        if token.kind == "name" and token.text in _KEYWORDS:
            return f"expected {what}, found {token.shown()}: write {_KEYWORDS[token.text]!r}"
        return f"expected {what}, found {token.shown()}"

    def logical_or(self) -> _Node:
        left = self.logical_and()
        while (operator := self.take("||")) is not None:
            right = self.logical_and()
            self.expect_type(left, "bool", operator, "left")
            self.expect_type(right, "bool", operator, "right")
            left = _Node("bool", _or(left.fn, right.fn), left.column)
        return left

    def logical_and(self) -> _Node:
        left = self.relation()
        while (operator := self.take("&&")) is not None:
            right = self.relation()
            self.expect_type(left, "bool", operator, "left")
            self.expect_type(right, "bool", operator, "right")
            left = _Node("bool", _and(left.fn, right.fn), left.column)
        return left

    def relation(self) -> _Node:
        left = self.sum()
        while (operator := self.take(*_COMPARISONS)) is not None:
            right = self.sum()
            if not (operator.text in ("==", "!=") and left.type == right.type):
                self.expect_type(left, "int", operator, "left")
                self.expect_type(right, "int", operator, "right")
            left = _Node("bool", _binary(_COMPARISONS[operator.text], left.fn, right.fn), left.column)
        return left

    def sum(self) -> _Node:
        return self._arithmetic(self.product, "+", "-")

    def product(self) -> _Node:
        return self._arithmetic(self.unary, "*", "/", "%")

    def _arithmetic(self, operand: Callable[[], _Node], *ops: str) -> _Node:
        left = operand()
        while (operator := self.take(*ops)) is not None:
            right = operand()
            self.expect_type(left, "int", operator, "left")
            self.expect_type(right, "int", operator, "right")
            left = _Node("int", _binary(_ARITHMETIC[operator.text], left.fn, right.fn), left.column)
        return left

    def unary(self) -> _Node:
        operator = self.take("!", "-")
        if operator is None:
            return self.primary()
        operand = self.unary()
        if operator.text == "!":
            self.expect_type(operand, "bool", operator, "right")
            return _Node("bool", _not(operand.fn), operator.column)
        self.expect_type(operand, "int", operator, "right")
        return _Node("int", _negate(operand.fn), operator.column)

    def primary(self) -> _Node:
        token = self.token
        if token.kind == "number":
            self.index += 1
            value = int(token.text)
            if value > _INT_MAX:
                raise self.error(token.column, f"{token.text} is too large for a 64-bit integer")
            return _Node("int", lambda _: value, token.column)
        if token.kind == "name" and token.text in ("true", "false"):
            self.index += 1
            flag = token.text == "true"
            return _Node("bool", lambda _: flag, token.column)
        if token.kind == "name" and token.text not in _KEYWORDS:
            self.index += 1
            return _Node("int", self._variable(token), token.column)
        if self.take("(") is not None:
            node = self.logical_or()
            if self.take(")") is None:
                raise self.error(
                    self.token.column, self._expected(f"')' to close the '(' at column {token.column}")
                )
            return _Node(node.type, node.fn, token.column)
        raise self.error(token.column, self._expected("a number, a variable or '('"))

    def _variable(self, token: _Token) -> _Eval:
        field = VARIABLES.get(token.text)
        if field is None:
            close = difflib.get_close_matches(token.text, VARIABLES, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            known = ", ".join(sorted(VARIABLES))
            raise self.error(token.column, f"unknown variable {token.text!r}; {hint}known: {known}")
        return lambda counts: getattr(counts, field)


def _binary(op: Callable[[int, int], int], left: _Eval, right: _Eval) -> _Eval:
    return lambda counts: op(left(counts), right(counts))


def _not(operand: _Eval) -> _Eval:
    return lambda counts: not operand(counts)


def _negate(operand: _Eval) -> _Eval:
    return lambda counts: _checked(-operand(counts))


def _or(left: _Eval, right: _Eval) -> _Eval:
    def evaluate(counts: Counts) -> int:
        try:
            if left(counts):
                return True
        except _EvalError:
            if right(counts):  # CEL: an error on one side is absorbed when the other is true
                return True
            raise
        return right(counts)

    return evaluate


def _and(left: _Eval, right: _Eval) -> _Eval:
    def evaluate(counts: Counts) -> int:
        try:
            if not left(counts):
                return False
        except _EvalError:
            if not right(counts):  # CEL: an error on one side is absorbed when the other is false
                return False
            raise
        return right(counts)

    return evaluate


def compile(expression: str) -> Trip:
    """Parse and type-check a trip expression; a `TripError` says where and what was expected."""
    evaluate = _Parser(expression).parse().fn

    def trip(counts: Counts) -> bool:
        try:
            return bool(evaluate(counts))
        except _EvalError:
            return False  # Dapr: "We cannot assume it is safe to trip if the eval returns an error."

    return trip
