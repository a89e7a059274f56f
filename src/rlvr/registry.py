"""Named registries: the one way the trainer finds an algorithm component.

    DELTAS = Registry("deltas")

    @DELTAS.register("centered")
    def centered(rewards, *, eps): ...

    DELTAS.get("centered")     # -> the function
    DELTAS.meta("centered")    # -> what the entry declared about itself, e.g. {"needs_group": True}
    DELTAS.get("centred")      # ConfigError: unknown deltas 'centred'; valid: ... (did you mean 'centered'?)
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from rlvr.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, object]] = {}

    def register(self, name: str, **meta: object) -> Callable[[T], T]:
        """Register under ``name``; ``meta``: facts the entry declares about itself (read by
        validation, e.g. ``needs_group=True``), so no list elsewhere has to know them."""
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return add

    def meta(self, name: str) -> dict[str, object]:
        self.get(name)  # an unknown name fails here, with the valid ones
        return self._meta[name]

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_name_message(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    msg = f"unknown {kind} {name!r}; valid: {', '.join(valid)}"
    close = difflib.get_close_matches(str(name), valid, n=1)
    if close:
        msg += f" (did you mean {close[0]!r}?)"
    return msg
