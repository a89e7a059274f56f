"""Reward functions are user code: call them so that no single response can kill a run.

Each call ``reward(prompt, response)`` that
  raises, returns a non-number (None, a string, a list, ...), returns NaN or +-inf, or runs longer
  than ``timeout`` seconds
gets ``fallback`` as its reward instead, and is counted (by kind: error, type, nonfinite, timeout,
crash). Once failures exceed ``max_failure_rate`` of all calls so far, ``stop_reason()`` says why and
the trainer stops the run with a checkpoint.

Two ways to call:
- ``workers=0``: in the training process. The timeout is a SIGALRM timer (main thread only), which
  interrupts Python code but not a long call inside a C extension.
- ``workers=W``: W worker processes (spawned, so the reward must be picklable: a module-level
  function, or a method of a picklable task). Calls run in parallel; a call past its timeout has its
  worker killed and replaced, so even a hung C extension cannot block the loop.
"""

from __future__ import annotations

import math
import multiprocessing
import numbers
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from multiprocessing.connection import Connection, wait
from typing import Any

from rlvr.errors import ConfigError
from rlvr.faults import FailureTally

RewardFn = Callable[[Any, Any], Any]
STARTUP_SECONDS = 120.0
KINDS = ("error", "type", "nonfinite", "timeout", "crash")


class RewardTimeout(BaseException):
    """Raised inside a reward call by the in-process timer; a BaseException so that a reward's own
    ``except Exception`` cannot swallow it."""


def check_value(value: Any) -> tuple[str, float | str]:
    """('ok', reward) for a finite real number, else (failure kind, description)."""
    if not isinstance(value, numbers.Real):
        return "type", f"returned {type(value).__name__} {value!r:.60}, not a number"
    reward = float(value)
    if not math.isfinite(reward):
        return "nonfinite", f"returned {reward}"
    return "ok", reward


def call_checked(fn: RewardFn, prompt: Any, response: Any) -> tuple[str, float | str]:
    try:
        value = fn(prompt, response)
    except RewardTimeout:
        raise
    except Exception as exc:  # user code: any exception becomes the fallback reward
        return "error", f"raised {type(exc).__name__}: {exc}"
    return check_value(value)


@contextmanager
def alarm(timeout: float | None) -> Iterator[None]:
    """Raise RewardTimeout in the body after ``timeout`` seconds (a SIGALRM timer, restored after);
    nothing without a timeout or off the main thread, where no timer can be set."""
    if timeout is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise RewardTimeout

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def call_with_alarm(fn: RewardFn, prompt: Any, response: Any, timeout: float | None) -> tuple[str, float | str]:
    """One call in this process, interrupted after ``timeout`` seconds when a timer can be set."""
    try:
        with alarm(timeout):
            return call_checked(fn, prompt, response)
    except RewardTimeout:
        return "timeout", f"took longer than {timeout:g}s"


# ----------------------------------------------------------------------------- worker processes


def worker_main(conn: Connection, call: Callable[..., tuple[str, Any]]) -> None:
    """Runs ``call(*args)`` per message (index, *args); ``call`` checks its user code's result itself
    and returns (kind, value): ``partial(call_checked, reward)`` here, a batch call for reward functions."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    conn.send("ready")  # timeouts count from here, not from the (slow) process start
    while True:
        message = conn.recv()
        if message is None:
            return
        index, *args = message
        conn.send((index, *call(*args)))


class Worker:
    """One spawned process running ``worker_main``; ready to take calls when the constructor returns."""

    def __init__(self, fn: Callable[..., tuple[str, Any]]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, fn), daemon=True)
        try:
            self.process.start()
        except Exception as exc:  # the function could not be pickled for the new process
            raise ConfigError(f"rewards.workers: the reward function cannot be sent to a worker process "
                              f"({type(exc).__name__}: {exc}); use a module-level function or rewards.workers 0") from None
        child.close()
        try:
            ready = self.conn.poll(STARTUP_SECONDS) and self.conn.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.process.kill()
            raise ConfigError(f"rewards.workers: a reward worker process failed to start "
                              f"(exit code {self.process.exitcode}); see the message above")
        self.job: tuple[int, float] | None = None  # (index, deadline) of the call it is running

    def stop(self, *, kill: bool = False) -> None:
        if kill or not self.process.is_alive():
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


class Pool:
    """W worker processes each running ``call``; ``map`` runs calls ``call(*item)`` in parallel and
    replaces workers that hang or die (their call: a timeout or a crash)."""

    def __init__(self, call: Callable[..., tuple[str, Any]], workers: int, timeout: float | None) -> None:
        self.fn = call
        self.timeout = timeout
        self.workers = [Worker(call) for _ in range(workers)]

    def map(self, items: Sequence[tuple[Any, ...]]) -> list[tuple[str, Any]]:
        results: list[tuple[str, Any] | None] = [None] * len(items)
        pending = deque(range(len(items)))
        while pending or any(w.job for w in self.workers):
            for worker in self.workers:
                if worker.job is None and pending:
                    index = pending.popleft()
                    worker.conn.send((index, *items[index]))
                    worker.job = (index, time.monotonic() + (self.timeout or math.inf))
            self._collect(results)
        return results  # type: ignore[return-value]

    def _collect(self, results: list[tuple[str, Any] | None]) -> None:
        busy = [w for w in self.workers if w.job is not None]
        deadline = min(w.job[1] for w in busy)  # type: ignore[index]
        ready = wait([w.conn for w in busy], timeout=max(0.0, min(deadline - time.monotonic(), 1.0)))
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            if worker.job is None:
                continue
            index, job_deadline = worker.job
            if worker.conn in ready:
                try:
                    got, kind, value = worker.conn.recv()
                    results[got] = (kind, value)
                    worker.job = None
                    continue
                except (EOFError, OSError):
                    worker.process.join(timeout=1.0)  # its pipe closed first: reap it to read the exit code
                    results[index] = ("crash", f"worker died (exit code {worker.process.exitcode})")
            elif now >= job_deadline:
                results[index] = ("timeout", f"took longer than {self.timeout:g}s")
            else:
                continue
            worker.stop(kill=True)
            self.workers[i] = Worker(self.fn)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()


# ----------------------------------------------------------------------------- the runner


class RewardRunner:
    """Scores (prompt, response) pairs with a user reward function, never letting one call fail the run."""

    def __init__(self, fn: RewardFn, *, fallback: float = 0.0, timeout: float | None = 10.0,
                 max_failure_rate: float = 0.1, workers: int = 0) -> None:
        self.fn = fn
        self.fallback = fallback
        self.timeout = timeout
        self.pool = Pool(partial(call_checked, fn), workers, timeout) if workers > 0 else None
        self.tally = FailureTally("reward", max_failure_rate)  # the run's calls and failures, by kind
        self.last_error = ""
        self.step_calls = 0
        self.step_failures: Counter[str] = Counter()

    def __call__(self, prompts: Sequence[Any], responses: Sequence[Any], *, counted: bool = True) -> list[float]:
        """One reward per (prompts[i], responses[i]); failed calls get the fallback."""
        items = list(zip(prompts, responses, strict=True))
        if self.pool is not None:
            outcomes = self.pool.map(items)
        else:
            outcomes = [call_with_alarm(self.fn, p, r, self.timeout) for p, r in items]
        rewards = []
        for kind, value in outcomes:
            if kind == "ok":
                rewards.append(float(value))
                continue
            rewards.append(self.fallback)
            self.last_error = f"{kind}: {value}"
            if counted:
                self.step_failures[kind] += 1
        if counted:
            self.step_calls += len(items)
        return rewards

    @property
    def source_weights(self) -> list[float]:
        """The weight of each reward source: one source here, the verifier, weight 1."""
        return [1.0]

    def scored(self, prompts: Sequence[Any], responses: Sequence[Any], *,
               counted: bool = True) -> tuple[list[float], list[list[float]]]:
        """The rewards, and each response's reward per source (one column here: the same reward)."""
        rewards = self(prompts, responses, counted=counted)
        return rewards, [[reward] for reward in rewards]

    def pop_metrics(self) -> dict[str, float]:
        """This step's failures (total and by kind) and the run's failure rate; starts a new step."""
        metrics = self.tally.add(self.step_calls, self.step_failures)
        self.step_calls, self.step_failures = 0, Counter()
        return metrics

    def failure_rate(self) -> float:
        return self.tally.rate()

    def stop_reason(self) -> str | None:
        """Why the run must stop (failures past ``max_failure_rate``), or None."""
        return self.tally.stop_reason("the reward function failed on {failed} of {calls} responses ({rate:.0%} > "
                                      "rewards.max_failure_rate {limit:g}: {kinds}); last failure: {last}",
                                      last=self.last_error)

    def state_dict(self) -> dict[str, Any]:
        return {**self.tally.state_dict(), "last_error": self.last_error}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tally.load_state_dict(state)
        self.last_error = state["last_error"]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
