"""``ganzoo translate RUN --input IMG_OR_DIR --direction a2b|b2a [--out DIR]``: map real images from
one domain to the other with a translation model (a variant with ``directions``, e.g. cyclegan).

Every input is read and checked before anything is written: images must have the size the
model was trained at (they are refused, not resized, so a translation never silently works on
a distorted picture); grayscale and colour are converted to the model's channels. Each
translation is written as ``OUT/NAME.png`` (default ``RUN_DIR/translate-DIRECTION/``).
"""
from __future__ import annotations

from pathlib import Path

from .cpu_threads import add_threads_option
from .errors import GanzooError

#: Images translated per forward pass.
CHUNK = 64


def add_command(commands, parser_class) -> None:
    p = commands.add_parser("translate", help="translate images with a translation model (cyclegan)",
                            description=__doc__.split("\n\n")[0].replace("``", ""))
    p.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT")
    p.add_argument("--input", required=True, type=Path, metavar="IMG_OR_DIR",
                   help="an image file, or a folder whose image files are all translated")
    p.add_argument("--direction", required=True, metavar="a2b|b2a", help="a2b: domain A to B; b2a: B to A")
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="folder for the translations (default RUN_DIR/translate-DIRECTION)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--no-ema", action="store_true", help="use the trained generators, not their EMA copies")
    add_threads_option(p)
    p.set_defaults(handler=cmd_translate)


def input_files(source: Path) -> list[Path]:
    """The image files to translate: ``source`` itself, or the image files in the folder (sorted)."""
    from .data.folder import IMAGE_SUFFIXES

    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GanzooError(f"no image files in {source}")
        return files
    raise GanzooError(f"--input {source} does not exist")


def read_images(files: list[Path], channels: int, height: int, width: int):
    """uint8 tensors (N, C, H, W) of ``files``; a one-line error for an unreadable file or another size."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    arrays = []
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            raise GanzooError(f"cannot read {path} as an image: {exc}") from None
        if image.size != (width, height):
            raise GanzooError(f"{path} is {image.size[0]}x{image.size[1]}; this model translates {width}x{height} "
                              "images (resize it first)")
        array = np.asarray(image, dtype=np.uint8)
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(arrays))


def cmd_translate(args) -> int:
    import torch

    from .cli import _run_dir_of
    from .evaluation.classifier import to_unit_range
    from .plotting import image_grid, save_png
    from .sampling import load_generator
    from .trainer import resolve_device

    loaded = load_generator(args.path, resolve_device(args.device), ema=not args.no_ema)
    variant = loaded.variant
    if not variant.directions:
        raise GanzooError(f"variant {variant.name!r} is not a translation model; ganzoo translate needs a run "
                          "of one (e.g. cyclegan); use ganzoo sample")
    if args.direction not in variant.directions:
        raise GanzooError(f"--direction must be one of {', '.join(variant.directions)}, got {args.direction!r}")
    files = input_files(args.input)
    channels, height, width = loaded.spec.shape
    images = read_images(files, channels, height, width)  # all checked before anything is written
    out = args.out or _run_dir_of(args.path) / f"translate-{args.direction}"
    device = next(loaded.nets.parameters()).device
    names = [f.stem + ".png" for f in files]
    if len(set(names)) != len(names):
        raise GanzooError("two inputs share a name once written as PNG (e.g. a.jpg and a.png); translate them apart")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(files), CHUNK):
            batch = to_unit_range(images[start:start + CHUNK].to(device))
            with torch.no_grad():
                translated = variant.translate(loaded.nets, batch, args.direction).clamp(-1, 1).cpu()
            for name, image in zip(names[start:start + CHUNK], translated):
                save_png(image_grid(image[None], nrow=1, padding=0), out / name)  # written atomically
    except OSError as exc:
        raise GanzooError(f"cannot write to {out}: {exc.strerror or exc}") from None
    print(f"translated {len(files)} image(s) {args.direction} with step {loaded.step}"
          f"{' (EMA generators)' if loaded.ema else ''} into {out}")
    return 0
