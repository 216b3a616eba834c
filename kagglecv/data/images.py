"""Decoding images the way the cache holds them, once, on every core, straight to disk.

One decoder serves `prepare` (the training/test cache) and `predict` (new images), so an image predicted later
is bit for bit the image the models saw. Photos come as they come:

  * EXIF orientation is applied (phones store portraits as rotated landscapes);
  * 16-bit images are scaled to 8 bits over the full 16-bit range (65535 -> 255), never clipped;
  * palette images with transparency, and any image with alpha, are composited onto white;
  * CMYK is converted through its embedded ICC profile when it has one;
  * images above Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`, or `max_pixels`) are refused.

How an image becomes the cache's H x W (`data.resize`):
  squash  resize to H x W, ignoring the aspect ratio: nothing in the frame is lost, and an object at the edge
          stays in. The default: photos are mostly 4:3 to 16:9, CNNs take the mild stretch in their stride,
          and train and test are stretched alike.
  crop    resize the short side, centre-crop the long one (timm's eval transform): for centred subjects.
  pad     resize the long side, pad the short one with black (letterbox): when shape itself matters.

JPEGs are decoded with Pillow's draft mode (libjpeg's DCT scaling by 1/2, 1/4 or 1/8) whenever the target is at
least twice smaller: most of the decoding work of a 500 px photo cached at 72 px is never done.

`write_cache` streams: workers decode chunks of images in parallel (forked processes: decoding is CPU-bound and
the Python parts hold the GIL), the parent writes each chunk in order to a `.npy` file as it arrives, and the
file is renamed into place only when complete. Memory is a few chunks, whatever the number of images.
"""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kagglecv.core.errors import InputError, first_line
from kagglecv.core.files import atomic_path

RESIZE_MODES = ("squash", "crop", "pad")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
EXIF_ORIENTATION = 0x0112
TRANSPOSED = {5, 6, 7, 8}  # orientations that swap width and height
CHUNK = 256  # images per work item: large enough to amortise the hand-over, small enough to bound memory


@dataclass(frozen=True)
class Decoder:
    """How one image becomes an H x W x C uint8 array of the cache."""

    height: int
    width: int
    gray: bool  # one channel (L) or three (RGB)
    resize: str = "squash"  # squash | crop | pad (see the module docstring)
    max_pixels: int | None = None  # decompression-bomb limit; None: Pillow's MAX_IMAGE_PIXELS

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, 1 if self.gray else 3

    def __call__(self, src, ident: str) -> np.ndarray:
        """The cache's array of one image; an image that opens but cannot be converted to the cache's channels or
        fitted to its size (a LAB TIFF, a broken palette) is unreadable, as one that cannot be decoded is."""
        img = open_image(src, ident, (self.width, self.height), self.max_pixels)
        try:
            arr = np.asarray(fit(to_mode(img, self.gray), self.width, self.height, self.resize))
        except (OSError, ValueError, TypeError, SyntaxError, MemoryError, Image.DecompressionBombError) as e:
            raise _unreadable(src, ident, e) from e
        return arr[..., None] if self.gray else arr


def _unreadable(src, ident: str, err: Exception) -> InputError:
    return InputError(
        f"{src}: cannot read image for id {ident!r} ({err}); restore the file (download the "
        "competition again), or drop the row of a training image"
    )


def _check_pixels(src, ident: str, size: tuple[int, int], max_pixels: int | None) -> None:
    limit = max_pixels or Image.MAX_IMAGE_PIXELS
    if limit and size[0] * size[1] > limit:
        raise InputError(
            f"{src}: image for id {ident!r} is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, "
            f"above the decompression-bomb limit of {limit:,}; remove the file, or raise "
            "data.max_image_pixels if you trust it"
        )


def _open(src, ident: str, max_pixels: int | None) -> Image.Image:
    """Image.open, refusing images above the pixel limit (Pillow only warns between 1x and 2x its limit)."""
    if max_pixels and max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
        Image.MAX_IMAGE_PIXELS = max_pixels  # a raised limit: Pillow must not refuse first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, as an error
            img = Image.open(src)
    except Image.DecompressionBombError as e:
        raise InputError(
            f"{src}: image for id {ident!r} is above the decompression-bomb limit ({e}); remove "
            "the file, or raise data.max_image_pixels if you trust it"
        ) from e
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise _unreadable(src, ident, e) from e
    _check_pixels(src, ident, img.size, max_pixels)
    return img


def open_image(src, ident: str, target: tuple[int, int] | None = None, max_pixels: int | None = None) -> Image.Image:
    """A loaded, upright image: `src` is a path, or an H x W x C uint8 array (pixel-CSV layouts).

    With `target` (w, h), JPEGs decode at the smallest DCT scale that still covers it in both directions."""
    if isinstance(src, np.ndarray):
        return Image.fromarray(src[..., 0] if src.shape[-1] == 1 else src)
    img = _open(src, ident, max_pixels)
    try:
        if target and img.format == "JPEG":
            side = max(target)
            img.draft(None, (side, side))  # square request: covers the target whatever the EXIF rotation
        img.load()
        upright = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _unreadable(src, ident, e) from e
    return upright if upright is not None else img


def _sixteen_to_8(img: Image.Image) -> Image.Image:
    """16-bit (and 32-bit integer, as 16-bit PNGs sometimes open) -> 8 bits over the full 16-bit range."""
    arr = np.asarray(img).astype(np.float64)
    return Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")


def _float_to_8(img: Image.Image) -> Image.Image:
    """Float images: [0, 1] when they fit there (the usual convention), else the 16-bit range."""
    arr = np.asarray(img).astype(np.float64)
    arr = arr * 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else arr / 257.0
    return Image.fromarray(np.clip(np.round(np.nan_to_num(arr)), 0, 255).astype(np.uint8), "L")


def _on_white(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    out = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    out.alpha_composite(rgba)
    return out.convert("RGB")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile: fall back to Pillow's plain conversion
            pass
    return img.convert("RGB")


def to_mode(img: Image.Image, gray: bool) -> Image.Image:
    """`img` as 8-bit L (gray) or RGB, converted as the module docstring says."""
    if img.mode in SIXTEEN_BIT:
        img = _sixteen_to_8(img)
    elif img.mode == "F":
        img = _float_to_8(img)
    elif img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "CMYK":
        img = _cmyk_to_rgb(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = _on_white(img)
    return img.convert("L" if gray else "RGB")


def fit(img: Image.Image, width: int, height: int, resize: str = "squash") -> Image.Image:
    """`img` at exactly width x height, by `resize` (squash | crop | pad)."""
    if img.size == (width, height):
        return img
    if resize == "squash":
        return img.resize((width, height), Image.BILINEAR)
    if resize == "crop":
        return ImageOps.fit(img, (width, height), Image.BILINEAR)
    if resize == "pad":
        return ImageOps.pad(img, (width, height), Image.BILINEAR, color=0)
    raise ValueError(f"data.resize: unknown mode {resize!r}; use one of {', '.join(RESIZE_MODES)}")


# ---------------------------------------------------------------- headers (cheap: decides the cache shape)


def probe(src, ident: str, max_pixels: int | None = None) -> tuple[int, int, bool]:
    """(width, height, grayscale?) of the upright image, from its header only."""
    if isinstance(src, np.ndarray):
        return src.shape[1], src.shape[0], src.shape[-1] == 1
    with _open(src, ident, max_pixels) as img:
        w, h = img.size
        try:
            if img.getexif().get(EXIF_ORIENTATION) in TRANSPOSED:
                w, h = h, w
        except Exception:  # noqa: BLE001 - a broken EXIF block: the decoder ignores it too
            pass
        return w, h, img.mode in GRAY_MODES


def _probe_chunk(args) -> list[tuple[int, int, bool]]:
    items, max_pixels = args
    return [probe(src, ident, max_pixels) for src, ident in items]


def _decode_chunk(args) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """(the chunk's images, [(position, why)] of those that could not be read). Strict: the first unreadable
    image raises. Tolerant: it stays a zero image, as does a None source (no file: the caller knows why)."""
    items, decoder, tolerant = args
    out, bad = np.zeros((len(items), *decoder.shape), dtype=np.uint8), []
    for k, (src, ident) in enumerate(items):
        if src is None and tolerant:
            continue
        try:
            out[k] = decoder(src, ident)
        except InputError as e:
            if not tolerant:
                raise
            bad.append((k, first_line(e.__cause__ or e)))
    return out, bad


# ---------------------------------------------------------------- parallel, ordered, bounded


class Pool:
    """`workers` decoding processes, started at once and reused for every map.

    Start it before building per-image lists: forked workers share the parent's pages, and whatever the parent
    holds at the fork is counted again in each worker's RSS (and copied once either side writes to it)."""

    def __init__(self, workers: int):
        self.workers, self.ex = max(1, workers), None
        if self.workers > 1:
            # fork: the workers need no re-import of the job's __main__ (a Snakemake script would run again)
            if "fork" in mp.get_all_start_methods():
                self.ex = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("fork"))
            else:
                self.ex = ThreadPoolExecutor(self.workers)  # Pillow releases the GIL while decoding and resizing
            list(self.ex.map(int, range(self.workers)))  # start every worker now, while the parent is small

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        if self.ex is not None:
            self.ex.shutdown(cancel_futures=True)

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """fn over items, results in order, at most 2 x workers items in flight (memory stays bounded)."""
        if self.ex is None:
            yield from map(fn, items)
            return
        it = iter(items)
        pending = deque(self.ex.submit(fn, item) for item in islice(it, 2 * self.workers))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(self.ex.submit(fn, item) for item in islice(it, 1))
                yield result
        finally:
            for f in pending:
                f.cancel()


def _pool(workers: int | Pool) -> tuple[Pool, bool]:
    """(a pool, whether the caller made it here and must close it)."""
    return (workers, False) if isinstance(workers, Pool) else (Pool(workers), True)


def chunks(seq: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def probe_all(
    sources: Sequence, ids: Sequence[str], workers: int | Pool = 1, max_pixels: int | None = None, progress=None
) -> list[tuple[int, int, bool]]:
    """probe() of every image, in parallel (`workers`: a count, or a running Pool)."""
    pool, own = _pool(workers)
    out: list = []
    try:
        items = list(zip(sources, ids))
        for part in pool.map(_probe_chunk, ((c, max_pixels) for c in chunks(items))):
            out += part
            if progress is not None:
                progress.update(len(part))
    finally:
        if own:
            pool.__exit__()
    return out


def write_cache(
    path: str | Path,
    sources: Sequence,
    ids: Sequence[str],
    decoder: Decoder,
    workers: int | Pool = 1,
    progress=None,
    bad: list | None = None,
) -> tuple[int, ...]:
    """Decode every image into the .npy file `path` (N x H x W x C uint8), streaming; returns its shape. An
    unreadable image is an error; with `bad` (a list) it becomes a zero row and (row, id, why) is appended (a
    None source, no file at all, becomes a zero row silently).

    The file appears complete or not at all; a killed run leaves at most a hidden temp file beside it, which
    `remove_stale` clears."""
    shape = (len(sources), *decoder.shape)
    pool, own = _pool(workers)
    try:
        items = list(zip(sources, ids))
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
                done, tolerant = 0, bad is not None
                for arr, failed in pool.map(_decode_chunk, ((c, decoder, tolerant) for c in chunks(items))):
                    f.write(arr.tobytes())
                    if tolerant:
                        bad.extend((done + k, ids[done + k], why) for k, why in failed)
                    done += len(arr)
                    if progress is not None:
                        progress.update(len(arr))
                f.flush()
                os.fsync(f.fileno())
            written = np.load(tmp, mmap_mode="r").shape
            if written != shape:  # never rename a short file into place
                raise RuntimeError(f"{path}: wrote {written}, expected {shape}")
    finally:
        if own:
            pool.__exit__()
    return shape


def write_array_stream(path: str | Path, shape: tuple[int, ...], parts: Iterable[np.ndarray]) -> None:
    """Write uint8 parts (in order) as one .npy of `shape`, atomically: for layouts whose pixels are data."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "|u1", "fortran_order": False, "shape": shape})
            n = 0
            for part in parts:
                f.write(np.ascontiguousarray(part, dtype=np.uint8).tobytes())
                n += len(part)
            f.flush()
            os.fsync(f.fileno())
        if n != shape[0]:
            raise RuntimeError(f"{path}: wrote {n} rows, expected {shape[0]}")


def remove_stale(folder: str | Path, names: Iterable[str]) -> None:
    """Delete temp files a killed run left beside `names` (atomic_path's hidden `.<name>.*` files)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for name in names:
        for p in folder.glob(f".{name}.*"):
            p.unlink(missing_ok=True)
