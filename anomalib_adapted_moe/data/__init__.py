"""Texture AD datamodules whose items and batches carry the subclass of every image."""

from anomalib_adapted_moe.data.subclass_batch import SubclassImageBatch, SubclassImageItem
from anomalib_adapted_moe.data.synthetic_texture_ad import SyntheticTextureAD
from anomalib_adapted_moe.data.texture_ad import TextureAD, TextureADDataset

__all__ = [
    "SubclassImageBatch",
    "SubclassImageItem",
    "SyntheticTextureAD",
    "TextureAD",
    "TextureADDataset",
]
