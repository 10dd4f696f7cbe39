"""Checking a TOML section field by field: the helper the configuration file and every task's
``[task]`` section share, so that their messages read alike::

    config.toml: [optimizer] popsize must be an integer, not "ten"
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from small.errors import FileFormatError

__all__ = ["REQUIRED", "ConfigError", "Field", "fields", "show"]


class ConfigError(FileFormatError, ValueError):
    """A configuration that cannot be used: bad TOML, a missing or unknown field, a wrong type or value.

    A :class:`~small.errors.FileFormatError`, so the command line reports it as one line and
    exits with status 2.
    """


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: Default of a `Field` that must be given.
REQUIRED: Any = _Required()

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table",
               list: "an array"}


@dataclass(frozen=True)
class Field:
    """One field of a configuration section.

    Parameters
    ----------
    type : type
        ``bool``, ``int``, ``float`` (an integer is accepted and converted), ``str``, ``list``
        or ``dict`` (a TOML table).
    default : object
        Value when the field is absent; `REQUIRED` makes it mandatory, ``None`` optional.
    minimum : float or None
        Smallest allowed value of a number (inclusive).
    choices : tuple or None
        Allowed values.
    items : type or None
        For ``list``: the type of every element (checked like a field of that type).
    doc : str
        One line for the documentation and for "missing field" messages.
    """

    type: type
    default: Any = REQUIRED
    minimum: float | None = None
    choices: tuple | None = None
    items: type | None = None
    doc: str = ""

    def __post_init__(self):
        if self.type not in _TYPE_NAMES:
            raise TypeError(f"Field type must be one of {', '.join(t.__name__ for t in _TYPE_NAMES)}, not {self.type!r}")
        if self.items is not None and (self.type is not list or self.items not in _TYPE_NAMES):
            raise TypeError(f"Field items applies to list fields, with an element type of {list(_TYPE_NAMES)!r}")

    @property
    def expected(self) -> str:
        """What the field must be, in words ("an integer >= 1")."""
        text = _TYPE_NAMES[self.type]
        if self.items is not None:
            text += f" of {_plural(self.items)}"
        if self.minimum is not None:
            text += f" >= {self.minimum:g}"
        if self.choices is not None:
            text = "one of " + ", ".join(map(show, self.choices))
        return text


def _plural(kind: type) -> str:
    return {bool: "booleans", int: "integers", float: "numbers", str: "strings", dict: "tables", list: "arrays"}[kind]


def show(value) -> str:
    """A value as it would be written in TOML (strings in double quotes, true/false)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _check(value, kind: type, what: str, expected: str):
    """``value`` as ``kind``, or a ConfigError saying ``what must be <expected>, not <value>``."""
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{what} must be {expected}, not {show(value)}")
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, not {value!r}")
    return value


def fields(section: Mapping[str, Any], where: str, spec: Mapping[str, Field], *, extra: bool = False) -> dict[str, Any]:
    """Check a configuration section against ``spec``; its values, with the defaults filled in.

    Parameters
    ----------
    section : mapping
        The section as read from TOML.
    where : str
        How messages name the section, e.g. ``"config.toml: [task]"``.
    spec : mapping of str to Field
        The known fields.
    extra : bool
        Pass fields that ``spec`` does not name through unchecked (the caller checks them)
        instead of refusing them.

    Raises
    ------
    ConfigError
        A missing field, an unknown field (unless ``extra``), a wrong type, a value below the
        minimum or outside the choices; the message names ``where``, the field and what it
        must be.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a table, not {show(section)}")
    unknown = [k for k in section if k not in spec]
    if unknown and not extra:
        raise ConfigError(f"{where} has no field {show(unknown[0])}: its fields are {', '.join(spec) or 'none'}")
    values: dict[str, Any] = {}
    for name, field in spec.items():
        if name not in section:
            if field.default is REQUIRED:
                doc = f" ({field.doc})" if field.doc else ""
                raise ConfigError(f"{where} is missing {name}{doc}: give {field.expected}")
            values[name] = field.default
            continue
        what = f"{where} {name}"
        value = _check(section[name], field.type, what, field.expected if field.choices is None
                       else _TYPE_NAMES[field.type])
        if field.items is not None:
            value = [_check(v, field.items, f"{what}[{i}]", _TYPE_NAMES[field.items]) for i, v in enumerate(value)]
        if field.minimum is not None and value < field.minimum:
            raise ConfigError(f"{what} must be {field.expected}, not {show(value)}")
        if field.choices is not None and value not in field.choices:
            raise ConfigError(f"{what} must be {field.expected}, not {show(value)}")
        values[name] = value
    for name in unknown:
        values[name] = section[name]
    return values
