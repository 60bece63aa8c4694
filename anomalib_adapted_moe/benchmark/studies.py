"""The studies (the comparison and the paper's ablations) as rows that point at runs and tested settings.

A *run* is one training: a model with its training switches on one category. A
*row* of a study names the run and the inference setting it reads (``default``,
``tta=on``, ``top_k=2``...). Several studies share runs: the comparison's
AdaptedMoE is also Table 2's full model and Table 3's centre-loss row, so
each training happens once.
"""

from dataclasses import dataclass, field

from .zoo import INFERENCE_SWITCHES, SETTINGS_OF_OURS

DEFAULT_MODELS = [
    "AdaptedMoE",
    "AdaptedMoE SimpleNet-baseline",
    "Supersimplenet",
    "Glass",
    "EfficientAd",
    "Patchcore",
    "Padim",
]

STUDIES = ("compare", "table2", "table3", "topk", "inference")
#: studies whose rows are the tested inference settings of one run, labelled by the setting
PER_VARIANT_STUDIES = ("topk", "inference")


@dataclass(frozen=True)
class Row:
    """One line of a study's table."""

    study: str
    label: str
    category: str
    model: str
    switches: dict = field(default_factory=dict, hash=False)
    variant: str = "default"

    @property
    def training_switches(self) -> dict:
        """The switches that change training (inference switches are tested on every run's weights)."""
        return {k: v for k, v in sorted(self.switches.items()) if k not in INFERENCE_SWITCHES}

    @property
    def key(self) -> str:
        """The run this row reads: category, model and training switches."""
        suffix = ",".join(f"{k}={v}" for k, v in self.training_switches.items())
        return f"{self.category}__{self.model}" + (f"__{suffix}" if suffix else "")


def _variant_of(switches: dict) -> str:
    """The tested setting a named configuration reads."""
    if "tta" in switches:
        return "tta=on" if switches["tta"] else "tta=off"
    return "default"


def rows(study: str, categories: list[str], models: list[str] | None = None) -> list[Row]:
    """The rows of ``study`` for ``categories`` (``topk`` and ``inference`` rows are found in the run: one per
    tested setting)."""
    out = []
    for category in categories:
        if study == "compare":
            for name in models or DEFAULT_MODELS:
                model, switches = SETTINGS_OF_OURS.get(name, (name, {}))
                out.append(Row(study, name, category, model, switches, _variant_of(switches)))
        elif study == "table2":
            for moe in (False, True):
                for normalize in (False, True):
                    for tta in (False, True):
                        state = {
                            key: "on" if on else "off" for key, on in (("moe", moe), ("tta", tta), ("norm", normalize))
                        }
                        label = " ".join(f"{key}={value}" for key, value in state.items())
                        # only the switches turned off (both default on), so the full model is the comparison's run
                        switches = {key: False for key, on in (("moe", moe), ("normalize", normalize)) if not on}
                        out.append(Row(study, label, category, "AdaptedMoE", switches, _variant_of({"tta": tta})))
        elif study == "table3":
            out.append(Row(study, "center loss", category, "AdaptedMoE"))
            out.append(Row(study, "softmax loss", category, "AdaptedMoE", {"routing_loss": "softmax"}))
        elif study == "topk":
            out.append(Row(study, "top-k sweep", category, "AdaptedMoE", {}, "top_k=*"))
        elif study == "inference":  # TTA, gate, temperature, image score: every setting tested on the same weights
            out.append(Row(study, "inference settings", category, "AdaptedMoE", {}, "*"))
        else:
            msg = f"Unknown study {study!r}; choose from {STUDIES}."
            raise ValueError(msg)
    return out
