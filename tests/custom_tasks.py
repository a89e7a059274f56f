"""User task factories, named by tests as ``--task.name custom_tasks:NAME``."""

from rlvr.tasks import SortTask, build_task


def reversed_sort(cfg):
    """A working custom task: sorting with the prompts' numbers in reverse order (a different prompt stream)."""
    task = SortTask(length=cfg.length, vocab_size=cfg.vocab_size, reward=cfg.reward, fixed_prompts=cfg.prompts,
                    eval_fraction=cfg.eval_fraction, num_eval_prompts=cfg.num_eval_prompts, split_seed=cfg.split_seed)
    task.name = "reversed-sort"
    return task


class EmptyPrompts(SortTask):
    def random_prompt(self, rng):
        return ()


def empty_prompts(cfg):
    return EmptyPrompts(length=cfg.length, vocab_size=cfg.vocab_size, reward=cfg.reward, fixed_prompts=None,
                        eval_fraction=cfg.eval_fraction, num_eval_prompts=cfg.num_eval_prompts,
                        split_seed=cfg.split_seed)


def not_a_task(cfg):
    return 42


def raises(cfg):
    return build_task(None)  # the user's factory has a bug


NOT_CALLABLE = 3
