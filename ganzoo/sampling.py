"""Sampling from a trained run or checkpoint (``ganzoo sample``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_checkpoint
from .data.base import DataSpec
from .errors import GanzooError
from .registry import get_variant
from .variant import Variant


@dataclass
class LoadedGenerator:
    """A variant with its trained nets, ready to sample (nets in eval mode).

    ``nets`` are the nets :meth:`Variant.generate` samples from: with an EMA run
    and ``ema=True`` (the default), ``G_ema`` stands in for ``G``;
    ``all_nets`` holds every net of the checkpoint.
    """

    variant: Variant
    nets: nn.ModuleDict
    spec: DataSpec
    config: dict
    step: int
    all_nets: nn.ModuleDict | None = None
    ema: bool = False  # whether an EMA copy is what ``nets`` samples from

    @property
    def has_ema(self) -> bool:
        """Whether the run has an EMA generator (whether or not ``nets`` uses it)."""
        return self.all_nets is not None and self.variant.sampling_nets(self.all_nets) is not self.all_nets


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True) -> LoadedGenerator:
    """Rebuild a run's variant and nets from a checkpoint (or a run dir's newest one).

    ema: sample from the EMA generator when the run has one (``--no-ema``: False).
    """
    payload = load_checkpoint(path, map_location=device)
    config = payload["config"]
    spec = DataSpec.from_dict(config["data"])
    variant_cls = get_variant(config["variant"])
    variant = variant_cls(spec, **variant_cls.saved_hparams(config["hparams"]))
    nets = variant.networks(spec).to(device)
    try:
        nets.load_state_dict(payload["nets"])
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())  # torch's message spans lines; the CLI's errors are one
        raise GanzooError(f"checkpoint {path} does not match variant {config['variant']!r}: {detail}") from None
    nets.eval()
    sampled = variant.sampling_nets(nets, ema=ema)  # the nets themselves when nothing is swapped
    return LoadedGenerator(variant, sampled, spec, config, int(payload["step"]), nets, sampled is not nets)


def check_sampling_options(variant: Variant, options: dict | None) -> dict:
    """``options`` when the variant lists each in ``sampling_options``, else a one-line error."""
    options = dict(options or {})
    for key in options:
        if key not in variant.sampling_options:
            offered = ", ".join(_flag(k) for k in variant.sampling_options) or "none"
            raise GanzooError(f"variant {variant.name!r} has no sampling option {_flag(key)} (its options: {offered})")
    return options


def check_psi(psi: float, meaning: str = "1: no truncation; e.g. 0.7") -> float:
    """``psi`` as a float when in (0, 1], else a one-line error: the check of ``--truncation`` for
    every variant that lists the ``truncation`` sampling option. What psi does is the variant's
    (stylegan2: w_avg + psi (w - w_avg); biggan: z truncated to |z_i| <= 2 psi); ``meaning`` says
    it in the message."""
    psi = float(psi)
    if not 0.0 < psi <= 1.0:
        raise GanzooError(f"--truncation must be in (0, 1] ({meaning}), got {psi:g}")
    return psi


def option_file_parts(options: dict | None) -> list[str]:
    """Sampling options as parts of a file name, sorted by key: ``{"truncation": 0.7}`` ->
    ``["truncation0.7"]``; an option given as a bare flag (True) is named alone: ``style-mix``.
    ``ganzoo sample`` and ``ganzoo eval`` name their files with it, so no mode overwrites another."""
    return [key.replace("_", "-") + ("" if value is True else f"{value}")
            for key, value in sorted((options or {}).items())]


def _flag(key: str) -> str:
    """A sampling option's command-line flag: ``style_mix`` -> ``--style-mix``."""
    return "--" + key.replace("_", "-")


def sample(path: str | Path | LoadedGenerator, n: int = 64, label: int | None = None,
           seed: int = 0, device: str | torch.device = "cpu", ema: bool = True,
           options: dict | None = None) -> torch.Tensor:
    """n samples (n, *shape) from a trained run; images in [-1, 1], vectors in the data's own units.

    label: for conditional variants, draw every sample for this class (default:
    cycle through the classes); an error for unconditional variants.
    ema: from the EMA generator when the run has one (else from G).
    options: keyword options for ``generate`` that the variant lists in
    ``sampling_options`` (e.g. ``{"stage": 1}`` for stackgan).
    """
    if n <= 0:
        raise GanzooError(f"--n must be positive, got {n}")
    loaded = path if isinstance(path, LoadedGenerator) else load_generator(path, device, ema=ema)
    variant, spec = loaded.variant, loaded.spec
    options = check_sampling_options(variant, options)
    device = next(loaded.nets.parameters()).device
    labels = _labels(loaded, n, label, device)
    torch.manual_seed(seed)
    with torch.no_grad():
        return spec.to_data_units(variant.generate(loaded.nets, variant.latent(n, device), labels, **options))


#: Largest --interpolate (points per row): beyond it a grid is no longer readable.
MAX_INTERPOLATION_STEPS = 256


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` ((n, ...) each) at fractions
    ``t`` ((k,) in [0, 1]); returns (n, k, ...). Gaussian noise keeps its norm along the path
    this way (a straight line passes through low-norm points G never saw; White 2016)."""
    flat_a, flat_b = a.flatten(1), b.flatten(1)
    cos = ((flat_a * flat_b).sum(1) / (flat_a.norm(dim=1) * flat_b.norm(dim=1)).clamp_min(1e-12)).clamp(-1, 1)
    omega = torch.acos(cos)[:, None]  # (n, 1)
    sin = torch.sin(omega)
    t = t[None, :]
    parallel = sin.abs() < 1e-6  # (nearly) the same direction: a straight line is exact enough
    w_a = torch.where(parallel, 1 - t, torch.sin((1 - t) * omega) / sin.where(~parallel, torch.ones_like(sin)))
    w_b = torch.where(parallel, t, torch.sin(t * omega) / sin.where(~parallel, torch.ones_like(sin)))
    path = w_a[..., None] * flat_a[:, None, :] + w_b[..., None] * flat_b[:, None, :]
    return path.reshape(a.shape[0], t.shape[1], *a.shape[1:])


def check_interpolation_steps(steps: int) -> None:
    if not 2 <= steps <= MAX_INTERPOLATION_STEPS:
        raise GanzooError(f"--interpolate needs 2 to {MAX_INTERPOLATION_STEPS} points per row, got {steps}")


def interpolate(loaded: LoadedGenerator, steps: int, rows: int = 8, label: int | None = None,
                seed: int = 0, options: dict | None = None) -> torch.Tensor:
    """A latent walk: ``rows`` pairs of noise endpoints, ``steps`` points from one to the other
    (spherical for Gaussian noise, ``Variant.latent_distribution == "normal"``; linear otherwise).

    Returns images (rows * steps, C, H, W) in [-1, 1], row-major: row r walks from its first
    endpoint (column 0) to its second (column steps - 1). Conditional variants keep one class per
    row (``label``, else row r draws class r mod classes).
    """
    variant, spec = loaded.variant, loaded.spec
    options = check_sampling_options(variant, options)
    if not spec.is_image:
        raise GanzooError("--interpolate draws image grids; this run's data is not images")
    check_interpolation_steps(steps)
    if rows <= 0:
        raise GanzooError(f"rows must be positive, got {rows}")
    device = next(loaded.nets.parameters()).device
    labels = _labels(loaded, rows, label, device)
    torch.manual_seed(seed)
    start, end = variant.latent(rows, device), variant.latent(rows, device)
    t = torch.linspace(0, 1, steps, device=device)
    if getattr(variant, "latent_distribution", "normal") == "normal":
        path = slerp(start, end, t)
    else:
        path = start[:, None] + (end - start)[:, None] * t.view(1, -1, *([1] * (start.dim() - 1)))
    z = path.reshape(rows * steps, *start.shape[1:])
    walk_labels = labels.repeat_interleave(steps) if labels is not None else None
    with torch.no_grad():
        return spec.to_data_units(variant.generate(loaded.nets, z, walk_labels, **options))


def _labels(loaded: LoadedGenerator, n: int, label: int | None, device) -> torch.Tensor | None:
    """Labels for n samples: ``label`` for all, else cycling through the classes; None when unconditional."""
    variant, spec = loaded.variant, loaded.spec
    if not variant.conditional:
        if label is not None:
            raise GanzooError(f"variant {variant.name!r} is unconditional; drop --label")
        return None
    classes = spec.num_classes
    if label is not None and not 0 <= label < classes:
        raise GanzooError(f"--label must be in 0..{classes - 1}, got {label}")
    return (torch.full((n,), label) if label is not None else torch.arange(n) % classes).to(device)


def save_gif(frames: list[torch.Tensor], path: Path, nrow: int | None = None, frame_ms: int = 80) -> Path:
    """An animated GIF (Pillow) of image grids: ``frames`` are (N, C, H, W) in [-1, 1]; played
    forwards then backwards, looping. Written atomically."""
    import io

    from .io import atomic_write
    from .plotting import image_grid

    pictures = [image_grid(frame, nrow=nrow).convert("RGB") for frame in frames]
    pictures = pictures + pictures[-2:0:-1]  # ping-pong, so the loop has no jump
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))
    return path
