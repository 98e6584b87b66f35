"""One image file of any common format and mode, as RGB pixels of a given size.

Used to ingest a folder of images and to predict on new ones, so both see the same pixels:

- JPEG, PNG, WebP, BMP and GIF (its first frame), by Pillow;
- the camera's orientation (EXIF) applied, so a phone photo stands upright;
- any mode to 8-bit RGB: greyscale and palette images expanded, transparency laid on white,
  CMYK converted, 16-bit and floating-point images scaled to 0-255;
- resized so the shorter side fits, then the longer side cropped to the centre: the
  objects keep their proportions (no stretching) and the model sees no padding bars, the way
  torchvision's and timm's evaluation transforms do it;
- decompression bombs refused: an image of more than ``MAX_PIXELS`` pixels is never decoded.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from src.finetune.errors import PipelineError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
MAX_PIXELS = 40_000_000  # 40 megapixels: more than any camera photo, less than a bomb
MAX_DEPTH = 64  # folders below a class folder (or a folder given to predict)


class UnreadableImage(Exception):
    """A file with an image's name that cannot be read as one; the message says why."""


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def files_under(folder: Path) -> list[Path]:
    """Everything under ``folder`` but its real sub-folders, sorted: files, and links (to
    files or folders, not followed; the caller checks where they lead).

    Walked with a list, not recursion: Python 3.11's ``Path.rglob`` and ``os.walk`` recurse
    once per level and a folder nested a few thousand deep ends them in ``RecursionError``.
    Deeper than ``MAX_DEPTH`` or a folder the OS will not list is one line.
    """
    found: list[Path] = []
    pending = [(folder, 0)]
    while pending:
        directory, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise PipelineError(
                f"{folder}: folders nested more than {MAX_DEPTH} deep (down to "
                f"{os.path.relpath(directory, folder)[:80]}...); move the images up"
            )
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((Path(entry.path), depth + 1))
                    else:
                        found.append(Path(entry.path))
        except OSError as error:
            raise PipelineError(
                f"{directory}: cannot list the folder ({error.strerror or error}); check its "
                "permissions"
            ) from None
    return sorted(found)


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``path`` as uint8 RGB pixels of ``size`` (height, width); see the module docstring."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        raise UnreadableImage(error.strerror or type(error).__name__) from None
    if not stat.S_ISREG(mode):  # reading a named pipe would wait forever, a device never end
        raise UnreadableImage("not a regular file (a folder, pipe or device)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a damaged file's warnings (EXIF, chunks): read or not
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise UnreadableImage(
                        f"{image.width}x{image.height} pixels, over the {MAX_PIXELS:,} allowed "
                        "(a decompression bomb?)"
                    )
                image.seek(0)  # a GIF's first frame
                upright = ImageOps.exif_transpose(image)
                rgb = _to_rgb(upright)
        except UnreadableImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise UnreadableImage(f"a decompression bomb ({error})") from None
        except UnidentifiedImageError:
            raise UnreadableImage("not a readable image (no format recognised)") from None
        except Exception as error:
            # Each of Pillow's decoders fails in its own way on a damaged or hostile file:
            # OSError, ValueError and SyntaxError, but also EOFError (SPIDER),
            # NotImplementedError (DDS), RuntimeError (AVIF), struct.error, IndexError,
            # MemoryError... Whatever the decoder raises, the file is not an image we can read.
            raise UnreadableImage(f"not a readable image ({type(error).__name__})") from None
    return np.asarray(ImageOps.fit(rgb, (size[1], size[0]), Image.Resampling.BILINEAR))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        # The smallest usual full scale that holds the values: 1 (floats), 8 or 16 bits.
        top = next((t for t in (1.0, 255.0, 65535.0) if pixels.max() <= t), float(pixels.max()))
        grey = np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")
