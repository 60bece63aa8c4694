"""Subclass specifications and how the seen/unseen split is built.

A category is a mixture of sub-distributions ("subclasses"). Seen subclasses come
from a table of clearly different base materials (each with its own optics).
Every unseen subclass is a *shift* of one seen subclass -- the same material under
new lighting, or a new pitch / colour -- so it is close to one training mode but
outside all of them, which is the shift that test-time adaptation has to absorb.
Unseen subclass ``j`` is shift ``j`` applied to seen subclass ``j`` (modulo the
table sizes); the pairing is recorded in :attr:`SubclassSpec.shifted_from`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .optics import Optics


@dataclass(frozen=True)
class SubclassSpec:
    """Everything that defines one subclass; images of it only add per-image jitter."""

    name: str
    texture: Any  # the category's frozen parameter dataclass
    optics: Optics
    seen: bool = True
    shifted_from: str | None = None  # for unseen subclasses: the seen subclass it was derived from
    layout_key: int = 0  # fixed per-material structure (e.g. the die layout); shifts keep it


@dataclass(frozen=True)
class Shift:
    """A named distribution shift; ``apply`` returns the shifted texture/optics (name is set here)."""

    suffix: str
    apply: Callable[[SubclassSpec], SubclassSpec]


def build_subclasses(
    bases: Sequence[SubclassSpec],
    shifts: Sequence[Shift],
    variant: Callable[[SubclassSpec, int], SubclassSpec],
    num_subclasses: int,
    num_unseen: int,
) -> list[SubclassSpec]:
    """Seen subclasses first (table order, extended by ``variant`` past the table), then unseen."""
    num_seen = num_subclasses - num_unseen
    seen: list[SubclassSpec] = []
    for i in range(num_seen):
        base = bases[i % len(bases)]
        spec = base if i < len(bases) else variant(base, i // len(bases))
        seen.append(replace(spec, seen=True, shifted_from=None))
    names = {s.name for s in seen}
    unseen: list[SubclassSpec] = []
    for j in range(num_unseen):
        source = seen[j % num_seen]
        shift = shifts[j % len(shifts)]
        spec = shift.apply(source)
        name = f"{source.name}_{shift.suffix}"
        k = 2
        while name in names:  # only when shifts repeat on the same source
            name = f"{source.name}_{shift.suffix}_{k}"
            k += 1
        names.add(name)
        unseen.append(replace(spec, name=name, seen=False, shifted_from=source.name))
    return seen + unseen
