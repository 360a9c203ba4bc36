"""A stock-PyTorch WGAN-GP training loop, written the way users write one: the peer of the benchmark
in ``benchmarks/peer.py``. It imports nothing from ganzoo.

Structure and settings follow eriklindernoren/PyTorch-GAN's ``implementations/wgan_gp/wgan_gp.py``
(freshly written, not copied): every batch trains the critic on ``D(G(z))`` (G's output not
detached, so the critic's backward also runs through G), real and fake scores plus a per-sample
gradient penalty (lambda 10, ``autograd.grad`` with ``create_graph=True``) in one loss; every
``n_critic``-th batch trains G with the same noise (its backward also fills D's gradients, which
the next ``zero_grad`` discards). Adam 2e-4, betas (0.5, 0.999), latent 100, batch 64, n_critic 5.

Nets (``--arch``):

* ``mlp``: PyTorch-GAN's MLPs: G 100 -> 128 -> 256 -> 512 -> 1024 -> 784 with BatchNorm1d(eps 0.8)
  after all but the first Linear, LeakyReLU 0.2, tanh; D 784 -> 512 -> 256 -> 1, LeakyReLU 0.2.
* ``conv``: the DCGAN-style nets ganzoo's wgan-gp builds for 28-px images by default, in stock
  modules: G Linear(100, 128*7*7) + BN + ReLU, ConvTranspose 128 -> 64 (4, 2, 1) + BN + ReLU,
  ConvTranspose 64 -> 1 + tanh; D Conv 1 -> 32 -> 64 (4, 2, 1) with LeakyReLU 0.2, Linear to 1.

Data: MNIST from the IDX files in ``--data-dir``, scaled to [-1, 1]. ``--loader tensor`` (default)
keeps it in one tensor and slices a shuffled order (the fastest a user can do); ``--loader
dataloader`` is ``torch.utils.data.DataLoader(TensorDataset(...), batch_size, shuffle=True)``.

``--compile g``/``gd`` wraps G (and D) in ``torch.compile``. Prints one JSON line: seconds per
generator step (``n_critic`` critic updates and one G update) between step ``--warmup`` and the
last, or the error that stopped it.
"""
from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import autograd, nn


def read_mnist(folder: Path) -> torch.Tensor:
    """MNIST training images (60000, 1, 28, 28) float32 in [-1, 1]."""
    path = folder / "train-images-idx3-ubyte.gz"
    opener = gzip.open if path.exists() else open
    path = path if path.exists() else folder / "train-images-idx3-ubyte"
    with opener(path, "rb") as handle:
        raw = handle.read()
    images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, img_shape=(1, 28, 28)):
        super().__init__()
        self.img_shape = img_shape

        def block(n_in, n_out, normalize=True):
            layers = [nn.Linear(n_in, n_out)]
            if normalize:
                layers.append(nn.BatchNorm1d(n_out, 0.8))  # 0.8 is eps, as in the original
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.model = nn.Sequential(*block(latent_dim, 128, normalize=False), *block(128, 256),
                                   *block(256, 512), *block(512, 1024),
                                   nn.Linear(1024, int(np.prod(img_shape))), nn.Tanh())

    def forward(self, z):
        return self.model(z).view(z.size(0), *self.img_shape)


class MLPCritic(nn.Module):
    def __init__(self, img_shape=(1, 28, 28)):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(int(np.prod(img_shape)), 512), nn.LeakyReLU(0.2, inplace=True),
                                   nn.Linear(512, 256), nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, 1))

    def forward(self, img):
        return self.model(img.view(img.size(0), -1))


class ConvGenerator(nn.Module):
    def __init__(self, latent_dim: int = 100, width: int = 64):
        super().__init__()
        top = 2 * width
        self.top = top
        self.stem = nn.Sequential(nn.Linear(latent_dim, top * 7 * 7, bias=False), nn.BatchNorm1d(top * 7 * 7),
                                  nn.ReLU(True))
        self.body = nn.Sequential(nn.ConvTranspose2d(top, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(True), nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.body(self.stem(z).view(z.size(0), self.top, 7, 7))


class ConvCritic(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True))
        self.head = nn.Linear(2 * width * 7 * 7, 1)

    def forward(self, img):
        return self.head(self.body(img).flatten(1))


def compute_gradient_penalty(critic, real, fake):
    """(||grad critic(x_hat)|| - 1)^2 averaged over the batch, x_hat between real and fake per sample."""
    alpha = torch.rand(real.size(0), 1, 1, 1, device=real.device)
    interpolates = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    scores = critic(interpolates)
    gradients = autograd.grad(outputs=scores, inputs=interpolates, grad_outputs=torch.ones_like(scores),
                              create_graph=True, retain_graph=True, only_inputs=True)[0]
    gradients = gradients.view(gradients.size(0), -1)
    return ((gradients.norm(2, dim=1) - 1) ** 2).mean()


def batches(data: torch.Tensor, batch_size: int, loader: str):
    """Endless (B, 1, 28, 28) batches, reshuffled every epoch."""
    if loader == "dataloader":
        dataset = torch.utils.data.TensorDataset(data)
        while True:
            for (imgs,) in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True):
                yield imgs
    while True:
        order = torch.randperm(data.size(0))
        for start in range(0, data.size(0) - batch_size + 1, batch_size):
            yield data[order[start:start + batch_size]]


def train(args) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    data = read_mnist(Path(args.data_dir)).to(device)
    if args.arch == "mlp":
        generator, critic = MLPGenerator(args.latent_dim), MLPCritic()
    else:
        generator, critic = ConvGenerator(args.latent_dim), ConvCritic()
    generator, critic = generator.to(device), critic.to(device)
    if args.compile in ("g", "gd"):
        generator = torch.compile(generator)
    if args.compile == "gd":
        critic = torch.compile(critic)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=args.lr, betas=(args.b1, args.b2))
    optimizer_d = torch.optim.Adam(critic.parameters(), lr=args.lr, betas=(args.b1, args.b2))
    stream = batches(data, args.batch_size, args.loader)
    marks: dict[int, float] = {}
    for step in range(1, args.steps + 1):  # one generator step: n_critic critic updates, one G update
        for i in range(args.n_critic):
            real_imgs = next(stream)
            optimizer_d.zero_grad()
            z = torch.randn(real_imgs.size(0), args.latent_dim, device=device)
            fake_imgs = generator(z)
            real_validity = critic(real_imgs)
            fake_validity = critic(fake_imgs)
            gradient_penalty = compute_gradient_penalty(critic, real_imgs.data, fake_imgs.data)
            d_loss = -torch.mean(real_validity) + torch.mean(fake_validity) + args.lambda_gp * gradient_penalty
            d_loss.backward()
            optimizer_d.step()
            optimizer_g.zero_grad()
        fake_imgs = generator(z)
        g_loss = -torch.mean(critic(fake_imgs))
        g_loss.backward()
        optimizer_g.step()
        if step == args.warmup or step == args.steps:
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks[step] = time.perf_counter()
    if not torch.isfinite(d_loss.detach()):
        raise RuntimeError(f"the critic's loss is {d_loss.item()}")
    return {"step_s": (marks[args.steps] - marks[args.warmup]) / (args.steps - args.warmup),
            "d_loss": float(d_loss.item()), "g_loss": float(g_loss.item())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with MNIST's train-images-idx3-ubyte(.gz)")
    parser.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--loader", choices=["tensor", "dataloader"], default="tensor")
    parser.add_argument("--compile", choices=["none", "g", "gd"], default="none")
    parser.add_argument("--steps", type=int, default=60, help="generator steps")
    parser.add_argument("--warmup", type=int, default=10, help="generator steps left out of the timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--b1", type=float, default=0.5)
    parser.add_argument("--b2", type=float, default=0.999)
    parser.add_argument("--latent-dim", type=int, default=100)
    parser.add_argument("--n-critic", type=int, default=5)
    parser.add_argument("--lambda-gp", type=float, default=10.0)
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.steps:
        parser.error("need 0 < --warmup < --steps")
    try:
        result = {"ok": True, **train(args)}
    except Exception as exc:  # the benchmark reports a failure (e.g. torch.compile) as a result
        result = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
