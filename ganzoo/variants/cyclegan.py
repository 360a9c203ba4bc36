"""cyclegan: unpaired image-to-image translation with cycle consistency.

Zhu, Park, Isola and Efros, "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017 (arXiv:1703.10593); the
reference is the authors' PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix).

It trains on a two-domain dataset (``--dataset pair:digits,mnist`` or
``folder-pair:PATH``; ganzoo.data.pair). What the paper describes and this
module keeps:

* two ResNet generators, ``G_ab`` (A -> B) and ``G_ba`` (B -> A): a 7x7
  conv, two stride-2 downsamplings, residual blocks, two stride-2 transposed
  convs, a 7x7 conv and tanh, with instance norm and reflection padding;
* two PatchGAN discriminators, ``D_a`` and ``D_b`` (4x4 convs, stride 2
  twice then 1, LeakyReLU 0.2, instance norm after the first), one score per
  patch;
* the least-squares adversarial loss; cycle consistency
  ||G_ba(G_ab(a)) - a||_1 + ||G_ab(G_ba(b)) - b||_1 weighted lambda = 10 (the
  objective of the paper's section 3). The identity loss
  ||G_ab(b) - b||_1 + ||G_ba(a) - a||_1, which the paper adds for painting ->
  photo (section 5.2) and the authors' code turns on by default (0.5 lambda),
  is ``--set identity_weight=5`` (or ``preset=authors-code``): on
  ``pair:digits,mnist`` (docs/recipes/cyclegan-identity.md, 2 seeds) the
  translations kept the digit's label more often without it (84.4% and
  77.6% against 79.2% and 74.0%), at the same or lower FD and two thirds of
  the CPU time, so it is off by default since 2026-12-05;
* a pool of the 50 latest fakes per discriminator (Shrivastava et al.): each
  new fake replaces a random pooled one half the time, and D sees the
  pooled one instead; D's loss halved; one Adam for both generators and one
  for both discriminators, 2e-4, betas (0.5, 0.999); the rate constant for
  the first half of the run and decayed linearly to 0 over the second (the
  toolkit's ``lr_schedule=linear`` with ``lr_decay_start``).

Scaled down for a CPU: 32 base channels in G and D (paper 64), 3 residual
blocks (paper 6 at 128 px, 9 at 256), batch 8 (paper 1), 3000 steps. One
thread beside two other jobs took 0.39 s per step on 28-px digits with the
identity loss (batch 16: 0.77); the results rebuild's default runs, without
it, took 14-15 CPU-minutes each (with it: about 22).

The pools are buffers of the nets (``pool_a``, ``pool_b``), so checkpoints
hold them and a run resumes bit-identically. Each micro-batch queries a pool
as it stood at the step's start and ``end_step`` replays every micro-batch's
changes in shard order, gathered from all ranks
(:func:`ganzoo.distributed.gather_from_ranks`): with one micro-batch that is
the paper's pool exactly, and a torchrun run equals one process with
``--accumulate`` over the same global batches.

Sampling: a translation model has no noise. ``latent(n)`` draws noise images
that ``generate`` translates from A to B (what the conformance kit and
``ganzoo sample`` see); the run's grids instead show fixed real examples of
each domain beside their translation and reconstruction (a | a->b | a->b->a |
b | b->a | b->a->b per row), and ``ganzoo translate RUN --input ...`` maps
real images either way.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import Batch, DataSpec
from ..data.pair import REAL_B
from ..distributed import gather_from_ranks
from ..errors import GanzooError
from ..hookspecs import hookimpl
from ..nets import dcgan_init
from ..optim import adam
from ..variant import Phase, TrainState, Variant


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Images (N, C, H, W) in [-1, 1] -> images of the same shape in [-1, 1]; H and W multiples of 4."""

    def __init__(self, channels: int, width: int, blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), nn.InstanceNorm2d(width),
                                   nn.ReLU(True)]
        for i in range(2):  # downsampling
            layers += [nn.Conv2d(width * 2 ** i, width * 2 ** (i + 1), 3, stride=2, padding=1),
                       nn.InstanceNorm2d(width * 2 ** (i + 1)), nn.ReLU(True)]
        layers += [ResidualBlock(width * 4) for _ in range(blocks)]
        for i in range(2, 0, -1):  # upsampling
            layers += [nn.ConvTranspose2d(width * 2 ** i, width * 2 ** (i - 1), 3, stride=2, padding=1,
                                          output_padding=1),
                       nn.InstanceNorm2d(width * 2 ** (i - 1)), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """Images (N, C, H, W) -> one raw score per patch (N, P)."""

    def __init__(self, channels: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width, width * 2, 4, 2, 1), nn.InstanceNorm2d(width * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 2, width * 4, 4, 1, 1), nn.InstanceNorm2d(width * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(width * 4, 1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ImagePool(nn.Module):
    """The latest ``size`` fakes (Shrivastava et al. 2017), as buffers so checkpoints hold them.

    :meth:`query` takes one micro-batch of new fakes (n, C, H, W): while the pool fills, each is
    stored and returned as is; once full, each is returned as is half the time, and otherwise
    swapped for a random pooled fake (which is returned). Its randomness comes from torch's
    default RNG (per micro-batch under the trainer's sharding), which checkpoints also hold.

    Why queries are staged: every micro-batch of a step queries the pool as it stood at the step's
    start (plus its own changes), and :meth:`commit` (from ``end_step``) replays every micro-batch's
    changes in shard order, gathered from all ranks. With one micro-batch this is exactly the paper's
    sequential pool; with several it does not depend on how they are laid out, so a torchrun run
    equals one process with ``--accumulate`` (the buffers are then equal on every rank too).
    """

    #: The kind of a staged change: store in the next free slot (else a swap's slot index, >= 0).
    APPEND = -1

    def __init__(self, size: int, shape: tuple[int, ...]):
        super().__init__()
        self.size = size
        self.register_buffer("images", torch.zeros(size, *shape))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self._staged: list[tuple[torch.Tensor, torch.Tensor]] = []  # (slots (k,), images (k, C, H, W))

    @torch.no_grad()
    def query(self, fakes: torch.Tensor) -> torch.Tensor:
        """Fakes (n, C, H, W) -> what D sees, (n, C, H, W); the pool's change is staged for :meth:`commit`."""
        if self.size == 0:
            return fakes
        out, working, count = fakes.clone(), self.images.clone(), int(self.count)
        slots = []
        for i in range(fakes.shape[0]):
            if count < self.size:
                working[count] = fakes[i]
                count += 1
                slots.append(self.APPEND)
            elif float(torch.rand(())) < 0.5:
                j = int(torch.randint(self.size, ()))
                out[i] = working[j]
                working[j] = fakes[i]
                slots.append(j)
            else:
                slots.append(None)
        kept = [i for i, slot in enumerate(slots) if slot is not None]
        if kept:
            self._staged.append((torch.tensor([slots[i] for i in kept], dtype=torch.long, device=fakes.device),
                                 fakes[kept].detach().clone()))
        return out

    @torch.no_grad()
    def commit(self) -> None:
        """Apply the staged changes of every micro-batch of this step, all ranks' in shard order."""
        shape = self.images.shape[1:]
        slots = torch.cat([s for s, _ in self._staged]) if self._staged else \
            torch.zeros(0, dtype=torch.long, device=self.images.device)
        images = torch.cat([x for _, x in self._staged]) if self._staged else self.images.new_zeros(0, *shape)
        self._staged.clear()
        for rank_slots, rank_images in zip(gather_from_ranks(slots), gather_from_ranks(images)):
            for slot, image in zip(rank_slots.tolist(), rank_images):
                if slot == self.APPEND:
                    if int(self.count) < self.size:
                        self.images[int(self.count)] = image
                        self.count += 1
                else:
                    self.images[slot] = image


def lsgan(scores: torch.Tensor, target: float) -> torch.Tensor:
    """Mean squared distance of the scores to ``target`` (1 for real, 0 for fake)."""
    return (scores.float() - target).square().mean()


class CycleGAN(Variant):
    name = "cyclegan"
    paper = ("Zhu et al. 2017, Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial Networks "
             "(arXiv:1703.10593)")
    summary = ("unpaired translation between two domains: 2 ResNet G, 2 PatchGAN D, LSGAN + cycle (10) losses "
               "(+ identity: --set preset=authors-code), pools of 50 fakes; two-domain data (pair:A,B, "
               "folder-pair:PATH)")
    default_dataset = "pair:digits,mnist"
    data_kinds = ("image",)
    domains = 2
    features = ("ema", "lr_schedule")
    generator_nets = ("G_ab", "G_ba")
    critic_nets = ("D_a", "D_b")
    directions = ("a2b", "b2a")
    defaults = {
        "steps": 3000,
        "batch_size": 8,
        "lr_g": 2e-4,
        "lr_d": 2e-4,
        "betas": (0.5, 0.999),
        "g_width": 32,
        "d_width": 32,
        "res_blocks": 3,
        "cycle_weight": 10.0,
        "identity_weight": 0.0,  # the authors' code: 5.0 (0.5 lambda); see the module docstring
        "pool_size": 50,
        "lr_schedule": "linear",  # constant for the first half, then linear to 0 (the paper's schedule):
        "lr_decay_start": 1500,   # half of steps unless set (resolve_hparams)
    }
    positive = Variant.positive | {"res_blocks"}
    #: The authors' code's default: the identity loss at 0.5 lambda (the default until 2026-12-05;
    #: runs made before then record their identity_weight, so they need no legacy_hparams).
    presets = {"authors-code": {"identity_weight": 5.0}}

    @classmethod
    def resolve_hparams(cls, spec, overrides):
        """The defaults, with the decay starting at half of ``steps`` unless ``lr_decay_start`` is set."""
        resolved = super().resolve_hparams(spec, overrides)
        if "lr_decay_start" not in overrides:
            resolved["lr_decay_start"] = resolved["steps"] // 2
        return resolved

    def __init__(self, spec: DataSpec | None = None, **overrides):
        super().__init__(spec, **overrides)
        if spec is not None and any(side % 4 for side in spec.shape[1:]):
            raise GanzooError(f"cyclegan's generators need sides that are multiples of 4, got "
                              f"{'x'.join(map(str, spec.shape[1:]))} (use --image-size)")

    # -- the contract -----------------------------------------------------------------------------
    def build(self, spec: DataSpec) -> nn.ModuleDict:
        hp, channels = self.hparams, spec.channels
        nets = nn.ModuleDict({
            "G_ab": ResnetGenerator(channels, hp["g_width"], hp["res_blocks"]),
            "G_ba": ResnetGenerator(channels, hp["g_width"], hp["res_blocks"]),
            "D_a": PatchDiscriminator(channels, hp["d_width"]),
            "D_b": PatchDiscriminator(channels, hp["d_width"]),
            "pool_a": ImagePool(hp["pool_size"], tuple(spec.shape)),
            "pool_b": ImagePool(hp["pool_size"], tuple(spec.shape)),
        })
        dcgan_init(nets)  # the reference's default: N(0, 0.02)
        return nets

    def make_optimizers(self, nets: nn.ModuleDict) -> dict[str, torch.optim.Optimizer]:
        hp = self.hparams
        generators = [*nets["G_ab"].parameters(), *nets["G_ba"].parameters()]
        critics = [*nets["D_a"].parameters(), *nets["D_b"].parameters()]
        return {"G": adam(generators, lr=hp["lr_g"], betas=hp["betas"]),
                "D": adam(critics, lr=hp["lr_d"], betas=hp["betas"])}

    def phases(self, step: int) -> list[Phase]:
        return [Phase("G", ("G",), self.generator_loss), Phase("D", ("D",), self.critic_loss)]

    def latent(self, n: int, device: torch.device) -> torch.Tensor:
        """Noise images (n, *spec.shape) in [-1, 1]: the input slot of a translation model."""
        return torch.rand(n, *self.spec.shape, device=device).mul_(2).sub_(1)

    def generate(self, nets, z, labels=None):
        """``z`` (n, *spec.shape), images of domain A -> their translation to B."""
        return nets["G_ab"](z)

    def translate(self, nets, images, direction):
        if direction not in self.directions:
            raise GanzooError(f"--direction must be a2b or b2a, got {direction!r}")
        return nets["G_ab" if direction == "a2b" else "G_ba"](images)

    def sample_grid(self, nets, dataset, z, labels, nrow):
        """Eight fixed real examples per domain: a | a->b | a->b->a | b | b->a | b->a->b per row."""
        reference = dataset.reference_sample(8)
        a, b = reference.real.to(z.device), reference.extra[REAL_B].to(z.device)
        a2b, b2a = nets["G_ab"](a), nets["G_ba"](b)
        rows = torch.stack([a, a2b, nets["G_ba"](a2b), b, b2a, nets["G_ab"](b2a)], dim=1)  # (8, 6, C, H, W)
        return rows.flatten(0, 1), 6

    def end_step(self, state: TrainState) -> None:
        """The step's pool changes, from every micro-batch and rank (see :class:`ImagePool`)."""
        for name in ("pool_a", "pool_b"):
            state.nets[name].commit()

    # -- losses -----------------------------------------------------------------------------------
    def generator_loss(self, nets: nn.ModuleDict, batch: Batch):
        hp = self.hparams
        a, b = batch.real, batch.extra[REAL_B]
        fake_b, fake_a = nets["G_ab"](a), nets["G_ba"](b)
        adversarial = lsgan(nets["D_b"](fake_b), 1.0) + lsgan(nets["D_a"](fake_a), 1.0)
        cycle = F.l1_loss(nets["G_ba"](fake_b), a) + F.l1_loss(nets["G_ab"](fake_a), b)
        loss = adversarial + hp["cycle_weight"] * cycle
        stats = {"adversarial": adversarial, "cycle": cycle}
        if hp["identity_weight"] > 0:
            identity = F.l1_loss(nets["G_ab"](b), b) + F.l1_loss(nets["G_ba"](a), a)
            loss = loss + hp["identity_weight"] * identity
            stats["identity"] = identity
        return loss, {"loss": loss, **stats}

    def critic_loss(self, nets: nn.ModuleDict, batch: Batch):
        a, b = batch.real, batch.extra[REAL_B]
        with torch.no_grad():
            fake_b = nets["pool_b"].query(nets["G_ab"](a))
            fake_a = nets["pool_a"].query(nets["G_ba"](b))
        loss_a = 0.5 * (lsgan(nets["D_a"](a), 1.0) + lsgan(nets["D_a"](fake_a), 0.0))
        loss_b = 0.5 * (lsgan(nets["D_b"](b), 1.0) + lsgan(nets["D_b"](fake_b), 0.0))
        loss = loss_a + loss_b
        return loss, {"loss": loss, "a": loss_a, "b": loss_b}


@hookimpl
def register_variants(register):
    register(CycleGAN)
