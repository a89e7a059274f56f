"""``guess``: find a hidden number from higher/lower feedback (issue 18's first environment).

The env opens with the range ("1-100"); each policy turn is a guess (an integer, surrounding spaces
ignored). The env answers "higher" (the hidden number is higher than the guess), "lower", or
"invalid" (not an integer, or outside the range); the right guess ends the episode. Every turn
costs ``turn_cost``, the right one earns 1 on top: a return of ``1 - k * turn_cost`` for success on
turn k, ``-max_turns * turn_cost`` for none. ``show_range`` (an easier variant) appends the interval
still possible after the feedback so far: "higher 51-100".

Two scripted demonstrators play it (the SFT warm start, and the reference points of the docs):
- ``bisect`` guesses the midpoint ``(lo + hi) // 2`` of the interval still possible: at most
  ceil(log2(n + 1)) guesses on n numbers (7 on 1-100), 5.8 on average (``expected_bisect_guesses``);
- ``random`` guesses uniformly among the numbers still possible: 2 (1 + 1/n) H_n - 3 guesses on
  average (7.48 on 1-100; ``expected_random_guesses``, by dynamic programming over interval sizes,
  checked against that closed form), the mean depth of a node of a random binary search tree + 1.
  Guessing blindly can run out of turns, so the demonstrator only draws among the guesses after
  which ``max_turns`` still suffice (an interval of s numbers needs ceil(log2(s + 1)) turns); the
  DP takes the same constraint (``max_turns=``; 7.16 guesses on 1-100 in 10 turns), and with
  enough turns it never binds. Every demonstration therefore ends with the right guess within the
  env's turn limit, whenever ``max_turns >= ceil(log2(n + 1))`` (else no strategy can guarantee
  it, and both demonstrators bisect).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from rlvr.envs.base import Env, Step
from rlvr.envs.task import EnvTask
from rlvr.errors import ConfigError
from rlvr.options import opt
from rlvr.tasks.base import TASKS, Task, TaskConfig

HIGHER, LOWER, INVALID = "higher", "lower", "invalid"
DEMONSTRATORS = ("random", "bisect")
_INTEGER = re.compile(r"[0-9]{1,9}")


class GuessEnv(Env):
    """One episode of guessing ``hidden`` in ``[low, high]`` (0 <= low <= hidden <= high)."""

    def __init__(self, hidden: int, *, low: int = 1, high: int = 100, max_turns: int, turn_cost: float,
                 show_range: bool = False) -> None:
        if not 0 <= low <= hidden <= high:
            raise ValueError(f"guess: need 0 <= low <= hidden <= high, got low={low} hidden={hidden} high={high}")
        if max_turns < 1:
            raise ValueError(f"guess: max_turns must be >= 1, got {max_turns}")
        self.hidden, self.low, self.high = hidden, low, high
        self.max_turns, self.turn_cost, self.show_range = max_turns, turn_cost, show_range
        self.lo, self.hi = low, high  # the interval still possible after the feedback so far
        self.turns, self.found = 0, False

    def reset(self) -> str:
        return f"{self.low}-{self.high}"

    def step(self, action: str) -> Step:
        if self.found or self.turns >= self.max_turns:
            raise RuntimeError("guess: step after the episode ended")
        self.turns += 1
        guess = parse_guess(action, self.low, self.high)
        if guess == self.hidden:
            self.found = True
            return Step(None, 1.0 - self.turn_cost, True)
        if guess is None:
            feedback = INVALID
        elif guess < self.hidden:
            feedback, self.lo = HIGHER, max(self.lo, guess + 1)
        else:
            feedback, self.hi = LOWER, min(self.hi, guess - 1)
        if self.turns >= self.max_turns:
            return Step(None, -self.turn_cost, True)
        if self.show_range and guess is not None:
            feedback = f"{feedback} {self.lo}-{self.hi}"
        return Step(feedback, -self.turn_cost, False)

    def metrics(self) -> dict[str, float]:
        return {"success": float(self.found), "guesses": float(self.turns)}


def parse_guess(action: str, low: int, high: int) -> int | None:
    """The guessed integer, or None when the turn is not a decimal integer in ``[low, high]``."""
    text = action.strip()
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def read_feedback(observation: str, guess: int, lo: int, hi: int) -> tuple[int, int]:
    """The interval still possible after ``guess`` got ``observation`` (what a demonstrator knows)."""
    word = observation.split()[0]
    if word == HIGHER:
        return guess + 1, hi
    if word == LOWER:
        return lo, guess - 1
    raise ValueError(f"guess: unexpected feedback {observation!r} to a guess in range")


# ---------------------------------------------------------------- demonstrators
def turns_needed(size: int) -> int:
    """ceil(log2(size + 1)): the turns that always suffice to find a number among ``size`` (bisection)."""
    return size.bit_length()


def choose_guess(lo: int, hi: int, turns_left: int, demonstrator: str, rng: np.random.Generator) -> int:
    """The demonstrator's next guess in ``[lo, hi]`` with ``turns_left`` turns (this one included).

    ``bisect``: the midpoint. ``random``: uniform among the guesses after which both sides fit in
    the turns then left (each side at most 2^(turns_left - 1) - 1 numbers); all of ``[lo, hi]``
    when the turns are plenty; the midpoint when none fits."""
    middle = (lo + hi) // 2
    if demonstrator == "bisect":
        return middle
    side = 2 ** (turns_left - 1) - 1 if turns_left >= 1 else 0
    first, last = max(lo, hi - side), min(hi, lo + side)
    if first > last:
        return middle
    return int(rng.integers(first, last + 1))


def play_demonstrator(env: GuessEnv, demonstrator: str, rng: np.random.Generator) -> list[str]:
    """Plays ``env`` (fresh) with a demonstrator that reads only the env's feedback; its turns."""
    env.reset()
    lo, hi, turns = env.low, env.high, []
    for turn in range(env.max_turns):
        guess = choose_guess(lo, hi, env.max_turns - turn, demonstrator, rng)
        turns.append(str(guess))
        step = env.step(turns[-1])
        if step.done:
            break
        lo, hi = read_feedback(step.observation or "", guess, lo, hi)
    return turns


# ---------------------------------------------------------------- expected guesses (exact)
def _guess_sums(n: int, max_turns: int | None) -> tuple[Fraction, Fraction]:
    """(S1, S2): the sums over the n hidden numbers of E[guesses] and E[guesses^2] for the random
    demonstrator (``choose_guess``) on an interval of n numbers with ``max_turns`` (None: no limit).

    Guessing position k of s splits the rest into k - 1 and s - k numbers, each a smaller instance
    with one turn less: S1(s) = s + mean_k [S1(k-1) + S1(s-k)] and, as (1 + X)^2 = 1 + 2X + X^2,
    S2(s) = s + mean_k [2 S1(k-1) + S2(k-1) + 2 S1(s-k) + S2(s-k)], k over the allowed guesses
    (all of 1..s when the turns left are at least s: each guess removes one number at least)."""
    if n < 1:
        raise ValueError(f"guess: n must be >= 1, got {n}")
    if max_turns is not None and turns_needed(n) > max_turns:
        raise ValueError(f"guess: {max_turns} turns cannot guarantee finding one of {n} numbers")
    if max_turns is None or max_turns >= n:  # never binding: every guess allowed, mean_k = (2/s) sum_{j<s}
        s1, s2 = [Fraction(0)], [Fraction(0)]
        p1, p2 = Fraction(0), Fraction(0)  # sum_{j<s} S1(j), sum_{j<s} S2(j)
        for size in range(1, n + 1):
            s1.append(size + 2 * p1 / size)
            s2.append(size + 2 * (2 * p1 + p2) / size)
            p1, p2 = p1 + s1[size], p2 + s2[size]
        return s1[n], s2[n]
    s1 = [Fraction(0)] * (n + 1)  # with 0 turns left: only the empty interval
    s2 = [Fraction(0)] * (n + 1)
    for left in range(1, max_turns + 1):
        # prefix sums over the previous level: sum_{j<m} S(j), so each mean is O(1)
        p1, p2 = [Fraction(0)], [Fraction(0)]
        for j in range(n + 1):
            p1.append(p1[-1] + s1[j])
            p2.append(p2[-1] + s2[j])
        side = 2 ** (left - 1) - 1
        new1, new2 = [Fraction(0)] * (n + 1), [Fraction(0)] * (n + 1)
        for size in range(1, min(n, 2 ** left - 1) + 1):
            first, last = max(1, size - side), min(size, 1 + side)  # allowed positions k
            # k - 1 runs over first-1..last-1, and size - k over size-last..size-first
            t1 = p1[last] - p1[first - 1] + p1[size - first + 1] - p1[size - last]
            t2 = p2[last] - p2[first - 1] + p2[size - first + 1] - p2[size - last]
            count = last - first + 1
            new1[size] = size + t1 / count
            new2[size] = size + (2 * t1 + t2) / count
        s1, s2 = new1, new2
    return s1[n], s2[n]


def expected_random_guesses(n: int, *, max_turns: int | None = None) -> float:
    """Mean guesses of the random demonstrator over a hidden number uniform among n (exact DP)."""
    return float(_guess_sums(n, max_turns)[0] / n)


def random_guesses_variance(n: int, *, max_turns: int | None = None) -> float:
    """Variance of the random demonstrator's guesses over a hidden number uniform among n (exact DP)."""
    s1, s2 = _guess_sums(n, max_turns)
    return float(s2 / n - (s1 / n) ** 2)


def random_guesses_closed_form(n: int) -> float:
    """2 (1 + 1/n) H_n - 3: the mean depth + 1 of a node in a random binary search tree of n keys."""
    harmonic = sum(Fraction(1, k) for k in range(1, n + 1))
    return float(2 * (1 + Fraction(1, n)) * harmonic - 3)


def bisect_total_guesses(n: int) -> int:
    """Guesses of bisection summed over the n hidden numbers: D(s) = s + D((s-1)//2) + D(s-1-(s-1)//2)."""
    if n <= 0:
        return 0
    left = (n - 1) // 2
    return n + bisect_total_guesses(left) + bisect_total_guesses(n - 1 - left)


def expected_bisect_guesses(n: int) -> float:
    """Mean guesses of bisection over a hidden number uniform among n (5.8 for n = 100)."""
    if n < 1:
        raise ValueError(f"guess: n must be >= 1, got {n}")
    return bisect_total_guesses(n) / n


# ---------------------------------------------------------------- the task
class GuessTask(EnvTask):
    """Rows are hidden numbers (as text); each episode is a ``GuessEnv`` on one."""

    name = "guess"

    def __init__(self, *, low: int, high: int, max_turns: int, turn_cost: float, show_range: bool,
                 demonstrator: str, **kwargs: Any) -> None:
        if demonstrator not in DEMONSTRATORS:
            raise ConfigError(f"task.demonstrator: {demonstrator!r} is not one of {', '.join(DEMONSTRATORS)}")
        kwargs.setdefault("max_new_tokens", len(str(high)) + 1)  # the widest guess and <eos>: 4 on 1-100
        super().__init__(**kwargs)
        self.low, self.high, self.max_turns = low, high, max_turns
        self.turn_cost, self.show_range, self.demonstrator = turn_cost, show_range, demonstrator

    def random_prompt(self, rng: np.random.Generator) -> str:
        return str(int(rng.integers(self.low, self.high + 1)))

    def solution(self, prompt: str) -> str:
        return prompt

    def make_env(self, prompt: str) -> GuessEnv:
        return GuessEnv(int(prompt), low=self.low, high=self.high, max_turns=self.max_turns,
                        turn_cost=self.turn_cost, show_range=self.show_range)

    def demonstration(self, prompt: str, rng: np.random.Generator) -> list[str]:
        return play_demonstrator(self.make_env(prompt), self.demonstrator, rng)

    def alphabet_texts(self) -> list[str]:
        # turns, observations, and the characters prompt templates join them with ("{prompt}:", "> ")
        return ["0123456789 -:>", f"{HIGHER} {LOWER} {INVALID}"]


@dataclass
class GuessConfig(TaskConfig):
    low: int = opt(1, "smallest hidden number", ge=0)
    high: int = opt(100, "largest hidden number", ge=0)
    max_turns: int = opt(10, "guesses per episode (the env's own limit; env.max_turns may cut it first)", ge=1)
    turn_cost: float = opt(0.02, "reward subtracted on every turn (success earns 1 on top)", ge=0.0)
    show_range: bool = opt(False, "the feedback also states the interval still possible ('higher 51-100')")
    demonstrator: str = opt("random", "the SFT demonstrator: random (uniform among the numbers still possible) "
                            "or bisect (the midpoint)", choices=list(DEMONSTRATORS))

    def check(self) -> None:
        if self.high <= self.low:
            raise ConfigError(f"task.high: {self.high} must be above task.low {self.low}")


@TASKS.register("guess", config=GuessConfig)
def build_guess(cfg: GuessConfig) -> Task:
    return GuessTask(low=cfg.low, high=cfg.high, max_turns=cfg.max_turns, turn_cost=cfg.turn_cost,
                     show_range=cfg.show_range, demonstrator=cfg.demonstrator, **cfg.split_args())
