"""``seed_everything`` applied under the ``anomalib`` command, as anomalib's own help for the option says it is.

anomalib 2.7's CLI parses ``--seed_everything`` (``seed_everything: 0`` in a config) but never calls Lightning's
``seed_everything``, so two ``anomalib train`` runs of one config differ: the random validation split of a Folder,
the experts' initial weights, the clustering (a Folder of real metal sheets trained twice: image AUROC 97.59, then
96.46). Under that command the plugin seeds with an integer value before the classes are built; ``True`` (anomalib's
default, "a random seed") leaves everything as anomalib leaves it.
"""

from __future__ import annotations

from lightning.pytorch import seed_everything


def apply_the_cli_seed(cli_class: type) -> None:
    """Make ``cli_class`` (anomalib's ``AnomalibCLI``) seed with its ``seed_everything`` value before it builds the
    model and data; applying it twice changes nothing."""
    original = cli_class.before_instantiate_classes
    if getattr(original, "applies_the_seed", False):
        return

    def before_instantiate_classes(self) -> None:
        original(self)
        seed = self._get(self.config, "seed_everything")
        if isinstance(seed, int) and not isinstance(seed, bool):
            seed_everything(seed, workers=True)

    before_instantiate_classes.applies_the_seed = True
    cli_class.before_instantiate_classes = before_instantiate_classes
