"""PNG output with Pillow only (no matplotlib): image grids and 2-D scatter plots."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .io import atomic_write

# Dark grey rather than pure black so tile edges stay visible on black-background
# images such as MNIST-style digits.
PAD_VALUE = 40

REAL_COLOR = (90, 110, 160)  # muted blue-grey: the reference data
FAKE_COLOR = (245, 130, 20)  # orange: generated samples, drawn on top
GRID_COLOR = (225, 225, 225)
AXIS_COLOR = (170, 170, 170)
TEXT_COLOR = (30, 30, 30)


def _to_cpu(x) -> torch.Tensor:
    """Accept tensors on any device (or array-likes) and return a float CPU tensor."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    return x.detach().cpu().float()


def image_grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2,
               pad_value: int = PAD_VALUE) -> Image.Image:
    """Tile ``images`` (N, C, H, W), float in [-1, 1], C in {1, 3}, into one image.

    ``nrow`` is the number of columns (default ``ceil(sqrt(N))``); rows are
    ``ceil(N / nrow)``.  Like torchvision's ``make_grid``, ``padding`` pixels
    surround every tile including the outer border, so the result is
    ``(ncol * (W + padding) + padding)`` wide and ``(nrows * (H + padding) + padding)``
    tall.  Values are clamped to [-1, 1] and mapped to 0..255 with rounding
    (-1 -> 0, 1 -> 255).  Returns mode "L" for C=1 and "RGB" for C=3; unused
    cells and padding are ``pad_value``.
    """
    x = _to_cpu(images)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected (N, C, H, W) with C in {{1, 3}}, got {tuple(x.shape)}")
    n, c, h, w = x.shape
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    ncol = min(nrow, n) if nrow is not None else math.ceil(math.sqrt(n))
    if ncol < 1:
        raise ValueError(f"nrow must be >= 1, got {nrow}")
    nrows = math.ceil(n / ncol)
    pix = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    pix = pix.permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    canvas = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, c),
                     pad_value, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        canvas[top:top + h, left:left + w] = pix[i]
    if c == 1:
        return Image.fromarray(canvas[:, :, 0], mode="L")
    return Image.fromarray(canvas, mode="RGB")


def save_image_grid(images: torch.Tensor, path, nrow: int | None = None, padding: int = 2,
                    scale: int = 1) -> None:
    """Write ``image_grid(images, nrow, padding)`` as a PNG, optionally upscaled by an
    integer ``scale`` with nearest-neighbour (keeps pixels crisp for small images)."""
    img = image_grid(images, nrow=nrow, padding=padding)
    if scale != 1:
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        img = img.resize((img.width * int(scale), img.height * int(scale)), Image.NEAREST)
    save_png(img, path)


def save_png(img: Image.Image, path) -> None:
    """Write ``img`` as a PNG atomically (encoded in memory, then temporary file and rename),
    creating the parent folder: a full disk raises OSError and leaves no half-written image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def _font(px: int):
    """Pillow's bundled default font (no system font files), sized when FreeType allows."""
    try:
        return ImageFont.load_default(size=px)
    except (TypeError, ImportError, OSError):  # old Pillow or no FreeType: bitmap font
        return ImageFont.load_default()


def _text(draw: ImageDraw.ImageDraw, xy, text: str, font, fill, anchor: str = "la") -> None:
    """Draw text with a 2-letter anchor (l/m horizontally; a/m/d vertically).

    Positions are computed from the text's bounding box rather than Pillow's
    ``anchor=`` argument, which bitmap fonts (the FreeType-less fallback) reject.
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x, y = xy
    if anchor[0] == "m":
        x -= (right - left) / 2
    x -= left
    if anchor[1] == "m":
        y -= (top + bottom) / 2
    elif anchor[1] == "d":
        y -= bottom
    else:
        y -= top
    draw.text((x, y), text, fill=fill, font=font)


def _nice_step(span: float, target: int = 8) -> float:
    """A 1/2/5 x 10^k grid spacing giving roughly ``target`` lines over ``span``."""
    raw = span / target
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0, 10.0):
        if raw <= m * mag:
            return m * mag
    return 10.0 * mag


def _default_bounds(real: torch.Tensor) -> tuple[float, float, float, float]:
    """Real data extent, made square and padded by 15% on each side."""
    if real.shape[0] == 0:
        return (-1.0, 1.0, -1.0, 1.0)
    lo, hi = real.min(dim=0).values, real.max(dim=0).values
    cx, cy = float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2
    half = float((hi - lo).max()) / 2
    if not math.isfinite(half) or half <= 0:
        half = 1.0
    half *= 1.15
    return (cx - half, cx + half, cy - half, cy + half)


def scatter_plot(real: torch.Tensor, fake: torch.Tensor, size: int = 512,
                 bounds: tuple[float, float, float, float] | None = None,
                 title: str | None = None) -> Image.Image:
    """Scatter real (blue-grey) and generated (orange) 2-D points on a white
    ``size`` x ``size`` RGB canvas with a light grid, axis lines through 0,
    a legend and an optional title.

    ``real``, ``fake``: (N, 2) float, any device.  ``bounds=(xmin, xmax, ymin, ymax)``
    defaults to the real data's extent padded by 15% with square aspect.  Points
    outside the bounds are clipped onto the border (so mode collapse far away
    is still visible); NaN points are dropped.
    """
    real, fake = _to_cpu(real).reshape(-1, 2), _to_cpu(fake).reshape(-1, 2)
    xmin, xmax, ymin, ymax = bounds if bounds is not None else _default_bounds(real)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"bounds must satisfy xmin < xmax and ymin < ymax, got {bounds}")

    canvas = np.full((size, size, 3), 255, dtype=np.uint8)
    img = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(img)
    last = size - 1

    def to_px(x: float, y: float) -> tuple[float, float]:
        # y grows upwards in data space, downwards in image space
        return ((x - xmin) / (xmax - xmin) * last, (ymax - y) / (ymax - ymin) * last)

    font = _font(max(10, size // 40))
    step = _nice_step(max(xmax - xmin, ymax - ymin))
    for k in range(math.ceil(xmin / step), math.floor(xmax / step) + 1):
        v = k * step
        px, _ = to_px(v, 0.0)
        draw.line([(px, 0), (px, last)], fill=AXIS_COLOR if k == 0 else GRID_COLOR)
        _text(draw, (px + 2, last - 2), f"{v:g}", font, AXIS_COLOR, "ld")
    for k in range(math.ceil(ymin / step), math.floor(ymax / step) + 1):
        v = k * step
        _, py = to_px(0.0, v)
        draw.line([(0, py), (last, py)], fill=AXIS_COLOR if k == 0 else GRID_COLOR)
        _text(draw, (2, py - 2), f"{v:g}", font, AXIS_COLOR, "ld")

    # Dots are stamped with numpy (a small disc of offsets) instead of one
    # ellipse call per point: thousands of points stay fast.
    canvas = np.array(img)
    radius = max(1, round(size / 256))
    oy, ox = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    disc = ox ** 2 + oy ** 2 <= radius ** 2 + 0.5
    ox, oy = ox[disc], oy[disc]
    for pts, color in ((real, REAL_COLOR), (fake, FAKE_COLOR)):
        pts = pts[torch.isfinite(pts).all(dim=1)].double().numpy()
        if len(pts) == 0:
            continue
        px = np.clip((pts[:, 0] - xmin) / (xmax - xmin), 0.0, 1.0) * last
        py = np.clip((ymax - pts[:, 1]) / (ymax - ymin), 0.0, 1.0) * last
        xs = np.clip(np.rint(px).astype(np.int64)[:, None] + ox[None, :], 0, last)
        ys = np.clip(np.rint(py).astype(np.int64)[:, None] + oy[None, :], 0, last)
        canvas[ys.ravel(), xs.ravel()] = color
    img = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(img)

    # Legend (top-right), on a white box so points do not hide it.
    pad, line_h = max(4, size // 100), max(12, size // 30)
    labels = (("real", REAL_COLOR), ("generated", FAKE_COLOR))
    text_w = max(draw.textlength(t, font=font) for t, _ in labels)
    box_w = int(pad * 3 + line_h + text_w)
    box_h = pad * 2 + line_h * len(labels)
    x0, y0 = size - box_w - pad, pad
    draw.rectangle((x0, y0, x0 + box_w, y0 + box_h), fill=(255, 255, 255), outline=AXIS_COLOR)
    for i, (text, color) in enumerate(labels):
        cy = y0 + pad + line_h * i + line_h / 2
        cx = x0 + pad + line_h / 2
        r = line_h / 4
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=color)
        _text(draw, (x0 + 2 * pad + line_h, cy), text, font, TEXT_COLOR, "lm")

    if title:
        tfont = _font(max(12, size // 32))
        tw = draw.textlength(title, font=tfont)
        tx = max(pad, (x0 - tw) / 2)  # centre in the space left of the legend
        _, top, _, bottom = draw.textbbox((0, 0), title, font=tfont)
        draw.rectangle((tx - 2, pad - 2, tx + tw + 2, pad + bottom - top + 2), fill=(255, 255, 255))
        _text(draw, (tx, pad), title, tfont, TEXT_COLOR, "la")
    return img


def save_scatter_plot(real: torch.Tensor, fake: torch.Tensor, path, **kw) -> None:
    """Write ``scatter_plot(real, fake, **kw)`` as a PNG, creating the parent dir."""
    save_png(scatter_plot(real, fake, **kw), path)
