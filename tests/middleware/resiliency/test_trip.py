"""Trip expressions: what Dapr users write compiles and means what CEL says it means."""

from __future__ import annotations

import random
from dataclasses import dataclass

import celpy
import celpy.evaluation
import pytest
from celpy import celtypes

from outrig.middleware.resiliency import TRIP_VARIABLES, Counts, TripError, compile_trip


def counts(**values: int) -> Counts:
    return Counts(**values)


def test_the_dapr_default_trips_after_more_than_five_consecutive_failures() -> None:
    trip = compile_trip("consecutiveFailures > 5")
    assert not trip(counts(consecutive_failures=5))
    assert trip(counts(consecutive_failures=6))


@pytest.mark.parametrize(
    ("expression", "values", "expected"),
    [
        ("requests > 10 && totalFailures * 2 > requests", {"requests": 11, "total_failures": 6}, True),
        ("requests > 10 && totalFailures * 2 > requests", {"requests": 11, "total_failures": 5}, False),
        ("requests > 10 && totalFailures * 2 > requests", {"requests": 10, "total_failures": 9}, False),
        ("consecutiveFailures >= 3 || totalFailures > 100", {"total_failures": 101}, True),
        ("consecutiveSuccesses == 0 && totalSuccesses != 1", {}, True),
        ("!(consecutiveSuccesses > 0)", {"consecutive_successes": 1}, False),
        ("requests - totalSuccesses <= 2", {"requests": 9, "total_successes": 7}, True),
        ("requests % 2 == 1 && requests / 2 == 4", {"requests": 9}, True),
        ("true", {}, True),
        ("false || requests < 1", {}, True),
    ],
)
def test_expressions_read_the_counts(expression: str, values: dict[str, int], expected: bool) -> None:
    assert compile_trip(expression)(counts(**values)) is expected


@pytest.mark.parametrize(
    "expression",
    [
        "true || false && false",  # && binds tighter than ||: true || (false && false)
        "1 + 2 * 3 == 7",  # * before +
        "(1 + 2) * 3 == 9",
        "10 - 4 - 3 == 3",  # left-associative
        "24 / 4 / 2 == 3",
        "!false && true",  # ! binds to its operand only
        "!(false && true)",
        "- 3 + 5 == 2",  # unary minus binds tighter than +
        "--3 == 3",
        "!!true",
        "-7 / 2 == -3",  # CEL truncates toward zero
        "-7 % 2 == -1",
        "7 % -2 == 1",
        "1 < 2 == (3 < 4)",  # relations are left-associative: (1 < 2) == (3 < 4)
        "1 < 2 == true",
        "true != false",
    ],
)
def test_precedence_and_associativity_follow_cel(expression: str) -> None:
    assert compile_trip(expression)(Counts()) is True
    assert _cel(expression, Counts()) is True  # the oracle agrees the expression is true


def test_an_evaluation_error_does_not_trip_unless_the_other_side_decides() -> None:
    no_requests = counts(consecutive_failures=6)
    assert not compile_trip("totalFailures / requests > 0")(no_requests)  # division by zero: no trip
    assert compile_trip("totalFailures / requests > 0 || consecutiveFailures > 5")(no_requests)
    assert compile_trip("consecutiveFailures > 5 || totalFailures / requests > 0")(no_requests)
    assert not compile_trip("consecutiveFailures > 50 && totalFailures / requests > 0")(no_requests)
    assert not compile_trip("totalFailures / requests > 0 && consecutiveFailures > 50")(no_requests)
    assert not compile_trip("totalFailures / requests > 0 && consecutiveFailures > 5")(no_requests)
    assert not compile_trip("requests % totalFailures == 0")(no_requests)
    assert not compile_trip("requests + 9223372036854775807 > 0")(counts(requests=1))  # int64 overflow


@pytest.mark.parametrize(
    ("expression", "column", "reason"),
    [
        (
            "consecutiveFailure > 5",
            1,
            "unknown variable 'consecutiveFailure'; did you mean 'consecutiveFailures'? known: "
            "consecutiveFailures, consecutiveSuccesses, requests, totalFailures, totalSuccesses",
        ),
        ("requests > 5 && errors > 1", 17, "unknown variable 'errors'; known: consecutiveFailures,"),
        ("requests > 5 and true", 14, "expected an operator or the end, found 'and': write '&&'"),
        ("requests = 5", 10, "unexpected character '='; did you mean '=='?"),
        ("requests > 1 & true", 14, "unexpected character '&'; did you mean '&&'?"),
        ("requests > 1 ? true : false", 14, "unexpected character '?'"),
        ("requests > 0.5", 12, "'0.5': counts are whole numbers: compare ratios by multiplying"),
        ("requests > 5s", 12, "'5s': a number cannot be followed by letters"),
        ("requests >", 11, "expected a number, a variable or '(', found the end"),
        ("", 1, "expected a number, a variable or '(', found the end"),
        ("(requests > 1", 14, "expected ')' to close the '(' at column 1, found the end"),
        ("requests > 1)", 13, "expected an operator or the end, found ')'"),
        ("requests 5", 10, "expected an operator or the end, found '5'"),
        ("requests", 1, "the expression must be true or false, e.g. 'consecutiveFailures > 5'"),
        ("requests + 1", 1, "the expression must be true or false"),
        ("true && requests", 9, "'&&' (column 6) needs true/false on its right, found a number"),
        ("!requests", 2, "'!' (column 1) needs true/false on its right, found a number"),
        ("requests > 1 > 0", 1, "'>' (column 14) needs a number on its left, found true/false"),
        ("requests == true", 13, "'==' (column 10) needs a number on its right, found true/false"),
        ("-true", 2, "'-' (column 1) needs a number on its right, found true/false"),
        ("requests > 99999999999999999999", 12, "99999999999999999999 is too large for a 64-bit integer"),
    ],
)
def test_errors_name_the_column_and_what_was_expected(expression: str, column: int, reason: str) -> None:
    with pytest.raises(TripError) as raised:
        compile_trip(expression)
    assert raised.value.column == column
    assert raised.value.reason.startswith(reason)
    assert str(raised.value).startswith(f"trip expression {expression!r}, column {column}: ")


def test_nothing_is_evaluated_as_python() -> None:
    for expression in ("__import__('os')", "requests.__class__", "[requests]", "requests if true else 1"):
        with pytest.raises(TripError):
            compile_trip(expression)


# An oracle: random well-typed expressions, printed with only the parentheses precedence
# needs (so precedence and associativity are exercised), must evaluate as cel-python says.


@dataclass(frozen=True)
class _Expr:
    text: str
    level: int  # 1 ||, 2 &&, 3 relation, 4 + -, 5 * / %, 6 unary, 7 atom


def _wrap(expr: _Expr, level: int) -> str:
    return expr.text if expr.level >= level else f"({expr.text})"


def _binary(left: _Expr, op: str, right: _Expr, level: int) -> _Expr:
    return _Expr(f"{_wrap(left, level)} {op} {_wrap(right, level + 1)}", level)


def _int_expr(rng: random.Random, depth: int) -> _Expr:
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.6:
            return _Expr(rng.choice(sorted(TRIP_VARIABLES)), 7)
        return _Expr(str(rng.randint(0, 12)), 7)
    kind = rng.random()
    if kind < 0.15:
        return _Expr(f"-{_wrap(_int_expr(rng, depth - 1), 6)}", 6)
    op = rng.choice(["+", "-", "*", "/", "%"])
    level = 4 if op in "+-" else 5
    return _binary(_int_expr(rng, depth - 1), op, _int_expr(rng, depth - 1), level)


def _bool_expr(rng: random.Random, depth: int) -> _Expr:
    kind = rng.random()
    if depth == 0 or kind < 0.35:
        op = rng.choice(["<", "<=", ">", ">=", "==", "!="])
        return _binary(_int_expr(rng, max(depth - 1, 0)), op, _int_expr(rng, max(depth - 1, 0)), 3)
    if kind < 0.45:
        return _Expr(f"!{_wrap(_bool_expr(rng, depth - 1), 6)}", 6)
    if kind < 0.5:
        return _Expr(rng.choice(["true", "false"]), 7)
    if kind < 0.6:
        op = rng.choice(["==", "!="])
        return _binary(_bool_expr(rng, depth - 1), op, _bool_expr(rng, depth - 1), 3)
    op, level = rng.choice([("&&", 2), ("||", 1)])
    return _binary(_bool_expr(rng, depth - 1), op, _bool_expr(rng, depth - 1), level)


_CEL = celpy.Environment()


def _cel(expression: str, values: Counts) -> bool:
    return _cel_outcome(_CEL.program(_CEL.compile(expression)), values) is True


def _cel_outcome(program: celpy.Runner, values: Counts) -> bool | None:
    """True or False as cel-python evaluates it; None when the evaluation fails."""
    activation = {name: celtypes.IntType(getattr(values, field)) for name, field in TRIP_VARIABLES.items()}
    try:
        result = program.evaluate(activation)
    except celpy.evaluation.CELEvalError:
        return None
    assert isinstance(result, celtypes.BoolType)
    return bool(result)


def test_random_expressions_evaluate_as_cel_does() -> None:
    rng = random.Random(20240917)
    checked = tripped = errors = 0
    for _ in range(400):
        expression = _bool_expr(rng, 4).text
        trip = compile_trip(expression)
        program = _CEL.program(_CEL.compile(expression))
        for _ in range(5):
            values = Counts(*(rng.randint(0, 6) for _ in range(5)))
            outcome = _cel_outcome(program, values)
            assert trip(values) is (outcome is True), f"{expression} with {values}"  # an error: no trip
            checked += 1
            tripped += outcome is True
            errors += outcome is None
    # Not vacuous: both outcomes, and evaluation errors (divisions by zero), were exercised.
    assert checked == 2000
    assert 200 < tripped < 1800
    print(f"{checked} evaluations: {tripped} true, {errors} evaluation errors")
    assert errors > 20
