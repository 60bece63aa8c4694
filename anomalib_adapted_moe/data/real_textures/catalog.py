"""Which photographic textures of the Debian package ``openarena-081-textures`` make which subclass.

Three material families, eight subclasses each: five seen in training, three
unseen ones that are other real textures of the same family (not recoloured
copies of a seen one). ``metal_sheet`` is the periodic category: tread plates,
perforated sheet, diamond plate and grates. Paths are inside the package's
``pak4-textures.pk3`` (a zip archive).
"""

from __future__ import annotations

from dataclasses import dataclass

#: the Debian package and the archive inside it
PACKAGE = "openarena-081-textures"
PK3 = "usr/share/games/openarena/baseoa/pak4-textures.pk3"
LICENSE_FILES = ("copyright", "CREDITS", "README")


@dataclass(frozen=True)
class RealSubclass:
    """One subclass: its name, the texture it is cut from, and whether it is seen in training."""

    name: str
    texture: str
    seen: bool


def _family(seen: dict[str, str], unseen: dict[str, str]) -> tuple[RealSubclass, ...]:
    return tuple(RealSubclass(n, t, True) for n, t in seen.items()) + tuple(
        RealSubclass(n, t, False) for n, t in unseen.items()
    )


REAL_CATEGORIES: dict[str, tuple[RealSubclass, ...]] = {
    "metal_sheet": _family(
        seen={
            "tread_plate_grey": "textures/base_floor/clang_floor.jpg",
            "tread_plate_fine": "textures/base_floor/clang_floor3b.jpg",
            "diamond_plate": "textures/base_floor/diamond2.jpg",
            "perforated_round": "textures/base_floor/hfloor3.jpg",
            "box_grate_black": "textures/base_floor/pjgrate1.tga",
        },
        unseen={
            "tread_plate_dark": "textures/base_floor/clang_floor2.jpg",
            "lattice_grate": "textures/base_floor/floor3_3dark.jpg",
            "bar_grill": "textures/base_floor/proto_grill.jpg",
        },
    ),
    "metal_plate": _family(
        seen={
            "blue_painted": "textures/base_wall/bluemetal2.jpg",
            "dark_steel": "textures/base_wall/c_met5_2.jpg",
            "red_painted": "textures/base_wall/redmet.jpg",
            "rusted_brown": "textures/base_wall/rusted.jpg",
            "speckled_bridge": "textures/base_floor/metalbridge06.jpg",
        },
        unseen={
            "blue_painted_worn": "textures/base_wall/bluemetal3b.jpg",
            "rust_orange": "textures/base_wall/patch10rusty5.jpg",
            "mauve_bridge": "textures/base_floor/metalbridge04d.jpg",
        },
    ),
    "stone": _family(
        seen={
            "concrete_warm": "textures/base_floor/concrete.jpg",
            "concrete_grey": "textures/base_wall/concrete1.jpg",
            "dirt": "textures/base_floor/dirt.jpg",
            "granite_blocks": "textures/gothic_floor/largeblockfloor4.jpg",
            "pebble_floor": "textures/gothic_floor/blocks17floor.jpg",
        },
        unseen={
            "concrete_dark": "textures/base_wall/concrete_dark.jpg",
            "small_stone": "textures/base_floor/smallstone.jpg",
            "sandstone_blocks": "textures/gothic_floor/largerblock3b.jpg",
        },
    ),
}

#: defect family (of the synthetic generator's painters) -> folder name under test/ and ground_truth/
DEFECT_FOLDERS = {"scratch": "scratch", "fold": "dent", "stain": "stain", "hole": "hole", "foreign": "foreign_material"}
