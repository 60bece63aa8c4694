"""The Texture AD folder layout and where the data comes from.

Kept in one place so that the datamodule, its error messages and ``--check``
describe, and accept, the same layout.
"""

from __future__ import annotations

HF_DATASET = "texture-ad/Texture-AD-Benchmark"
HF_URL = f"https://huggingface.co/datasets/{HF_DATASET}"
IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLIT_FILE = "split.json"
MASK_SUFFIX = "_mask"
NORMAL_LABEL = "good"
CHECK_COMMAND = "python -m anomalib_adapted_moe.data.texture_ad --check"

LAYOUT_TEXT = """\
    <root>/<category>/                 category: cloth, wafer, metal (or any folder name)
        split.json                     optional: {"seen": [...], "unseen": [...]}
        <subclass>/
            train/good/*.png           defect-free training images
            test/good/*.png            defect-free test images
            test/<defect>/*.png        defective test images
            ground_truth/<defect>/<stem>_mask.png  (or <stem>.png) one mask per defect image
    (image extensions: png, jpg, jpeg, bmp, tif, tiff, any case)"""
