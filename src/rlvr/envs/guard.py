"""Envs are user code: play them so that no single episode can kill a batch or a run.

An env call (the factory and ``reset``, ``step``, ``metrics``, ``close``) that
  raises, returns garbage (a non-str first observation; a step answer that is not a ``Step`` or a
  3-tuple (observation, reward, done), or whose observation is not a str or None, whose reward is
  not a finite real number (a bool is not one), whose done is not a bool, or whose observation is
  None with done False), or runs longer than ``timeout`` seconds
ends its episode: the episode is dead (never called again), the caller gives it ``fallback_reward``
as its return, and the answer is an ``EnvFault`` of the kind of its first fault (error, type,
nonfinite, timeout, crash: rlvr.rewards.runner's vocabulary), kept in ``faults`` for the batch. A
fault in ``metrics`` or ``close``, once the episode is over, only loses its metrics ({}) and keeps
its return; it is kept in ``faults`` the same way. The runner counts nothing across batches: the
trainer counts faulted episodes from the rollouts (rlvr.multiturn.FaultCount: each episode's
``fault``, which the sampler takes from the answers of ``start`` and ``step``, and from ``faults``
after ``finish``), whatever process played them.

Two ways to play, as for reward functions (rlvr.rewards.runner, whose timer and worker pool run here):
- ``workers=0``: in the training process, one call after another. The timeout is a SIGALRM timer
  (main thread only; none elsewhere), which interrupts Python code but not a long call in C.
- ``workers=W``: the envs live in W spawned worker processes, episode i's in worker i % W (so the
  factory must be picklable: a module-level function or class). The steps of episodes in different
  workers run in parallel. A call past its timeout has its worker killed and replaced, and a worker
  that dies (os._exit, a segfault) is replaced too: the episode whose call it was faults with
  "timeout" or "crash", and every other episode whose env lived in that worker is lost with it
  ("crash"). A lost episode that was still live is answered by the call that lost it (``start``,
  ``step``), or, when ``finish`` lost it, by the next ``step``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from multiprocessing.reduction import ForkingPickler
from typing import Any

from rlvr.envs.base import EnvFactory, Step
from rlvr.errors import ConfigError
from rlvr.rewards.runner import KINDS, Pool, RewardTimeout, alarm, check_value

ENV_KINDS = KINDS
OPS = {"start": "factory or reset", "step": "step", "metrics": "metrics", "close": "close"}  # op -> what ran
NEW, LIVE, DONE, FAULTED, FINISHED, CLOSING = "new", "live", "done", "faulted", "finished", "closing"


@dataclass(frozen=True)
class EnvFault:
    """Why an episode's env was given up: its kind (one of ``ENV_KINDS``) and one line of detail."""

    kind: str    # error | type | nonfinite | timeout | crash
    detail: str  # e.g. "step raised ValueError: boom"


def describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}"


def attempt(what: str, fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """('ok', fn(*args)), or ('error', one line) when the user code raises (sys.exit included);
    the in-process timer's RewardTimeout is a BaseException and goes through."""
    try:
        return "ok", fn(*args)
    except (Exception, SystemExit) as exc:
        text = " ".join(str(exc).split())[:200]
        return "error", f"{what} raised {type(exc).__name__}: {text}"


def check_step(value: Any) -> tuple[str, Any]:
    """('ok', Step with a float reward) for a valid answer to ``step``, else (kind, why)."""
    if isinstance(value, tuple) and len(value) == 3:
        value = Step(*value)
    if not isinstance(value, Step):
        return "type", f"step returned {describe(value)}, not a Step"
    observation, reward, done = value.observation, value.reward, value.done
    if observation is not None and not isinstance(observation, str):
        return "type", f"step returned observation {describe(observation)}, not a str or None"
    if not isinstance(done, bool):
        return "type", f"step returned done {describe(done)}, not a bool"
    if observation is None and not done:
        return "type", "step returned observation None with done False"
    kind, number = ("type", None) if isinstance(reward, bool) else check_value(reward)
    if kind == "type":
        return kind, f"step returned reward {describe(reward)}, not a real number"
    if kind == "nonfinite":
        return kind, f"step returned reward {float(reward)}"
    return "ok", Step(observation, float(number), done)


def check_metrics(value: Any) -> tuple[str, Any]:
    """('ok', {str: float}) for valid ``metrics`` (finite reals; bools count as 0/1), else (kind, why)."""
    if not isinstance(value, Mapping):
        return "type", f"metrics returned {describe(value)}, not a dict"
    out: dict[str, float] = {}
    for key, number in value.items():
        kind, checked = check_value(number) if isinstance(key, str) else ("type", f"key {describe(key)}")
        if kind != "ok":
            return kind, f"metrics[{key!r:.40}] {checked}"
        out[key] = float(checked)
    return "ok", out


class EnvHost:
    """The envs of one process by episode index, and the guarded calls on them. It lives in each
    worker process (workers > 0) or in the runner itself (workers = 0); the parent never calls the
    envs of a worker's host."""

    def __init__(self, factory: EnvFactory) -> None:
        self.factory = factory
        self.envs: dict[int, Any] = {}

    def __call__(self, op: str, index: int, arg: Any) -> tuple[str, Any]:
        kind, value = getattr(self, op)(index, arg)
        if kind != "ok" and op in ("start", "step"):
            self.envs.pop(index, None)  # a faulted episode is dead: never called again
        return kind, value

    def start(self, index: int, row: Any) -> tuple[str, Any]:
        kind, env = attempt("factory", self.factory, row)
        if kind != "ok":
            return kind, env
        self.envs[index] = env
        kind, first = attempt("reset", env.reset)
        if kind == "ok" and not isinstance(first, str):
            return "type", f"reset returned {describe(first)}, not a str"
        return kind, first

    def step(self, index: int, action: str) -> tuple[str, Any]:
        if index not in self.envs:
            return "crash", "step: the env is gone (its worker process was replaced)"
        kind, value = attempt("step", self.envs[index].step, action)
        return check_step(value) if kind == "ok" else (kind, value)

    def metrics(self, index: int, _: Any) -> tuple[str, Any]:
        if index not in self.envs:
            return "crash", "metrics: the env is gone (its worker process was replaced)"
        kind, value = attempt("metrics", self.envs[index].metrics)
        return check_metrics(value) if kind == "ok" else (kind, value)

    def close(self, index: int, _: Any) -> tuple[str, Any]:
        env = self.envs.pop(index, None)
        return attempt("close", env.close) if env is not None else ("ok", None)


def start_pool(host: EnvHost, workers: int, timeout: float) -> Pool:
    """W worker processes each holding a copy of ``host`` (no envs yet); one line if they cannot start."""
    try:
        ForkingPickler.dumps(host.factory)  # what sending it to a spawned worker does (never loads)
    except Exception as exc:
        name = getattr(host.factory, "__name__", type(host.factory).__name__)
        raise ConfigError(f"env.factory: {name!r} cannot be sent to an env worker process ({type(exc).__name__}: "
                          f"{exc}); use a module-level function or class, or env.workers 0") from None
    try:
        return Pool(host, workers, timeout)
    except ConfigError as exc:  # the pool's message, in the env's terms
        raise ConfigError(str(exc).replace("rewards.workers", "env.workers").replace("reward", "env")) from None


class EnvRunner:
    """Runs one batch of episodes' envs so that no env can kill the batch or the run."""

    def __init__(self, factory: EnvFactory, *, timeout: float, fallback_reward: float, workers: int = 0) -> None:
        self.factory = factory
        self.timeout = timeout
        self.fallback_reward = fallback_reward  # the caller's return for a faulted episode
        self.host = EnvHost(factory)  # the envs themselves when workers = 0
        self.pool = start_pool(self.host, workers, timeout) if workers > 0 else None
        self.status: list[str] = []               # per episode of the batch: new, live, done, faulted, ...
        self.faults: dict[int, EnvFault] = {}     # the batch's faulted episodes: each one's first fault
        self.lost: dict[int, str] = {}            # episodes whose worker was replaced in this call -> why
        self.untold: dict[int, EnvFault] = {}     # live episodes lost in finish, for the next step's answer

    # ------------------------------------------------------------------------- the episodes
    def start(self, rows: Sequence[Any]) -> list[str | EnvFault]:
        """Closes the previous batch's envs still open (guarded, no fault recorded), then makes env i =
        factory(rows[i]) and resets it: its first observation, or its fault."""
        self._close_open()
        self.status, self.faults, self.untold = [NEW] * len(rows), {}, {}
        results = self._call("start", dict(enumerate(rows)))
        opened: list[str | EnvFault] = []
        for index in range(len(rows)):
            kind, value = results[index]
            if kind == "ok":
                self.status[index] = LIVE
            opened.append(value if kind == "ok" else self._fault(index, kind, value))
        for index, fault in self._settle_losses().items():
            opened[index] = fault
        return opened

    def step(self, actions: Mapping[int, str]) -> dict[int, Step | EnvFault]:
        """Each listed live episode's env stepped with its action: its validated Step, or its fault (a
        listed episode that faulted before: that fault again, no call). The answer also holds every
        other live episode that faulted since the last step (lost with its worker process)."""
        answer: dict[int, Step | EnvFault] = dict(self.untold)
        self.untold = {}
        calls = {}
        for index, action in actions.items():
            if self.status[index] == FAULTED:
                answer[index] = self.faults[index]
            elif self.status[index] == LIVE:
                calls[index] = action
            else:
                raise ValueError(f"episode {index} is {self.status[index]}: only a live episode can be stepped")
        for index, (kind, value) in self._call("step", calls).items():
            if kind == "ok":
                self.status[index] = DONE if value.done else LIVE
                answer[index] = value
            else:
                answer[index] = self._fault(index, kind, value)
        answer.update(self._settle_losses())
        return answer

    def finish(self, index: int) -> dict[str, float]:
        """The episode is over: its env's metrics (a fault: {}), then its env closed; both guarded, a
        fault in either recorded in ``faults`` (close is skipped after a metrics call that hung or
        crashed). A faulted or finished episode: {} and no call."""
        self.untold.pop(index, None)  # the caller has ended it already
        if self.status[index] not in (LIVE, DONE):
            return {}
        kind, metrics = self._call("metrics", {index: None})[index]
        if kind != "ok":
            self._record(index, kind, metrics)
            metrics = {}
        if kind not in ("timeout", "crash"):
            kind, why = self._call("close", {index: None})[index]
            if kind != "ok":
                self._record(index, kind, why)
        self.status[index] = FINISHED
        self.untold.update(self._settle_losses())
        return metrics

    def close(self) -> None:
        """Closes every env still open and stops the worker processes."""
        self._close_open()
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    # ------------------------------------------------------------------------- internals
    def _record(self, index: int, kind: str, detail: str) -> EnvFault:
        """Records the episode's fault, once per episode (its first)."""
        if index not in self.faults:
            self.faults[index] = EnvFault(kind, detail)
        return self.faults[index]

    def _fault(self, index: int, kind: str, detail: str) -> EnvFault:
        self.status[index] = FAULTED
        return self._record(index, kind, detail)

    def _settle_losses(self) -> dict[int, EnvFault]:
        """The episodes lost with a replaced worker in the last call: each faults with "crash"; the
        ones still live are returned (an episode already done keeps its steps and loses its metrics)."""
        live = {}
        for index, why in self.lost.items():
            if self.status[index] in (LIVE, DONE):
                was_live = self.status[index] == LIVE
                fault = self._fault(index, "crash", why)
                if was_live:
                    live[index] = fault
        self.lost = {}
        return live

    def _close_open(self) -> None:
        """Closes the envs of the batch that are still open: guarded, no fault recorded (the batch is over)."""
        still_open = {index: None for index, status in enumerate(self.status) if status in (LIVE, DONE)}
        for index in still_open:
            self.status[index] = CLOSING
        self._call("close", still_open)
        self.lost = {}

    def _call(self, op: str, args: dict[int, Any]) -> dict[int, tuple[str, Any]]:
        """The host's ``op`` on each listed episode -> (kind, value) per episode: in this process one
        after another, or in the worker processes (each call at most ``timeout`` seconds)."""
        if self.pool is not None:
            return self._call_workers(op, args)
        results = {}
        for index, arg in args.items():
            try:
                with alarm(self.timeout):
                    results[index] = self.host(op, index, arg)
            except RewardTimeout:
                self.host.envs.pop(index, None)  # hung: never called again
                results[index] = ("timeout", f"{OPS[op]} took longer than {self.timeout:g}s")
        return results

    def _call_workers(self, op: str, args: dict[int, Any]) -> dict[int, tuple[str, Any]]:
        """Episode i's call goes to worker i % W; a worker runs its calls one after another, the
        workers in parallel. A worker killed (a timeout) or dead is replaced by the pool."""
        pool = self.pool
        assert pool is not None
        width = len(pool.workers)
        queues = [deque(index for index in args if index % width == w) for w in range(width)]
        results: dict[int, tuple[str, Any]] = {}
        while True:
            for w, worker in enumerate(pool.workers):
                if worker.job is None and queues[w]:
                    index = queues[w].popleft()
                    with suppress(OSError):  # a worker that died idle: the pool reads its end of file as a crash
                        worker.conn.send((index, op, index, args[index]))
                    worker.job = (index, time.monotonic() + self.timeout)
            if not any(worker.job for worker in pool.workers):
                return results
            before = list(pool.workers)
            pool._collect(results)  # type: ignore[arg-type]  # one result, or a hung/dead worker replaced
            for w, old in enumerate(before):
                if pool.workers[w] is not old:
                    self._lose_worker(w, old.job[0], op, queues[w], results)  # type: ignore[index]

    def _lose_worker(self, w: int, culprit: int, op: str, queue: deque[int],
                     results: dict[int, tuple[str, Any]]) -> None:
        """Worker w was replaced because of episode ``culprit``'s call: that call's fault says so, and
        every other episode whose env lived in it (open before the call, or opened by it) is lost."""
        kind, value = results[culprit]
        detail = f"{OPS[op]} took longer than {self.timeout:g}s" if kind == "timeout" else f"{OPS[op]}: {value}"
        results[culprit] = (kind, detail)
        width = len(self.pool.workers) if self.pool is not None else 1
        for index in range(w, len(self.status), width):
            held = self.status[index] in (LIVE, DONE) or results.get(index, ("",))[0] == "ok"
            if index != culprit and held:
                self.lost[index] = f"lost with its worker process (episode {culprit}: {detail})"
                with suppress(ValueError):
                    queue.remove(index)

