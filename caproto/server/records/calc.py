"""The calc record's expression language (the common subset of epics-base postfix.c).

Invariants:
- Only the grammar below is accepted; nothing is handed to Python's eval.
- Everything is computed in floating point, as the calc record does: a
  comparison or logical operator gives 1.0 or 0.0, and x/0 gives +-inf or
  NaN instead of failing.
- A malformed expression raises CaprotoValueError naming the expression and
  the position of the problem.

Grammar (loosest first): ``c ? a : b``; ``||`` ``OR``; ``&&`` ``AND``;
``|`` ``XOR``; ``&``; ``= == # !=``; ``< <= > >=``; ``<< >>``; ``+ -``;
``* / %``; ``^ **`` (right-assoc); unary ``- + ! ~ NOT``; atoms: numbers,
A..L, PI, D2R, R2D, (expr), and ABS SQRT MIN MAX SIN COS TAN ASIN ACOS ATAN
EXP LN LOG LOGE FLOOR CEIL NINT (MIN/MAX take any number of arguments).
"""
import math
import re

from ..._errors import CaprotoValueError

__all__ = ("evaluate",)

_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)"
                    r"|([A-Za-z_][A-Za-z0-9_]*)"
                    r"|(\*\*|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%^()?:,<>=#!~&|]))")


def _div(a, b):
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
    return a / b


def _nint(x):
    return float(math.floor(x + 0.5)) if x >= 0 else float(math.ceil(x - 0.5))


_FUNCTIONS = {
    "ABS": abs, "SQRT": math.sqrt, "SIN": math.sin, "COS": math.cos,
    "TAN": math.tan, "ASIN": math.asin, "ACOS": math.acos, "ATAN": math.atan,
    "EXP": math.exp, "LN": math.log, "LOGE": math.log, "LOG": math.log10,
    "FLOOR": math.floor, "CEIL": math.ceil, "NINT": _nint, "MIN": min, "MAX": max,
}
_CONSTANTS = {"PI": math.pi, "D2R": math.pi / 180, "R2D": 180 / math.pi}
_BINARY = [   # loosest first
    {"||": lambda a, b: float(bool(a) or bool(b)),
     "OR": lambda a, b: float(bool(a) or bool(b))},
    {"&&": lambda a, b: float(bool(a) and bool(b)),
     "AND": lambda a, b: float(bool(a) and bool(b))},
    {"|": lambda a, b: float(int(a) | int(b)), "XOR": lambda a, b: float(int(a) ^ int(b))},
    {"&": lambda a, b: float(int(a) & int(b))},
    {"=": lambda a, b: float(a == b), "==": lambda a, b: float(a == b),
     "#": lambda a, b: float(a != b), "!=": lambda a, b: float(a != b)},
    {"<": lambda a, b: float(a < b), "<=": lambda a, b: float(a <= b),
     ">": lambda a, b: float(a > b), ">=": lambda a, b: float(a >= b)},
    {"<<": lambda a, b: float(int(a) << int(b)), ">>": lambda a, b: float(int(a) >> int(b))},
    {"+": lambda a, b: a + b, "-": lambda a, b: a - b},
    {"*": lambda a, b: a * b, "/": _div,
     "%": lambda a, b: math.nan if b == 0 else math.fmod(a, b)},
]


class _Parser:
    def __init__(self, text, inputs):
        self.text, self.inputs = text, inputs
        self.tokens, position = [], 0
        stripped = text.rstrip()
        while position < len(stripped):
            match = _TOKEN.match(stripped, position)
            if match is None:
                self.fail(position, "unexpected character")
            number, name, op = match.groups()
            self.tokens.append((match.start(match.lastindex),
                                float(number) if number is not None
                                else (name.upper() if name else op),
                                number is not None))
            position = match.end()
        self.index = 0

    def fail(self, position, why):
        raise CaprotoValueError(f"calc expression {self.text!r}: {why} at "
                                f"character {position + 1}")

    def peek(self):
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def take(self, expected=None):
        if self.index >= len(self.tokens):
            self.fail(len(self.text), "unexpected end"
                      + (f" (expected {expected!r})" if expected else ""))
        position, token, _ = self.tokens[self.index]
        if expected is not None and token != expected:
            self.fail(position, f"expected {expected!r}, found {token!r}")
        self.index += 1
        return self.tokens[self.index - 1]

    def parse(self):
        if not self.tokens:
            self.fail(0, "empty expression")
        value = self.ternary()
        if self.index < len(self.tokens):
            self.fail(self.tokens[self.index][0], f"unexpected {self.peek()!r}")
        return float(value)

    def ternary(self):
        condition = self.binary(0)
        if self.peek() != "?":
            return condition
        self.take("?")
        if_true = self.ternary()
        self.take(":")
        if_false = self.ternary()
        return if_true if condition else if_false

    def binary(self, level):
        if level == len(_BINARY):
            return self.power()
        left = self.binary(level + 1)
        while self.peek() in _BINARY[level]:
            _, op, _ = self.take()
            left = _BINARY[level][op](left, self.binary(level + 1))
        return left

    def power(self):
        base = self.unary()
        if self.peek() in ("^", "**"):
            self.take()
            exponent = self.power()
            try:
                return math.pow(base, exponent)
            except (ValueError, OverflowError):
                return math.nan
        return base

    def unary(self):
        token = self.peek()
        if token in ("-", "+", "!", "~", "NOT"):
            self.take()
            value = self.unary()
            return {"-": -value, "+": value, "!": float(not value),
                    "NOT": float(not value), "~": float(~int(value))}[token]
        return self.atom()

    def atom(self):
        position, token, is_number = self.take()
        if is_number:
            return token
        if token == "(":
            value = self.ternary()
            self.take(")")
            return value
        if token in self.inputs:
            return float(self.inputs[token])
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        if token in _FUNCTIONS:
            self.take("(")
            args = [self.ternary()]
            while self.peek() == ",":
                self.take(",")
                args.append(self.ternary())
            self.take(")")
            try:
                return float(_FUNCTIONS[token](*args))
            except (ValueError, OverflowError):
                return math.nan
            except TypeError:
                self.fail(position, f"{token} takes one argument, not {len(args)}")
        self.fail(position, f"unknown name {token!r}")


def evaluate(expression, inputs):
    """The value of calc `expression` with `inputs` ({'A': 1.0, ...}, missing = 0)."""
    names = {name: inputs.get(name, 0.0) for name in "ABCDEFGHIJKL"}
    return _Parser(str(expression), names).parse()
