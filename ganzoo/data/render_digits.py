"""Synthetic, download-free "digits" dataset rendered from hand-designed strokes.

Each digit class has one or more stroke templates in a unit box (x right, y down,
the digit spans y in [0, 1]).  A stroke is a list of control points; consecutive
smooth points are joined by a uniform Catmull-Rom spline, and points marked as
corners break the spline (so a 7 keeps its sharp elbow while a 3 stays round).
Because uniform Catmull-Rom is linear in the control points, every template is
precompiled into a matrix ``dense = M @ control`` and per-sample work is a
small matrix product plus one Pillow draw call per stroke.

Per-sample variation: control-point jitter, a smooth warp of the unit box,
random affine (rotation, shear, anisotropic scale), stroke width, translation
and Gaussian blur.  Drawing happens at 4x resolution and is box-downsampled
for antialiasing.  No system fonts are used, so output only depends on numpy
and Pillow (same seed -> byte-identical images).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Bump whenever the rendering changes in any way, so cached datasets keyed on
# this number are regenerated.
DIGITS_VERSION = 1

_SUPERSAMPLE = 4  # draw at 4x, then average 4x4 blocks -> antialiased strokes
_SAMPLES_PER_SEGMENT = 8  # spline samples between two control points

# ---------------------------------------------------------------------------
# Templates.  A point is (x, y) (smooth) or (x, y, "c") (corner: the spline
# is split there).  A stroke is a list of points, or ("closed", [points]) for
# a closed smooth loop.  Several variants per class give stylistic variety
# (e.g. 7 with/without a crossbar, 4 open/closed, 1 with/without a flag).
# ---------------------------------------------------------------------------
_C = "c"

_TEMPLATES: dict[int, list[list]] = {
    0: [
        [("closed", [(0.50, 0.00), (0.76, 0.10), (0.85, 0.45), (0.78, 0.84),
                     (0.50, 1.00), (0.24, 0.88), (0.15, 0.52), (0.23, 0.13)])],
        [("closed", [(0.52, 0.00), (0.72, 0.14), (0.78, 0.50), (0.70, 0.88),
                     (0.47, 1.00), (0.27, 0.86), (0.22, 0.48), (0.30, 0.12)])],
    ],
    1: [
        [[(0.53, 0.00), (0.47, 1.00)]],
        # short, steep flag: a long or flat one would read as a 7
        [[(0.38, 0.24, _C), (0.56, 0.00, _C), (0.50, 1.00)]],
        [[(0.38, 0.24, _C), (0.56, 0.00, _C), (0.50, 1.00, _C)],
         [(0.30, 1.00), (0.72, 1.00)]],
    ],
    2: [
        [[(0.18, 0.24), (0.40, 0.03), (0.66, 0.03), (0.80, 0.23), (0.73, 0.45),
          (0.48, 0.70), (0.17, 0.99, _C), (0.86, 0.97)]],
        # curly 2 with a small loop at the bottom-left
        [[(0.20, 0.22), (0.45, 0.02), (0.72, 0.08), (0.78, 0.32), (0.60, 0.58),
          (0.28, 0.90), (0.24, 1.00), (0.38, 0.93), (0.60, 0.95), (0.86, 0.98)]],
    ],
    3: [
        [[(0.18, 0.12), (0.45, 0.00), (0.72, 0.07), (0.76, 0.28), (0.45, 0.46, _C),
          (0.76, 0.60), (0.82, 0.82), (0.60, 0.99), (0.33, 1.00), (0.14, 0.86)]],
        # flat-topped 3
        [[(0.20, 0.02, _C), (0.78, 0.02, _C), (0.42, 0.42, _C), (0.70, 0.52),
          (0.82, 0.76), (0.62, 0.98), (0.35, 1.00), (0.15, 0.86)]],
    ],
    4: [
        # open 4: two strokes
        [[(0.26, 0.00, _C), (0.16, 0.62, _C), (0.88, 0.62)],
         [(0.70, 0.12), (0.68, 1.00)]],
        # closed 4: diagonal meets the stem
        [[(0.64, 0.00, _C), (0.14, 0.66, _C), (0.88, 0.66)],
         [(0.64, 0.00), (0.64, 1.00)]],
    ],
    5: [
        [[(0.80, 0.02), (0.30, 0.02)],
         [(0.30, 0.01, _C), (0.25, 0.44, _C), (0.52, 0.38), (0.76, 0.50),
          (0.82, 0.74), (0.64, 0.96), (0.36, 1.00), (0.15, 0.88)]],
        # one-stroke 5
        [[(0.82, 0.00, _C), (0.32, 0.02, _C), (0.27, 0.46, _C), (0.55, 0.40),
          (0.80, 0.58), (0.76, 0.86), (0.50, 1.00), (0.18, 0.90)]],
    ],
    6: [
        [[(0.72, 0.00), (0.45, 0.16), (0.26, 0.45), (0.20, 0.74), (0.36, 0.97),
          (0.62, 0.98), (0.79, 0.80), (0.72, 0.58), (0.49, 0.51), (0.29, 0.59),
          (0.22, 0.72)]],
        [[(0.65, 0.00), (0.40, 0.25), (0.24, 0.60), (0.30, 0.92), (0.55, 1.00),
          (0.76, 0.86), (0.74, 0.63), (0.52, 0.55), (0.30, 0.66)]],
    ],
    7: [
        # wide top bar so it never shrinks into a 1's flag
        [[(0.10, 0.02, _C), (0.90, 0.02, _C), (0.40, 1.00)]],
        [[(0.10, 0.04, _C), (0.90, 0.02, _C), (0.64, 0.42), (0.46, 1.00)]],
        [[(0.10, 0.02, _C), (0.90, 0.02, _C), (0.42, 1.00)],
         [(0.40, 0.52), (0.82, 0.50)]],
    ],
    8: [
        # figure-eight as one closed loop crossing itself in the middle
        [("closed", [(0.50, 0.47), (0.27, 0.27), (0.34, 0.05), (0.52, 0.00),
                     (0.72, 0.07), (0.72, 0.27), (0.50, 0.47), (0.24, 0.72),
                     (0.33, 0.95), (0.52, 1.00), (0.76, 0.92), (0.78, 0.70)])],
        # two stacked loops
        [("closed", [(0.50, 0.00), (0.72, 0.11), (0.70, 0.34), (0.50, 0.46),
                     (0.30, 0.34), (0.29, 0.11)]),
         ("closed", [(0.50, 0.46), (0.78, 0.60), (0.80, 0.88), (0.50, 1.00),
                     (0.20, 0.88), (0.22, 0.60)])],
    ],
    9: [
        [("closed", [(0.75, 0.18), (0.55, 0.01), (0.30, 0.06), (0.20, 0.26),
                     (0.34, 0.45), (0.60, 0.42)]),
         [(0.77, 0.10), (0.74, 0.50), (0.66, 1.00)]],
        # one stroke: loop then the tail
        [[(0.76, 0.22), (0.55, 0.02), (0.30, 0.05), (0.20, 0.25), (0.33, 0.44),
          (0.58, 0.42), (0.77, 0.20, _C), (0.72, 0.60), (0.62, 1.00)]],
    ],
}


def _catmull_rom_weights(n_points: int, closed: bool, samples: int) -> np.ndarray:
    """Matrix W (n_dense, n_points) so that ``W @ P`` samples a uniform Catmull-Rom
    spline through the points P.  Open splines use reflected phantom end points."""
    t = np.arange(samples) / samples
    # Standard uniform Catmull-Rom basis for (P[i-1], P[i], P[i+1], P[i+2]).
    basis = 0.5 * np.stack([
        -t ** 3 + 2 * t ** 2 - t,
        3 * t ** 3 - 5 * t ** 2 + 2,
        -3 * t ** 3 + 4 * t ** 2 + t,
        t ** 3 - t ** 2,
    ], axis=1)  # (samples, 4)
    n_seg = n_points if closed else n_points - 1
    rows = []
    for i in range(n_seg):
        w = np.zeros((samples, n_points))
        for k, j in enumerate((i - 1, i, i + 1, i + 2)):
            if closed:
                w[:, j % n_points] += basis[:, k]
            elif j < 0:  # phantom P[-1] = 2 P[0] - P[1]
                w[:, 0] += 2 * basis[:, k]
                w[:, 1] -= basis[:, k]
            elif j >= n_points:  # phantom P[n] = 2 P[n-1] - P[n-2]
                w[:, n_points - 1] += 2 * basis[:, k]
                w[:, n_points - 2] -= basis[:, k]
            else:
                w[:, j] += basis[:, k]
        rows.append(w)
    end = np.zeros((1, n_points))
    end[0, 0 if closed else n_points - 1] = 1.0  # include the final point
    rows.append(end)
    return np.concatenate(rows)


def _compile_template(strokes: list) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Turn a template into (control points (K,2), M (D,K), dense slices per
    stroke, indices of dense points that get round caps: stroke ends and corners)."""
    ctrl: list[tuple[float, float]] = []
    pieces: list[tuple[int, np.ndarray]] = []
    slices: list[tuple[int, int]] = []
    caps: list[int] = []
    dense_count = 0
    for stroke in strokes:
        closed = isinstance(stroke, tuple) and stroke[0] == "closed"
        pts = stroke[1] if closed else stroke
        base = len(ctrl)
        ctrl.extend((p[0], p[1]) for p in pts)
        start = dense_count
        if closed:
            w = _catmull_rom_weights(len(pts), True, _SAMPLES_PER_SEGMENT)
            pieces.append((base, w))
            dense_count += len(w)
        else:
            # Split the open stroke at corner points; each piece is its own spline
            # (a 2-point piece is just a straight line, no interior samples needed).
            cut = [0] + [i for i, p in enumerate(pts) if len(p) > 2 and 0 < i < len(pts) - 1]
            cut.append(len(pts) - 1)
            for a, b in zip(cut[:-1], cut[1:]):
                n = b - a + 1
                samples = 1 if n == 2 else _SAMPLES_PER_SEGMENT
                w = _catmull_rom_weights(n, False, samples)
                if a == cut[0]:
                    caps.append(dense_count)  # stroke start
                else:
                    w = w[1:]  # first point duplicates the previous piece's last point
                    caps.append(dense_count - 1)  # the corner itself
                pieces.append((base + a, w))
                dense_count += len(w)
            caps.append(dense_count - 1)  # stroke end
        slices.append((start, dense_count))
    k = len(ctrl)
    m = np.zeros((dense_count, k))
    row = 0
    for base, w in pieces:
        m[row:row + len(w), base:base + w.shape[1]] = w
        row += len(w)
    return np.array(ctrl, dtype=np.float64), m, slices, np.array(sorted(set(caps)), dtype=np.int64)


# Relative frequency of each variant; default uniform.  Plain 1s dominate in
# real handwriting (and MNIST), so the serif variants are rarer.
_WEIGHTS = {1: [0.65, 0.22, 0.13]}

_COMPILED = {d: [_compile_template(t) for t in variants] for d, variants in _TEMPLATES.items()}
_VARIANT_WEIGHTS = {
    d: np.asarray(_WEIGHTS.get(d, [1.0] * len(v)), dtype=np.float64) / sum(_WEIGHTS.get(d, [1.0] * len(v)))
    for d, v in _TEMPLATES.items()
}


def _render_one(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Render one jittered digit as a (size, size) uint8 array."""
    variants, weights = _COMPILED[label], _VARIANT_WEIGHTS[label]
    ctrl, m, slices, caps = variants[int(rng.choice(len(variants), p=weights))]
    px = size / 28.0  # all pixel-sized parameters are specified at 28x28 scale

    # Shape variation in the unit box: independent control-point jitter plus a
    # smooth warp (moves the waist up/down, tapers top vs bottom) so shared
    # structure stays coherent.
    pts = ctrl + rng.normal(0.0, 0.022, size=ctrl.shape)
    waist, taper = rng.uniform(-0.25, 0.25), rng.uniform(-0.25, 0.25)
    x, y = pts[:, 0], pts[:, 1]
    pts = np.stack([x + taper * (x - 0.5) * (0.5 - y), y + waist * y * (1.0 - y)], axis=1)
    dense = m @ pts - 0.5  # centred unit coordinates

    # Affine: anisotropic scale, shear, rotation.  Nominal digit height 19 px.
    angle = np.deg2rad(rng.uniform(-12.0, 12.0))
    shear = rng.uniform(-0.2, 0.2)
    base = rng.uniform(0.8, 1.1)
    sx, sy = base * rng.uniform(0.9, 1.1), base * rng.uniform(0.95, 1.05)
    cos, sin = np.cos(angle), np.sin(angle)
    a = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([sx, sy])
    dense = dense @ (a.T * 19.0)

    # Like MNIST: fit the digit in the central 20x20 box, centre its bounding box.
    width = rng.uniform(1.5, 3.5)
    lo, hi = dense.min(axis=0), dense.max(axis=0)
    extent = float((hi - lo).max()) + width
    if extent > 20.0:
        dense *= (20.0 - width) / (extent - width)
        lo, hi = dense.min(axis=0), dense.max(axis=0)
    shift = rng.uniform(-2.0, 2.0, size=2)
    dense = dense - (lo + hi) / 2 + 14.0 + shift

    blur = rng.uniform(0.0, 0.7)

    s = _SUPERSAMPLE * px
    big = size * _SUPERSAMPLE
    dense = dense * s
    w = width * s
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    flat = dense.ravel().tolist()
    for start, stop in slices:
        draw.line(flat[2 * start:2 * stop], fill=255, width=max(1, int(round(w))))
    # Round caps at stroke ends and corners; the dense spline joints are so
    # shallow that the plain (unjoined) line already looks continuous.
    r = w / 2.0
    for i in caps.tolist():
        cx, cy = flat[2 * i], flat[2 * i + 1]
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    img = img.reduce(_SUPERSAMPLE)
    if blur * px >= 0.1:  # tiny radii do nothing visible; skip the work
        img = img.filter(ImageFilter.GaussianBlur(blur * px))
    return np.asarray(img)


def render_digits(count: int, seed: int, size: int = 28,
                  advance: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render ``count`` jittered digits.

    Returns ``(images, labels)``: images uint8 ``(count, size, size)`` with
    0 = background (black) and 255 = ink (white), like MNIST; labels int64
    ``(count,)`` in 0..9, exactly balanced (label ``i % 10``) then shuffled.
    Output is a deterministic function of ``(count, seed, size)``. ``advance(n)``, when
    given, is called as images are done (for a progress bar).
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count, dtype=np.int64) % 10)
    images = np.empty((count, size, size), dtype=np.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i] = _render_one(label, rng, size)
        if advance is not None and (i + 1) % 100 == 0:
            advance(100)
    if advance is not None and count % 100:
        advance(count % 100)
    return images, labels
