"""Inception-v3 features for the community's FID, KID, IS and precision/recall.

The network is the one behind every published FID: TensorFlow's 2015-12-05 Inception-v3
graph as the FID code uses it (Heusel et al. 2017), ported to PyTorch with the graph's
quirks kept (the TF-exact bilinear resize to 299 x 299 without half-pixel centres, pixels
scaled as (x - 128) / 128, average pools that ignore padding, a max pool in the last block,
a 1008-way classifier). Conventions follow torch-fidelity (Obukhov et al.), which reproduces
the original TensorFlow numbers: uint8 RGB input of any size, the 2048-d pool features for
FID, KID and precision/recall, the unbiased 1008 logits (pool features times the classifier
weights, no bias) for the Inception score.

ganzoo ships no weights and never downloads: give a local PyTorch state dict with
``--inception-weights PATH`` or ``$GANZOO_INCEPTION_WEIGHTS`` -- e.g. torch-fidelity's
``weights-inception-2015-12-05-6726825d.pth`` or pytorch-fid's ``pt_inception-2015-12-05``
(the same tensors under the same names). The file is read with ``torch.load(...,
weights_only=True)``, so a pickle that would run code is refused, and every tensor's name
and shape is checked before use.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanzooError

WEIGHTS_ENV = "GANZOO_INCEPTION_WEIGHTS"
INPUT_SIZE = 299
POOL_FEATURES = 2048
LOGITS = 1008


def resize_like_tensorflow1(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF 1.x ``resize_bilinear`` (align_corners=False, no half-pixel centres) of float
    (N, C, H, W) to (N, C, size, size): output pixel i samples input coordinate i * H / size."""
    def axis(in_size: int):
        position = torch.arange(size, dtype=x.dtype, device=x.device) * (in_size / size)
        low = position.floor().long().clamp_max(in_size - 1)
        high = (low + 1).clamp_max(in_size - 1)
        return low, high, position - low.to(x.dtype)

    y_low, y_high, dy = axis(x.shape[2])
    x_low, x_high, dx = axis(x.shape[3])
    top, bottom = x[:, :, y_low, :], x[:, :, y_high, :]
    rows = top + (bottom - top) * dy.view(1, 1, -1, 1)
    left, right = rows[:, :, :, x_low], rows[:, :, :, x_high]
    return left + (right - left) * dx.view(1, 1, 1, -1)


class ConvBN(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3, TF's) and ReLU: the graph's unit."""

    def __init__(self, in_channels: int, out_channels: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


#: Pooling steps a branch may start with: TF averages without the zero padding.
def _avg_same(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


def _max_same(x):
    return F.max_pool2d(x, 3, stride=1, padding=1)


def _max_reduce(x):
    return F.max_pool2d(x, 3, stride=2)


class Mixed(nn.Module):
    """One Inception block: parallel branches concatenated on channels.

    ``branches``: a list of branches; a branch is a list of steps, each either a pooling
    function or ``(name, out_channels, kernel, stride, padding)`` for a :class:`ConvBN`
    (registered under ``name``, as in the TF graph's port), or a ``("split", [step], [step])``
    that ends the branch in two heads concatenated (the last blocks' 1x3 / 3x1 pairs).
    """

    def __init__(self, in_channels: int, branches: list[list]):
        super().__init__()
        self.plan = []
        for branch in branches:
            steps, channels = [], in_channels
            for step in branch:
                if callable(step):
                    steps.append(step)
                elif step[0] == "split":
                    heads = []
                    for name, out, kernel, stride, padding in step[1:]:
                        self.add_module(name, ConvBN(channels, out, kernel, stride, padding))
                        heads.append(name)
                    steps.append(tuple(heads))
                else:
                    name, out, kernel, stride, padding = step
                    self.add_module(name, ConvBN(channels, out, kernel, stride, padding))
                    steps.append(name)
                    channels = out
            self.plan.append(steps)

    def forward(self, x):
        outputs = []
        for steps in self.plan:
            y = x
            for step in steps:
                if callable(step):
                    y = step(y)
                elif isinstance(step, tuple):
                    y = torch.cat([getattr(self, name)(y) for name in step], 1)
                else:
                    y = getattr(self, step)(y)
            outputs.append(y)
        return torch.cat(outputs, 1)


def _conv(name, out, kernel, stride=1, padding=0):
    return (name, out, kernel, stride, padding)


def _block_a(in_channels, pool_features):  # Mixed_5b-d: 35 x 35
    return Mixed(in_channels, [
        [_conv("branch1x1", 64, 1)],
        [_conv("branch5x5_1", 48, 1), _conv("branch5x5_2", 64, 5, padding=2)],
        [_conv("branch3x3dbl_1", 64, 1), _conv("branch3x3dbl_2", 96, 3, padding=1),
         _conv("branch3x3dbl_3", 96, 3, padding=1)],
        [_avg_same, _conv("branch_pool", pool_features, 1)],
    ])


def _block_b(in_channels):  # Mixed_6a: 35 -> 17
    return Mixed(in_channels, [
        [_conv("branch3x3", 384, 3, stride=2)],
        [_conv("branch3x3dbl_1", 64, 1), _conv("branch3x3dbl_2", 96, 3, padding=1),
         _conv("branch3x3dbl_3", 96, 3, stride=2)],
        [_max_reduce],
    ])


def _block_c(in_channels, c7):  # Mixed_6b-e: 17 x 17, factorised 7 x 7
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    return Mixed(in_channels, [
        [_conv("branch1x1", 192, 1)],
        [_conv("branch7x7_1", c7, 1), _conv("branch7x7_2", c7, row[0], padding=row[1]),
         _conv("branch7x7_3", 192, col[0], padding=col[1])],
        [_conv("branch7x7dbl_1", c7, 1), _conv("branch7x7dbl_2", c7, col[0], padding=col[1]),
         _conv("branch7x7dbl_3", c7, row[0], padding=row[1]), _conv("branch7x7dbl_4", c7, col[0], padding=col[1]),
         _conv("branch7x7dbl_5", 192, row[0], padding=row[1])],
        [_avg_same, _conv("branch_pool", 192, 1)],
    ])


def _block_d(in_channels):  # Mixed_7a: 17 -> 8
    return Mixed(in_channels, [
        [_conv("branch3x3_1", 192, 1), _conv("branch3x3_2", 320, 3, stride=2)],
        [_conv("branch7x7x3_1", 192, 1), _conv("branch7x7x3_2", 192, (1, 7), padding=(0, 3)),
         _conv("branch7x7x3_3", 192, (7, 1), padding=(3, 0)), _conv("branch7x7x3_4", 192, 3, stride=2)],
        [_max_reduce],
    ])


def _block_e(in_channels, pool):  # Mixed_7b (average pool) and Mixed_7c (max pool: the graph's)
    return Mixed(in_channels, [
        [_conv("branch1x1", 320, 1)],
        [_conv("branch3x3_1", 384, 1),
         ("split", _conv("branch3x3_2a", 384, (1, 3), padding=(0, 1)),
          _conv("branch3x3_2b", 384, (3, 1), padding=(1, 0)))],
        [_conv("branch3x3dbl_1", 448, 1), _conv("branch3x3dbl_2", 384, 3, padding=1),
         ("split", _conv("branch3x3dbl_3a", 384, (1, 3), padding=(0, 1)),
          _conv("branch3x3dbl_3b", 384, (3, 1), padding=(1, 0)))],
        [pool, _conv("branch_pool", 192, 1)],
    ])


class InceptionV3(nn.Module):
    """FID's Inception-v3: uint8 RGB (N, 3, H, W) -> (pool features (N, 2048), unbiased logits (N, 1008))."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = _block_a(192, 32)
        self.Mixed_5c = _block_a(256, 64)
        self.Mixed_5d = _block_a(288, 64)
        self.Mixed_6a = _block_b(288)
        self.Mixed_6b = _block_c(768, 128)
        self.Mixed_6c = _block_c(768, 160)
        self.Mixed_6d = _block_c(768, 160)
        self.Mixed_6e = _block_c(768, 192)
        self.Mixed_7a = _block_d(768)
        self.Mixed_7b = _block_e(1280, _avg_same)
        self.Mixed_7c = _block_e(2048, _max_same)
        self.fc = nn.Linear(POOL_FEATURES, LOGITS)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 RGB images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        x = resize_like_tensorflow1(images.float(), INPUT_SIZE)
        x = (x - 128) / 128
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool = x.mean(dim=(2, 3))
        return pool, pool @ self.fc.weight.T


def weights_path(path: str | os.PathLike | None = None) -> Path:
    """The weights file: ``path``, else ``$GANZOO_INCEPTION_WEIGHTS``; a one-line error when neither."""
    chosen = path or os.environ.get(WEIGHTS_ENV, "").strip()
    if not chosen:
        raise GanzooError(f"Inception metrics need the FID Inception weights as a local file: pass "
                          f"--inception-weights PATH or set {WEIGHTS_ENV} (e.g. torch-fidelity's "
                          "weights-inception-2015-12-05-6726825d.pth); ganzoo does not download them")
    return Path(chosen).expanduser()


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionV3:
    """The network with the weights of ``path`` (see :func:`weights_path`), in eval mode."""
    path = weights_path(path)
    if not path.is_file():
        raise GanzooError(f"Inception weights {path}: no such file")
    try:
        with warnings.catch_warnings():  # torch's advice about weights_only is not for this user
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a pickle with code, a damaged or foreign file
        raise GanzooError(f"Inception weights {path} cannot be read as a plain state dict: torch.load with "
                          "weights_only refused it (it holds objects other than tensors, which could run "
                          "code, or it is not a PyTorch file)") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    model = InceptionV3()
    expected = model.state_dict()
    if not isinstance(state, dict):
        raise GanzooError(f"Inception weights {path} hold a {type(state).__name__}, not a state dict")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and (not torch.is_tensor(state[k])
                                                   or tuple(state[k].shape) != tuple(expected[k].shape))]
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:2]}" if missing else f"unexpected {unexpected[:2]}" if unexpected
                  else f"{wrong[0]} has shape {tuple(getattr(state[wrong[0]], 'shape', ()))}, "
                       f"expected {tuple(expected[wrong[0]].shape)}")
        raise GanzooError(f"Inception weights {path} are not FID Inception-v3 weights: {detail} "
                          f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} wrong shapes)")
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (N, 1 or 3, H, W) -> uint8 RGB (N, 3, H, W), rounded as a PNG stores them."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.expand(-1, 3, -1, -1).contiguous() if pixels.shape[1] == 1 else pixels


@torch.no_grad()
def inception_features(model: InceptionV3, images: torch.Tensor, batch: int = 50,
                       device: str | torch.device = "cpu", progress=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(pool features (N, 2048), unbiased logits (N, 1008)) in float64 on the CPU, for uint8 RGB
    ``images`` (N, 3, H, W); ``progress(n)`` after each batch."""
    pools, logits = [], []
    for chunk in images.split(batch):
        pool, logit = model(chunk.to(device))
        pools.append(pool.double().cpu())
        logits.append(logit.double().cpu())
        if progress is not None:
            progress(chunk.shape[0])
    return torch.cat(pools), torch.cat(logits)


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Salimans et al. 2016: exp(E_x KL(p(y|x) || p(y))) over ``splits`` consecutive parts of the
    samples; (mean, standard deviation over parts). ``logits``: (N, 1008), N >= splits."""
    n = logits.shape[0]
    if n < splits:
        raise GanzooError(f"the Inception score needs at least {splits} samples, got {n}")
    probs = torch.softmax(logits.double(), dim=1)
    scores = []
    for i in range(splits):  # the original code's parts: [i n / splits, (i + 1) n / splits)
        part = probs[i * n // splits:(i + 1) * n // splits]
        marginal = part.mean(dim=0, keepdim=True)
        kl = (part * (torch.log(part.clamp_min(1e-30)) - torch.log(marginal.clamp_min(1e-30)))).sum(dim=1)
        scores.append(float(torch.exp(kl.mean())))
    mean = sum(scores) / len(scores)
    std = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    return mean, std


# -- metrics between two image sets ---------------------------------------------------------
#: KID as torch-fidelity computes it: 100 subsets of min(1000, n) samples.
KID_SUBSETS, KID_SUBSET_SIZE = 100, 1000
MIN_IMAGES = 10  # the Inception score's 10 parts; FID and precision/recall need fewer


def inception_metrics(real: torch.Tensor, fake: torch.Tensor, model: InceptionV3,
                      device: str | torch.device = "cpu", seed: int = 0) -> dict[str, float]:
    """FID, KID (mean, std), IS of ``fake`` (mean, std) and k-NN precision/recall, all in
    Inception space, between uint8 RGB image sets (N, 3, H, W) and (M, 3, H', W')."""
    from ..progress import task
    from .images import frechet_distance, kernel_inception_distance, precision_recall

    for what, images in (("real", real), ("generated", fake)):
        if images.shape[0] < MIN_IMAGES:
            raise GanzooError(f"Inception metrics need at least {MIN_IMAGES} {what} images, got {images.shape[0]}")
    features = {}
    for what, images in (("real", real), ("generated", fake)):
        with task(f"Inception features of {images.shape[0]:,} {what} images", images.shape[0], unit="image") as bar:
            features[what] = inception_features(model, images, device=device, progress=bar.update)
    (real_pool, _), (fake_pool, fake_logits) = features["real"], features["generated"]
    kid, kid_std = kernel_inception_distance(real_pool, fake_pool, subsets=KID_SUBSETS,
                                             subset_size=KID_SUBSET_SIZE, seed=seed)
    score, score_std = inception_score(fake_logits)
    precision, recall = precision_recall(real_pool, fake_pool)
    return {"fid": frechet_distance(real_pool, fake_pool), "kid": kid, "kid_std": kid_std,
            "inception_score": score, "inception_score_std": score_std,
            "precision": precision, "recall": recall}


def read_image_folder(folder: str | os.PathLike, what: str) -> torch.Tensor:
    """Every image under ``folder`` (recursively) as uint8 RGB (N, 3, H, W); all must share one size."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ..data.folder import scan_image_folder

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise GanzooError(f"--{what} {folder}: not a folder")
    try:
        files = scan_image_folder(folder)[0]
    except GanzooError as exc:
        raise GanzooError(f"--{what} {folder}: {exc}") from None
    if not files:
        raise GanzooError(f"--{what} {folder} holds no images (.png, .jpg, ...)")
    arrays, size, first = [], None, None
    for path in files:
        try:
            with Image.open(path) as image:
                rgb = np.asarray(image.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise GanzooError(f"--{what}: cannot read {path}: {exc}") from None
        if size is None:
            size, first = rgb.shape[:2], path
        elif rgb.shape[:2] != size:
            raise GanzooError(f"--{what}: images of different sizes: {first.name} is {size[1]}x{size[0]}, "
                              f"{path.name} is {rgb.shape[1]}x{rgb.shape[0]}; resize them to one size first")
        arrays.append(rgb)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def evaluate_folders(real_dir: str | os.PathLike, fake_dir: str | os.PathLike, weights: str | None = None,
                     device: str | torch.device = "cpu", seed: int = 0) -> dict:
    """``ganzoo eval --real DIR --fake DIR``: Inception metrics between two image folders (no labels)."""
    model = load_inception(weights, device)  # first: a missing weights file fails before any reading
    real = read_image_folder(real_dir, "real")
    fake = read_image_folder(fake_dir, "fake")
    if real.shape[2:] != fake.shape[2:]:
        raise GanzooError(f"--real images are {real.shape[3]}x{real.shape[2]} but --fake images are "
                          f"{fake.shape[3]}x{fake.shape[2]}; compare images of one size")
    return {"real": str(real_dir), "fake": str(fake_dir), "features": "inception",
            "n_real": int(real.shape[0]), "n_fake": int(fake.shape[0]),
            "metrics": inception_metrics(real, fake, model, device, seed)}


def evaluate_run(path: str | os.PathLike, n: int | None = None, weights: str | None = None,
                 device: str | torch.device = "cpu", seed: int = 0, ema: bool = True,
                 data_dir: str | os.PathLike | None = None) -> dict:
    """``ganzoo eval RUN --features inception``: n generated images against n real images of the
    run's dataset (no labels needed), in Inception space."""
    from ..checkpoint import load_checkpoint
    from ..sampling import load_generator
    from .api import generate_samples, run_dataset

    model = load_inception(weights, device)
    payload = load_checkpoint(path, map_location="cpu")
    checkpoint, config = Path(payload["path"]), payload["config"]
    del payload
    loaded = load_generator(checkpoint, device, ema=ema)
    if not loaded.spec.is_image:
        raise GanzooError("--features inception scores images; this run's data is not images")
    n = n or 5000
    dataset = run_dataset(config, loaded.spec, data_dir).prepare("cpu")
    real = to_uint8_rgb(dataset.reference_sample(n).real)
    fake, _ = generate_samples(loaded.variant, loaded.nets, loaded.spec, n, seed=seed, device=device)
    return {"run_dir": str(checkpoint.parent.parent), "checkpoint": str(checkpoint), "step": loaded.step,
            "variant": config["variant"], "dataset": config["dataset"], "ema": loaded.ema,
            "features": "inception", "n_real": int(real.shape[0]), "n_fake": n,
            "metrics": inception_metrics(real, to_uint8_rgb(fake), model, device, seed)}
