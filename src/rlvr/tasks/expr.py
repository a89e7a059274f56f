"""A small, safe parser for the arithmetic the text tasks accept (never ``eval``/``exec``).

Grammar (whitespace ignored between tokens):
    expr   := term   (("+" | "-") term)*
    term   := factor (("*" | "/") factor)*
    factor := NUMBER | "(" expr ")"
NUMBER is a run of decimal digits. Values are exact ``Fraction``s; division by zero, any other
character, nesting deeper than ``MAX_DEPTH`` or input longer than ``MAX_CHARS`` raise ``ExprError``.
"""

from __future__ import annotations

from fractions import Fraction

MAX_CHARS = 200
MAX_DEPTH = 16
MAX_NUMBER_DIGITS = 9


class ExprError(ValueError):
    """The text is not an expression of the grammar above."""


def tokenize(text: str) -> list[str]:
    if len(text) > MAX_CHARS:
        raise ExprError(f"longer than {MAX_CHARS} characters")
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "0123456789":
            j = i
            while j < len(text) and text[j] in "0123456789":
                j += 1
            if j - i > MAX_NUMBER_DIGITS:
                raise ExprError(f"number with more than {MAX_NUMBER_DIGITS} digits")
            tokens.append(text[i:j])
            i = j
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        else:
            raise ExprError(f"unexpected character {ch!r}")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.numbers: list[int] = []

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ExprError("unexpected end of expression")
        self.pos += 1
        return token

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term(depth)
            value = value + right if op == "+" else value - right
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            right = self.factor(depth)
            if op == "/" and right == 0:
                raise ExprError("division by zero")
            value = value * right if op == "*" else value / right
        return value

    def factor(self, depth: int) -> Fraction:
        if depth > MAX_DEPTH:
            raise ExprError(f"nested deeper than {MAX_DEPTH}")
        token = self.take()
        if token == "(":
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise ExprError("expected ')'")
            return value
        if token.isdigit():
            self.numbers.append(int(token))
            return Fraction(int(token))
        raise ExprError(f"unexpected {token!r}")


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """text -> (exact value, the numbers it uses in order). Raises ExprError on anything else."""
    parser = _Parser(tokenize(text))
    if not parser.tokens:
        raise ExprError("empty expression")
    value = parser.expr(0)
    if parser.peek() is not None:
        raise ExprError(f"unexpected {parser.peek()!r}")
    return value, parser.numbers
