"""Numbers, switches and names given from Python as the wrong type, named when the model or datamodule is built.

The ``anomalib`` command's parser checks each argument's type; from Python, ``epochs=2.5`` built a model that
failed after the feature pass ("'float' object cannot be interpreted as an integer", 21 frames deep),
``epochs="3"`` failed with "'<' not supported between instances of 'str' and 'int'" naming no argument,
``tta="no"`` was silently true, ``layers="layer2"`` was read letter by letter ("no layer(s) ['l', 'a', 'y', ...]")
and ``backbone=Path(...)`` ended in "argument of type 'PosixPath' is not iterable".
"""

from __future__ import annotations

import inspect
import numbers
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: what a value of each annotated type may be (a bool is no number here; numpy's numbers and bools are)
ACCEPTED: dict[type, Callable[[Any], bool]] = {
    bool: lambda value: isinstance(value, bool | np.bool_),
    int: lambda value: isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_),
    float: lambda value: isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_),
    str: lambda value: isinstance(value, str),
    Path: lambda value: isinstance(value, str | os.PathLike),
    Sequence[str]: lambda value: (
        isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(item, str) for item in value)
    ),
}


#: how each type is named in the message
WORDS = {
    bool: "True or False",
    int: "a whole number",
    float: "a number",
    str: "a name (a str)",
    Path: "a path",
    Sequence[str]: "a list of names",
}


def wrong_argument_types(function: Callable, values: Mapping[str, Any]) -> str | None:
    """The first of ``values`` whose type ``function``'s annotation (bool, int, float, str, Path, a sequence of
    str, or a union of them and None) does not allow, as a message with the fix; ``None`` if all fit."""
    hints = typing.get_type_hints(function)
    for name in inspect.signature(function).parameters:
        union = typing.get_origin(hints.get(name)) in (typing.Union, types.UnionType)
        members = typing.get_args(hints.get(name)) if union else (hints.get(name),)
        kinds = [kind for kind in members if kind is not type(None)]
        optional = type(None) in members
        value = values.get(name)
        # other types too (a PreProcessor or True, a Literal's strings): left to the argument's own check
        if not kinds or not all(kind in ACCEPTED for kind in kinds) or name not in values:
            continue
        if value is None and optional:
            continue
        if not any(ACCEPTED[kind](value) for kind in kinds):
            wanted = " or ".join(WORDS[kind] for kind in kinds) + (" (or None)" if optional else "")
            one_name = isinstance(value, str) and Sequence[str] in kinds  # layers="layer2": the list of it
            example = [value] if one_name else inspect.signature(function).parameters[name].default
            given = type(value).__name__
            given = f"{'an' if given[0] in 'aeiou' else 'a'} {given}"
            if isinstance(value, Sequence) and not isinstance(value, str) and Sequence[str] in kinds:
                item = next(item for item in value if not isinstance(item, str))
                given += f" holding {item!r} ({type(item).__name__})"
            return (
                f"{name}={value!r} is {given}: {name} takes {wanted}. Fix: give it as one, e.g. "
                f"{name}={example!r}{'' if one_name else ' (its default)'}."
            )
    return None
