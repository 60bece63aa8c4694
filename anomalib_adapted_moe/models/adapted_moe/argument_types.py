"""Numbers and switches given from Python as the wrong type, named when the model is built.

The ``anomalib`` command's parser checks each argument's type; from Python, ``epochs=2.5`` built a model that
failed after the feature pass ("'float' object cannot be interpreted as an integer", 21 frames deep),
``epochs="3"`` failed with "'<' not supported between instances of 'str' and 'int'" naming no argument, and
``tta="no"`` was silently true.
"""

from __future__ import annotations

import inspect
import numbers
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

#: what a value of each annotated type may be (a bool is no number here; numpy's numbers and bools are)
ACCEPTED: dict[type, Callable[[Any], bool]] = {
    bool: lambda value: isinstance(value, bool | np.bool_),
    int: lambda value: isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_),
    float: lambda value: isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_),
}


#: how each type is named in the message
WORDS = {bool: "True or False", int: "a whole number", float: "a number"}


def wrong_argument_types(function: Callable, values: Mapping[str, Any]) -> str | None:
    """The first of ``values`` whose type ``function``'s annotation (bool, int, float, or one of them or None)
    does not allow, as a message with the fix; ``None`` if all fit."""
    hints = typing.get_type_hints(function)
    for name in inspect.signature(function).parameters:
        kinds = [kind for kind in typing.get_args(hints.get(name)) or [hints.get(name)] if kind is not type(None)]
        optional = type(None) in typing.get_args(hints.get(name))
        value = values.get(name)
        # other types too (a PreProcessor or True, a Literal's strings): left to the argument's own check
        if not kinds or not all(kind in ACCEPTED for kind in kinds) or name not in values:
            continue
        if value is None and optional:
            continue
        if not any(ACCEPTED[kind](value) for kind in kinds):
            wanted = " or ".join(WORDS[kind] for kind in kinds) + (" (or None)" if optional else "")
            default = inspect.signature(function).parameters[name].default
            return (
                f"{name}={value!r} is a {type(value).__name__}: {name} takes {wanted}. Fix: give it as one, e.g. "
                f"{name}={default!r} (its default)."
            )
    return None
