"""What the package adds to the stock ``anomalib`` command before it builds anything: the seed anomalib parses and
never applies, and the checkpoint and predict folder named when they are not there.

anomalib 2.7's CLI parses ``--seed_everything`` (``seed_everything: 0`` in a config) but never calls Lightning's
``seed_everything``, so two ``anomalib train`` runs of one config differ: the random validation split of a Folder,
the experts' initial weights, the clustering (a Folder of real metal sheets trained twice: image AUROC 97.59, then
96.46). An integer seed is applied before the classes are built; ``True`` (anomalib's default, "a random seed")
leaves everything as anomalib leaves it. A ``--ckpt_path`` that does not exist (``CKPT`` typed as the README writes
it) or a predict ``--data`` folder without images ended in a traceback after the model and data were built, and an
MVTecAD ``--data.category`` with no folder and no such MVTecAD category (a typo) in a download of the whole MVTecAD.
A checkpoint's test, predict, validate or export builds the model without fetching the backbone's ImageNet weights,
which the checkpoint holds.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from anomalib.data.utils.image import get_image_filenames
from lightning.pytorch import seed_everything

from anomalib_adapted_moe.backbone_weights import backbone_weights_in_checkpoint
from anomalib_adapted_moe.command_line import refuse
from anomalib_adapted_moe.data.mvtec_layout import unknown_mvtec_category
from anomalib_adapted_moe.data.predict_check import predict_path_problem
from anomalib_adapted_moe.models.adapted_moe.lightning_model import refuse_an_unloadable_checkpoint

#: the subcommands that load ``--ckpt_path`` (fit and train to resume)
LOADING = ("fit", "train", "validate", "test", "predict", "export")
#: those that score with its weights, backbone included, without training
SCORING = ("validate", "test", "predict", "export")


def extend_anomalib_cli(cli_class: type) -> None:
    """Make ``cli_class`` (anomalib's ``AnomalibCLI``) check its checkpoint and predict folder, and seed with its
    ``seed_everything`` value, before it builds the model and data; extending it twice changes nothing."""
    original = cli_class.before_instantiate_classes
    if getattr(original, "extended", False):
        return

    def before_instantiate_classes(self) -> None:
        original(self)
        if self.subcommand in LOADING:
            refuse_an_unloadable_checkpoint(self._get(self.config, "ckpt_path"))
        if self.subcommand == "predict":
            refuse_a_folder_without_images(self._get(self.config, "data"))
        refuse_an_unknown_mvtec_category(self._get(self.config, "data"))
        seed = self._get(self.config, "seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            seed_everything(seed, workers=True)

    before_instantiate_classes.extended = True
    cli_class.before_instantiate_classes = before_instantiate_classes
    original_instantiate = cli_class.instantiate_classes

    def instantiate_classes(self) -> None:
        """The model of a checkpoint's test, predict, validate or export is built without fetching the backbone's
        ImageNet weights: the checkpoint, loaded strictly, holds them (an offline box failed on the download)."""
        scoring = self.subcommand in SCORING and self._get(self.config, "ckpt_path") is not None
        with backbone_weights_in_checkpoint() if scoring else contextlib.nullcontext():
            original_instantiate(self)

    cli_class.instantiate_classes = instantiate_classes


def refuse_a_folder_without_images(data: object) -> None:
    """Refuse a predict ``--data`` path that is not there or holds no image, as anomalib's reader lists them."""
    if not isinstance(data, str | Path):
        return  # a datamodule
    if problem := predict_path_problem(Path(data)):
        refuse(ValueError(problem))
    try:
        get_image_filenames(data)
    except (OSError, ValueError) as error:
        refuse(
            FileNotFoundError(
                f"{data}: no image to predict (--data; {error}). Fix: give an image file or a folder of images "
                "(.png, .jpg, .bmp, .tif, ...)."
            )
        )


def refuse_an_unknown_mvtec_category(data: object) -> None:
    """Refuse an MVTecAD category that is neither a folder under its root nor one of MVTecAD's own: anomalib would
    download the whole dataset (about 5 GB; offline, a URLError traceback) and still not find it."""
    class_path = str(getattr(data, "class_path", ""))
    if class_path.split(".")[-1] != "MVTecAD":
        return
    settings = getattr(data, "init_args", None)
    root, category = getattr(settings, "root", None), getattr(settings, "category", None)
    if problem := unknown_mvtec_category(root, category, "--data.category", "--data.root"):
        refuse(FileNotFoundError(problem))
