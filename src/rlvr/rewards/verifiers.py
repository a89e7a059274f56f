"""Answer-extraction verifiers: the reward of a text response whose reference answer is a string.

A verifier is named by a spec string, read once by ``parse_verifier``::

    v = parse_verifier("tag:answer")
    v.extract("<think>47 + 38</think><answer> 85.0 </answer>")   # -> '85.0'
    v.score("<think>47 + 38</think><answer> 85.0 </answer>", "85")  # -> 1.0

Specs (each extracts one candidate answer from the text, None when there is none):
    exact          the whole text, stripped; compared by string equality after strip, nothing else
    last-number    the last number in the text (grammar below)
    gsm8k          the first number after the last ``####`` (the GSM8K reference layout)
    boxed          the content of the last complete ``\\boxed{...}`` or ``\\fbox{...}``, nested braces
                   matched, escaped braces (``\\{``) skipped; "last" = the one whose ``}`` comes last
                   (for nested boxes, the outer one); an unclosed box is ignored, so ``\\boxed{5``
                   alone gives None
    tag:NAME       the content of the last complete ``<NAME>...</NAME>`` (the last closing tag and the
                   last opening tag before it), stripped; an unclosed tag gives None; no attributes
    choice         a letter A-E, from (first rule that finds one; within a rule the last match wins)
                   1. the whole text is one letter, optionally ``(C)`` or ``C.``, any case;
                   2. a stated answer: ``answer is C``, ``Answer: C``, ``answer is: (C)``, ``**Answer:** C``;
                   3. a parenthesised letter ``(C)``;
                   4. a letter followed by ``.`` or ``)`` standing alone between spaces (``I pick C.``).
                   Outside rule 1 only capitals count ("the answer is a cat" holds no choice).
    regex:PATTERN  the first capture group of the last match of PATTERN (the whole match if PATTERN
                   has no group; None if group 1 did not take part); compiled when the spec is parsed
    math           symbolic equivalence by the math-verify package (``pip install 'rlvr[math]'``):
                   its extraction (boxed first, then LaTeX/expressions) and its ``verify``
A blank candidate counts as no candidate (None, score 0).

Comparison with the reference ``answer`` (``Verifier.score``; 1.0 on a match, else 0.0):
- ``exact``: ``candidate.strip() == answer.strip()``.
- ``choice``: the same letter, case-insensitive; the reference is read by the same rules ("(c)" is C).
- ``math``: math-verify's ``verify(parse(answer), parse(candidate))``, rounding floats to the number
  of decimals the tolerance asks for (1e-6 -> 6). Its own SIGALRM timeouts are off (they would
  cancel ``RewardRunner``'s timer): run it under ``RewardRunner``'s timeout.
- every other verifier: if both sides parse as numbers (``parse_number``) they match when
  ``|a - b| <= tolerance * max(1, |a|, |b|)`` (absolute below 1, relative above; exact rationals, so
  ``tolerance=0`` is exact equality); otherwise after text normalisation (strip, whitespace runs ->
  one space, one trailing ``.`` dropped) the strings must be equal, case-sensitive.

Number grammar (``last-number``, ``gsm8k`` and ``parse_number``):
- an optional sign ``-``, ``+`` or the unicode minus U+2212, then an optional ``$``;
- digits with an optional decimal part ``85.0``; thousands separators only when well formed
  (``1,000``, ``12,345,678``): ``1,2`` is the two numbers 1 and 2, ``3,14`` is 3 and 14;
- an optional exponent ``1e5``, ``2.5E-3`` (exponents beyond +-1000 are not numbers);
- or a fraction of two unsigned integers ``3/4`` (equal to 0.75; ``3/0`` is not a number);
- in ``parse_number`` only (a whole answer string): a trailing ``%`` is dropped (``50%`` equals 50,
  not 0.5) and so is a trailing sentence period.
In running text a number may not start inside a word or a dotted number: ``x2``, ``H2O``, ``step3``
and the ``2`` of ``v1.2`` hold no number, while a unit may follow (``85km`` is 85); a sign glued to a
word or digit is an operator, not a sign (``47-38`` is 47 and 38, ``x = -5`` is -5). Leading-dot
decimals (``.5``) are not read (``.5`` is 5). The extracted number is written canonically: ``-`` for
any minus, no ``+``, ``$`` or commas (``−$1,000.50`` -> ``-1000.50``).

A new verifier is an extractor registered with what ``parse_verifier`` reads from its metadata::

    @VERIFIERS.register("first-line", compare=same_answer)           # compare(candidate, answer, tol)
    def first_line(text: str) -> str | None: ...
    # argument=prepare (str -> value, ValueError if bad), usage="NAME:ARG": a spec with an argument,
    # passed first to the extractor; needs=check: called at parse time (ConfigError if unmet)

``format_reward`` (registered in ``FORMAT_REWARDS`` as ``think-answer``) scores the layout
``<think>...</think><answer>...</answer>`` alone, not the answer.
"""

from __future__ import annotations

import difflib
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import partial

from rlvr.errors import ConfigError
from rlvr.registry import Registry

__all__ = ["FORMAT_REWARDS", "VERIFIERS", "Verifier", "format_reward", "parse_number",
           "parse_verifier"]

Extractor = Callable[[str], str | None]
Compare = Callable[[str, str, float], bool]

VERIFIERS: Registry[Callable[..., str | None]] = Registry("verifier")
FORMAT_REWARDS: Registry[Callable[[str], float]] = Registry("format reward")

DEFAULT_TOLERANCE = 1e-6
MAX_EXPONENT = 1000  # 1e999999999 would build a billion-digit integer


@dataclass(frozen=True)
class Verifier:
    """A parsed spec: how to find the candidate answer in a text and how to compare it with the
    reference. Picklable (module-level functions and ``functools.partial``), so it can run in
    ``RewardRunner``'s worker processes."""

    spec: str
    extractor: Extractor
    compare: Compare
    tolerance: float = DEFAULT_TOLERANCE

    def extract(self, text: str) -> str | None:
        """The candidate answer in ``text``, None when there is none (or it is blank)."""
        candidate = self.extractor(text)
        return candidate if candidate else None

    def score(self, text: str, answer: str) -> float:
        """1.0 when the candidate in ``text`` matches the reference ``answer``, else 0.0."""
        candidate = self.extract(text)
        return float(candidate is not None and self.compare(candidate, answer, self.tolerance))


def parse_verifier(spec: str, *, tolerance: float = DEFAULT_TOLERANCE) -> Verifier:
    """The verifier a spec names (see the module docstring); a bad spec is a one-line ConfigError
    naming it, with the valid specs and a "did you mean" when one is close."""
    if not isinstance(spec, str):
        raise ConfigError(f"verifier spec must be a string, got {type(spec).__name__} {spec!r}")
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise ConfigError(f"verifier tolerance must be a finite number >= 0, got {tolerance!r}")
    kind, colon, argument = spec.partition(":")
    if kind not in VERIFIERS:
        raise ConfigError(_unknown_spec_message(spec, kind, argument))
    meta = VERIFIERS.meta(kind)
    extractor: Extractor = VERIFIERS.get(kind)
    prepare = meta.get("argument")
    if prepare is None and colon:
        raise ConfigError(f"verifier {spec!r}: {kind!r} takes no argument; valid: {_usages()}")
    if prepare is not None:
        if not argument:
            raise ConfigError(f"verifier {spec!r} needs an argument: {meta['usage']}")
        try:
            extractor = partial(extractor, prepare(argument))  # type: ignore[operator]
        except ValueError as e:
            raise ConfigError(f"verifier {spec!r}: {e}") from None
    needs = meta.get("needs")
    if needs is not None:
        needs()  # type: ignore[operator]
    return Verifier(spec, extractor, meta["compare"], float(tolerance))  # type: ignore[arg-type]


def _usages() -> str:
    return ", ".join(str(VERIFIERS.meta(name).get("usage", name)) for name in VERIFIERS.names())


def _unknown_spec_message(spec: str, kind: str, argument: str) -> str:
    msg = f"unknown verifier {spec!r}; valid: {_usages()}"
    close = difflib.get_close_matches(kind, VERIFIERS.names(), n=1)
    if close:
        meta = VERIFIERS.meta(close[0])
        takes_argument = meta.get("argument") is not None
        guess = f"{close[0]}:{argument}" if takes_argument and argument else meta.get("usage", close[0])
        msg += f" (did you mean {guess!r}?)"
    return msg


# -- numbers and text normalisation ------------------------------------------------------------------
_NUMBER = r"""
    (?P<sign>[-+\u2212])? \$?
    (?:
        (?P<fraction>[0-9]+/[0-9]+)(?![.,]?[0-9])                     # 3/4, not the 3/4 of 3/4.5
      | (?P<decimal>(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)      # 1,000 or 1000
                    (?:\.[0-9]+)?)                                    # 85.0
        (?:[eE](?P<exponent>[-+\u2212]?[0-9]+))?                      # 1e5
    )
"""
_NUMBER_IN_TEXT = re.compile(r"(?<!\w)(?<![0-9]\.)" + _NUMBER, re.VERBOSE)
_WHOLE_NUMBER = re.compile(_NUMBER + r"\s*%?", re.VERBOSE)


def _canonical(match: re.Match[str]) -> str:
    """The number as written, with '-' for any minus and no '+', '$' or thousands commas."""
    sign = "-" if match["sign"] in ("-", "\u2212") else ""
    if match["fraction"]:
        return sign + match["fraction"]
    exponent = match["exponent"]
    tail = "e" + exponent.replace("\u2212", "-") if exponent else ""
    return sign + match["decimal"].replace(",", "") + tail


def _value(canonical: str) -> Fraction | None:
    exponent = canonical.partition("e")[2]
    try:
        if exponent and abs(int(exponent)) > MAX_EXPONENT:
            return None
        return Fraction(canonical)
    except (ValueError, ZeroDivisionError):  # 3/0; more digits than int() converts
        return None


def normalise_text(text: str) -> str:
    """Strip, collapse whitespace runs to one space, drop one trailing period."""
    text = " ".join(text.split())
    return text[:-1].rstrip() if text.endswith(".") else text


def parse_number(text: str) -> Fraction | None:
    """The exact value of an answer string that is one number (grammar in the module docstring,
    trailing '%' and '.' allowed), else None: '85.0', '$1,000', '−5', '+3', '3/4', '50%'."""
    match = _WHOLE_NUMBER.fullmatch(normalise_text(text))
    return None if match is None else _value(_canonical(match))


def _numbers_close(a: Fraction, b: Fraction, tolerance: float) -> bool:
    return a == b or abs(a - b) <= tolerance * max(1, abs(a), abs(b))


# -- comparisons ---------------------------------------------------------------------------------
def same_text(candidate: str, answer: str, tolerance: float) -> bool:
    """``exact``: equal after strip, nothing more."""
    return candidate.strip() == answer.strip()


def same_answer(candidate: str, answer: str, tolerance: float) -> bool:
    """Numerically within tolerance when both parse as numbers, else equal normalised text."""
    a, b = parse_number(candidate), parse_number(answer)
    if a is not None and b is not None:
        return _numbers_close(a, b, tolerance)
    return normalise_text(candidate) == normalise_text(answer)


def same_choice(candidate: str, answer: str, tolerance: float) -> bool:
    """The same letter, case-insensitive; the reference is read by the ``choice`` rules."""
    reference = choice_letter(answer)
    return reference is not None and candidate == reference


def same_math(candidate: str, answer: str, tolerance: float) -> bool:
    """math-verify's symbolic equivalence, floats rounded to -log10(tolerance) decimals."""
    from math_verify import verify

    gold, target = _math_parse(answer), _math_parse(candidate)
    if not gold or not target:
        return False
    digits = 15 if tolerance == 0 else min(15, max(0, round(-math.log10(tolerance))))
    return bool(verify(gold, target, float_rounding=digits, timeout_seconds=None))


def _math_parse(text: str) -> list[object]:
    """math-verify's parse of an answer as inline LaTeX (bare, '1+x^2' would parse as 1), or as
    written when it holds its own '$' or the LaTeX reading finds nothing."""
    from math_verify import parse

    text = text.replace("\u2212", "-")
    inline = [] if "$" in text else parse(f"${text}$", parsing_timeout=None)
    return inline or parse(text, parsing_timeout=None)


def _require_math_verify() -> None:
    try:
        import math_verify  # noqa: F401
    except ImportError:
        raise ConfigError("verifier 'math' needs the math-verify package: "
                          "pip install 'rlvr[math]'") from None


# -- extractors -----------------------------------------------------------------------------------
@VERIFIERS.register("exact", compare=same_text)
def whole_text(text: str) -> str | None:
    """The whole text, stripped."""
    return text.strip()


@VERIFIERS.register("last-number", compare=same_answer)
def last_number(text: str) -> str | None:
    """The last number in the text, canonical ('−1,000' -> '-1000')."""
    last = deque(_NUMBER_IN_TEXT.finditer(text), maxlen=1)
    return _canonical(last[0]) if last else None


@VERIFIERS.register("gsm8k", compare=same_answer)
def gsm8k_answer(text: str) -> str | None:
    """The first number after the last '####', canonical."""
    at = text.rfind("####")
    match = _NUMBER_IN_TEXT.search(text, at + 4) if at >= 0 else None
    return None if match is None else _canonical(match)


_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")


@VERIFIERS.register("boxed", compare=same_answer)
def last_boxed(text: str) -> str | None:
    """The content of the complete \\boxed{...} (or \\fbox{...}) that closes last, stripped."""
    opened: list[int | None] = []  # per open brace: where a box's content starts, None if no box
    last = None
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            box = _BOX_OPEN.match(text, i)
            if box:
                opened.append(box.end())
                i = box.end()
                continue
            i += 2  # an escaped character (\{, \}, \\) is never a brace of ours
            continue
        if char == "{":
            opened.append(None)
        elif char == "}" and opened:
            start = opened.pop()
            if start is not None:
                last = text[start:i]
        i += 1
    return None if last is None else last.strip()


def tag_name(argument: str) -> str:
    """The NAME of ``tag:NAME``: an XML-like name."""
    if not re.fullmatch(r"[A-Za-z_][\w.-]*", argument):
        raise ValueError(f"tag name {argument!r} is not a name like 'answer'")
    return argument


@VERIFIERS.register("tag", compare=same_answer, argument=tag_name, usage="tag:NAME")
def last_tag(name: str, text: str) -> str | None:
    """The content of the last complete <name>...</name>, stripped."""
    close = text.rfind(f"</{name}>")
    start = text.rfind(f"<{name}>", 0, close) if close >= 0 else -1
    return None if start < 0 else text[start + len(name) + 2:close].strip()


def regex_pattern(argument: str) -> re.Pattern[str]:
    """The PATTERN of ``regex:PATTERN``, compiled."""
    try:
        return re.compile(argument)
    except re.error as e:
        raise ValueError(f"bad regular expression {argument!r}: {e}") from None


@VERIFIERS.register("regex", compare=same_answer, argument=regex_pattern, usage="regex:PATTERN")
def last_regex_match(pattern: re.Pattern[str], text: str) -> str | None:
    """Group 1 (or the whole match, if the pattern has no group) of the last match."""
    last = deque(pattern.finditer(text), maxlen=1)
    if not last:
        return None
    return last[0].group(1) if pattern.groups else last[0].group(0)


_CHOICE_ALONE = re.compile(r"\s*\(?([A-Ea-e])\)?\s*\.?\s*")
_CHOICE_RULES = (
    re.compile(r"(?i:\banswer)(?:\s+is\b\s*:?|\s*:)[\s*]*[(\[]?([A-E])(?![A-Za-z0-9])"),  # answer is C
    re.compile(r"\(([A-E])\)"),                                                         # (C)
    re.compile(r"(?<!\S)([A-E])[.)](?!\S)"),                                            # C. / C)
)


@VERIFIERS.register("choice", compare=same_choice)
def choice_letter(text: str) -> str | None:
    """A letter A-E, upper case: the text alone, else a stated answer, else (C), else C. (last wins)."""
    alone = _CHOICE_ALONE.fullmatch(text)
    if alone:
        return alone.group(1).upper()
    for rule in _CHOICE_RULES:
        found = rule.findall(text)
        if found:
            return found[-1]
    return None


@VERIFIERS.register("math", compare=same_math, needs=_require_math_verify)
def math_answer(text: str) -> str | None:
    """The answer math-verify extracts (boxed first, then LaTeX and plain expressions)."""
    from math_verify import parse

    parsed = parse(text.replace("\u2212", "-"), parsing_timeout=None)
    return str(parsed[-1]) if parsed else None


# -- format -----------------------------------------------------------------------------------------
_THINK_ANSWER = re.compile(r"\s*<think>.*</think>\s*<answer>(.*)</answer>\s*", re.DOTALL)
_LAYOUT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


@FORMAT_REWARDS.register("think-answer")
def format_reward(text: str) -> float:
    """1.0 when the text is exactly ``<think>...</think>`` then ``<answer>...</answer>``, else 0.0.

    Whitespace is allowed before, between and after the two blocks, nothing else; each of the four
    tags appears exactly once (no second answer, no tag nested in a block); the answer is not blank
    (the thinking may be). The layout of DeepSeek-R1-Zero's format reward (DeepSeek-AI, 2025).
    """
    if any(text.count(tag) != 1 for tag in _LAYOUT_TAGS):
        return 0.0
    layout = _THINK_ANSWER.fullmatch(text)
    return float(layout is not None and layout.group(1).strip() != "")
