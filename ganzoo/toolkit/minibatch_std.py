"""Minibatch standard deviation (Karras et al. 2018, PGGAN section 3; StyleGAN's form).

``minibatch_std=GROUP`` appends one feature map to the conv critic's last
activations: the standard deviation of each feature over groups of GROUP
samples, averaged into one number per group. The critic can then see a batch
whose samples are too alike, the modern form of minibatch discrimination
(Salimans et al. 2016). The layer is :class:`ganzoo.nets.MinibatchStdDev`;
the built-in conv critic adds it when the option is set, and a critic of a
plugin's own adds it too. A critic without the layer is refused, so the
option never does nothing.
"""
from __future__ import annotations

from . import Feature, require, role_nets


class MinibatchStdFeature(Feature):
    name = "minibatch_std"
    hparams = {"minibatch_std": 0}
    summary = "minibatch standard deviation layer in conv critics (group size; 0 = off)"
    paper = "Karras et al. 2018, PGGAN (arXiv:1710.10196)"
    applies_to = "variants whose conv critic has a MinibatchStdDev layer (TwoPlayerVariant's conv critic)"
    check_settings = {"minibatch_std": 4}

    def validate(self, variant):
        group = variant.hparams["minibatch_std"]
        require(group >= 1, f"minibatch_std must be >= 0 (0 = off; StyleGAN uses 4), got {group}")

    def batch_multiple(self, variant):
        return variant.hparams["minibatch_std"] * int(variant.hparams.get("pack", 1))

    def on_build(self, variant, nets):
        from ..nets import MinibatchStdDev

        for name in role_nets(variant, "critic"):
            layers = [m for m in nets[name].modules() if isinstance(m, MinibatchStdDev)]
            fix = ("use --set arch=conv (image data) or drop minibatch_std" if "arch" in variant.hparams
                   else "add a ganzoo.nets.MinibatchStdDev layer to it, or drop minibatch_std")
            require(bool(layers),
                    f"minibatch_std needs a conv critic with a minibatch-stddev layer, but {variant.name!r} "
                    f"built {name!r} as {type(nets[name]).__name__}; {fix}")
