"""The sorting task: the notes' three rewards, the held-out split, seeded prompts."""

import numpy as np
import pytest

from rlvr.tasks import SortConfig, build_task
from rlvr.tasks.sorting import binary_reward, inclusion_adjacency_reward, position_match_reward


@pytest.mark.parametrize("response", [[2, 0, 1], [1, 1, 2], [0, 0, 2], [0, 1, 1]])
def test_the_plateau_of_fours_around_the_sorted_answer(response):
    assert inclusion_adjacency_reward([1, 0, 2], response) == 4


def test_rewards_on_hand_checked_cases():
    assert inclusion_adjacency_reward([1, 0, 2], [0, 1, 2]) == 5
    assert inclusion_adjacency_reward([3, 2, 4], [4, 3, 0]) == 2  # 3, 4 present; no sorted pair
    assert position_match_reward([3, 2, 4], [2, 4, 4]) == 2       # sorted is 2 3 4
    assert binary_reward([3, 2, 4], [2, 3, 4]) == 1.0
    assert binary_reward([3, 2, 4], [2, 3, 3]) == 0.0


def test_held_out_prompts_never_appear_in_training():
    task = build_task(SortConfig(length=3, vocab_size=5, num_eval_prompts=32))
    heldout = set(task.eval_prompts())
    rng = np.random.default_rng(0)
    train = {task.train_prompt(rng) for _ in range(3000)}
    assert len(heldout) >= 10 and len(train) >= 80
    assert not heldout & train
    assert len(train | heldout) == 125  # the whole space 5**3 is covered by the two sides


def test_prompts_are_seeded():
    task = build_task(SortConfig(length=6, vocab_size=10))
    draws = [[task.train_prompt(np.random.default_rng(7)) for _ in range(5)] for _ in range(2)]
    assert draws[0] == draws[1]
    assert build_task(SortConfig(length=6, vocab_size=10)).eval_prompts() == task.eval_prompts()


def test_a_fixed_prompt_list_is_the_evaluation_set():
    task = build_task(SortConfig(prompts=[[1, 0, 2], [3, 2, 4], [1, 2, 3]]))
    assert task.eval_prompts() == [(1, 0, 2), (3, 2, 4), (1, 2, 3)]
    assert task.solution((3, 2, 4)) == (2, 3, 4)
    assert task.max_reward == 5


def test_configurable_length_and_vocabulary():
    task = build_task(SortConfig(length=5, vocab_size=10, reward="position-match"))
    prompt = task.train_prompt(np.random.default_rng(0))
    assert len(prompt) == 5 and all(0 <= x < 10 for x in prompt)
    assert task.reward(prompt, sorted(prompt)) == 5 == task.max_reward
