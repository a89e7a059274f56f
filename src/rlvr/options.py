"""How a component declares its settings: a dataclass of ``opt`` fields, next to its code.

    @dataclass
    class ArithConfig(TaskConfig):            # tasks/arithmetic.py
        digits: int = opt(2, "digits per operand", ge=1)

    TASKS.register("arith", config=ArithConfig)(build_arith)

A field carries its help text, its default and its bounds; ``rlvr.config`` reads them to parse YAML
and ``--section.key`` flags, to validate, and to print ``rlvr train --help``. This module imports
nothing of rlvr's, so every component can use it and ``rlvr.config`` can import the components.

Two ways a component owns settings:
- a *kind* (a task, a policy kind, a reward source) has its whole section: the section's class is
  the kind's config class, chosen by the section's discriminator (``task.name``, ``policy.kind``);
- a *registry entry* that is one choice among several in a shared section (a loss in ``algo``)
  declares a parameter block, ``POLICY_LOSSES.register("dual-clip", params=DualClipParams)``; the
  section inherits every block, and a user setting that belongs only to entries not chosen is
  refused (``rlvr.config.check_owned``).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def opt(default: Any, help: str, *, choices: Any = None, ge: float | None = None,
        gt: float | None = None, le: float | None = None, imports: bool = False,
        registry: Any = None) -> Any:
    """A config field with help text and bounds. ``choices`` is a list or a zero-argument callable
    (so registries are read after every entry has been registered). ``imports``: the value may also
    name user code as ``module.path:factory`` (see ``rlvr.plugins``), imported while validating.
    ``registry``: the value picks an entry of this registry, whose ``params`` block (if any) holds
    the only settings of that registry's blocks the user may set."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "imports": imports,
            "registry": registry}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def section(default: type, help: str, *, kind: str | None = None, resolve: Any = None) -> Any:
    """A nested section. ``kind``/``resolve``: the section's class depends on the value of its field
    ``kind`` (``resolve(value) -> class``), so each kind brings exactly its own fields."""
    return field(default_factory=default, metadata={"help": help, "kind": kind, "resolve": resolve})
