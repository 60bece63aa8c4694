"""A line's switch to a product the model never trained on: its level, read from its first images, in a checkpoint.

    python -m anomalib_adapted_moe.deploy.variant_level --ckpt model.ckpt --images FIRST_IMAGES --output new.ckpt
    anomalib export --config ... --export_type openvino --ckpt_path new.ckpt

The first images of the new product (16 or more, no labels, mostly good parts) are scored raw and the image threshold
moves by how far their lower quartile sits from the validation normal images'
(:meth:`.AdaptedMoEPostProcessor.fit_variant_level`); more than half of them above the threshold that gives is
refused as a defect burst. The new checkpoint differs from the old in that one buffer, so the export that follows
carries the product's threshold; the old checkpoint is never written to.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import tempfile
from pathlib import Path

import torch


def _unreadable(checkpoint: Path, error: Exception) -> ValueError:
    """The error for a checkpoint that is damaged or another model's: torch's and Lightning's name no file, and
    torch's advises ``weights_only=False``, which runs any code a bad file holds."""
    msg = (
        f"{checkpoint}: cannot be read as an AdaptedMoE checkpoint ({type(error).__name__}). Fix: give the model.ckpt "
        "an AdaptedMoE training wrote (weights/lightning/); this one is damaged (e.g. an interrupted copy) or another "
        "model's."
    )
    return ValueError(msg)


#: the share of a variant's images that may be unlike the training images (flat, far from their sizes, of the
#: other colour, misread): the level is their lower quartile, which a quarter of outliers already reaches
MAX_UNLIKE_SHARE = 0.25


def unlike_the_training_images(files: list[Path], model) -> str | None:
    """Why ``files`` cannot give a level: more than :data:`MAX_UNLIKE_SHARE` of them flat (a covered lens), far from
    the training images' sizes, of the other colour or misread by anomalib's reader; ``None`` when they can. A
    walkthrough wrote +0.505 from 24 black frames, after which a hole passed, and a level from grey or 12-bit frames."""
    from PIL import Image

    from anomalib_adapted_moe.data.flat_frames import is_flat_image
    from anomalib_adapted_moe.data.image_colour import file_kind
    from anomalib_adapted_moe.data.image_sizes import far_from, file_size
    from anomalib_adapted_moe.data.misread_images import misread_warnings

    reasons: dict[str, list[Path]] = {}
    for path in files:
        try:
            with Image.open(path) as image:
                flat = is_flat_image(image.convert("RGB"))
        except (OSError, ValueError):
            continue  # a damaged file: named by predict's check, with its fix
        size, sizes, colour = file_size(path), model.training_image_sizes, model.training_colour
        other_colour = colour in ("colour", "grey") and file_kind(path) not in (None, colour)
        for reason, unlike in (
            ("flat (a covered lens, lights off?)", flat),
            ("far from the training images' sizes (another field of view?)", sizes and size and far_from(size, sizes)),
            (f"not {model.training_colour} as the training images were", other_colour),
            ("misread by anomalib's reader (pages, 16-bit colour)", bool(misread_warnings(path, "scores"))),
        ):
            if unlike:
                reasons.setdefault(reason, []).append(path)
    unlike_files = {path for paths in reasons.values() for path in paths}
    if len(unlike_files) <= MAX_UNLIKE_SHARE * len(files):
        return None
    listed = "; ".join(f"{len(paths)} {reason} (e.g. {paths[0]})" for reason, paths in reasons.items())
    return (
        f"{len(unlike_files)} of {len(files)} images are unlike the images the model trained on: {listed}. A level "
        "read from them moves the threshold for the camera, not the product (24 black frames moved it by +0.51, and "
        "a hole then passed). Fix: give the first images of the product as the line's camera takes them in "
        "training's set-up (or train on the new camera's images)."
    )


def write_variant_checkpoint(checkpoint: Path, images: Path, output: Path) -> float:
    """Score the images in ``images`` with the model of ``checkpoint``, fit the variant's level from them, and write
    ``checkpoint`` with that level to ``output``.

    Returns:
        The level, in the model's raw score units (how far the image threshold moved).

    Raises:
        FileExistsError: ``output`` exists (``checkpoint`` too): nothing is overwritten.
        FileNotFoundError: ``checkpoint`` or the ``images`` folder is missing.
        ValueError: too few images, a defect burst among them, too many unlike the training images
            (:func:`unlike_the_training_images`), a damaged checkpoint or another model's, or a model
            from before the variant level (the message says how to fix it); a damaged image gets the predict path's
            error, naming the file.
    """
    from anomalib.data.utils.image import is_image_file
    from anomalib.engine import Engine

    from anomalib_adapted_moe import AdaptedMoE
    from anomalib_adapted_moe.command_line import loggers_at, unwritable_reason
    from anomalib_adapted_moe.evaluation import normalization_disabled
    from anomalib_adapted_moe.models.adapted_moe.post_processor import refuse_too_few_variant_images

    if output.exists():  # the trained checkpoint included
        msg = f"{output} exists; the level is written to a new checkpoint. Fix: give another --output, or delete it."
        raise FileExistsError(msg)
    if checkpoint.is_dir():
        found = sorted(str(path) for path in checkpoint.rglob("*.ckpt"))
        msg = f"{checkpoint} is a folder, not a checkpoint file. Fix: give one of the checkpoints in it ({found})."
        raise IsADirectoryError(msg) if found else FileNotFoundError(msg.replace(f" ({found})", " (none there)"))
    if not checkpoint.is_file():
        msg = f"{checkpoint}: no such checkpoint. Fix: give the model.ckpt that training wrote (weights/lightning/)."
        raise FileNotFoundError(msg)
    if images.is_file():
        msg = f"{images} is a file: the level is read from a folder of images. Fix: give its folder ({images.parent})."
        raise NotADirectoryError(msg)
    if not images.is_dir():
        msg = f"{images}: no such folder. Fix: give a folder holding the first images of the product the line runs."
        raise FileNotFoundError(msg)
    if reason := unwritable_reason(output.parent):  # before the images are scored
        msg = f"{output}: cannot be written ({reason}). Fix: give an --output in a folder you can write."
        raise OSError(msg)
    count = sum(is_image_file(path) for path in images.rglob("*"))
    if not count:  # anomalib's "Found 0 images" says no fix
        msg = (
            f"{images}: no image in this folder (png, jpg, bmp, tif, ...; other files are skipped). Fix: give the "
            "folder holding the first images of the product the line runs (32 or more give a steadier level)."
        )
        raise ValueError(msg)
    try:  # the file alone first: an OSError here is a damaged file; the model's own (backbone weights) names its fix
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except PermissionError:
        raise  # names the file
    except (pickle.UnpicklingError, EOFError, RuntimeError, OSError) as error:
        raise _unreadable(checkpoint, error) from error
    try:
        model = AdaptedMoE.load_from_checkpoint(checkpoint, weights_only=True)
    except (RuntimeError, KeyError, TypeError) as error:  # no Lightning keys, or state-dict keys that do not fit
        raise _unreadable(checkpoint, error) from error
    except ValueError as error:  # the model's own refusal (another model's, written mid-training): its words, named
        raise ValueError(f"{checkpoint}: {error}") from error
    try:  # counted before they are scored (the checkpoint's own problems are named first)
        refuse_too_few_variant_images(count)
    except ValueError as error:
        raise ValueError(f"{images}: {error}") from error
    files = sorted(path for path in images.rglob("*") if is_image_file(path))
    if problem := unlike_the_training_images(files, model):
        raise ValueError(f"{images}: {problem}")
    model.visualizer = None  # scores only: no result images to write
    # anomalib's "ckpt_path is not provided" is wrong here: the model is the checkpoint's
    with (
        loggers_at(logging.ERROR, "anomalib.engine.engine"),
        tempfile.TemporaryDirectory() as root,
        normalization_disabled(model),
    ):
        engine = Engine(default_root_dir=root, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
        batches = engine.predict(model=model, data_path=images)
    scores = torch.cat([batch.pred_score.reshape(-1) for batch in batches])
    try:
        level = model.post_processor.fit_variant_level(scores)
    except ValueError as error:
        raise ValueError(f"{images}: {error}") from error
    level_tensor = model.post_processor.variant_level.detach().clone()
    state["state_dict"]["post_processor.variant_level"] = level_tensor
    # the post-processor is a Lightning callback too, whose own copy Lightning restores after the weights
    # (`anomalib predict --ckpt_path` scored without the level: the copy said 0)
    for callback_state in state.get("callbacks", {}).values():
        if isinstance(callback_state, dict) and "variant_level" in callback_state:
            callback_state["variant_level"] = level_tensor.clone()
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")  # written whole, then renamed: no half checkpoint
    torch.save(state, partial)
    partial.replace(output)
    return level


def main(argv: list[str] | None = None) -> float:
    """Parse, fit, write, and print the level."""
    parser = argparse.ArgumentParser(
        prog="python -m anomalib_adapted_moe.deploy.variant_level",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ckpt", type=Path, required=True, help="the trained AdaptedMoE checkpoint (read only)")
    parser.add_argument("--images", type=Path, required=True, help="folder of the new product's first images")
    parser.add_argument("--output", type=Path, required=True, help="the checkpoint to write, with the level")
    args = parser.parse_args(argv)
    try:
        level = write_variant_checkpoint(args.ckpt, args.images, args.output)
    except (OSError, ValueError) as error:  # each names the file and the fix: a message, not a traceback
        parser.exit(1, f"error: {error}\n")
    print(f"variant level {level:+.4f} (raw score units; the image threshold moves by it): wrote {args.output}")
    return level


if __name__ == "__main__":
    main()
