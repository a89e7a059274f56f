"""Misbehaving reward functions (user code), named by tests as ``--task.reward reward_faults:NAME``."""

import math
import os
import time

from rlvr.tasks.sorting import inclusion_adjacency_reward


def first_token(prompt, response):
    """A stand-in for user code that misbehaves on some responses: decided by the first token."""
    return response[0]


def flaky(prompt, response):
    """Fails rarely (only when the response starts with 4 and ends with 0), otherwise a real reward."""
    if response[0] == 4 and response[-1] == 0:
        raise ZeroDivisionError("bad luck")
    return inclusion_adjacency_reward(prompt, response)


def always_raises(prompt, response):
    raise RuntimeError("this reward is broken")


def mixed(prompt, response):
    """0: raises, 1: NaN, 2: a string, 3: inf, 4: a fine reward."""
    kind = first_token(prompt, response)
    if kind == 0:
        raise KeyError("missing")
    return [math.nan, "three", math.inf, 4.0][kind - 1]


def hangs_on_zero(prompt, response):
    if response[0] == 0:
        while True:  # pure-Python busy loop: the in-process timer interrupts it
            pass
    return float(response[0])


def sleeps_on_zero(prompt, response):
    if response[0] == 0:
        time.sleep(60)  # a worker process must be killed to get past this
    return float(response[0])


def dies_on_zero(prompt, response):
    if response[0] == 0:
        os._exit(13)  # the worker process dies
    return float(response[0])


def catches_everything(prompt, response):
    """A reward that swallows Exception: the timeout must still get through."""
    try:
        while True:
            pass
    except Exception:
        return 1.0
