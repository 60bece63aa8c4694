"""Which floating-point precision OpenVINO's CPU plugin runs an exported model in, and how to choose it.

OpenVINO runs an FP32 IR in **bfloat16** by default on every CPU with AVX512_BF16
(Intel Xeon Sapphire Rapids and later, and AMD EPYCs that have it): its CPU plugin
sets the inference precision to bf16 whenever the CPU has the instruction, and f32
elsewhere (older Xeons and EPYCs). AdaptedMoE's experts are SimpleNet discriminators trained to flag feature
perturbations of about 1.5 % of the feature scale; bf16 rounding through the
backbone perturbs the features on that scale, so with every layer in bf16 the scores
move by up to about 2e-1 (post-processed, in [0, 1]) and image pairs swap (figures in
the README, "Deploying to the edge"). Precision is therefore something we choose,
name and check, never something the CPU picks for us; where nobody chooses, the
exported IR keeps the backbone in f32 (:mod:`.ir_marks`).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Literal

from .openvino_core import shared_core

#: inference precisions of OpenVINO's CPU plugin, as ``INFERENCE_PRECISION_HINT`` spells them
Precision = Literal["f32", "bf16", "f16"]
PRECISIONS: tuple[str, ...] = ("f32", "bf16", "f16")
#: what OpenVINO's ``OPTIMIZATION_CAPABILITIES`` calls each precision
_CAPABILITY = {"f32": "FP32", "bf16": "BF16", "f16": "FP16", "int8": "INT8"}
#: /proc/cpuinfo flags that decide which precisions run natively (printed beside every figure)
RELEVANT_CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
)


#: what a CPU needs for OpenVINO to run each precision natively (named in the refusal's fix)
_NEEDS = {
    "bf16": "bf16 support (AVX512_BF16 or AMX, e.g. Intel Xeon Sapphire Rapids)",
    "f16": "f16 support (AVX512_FP16, e.g. Intel Xeon Sapphire Rapids)",
}


class UnsupportedPrecisionError(ValueError):
    """A precision was asked for that this CPU does not run."""


def _first_processor() -> dict[str, str]:
    """The fields of ``/proc/cpuinfo``'s first processor (empty where the file is missing)."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []:
        key, _, value = (part.strip() for part in line.partition(":"))
        if not key:  # the first processor's block ends here
            break
        fields.setdefault(key, value)
    return fields


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what :mod:`platform` knows elsewhere."""
    return _first_processor().get("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The :data:`RELEVANT_CPU_FLAGS` this CPU has (empty where ``/proc/cpuinfo`` is missing)."""
    present = set(_first_processor().get("flags", "").split())
    return [flag for flag in RELEVANT_CPU_FLAGS if flag in present]


def cpu_description() -> str:
    """The model name with what tells two CPUs of that name apart, for the machine line of generated docs: one
    name ("Intel(R) Xeon(R) Processor @ 2.80GHz") has covered a Xeon with AMX and one without bf16 on this project.
    """
    fields = _first_processor()
    family = (
        f"family {fields['cpu family']} model {fields['model']}; " if {"cpu family", "model"} <= fields.keys() else ""
    )
    bf16 = [flag for flag in cpu_flags() if flag in ("avx512_bf16", "amx_bf16")]
    return f"{cpu_model()} ({family}{', '.join(bf16) if bf16 else 'no bf16'})"


def cpu_capabilities() -> list[str]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of the CPU device, e.g. ``['BF16', 'FP32', 'INT8', ...]``."""
    return list(shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def available_precisions() -> list[str]:
    """The inference precisions (:data:`PRECISIONS`) and ``"int8"`` that this CPU runs, f32 first."""
    capabilities = set(cpu_capabilities())
    return [name for name in (*PRECISIONS, "int8") if _CAPABILITY[name] in capabilities or name == "f32"]


def default_precision() -> str:
    """The precision OpenVINO's CPU plugin picks for an FP32 IR when nobody says: bf16 where the CPU has it."""
    return precision_name(shared_core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def check_precision(precision: str) -> None:
    """Raise :class:`UnsupportedPrecisionError` naming the precision, the CPU and what it offers instead."""
    if precision not in (*PRECISIONS, "int8"):
        msg = (
            f"Unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)} (int8 comes with the IR: "
            "anomalib export --compression_type INT8_PTQ)."
        )
        raise UnsupportedPrecisionError(msg)
    offered = available_precisions()
    if precision not in offered:
        flags = ", ".join(cpu_flags()) or "none of " + ", ".join(RELEVANT_CPU_FLAGS)
        hints = [name for name in offered if name != "int8"]  # int8 is no inference hint: not a choice to offer
        msg = (
            f"{precision} inference was asked for, but this CPU ({cpu_model()}; flags: {flags}) does not run it: "
            f"OpenVINO runs {', '.join(hints)} here. Fix: choose {' or '.join(hints)} (f32 is exact everywhere), or "
            f"run on a CPU with {_NEEDS.get(precision, precision + ' support')}."
        )
        raise UnsupportedPrecisionError(msg)


def compile_config(precision: Precision = "f32") -> dict[str, str]:
    """``compile_model`` config that makes OpenVINO's CPU plugin run in ``precision``, checked against this CPU."""
    if precision == "int8":
        msg = (
            "int8 is a property of the IR (anomalib export --compression_type INT8_PTQ), not an inference hint. "
            "Fix: compile that INT8 IR with f32 or bf16, the precision of its float layers."
        )
        raise UnsupportedPrecisionError(msg)
    check_precision(precision)
    return {"INFERENCE_PRECISION_HINT": precision}


def precision_name(element_type) -> str:
    """``'f32'``/``'bf16'``/``'f16'`` for an OpenVINO element type (what ``INFERENCE_PRECISION_HINT`` returns)."""
    return element_type.get_type_name() if hasattr(element_type, "get_type_name") else str(element_type)


def compiled_precision(compiled_model) -> str:
    """The floating-point precision a model compiled for the CPU runs in (an IR's ``precise`` marks keep its
    backbone in f32 beneath a bf16 one: :mod:`.ir_marks`).

    Raises:
        ValueError: a model compiled for another device, such as ``AUTO`` (anomalib's ``OpenVINOInferencer``
            default), which reports no inference precision (OpenVINO's own error ran to several lines).
    """
    try:
        hint = compiled_model.get_property("INFERENCE_PRECISION_HINT")
    except RuntimeError:
        devices = ", ".join(compiled_model.get_property("EXECUTION_DEVICES"))
        msg = (
            f"This model was compiled for a device that reports no inference precision (it runs on: {devices}; "
            "anomalib's OpenVINOInferencer compiles for AUTO by default). Fix: compile for the CPU, "
            'anomalib_adapted_moe.deploy.openvino_inferencer(path) or OpenVINOInferencer(path, device="CPU").'
        )
        raise ValueError(msg) from None
    return precision_name(hint)
