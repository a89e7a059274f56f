"""How a component declares its settings: a dataclass of ``opt`` fields, next to its code.

    @dataclass
    class ArithConfig(TaskConfig):            # tasks/arithmetic.py
        digits: int = opt(2, "digits per operand", ge=1)

    TASKS.register("arith", config=ArithConfig)(build_arith)

A field carries its help text, its default and its bounds. This module also holds the machinery that
reads them, for any tree of such sections: ``from_dict`` (data -> sections, each value checked
against its field's type), ``check_fields`` (bounds, choices, each section's ``check()``) and
``fields_help`` (the lines of ``rlvr train --help``); ``rlvr.config`` composes the run's sections and
calls them. It imports only rlvr's leaf modules (errors, plugins), so every component can use it and
``rlvr.config`` can import the components.

Two ways a component owns settings:
- a *kind* (a task, a policy kind, a reward source) has its whole section: the section's class is
  the kind's config class, chosen by the section's discriminator (``task.name``, ``policy.kind``);
- a *registry entry* that is one choice among several in a shared section (a loss in ``algo``)
  declares a parameter block, ``POLICY_LOSSES.register("dual-clip", params=DualClipParams)``; the
  section inherits every block, and a user setting that belongs only to entries not chosen is
  refused (``rlvr.config.check_owned``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import field
from typing import Any

import yaml

from rlvr.errors import ConfigError
from rlvr.plugins import import_object, is_import_spec


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


# ----------------------------------------------------------------------------- parsing: data -> sections


def from_dict(cls: type, data: Any, *, prefix: str, kind_note: str = "") -> Any:
    """``data`` (a mapping) -> an instance of ``cls``, each value checked against its field's type.
    A nested section whose class depends on one of its fields (``section(kind=..., resolve=...)``)
    is parsed as the class that field's value picks."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(unknown_key_message(prefix + str(key), names, prefix, kind_note))
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if f.metadata.get("kind"):
            sub = data.get(f.name, {})
            sub_cls, note = kind_class(f, hints[f.name], sub, path)
            kwargs[f.name] = from_dict(sub_cls, sub, prefix=path + ".", kind_note=note)
        elif f.name not in data:
            continue
        elif dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = from_dict(hints[f.name], data[f.name], prefix=path + ".")
        elif item_class(hints[f.name]) is not None:
            kwargs[f.name] = items_from_list(item_class(hints[f.name]), data[f.name], path, hint=hints[f.name])
        else:
            kwargs[f.name] = coerce(data[f.name], hints[f.name], path)
    return cls(**kwargs)


def kind_class(f: dataclasses.Field, base: type, data: Any, path: str) -> tuple[type, str]:
    """The class of a kinded section: its discriminator's value (checked like any field) -> class."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping, got {data!r}")
    key = f.metadata["kind"]
    key_field = next(x for x in dataclasses.fields(base) if x.name == key)
    value = coerce(data.get(key, key_field.default), str, f"{path}.{key}")
    check_value(f"{path}.{key}", value, key_field.metadata)
    return f.metadata["resolve"](value), f"{path}.{key} {value!r}"


def item_class(hint: Any) -> type | None:
    """``list[SomeConfig] | None`` -> SomeConfig (a list of kinded sections); else None."""
    for arg in (typing.get_args(hint) or (hint,)):
        if typing.get_origin(arg) is list:
            (inner,) = typing.get_args(arg)
            if dataclasses.is_dataclass(inner):
                return inner
    return None


def items_from_list(base: type, raw: Any, path: str, *, hint: Any) -> list[Any] | None:
    """A list of kinded entries (e.g. ``rewards.sources``): each parsed as the class its ``kind``
    picks (``base.kind_class(kind)``). A string (a flag) is read as YAML first, with the field's
    own type (``null`` for an optional list)."""
    if isinstance(raw, str):
        raw = coerce(raw, hint, path)
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: expected a non-empty list of entries, got {raw!r}")
    items = []
    for i, entry in enumerate(raw):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping like {{kind: ..., ...}}, got {entry!r}")
        kind = entry.get("kind")
        kind_field = next(x for x in dataclasses.fields(base) if x.name == "kind")
        check_value(f"{where}.kind", kind, kind_field.metadata)
        items.append(from_dict(base.kind_class(kind), entry, prefix=where + ".", kind_note=f"{where}.kind {kind!r}"))
    return items


def unknown_key_message(path: str, names: list[str], prefix: str, kind_note: str = "") -> str:
    where = f" for {kind_note}" if kind_note else ""
    msg = f"{path}: unknown key{where}; valid keys here: {', '.join(prefix + n for n in names)}"
    close = difflib.get_close_matches(path.rsplit(".", 1)[-1], names, n=1)
    if close:
        msg = f"{path}: unknown key{where} (did you mean {prefix + close[0]!r}?)"
    return msg


def check_owned(section: Any, data: dict[str, Any], *, prefix: str) -> None:
    """In a section whose fields pick registry entries (``opt(registry=...)``), each entry's own
    settings (its ``params`` block) may be set only when that entry is chosen: a setting given that
    belongs only to entries not chosen is one line naming the chosen entry's settings."""
    for f in dataclasses.fields(section):
        registry = f.metadata.get("registry")
        if registry is None:
            continue
        chosen = getattr(section, f.name)
        owners: dict[str, list[str]] = {}  # setting -> the entries that declare it
        for name in registry.names():
            for p in params_of(registry, name):
                owners.setdefault(p, []).append(name)
        mine = params_of(registry, chosen)
        for key in sorted(k for k in data if k in owners and k not in mine):
            theirs = ", ".join(repr(n) for n in owners[key])
            has = ", ".join(prefix + n for n in mine) or "no settings of its own"
            raise ConfigError(f"{prefix}{key}: a setting of {prefix}{f.name} {theirs}, not of the chosen "
                              f"{chosen!r} (which has {has})")


def params_of(registry: Any, name: str) -> list[str]:
    """The settings the registry entry ``name`` declared (``register(name, params=Block)``)."""
    params = registry.meta(name).get("params")
    return [p.name for p in dataclasses.fields(params)] if params is not None else []


def own_settings(registry: Any, name: str, given: Mapping[str, Any] | None, *, caller: str,
                 shared: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The entry ``name``'s own settings: its params block's fields (but the ``shared`` ones, which
    every entry takes under names of its own) at their defaults, overridden by ``given``. ``given``
    may hold other entries' settings (one dict can serve every entry: ``settings_of``); a name that
    no entry of the registry declares is a TypeError naming ``caller``."""
    given = dict(given or {})
    declared = set(shared)
    for entry in registry.names():
        declared |= set(params_of(registry, entry))
    unknown = set(given) - declared
    if unknown:
        raise TypeError(f"{caller}: no {registry.kind} has the setting(s) {', '.join(sorted(unknown))}")
    block = registry.meta(name).get("params")
    own = {f.name: f.default for f in dataclasses.fields(block) if f.name not in shared} if block else {}
    own.update({k: v for k, v in given.items() if k in own})
    return own


def settings_of(registry: Any, name: str, section: Any) -> dict[str, Any]:
    """The values in ``section`` (a config block) of the settings the entry ``name`` declared."""
    return {param: getattr(section, param) for param in params_of(registry, name)}


def coerce(value: Any, hint: Any, path: str) -> Any:
    """Check/convert one value to the field's type. Strings from the command line are parsed as
    YAML scalars first (so ``--algo.kl_coef 0.04`` and ``--task.prompts [[1,0,2]]`` work)."""
    if isinstance(value, str) and hint is not str:
        try:
            value = yaml.safe_load(value) if value.strip() else value
        except yaml.YAMLError:
            pass
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return coerce(value, args[0], path)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if hint is list or origin is list:
        if isinstance(value, (list, tuple)):
            return list(value)
        raise ConfigError(f"{path}: expected a list, got {value!r}")
    return value


# ----------------------------------------------------------------------------- checking


def check_fields(obj: Any, *, prefix: str) -> None:
    """Every field of ``obj`` (and of its sections) against its metadata; then ``obj.check()``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = prefix + f.name
        if dataclasses.is_dataclass(value):
            check_fields(value, prefix=path + ".")
        elif isinstance(value, list) and value and all(dataclasses.is_dataclass(v) for v in value):
            for i, item in enumerate(value):
                check_fields(item, prefix=f"{path}[{i}].")
        elif value is not None:
            check_value(path, value, f.metadata)
    if callable(getattr(obj, "check", None)):
        obj.check()


def check_value(path: str, value: Any, meta: Any) -> None:
    """One value against its field's metadata: finite, one of its choices (or, where allowed, the
    user's ``module.path:attr``, imported here), within its bounds."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}: {value!r} must be a finite number")
    choices = meta.get("choices")
    valid = (choices() if callable(choices) else choices) if choices is not None else None
    if valid is not None and value in valid:
        pass  # a name the field accepts (rg:NAME too) is never read as module:attribute
    elif meta.get("imports") and is_import_spec(value):
        import_object(value, field=path)
        return
    elif valid is not None:
        close = difflib.get_close_matches(str(value), valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{path}: {value!r} is not one of {', '.join(valid)}{hint}")
    if meta.get("ge") is not None and value < meta["ge"]:
        raise ConfigError(f"{path}: {value!r} must be >= {meta['ge']}")
    if meta.get("gt") is not None and value <= meta["gt"]:
        raise ConfigError(f"{path}: {value!r} must be > {meta['gt']}")
    if meta.get("le") is not None and value > meta["le"]:
        raise ConfigError(f"{path}: {value!r} must be <= {meta['le']}")


# ----------------------------------------------------------------------------- help


def fields_help(cls: type, prefix: str = "") -> list[tuple[str, str]]:
    """(flag, description) for every leaf field, for ``--help``. A kinded section lists its base
    fields once, then each kind's own fields marked with the kind (``[task.name arith]``)."""
    rows: list[tuple[str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.metadata.get("kind"):
            rows += fields_help(hint, prefix + f.name + ".")
            key = f.metadata["kind"]
            base_names = {x.name for x in dataclasses.fields(hint)}
            kinds = next(x for x in dataclasses.fields(hint) if x.name == key).metadata["choices"]()
            owned: dict[tuple[str, str], list[str]] = {}  # (flag, text) -> the kinds that have it
            for kind in kinds:
                if ":" in kind:  # rg:NAME has the base fields only
                    continue
                for flag, text in fields_help(f.metadata["resolve"](kind), prefix + f.name + "."):
                    if flag.rsplit(".", 1)[-1] not in base_names:
                        owned.setdefault((flag, text), []).append(kind)
            rows += [(flag, f"[{prefix}{f.name}.{key} {', '.join(kinds)}] {text}")
                     for (flag, text), kinds in owned.items()]
            continue
        if dataclasses.is_dataclass(hint):
            rows += fields_help(hint, prefix + f.name + ".")
            continue
        meta = f.metadata
        owner = registry_owner(cls, f.name, prefix)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = f"{owner}{meta.get('help', '')} [default: {default}]"
        choices = meta.get("choices")
        if choices is not None:
            text += f" {{{', '.join(choices() if callable(choices) else choices)}}}"
        item = item_class(hint)
        if item is not None:
            text += "; each entry: " + "; ".join(
                f"kind {kind}: {', '.join(x.name for x in dataclasses.fields(item.kind_class(kind)))}"
                for kind in item.kinds())
        rows.append((f"--{prefix}{f.name}", text))
    return rows


def registry_owner(cls: type, name: str, prefix: str) -> str:
    """'[algo.loss clipped, gspo] ' when ``name`` is a setting declared by registry entries."""
    for f in dataclasses.fields(cls):
        registry = f.metadata.get("registry")
        if registry is not None:
            owners = [entry for entry in registry.names() if name in params_of(registry, entry)]
            if owners:
                return f"[{prefix}{f.name} {', '.join(owners)}] "
    return ""
