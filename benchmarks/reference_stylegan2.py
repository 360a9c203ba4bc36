"""NVlabs/stylegan2-ada-pytorch itself on mnist at ganzoo stylegan2's CPU settings: is the collapse ours?

    git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/sg2ada   # not a ganzoo dependency
    OMP_NUM_THREADS=1 python benchmarks/reference_stylegan2.py --reference /tmp/sg2ada \\
        --data-dir ../shared/data/mnist --out /tmp/sg2ada-mnist [--seed 0] [--mapping-layers 8]

A diagnostic for issue 17, not part of the library, and not run by CI. ganzoo's stylegan2 collapses on
mnist at its default budget (every sample one digit by step 500-900; docs/recipes/stylegan2-mnist-
collapse.md). This script trains the *reference implementation's* own networks
(``training.networks.Generator`` with its skip synthesis network, ``Discriminator`` with its residual
architecture) and its own loss (``training.loss.StyleGAN2Loss``: non-saturating loss, style mixing,
lazy R1) on the same data, with ganzoo stylegan2's defaults:

* 32 px (mnist padded with black to 32 and generated images cropped back to 28, as ganzoo does),
  z and w of 128, ``--mapping-layers`` 8 (mapping lr multiplier 0.01, the reference's), channel base
  1024 and at most 64 feature maps, no fp16 and no conv clamp (a CPU run in fp32);
* batch 32, Adam lr 0.0025 and betas (0, 0.99); minibatch-stddev group 4; R1 gamma
  0.0002 * 32^2 / 32 = 0.0064 every 16 steps, path-length regularisation off, G's lazy interval 4
  all the same (train.py sets it whatever the weight); style mixing 0.9;
* G_ema with a half-life of 10k images and ramp-up 0.05 (train.py's "auto" rule at batch 32).

The loop restates the phases of ``training/training_loop.py`` for one process: per step, the same
real batch for every phase, fresh latents per phase; Gmain, Greg (every 4), Dmain, Dreg (every 16),
each with ``gain`` equal to its interval and the optimisers' lr and betas adjusted by
interval / (interval + 1); gradients cleaned with ``nan_to_num`` as there; then G_ema.

Every ``--eval-every`` steps (and at the end) G_ema is scored by ganzoo's own classifier-feature
metrics (``ganzoo.evaluation.compute_metrics``, the results table's: FD, precision, recall, class
histogram), on ``--eval-n`` samples (``--final-n`` at the end), in eval mode with constant noise as
ganzoo samples; one JSON line per evaluation on stdout, and an 8x8 grid of the same 64 latents
(STEP.png) in ``--out``.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

NZ, W_DIM, BATCH, LR, BETAS = 128, 128, 32, 0.0025, (0.0, 0.99)
R1_GAMMA = 0.0002 * 32 ** 2 / BATCH
G_REG_INTERVAL, D_REG_INTERVAL = 4, 16
EMA_IMAGES, EMA_RAMPUP = 10_000, 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="a checkout of NVlabs/stylegan2-ada-pytorch")
    parser.add_argument("--data-dir", required=True, help="the mnist folder (IDX files)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mapping-layers", type=int, default=8)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--eval-n", type=int, default=1000)
    parser.add_argument("--final-n", type=int, default=5000)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(args.reference).resolve()))
    sys.modules.setdefault("requests", types.ModuleType("requests"))  # dnnlib imports it for downloads only
    from torch_utils import misc
    from training.loss import StyleGAN2Loss
    from training.networks import Discriminator, Generator

    from ganzoo.evaluation.api import compute_metrics
    from ganzoo.registry import create_dataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    fp32 = dict(channel_base=1024, channel_max=64, num_fp16_res=0, conv_clamp=None)
    G = Generator(z_dim=NZ, c_dim=0, w_dim=W_DIM, img_resolution=32, img_channels=1,
                  mapping_kwargs=dict(num_layers=args.mapping_layers), synthesis_kwargs=fp32)
    D = Discriminator(c_dim=0, img_resolution=32, img_channels=1, architecture="resnet",
                      epilogue_kwargs=dict(mbstd_group_size=4), **fp32)
    G.train().requires_grad_(False)
    D.train().requires_grad_(False)
    G_ema = copy.deepcopy(G).eval()
    loss = StyleGAN2Loss("cpu", G_mapping=G.mapping, G_synthesis=G.synthesis, D=D, augment_pipe=None,
                         style_mixing_prob=0.9, r1_gamma=R1_GAMMA, pl_weight=0)
    phases = []
    for name, module, interval in (("G", G, G_REG_INTERVAL), ("D", D, D_REG_INTERVAL)):
        ratio = interval / (interval + 1)
        optimizer = torch.optim.Adam(module.parameters(), lr=LR * ratio, betas=[b ** ratio for b in BETAS],
                                     eps=1e-8)
        phases += [(name + "main", module, optimizer, 1), (name + "reg", module, optimizer, interval)]
    data = create_dataset("mnist", data_dir=args.data_dir).prepare("cpu")
    no_labels = torch.empty(BATCH, 0)

    class Reference:
        """What ``compute_metrics`` asks of a variant, for the reference's G (constant noise in eval mode)."""
        name, conditional, sampling_options, directions = "stylegan2-ada-pytorch", False, {}, ()

        def latent(self, n, device):
            return torch.randn(n, NZ, device=device)

        def generate(self, nets, z, labels=None):
            generator = nets["G"]
            image = generator(z, torch.empty(len(z), 0), noise_mode="random" if generator.training else "const")
            return image[:, :, 2:30, 2:30].clamp(-1.0, 1.0)

    def evaluate(step: int, n: int) -> None:
        result = compute_metrics(Reference(), torch.nn.ModuleDict({"G": G_ema}), data, n, seed=0, floor=False,
                                 log=None)["metrics"]
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(1234)
            images = G_ema(torch.randn(64, NZ), torch.empty(64, 0), noise_mode="const")[:, 0, 2:30, 2:30]
        grid = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().view(8, 8, 28, 28).permute(0, 2, 1, 3)
        Image.fromarray(grid.reshape(224, 224).numpy()).save(out / f"step{step:06d}.png")
        scalars = {k: v for k, v in result.items() if isinstance(v, (int, float))}
        print(json.dumps({"step": step, "n": n, "cpu_min": time.process_time() / 60, **scalars,
                          "class_histogram": result.get("class_histogram")}), flush=True)

    images_seen = 0
    for step in range(1, args.steps + 1):
        real = F.pad(data.sample(BATCH).real, (2, 2, 2, 2), value=-1.0)
        latents = torch.randn(len(phases) * BATCH, NZ).split(BATCH)
        for (name, module, optimizer, interval), gen_z in zip(phases, latents):
            if (step - 1) % interval:
                continue
            optimizer.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            loss.accumulate_gradients(phase=name, real_img=real, real_c=no_labels, gen_z=gen_z, gen_c=no_labels,
                                      sync=True, gain=interval)
            module.requires_grad_(False)
            for param in module.parameters():
                if param.grad is not None:
                    misc.nan_to_num(param.grad, nan=0, posinf=1e5, neginf=-1e5, out=param.grad)
            optimizer.step()
        with torch.no_grad():
            beta = 0.5 ** (BATCH / max(min(EMA_IMAGES, images_seen * EMA_RAMPUP), 1e-8))
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(G_ema.buffers(), G.buffers()):
                b_ema.copy_(b)
        images_seen += BATCH
        if step % args.eval_every == 0 and step != args.steps:
            evaluate(step, args.eval_n)
    evaluate(args.steps, args.final_n)


if __name__ == "__main__":
    main()
