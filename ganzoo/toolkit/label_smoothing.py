"""One-sided label smoothing: the critic's target for real data is ``label_smoothing`` (e.g. 0.9).

Salimans et al. 2016, "Improved Techniques for Training GANs" (arXiv:1606.03498),
section 3.4: only the real target is smoothed (smoothing the fake target too
moves the optimum). It applies to losses with real/fake labels, the BCE family
(``ganzoo.BCELossMixin``: vanilla, dcgan, cgan); the loss reads the option
(see ``BCELossMixin.d_loss``), so this feature only declares and checks it.
"""
from __future__ import annotations

from . import Feature, require


class LabelSmoothingFeature(Feature):
    name = "label_smoothing"
    hparams = {"label_smoothing": 1.0}
    summary = "one-sided label smoothing: BCE target for real data (e.g. 0.9; 1 = off)"
    paper = "Salimans et al. 2016, Improved Techniques for Training GANs (arXiv:1606.03498)"
    applies_to = ("variants whose loss has real/fake labels (the BCE family: vanilla, dcgan, cgan); "
                  "a Wasserstein or least-squares loss has none")
    check_settings = {"label_smoothing": 0.9}

    def validate(self, variant):
        value = variant.hparams["label_smoothing"]
        require(0.0 < value <= 1.0, f"label_smoothing must be in (0, 1] (e.g. 0.9; 1 = off), got {value}")
