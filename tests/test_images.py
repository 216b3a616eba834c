"""kagglecv.data.images: real photos as they come, the cache's fit modes, and the parallel streaming writer."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from kagglecv.core.errors import InputError
from kagglecv.data import images
from kagglecv.data.images import Decoder

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def halves(w: int, h: int, left=RED, right=BLUE) -> Image.Image:
    """An image whose left half is `left` and right half `right`."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2], arr[:, w // 2 :] = left, right
    return Image.fromarray(arr)


def close(a, b, tol=12) -> bool:
    return bool(np.all(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)) <= tol))


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape, left red / right blue, tagged "rotate 90 CW to display" (orientation 6), as phones do.
    img = halves(40, 20)
    exif = Image.Exif()
    exif[images.EXIF_ORIENTATION] = 6
    img.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    assert images.probe(tmp_path / "phone.jpg", "phone")[:2] == (20, 40)  # upright: portrait
    out = Decoder(40, 20, gray=False)(tmp_path / "phone.jpg", "phone")
    assert out.shape == (40, 20, 3)
    assert close(out[5, 10], RED) and close(out[35, 10], BLUE), "the left column must end up on top"


def test_cmyk_is_converted_to_the_same_colours(tmp_path):
    rgb = halves(32, 32, left=(200, 40, 40), right=(30, 160, 60))
    rgb.convert("CMYK").save(tmp_path / "print.jpg", quality=95)
    assert Image.open(tmp_path / "print.jpg").mode == "CMYK"
    out = Decoder(32, 32, gray=False)(tmp_path / "print.jpg", "print")
    assert close(out[16, 4], (200, 40, 40), tol=20) and close(out[16, 28], (30, 160, 60), tol=20)


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black (transparent), index 1 red
    img.paste(1, (0, 0, 8, 16))
    img.info["transparency"] = 0
    img.save(tmp_path / "logo.png", transparency=0)
    out = Decoder(16, 16, gray=False)(tmp_path / "logo.png", "logo")
    assert close(out[8, 2], RED, tol=0) and close(out[8, 12], WHITE, tol=0)  # not black


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[:, :4] = (0, 0, 255, 255)  # opaque blue; the right half fully transparent black
    Image.fromarray(arr, "RGBA").save(tmp_path / "cut.png")
    out = Decoder(8, 8, gray=False)(tmp_path / "cut.png", "cut")
    assert close(out[4, 1], BLUE, tol=0) and close(out[4, 6], WHITE, tol=0)


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "xray.png")
    assert Image.open(tmp_path / "xray.png").mode.startswith("I")
    out = Decoder(4, 4, gray=True)(tmp_path / "xray.png", "xray")
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]  # clipping would give [0, 255, 255, 255]


def test_images_above_the_pixel_limit_are_refused(tmp_path, monkeypatch):
    Image.new("RGB", (30, 30)).save(tmp_path / "big.png")
    with pytest.raises(InputError, match=r"big.png: image for id 'b' is 30x30 = 900 pixels, above"):
        Decoder(8, 8, gray=False, max_pixels=500)(tmp_path / "big.png", "b")
    with pytest.raises(InputError, match="big.png: image for id 'b'.*above"):
        images.probe(tmp_path / "big.png", "b", max_pixels=500)
    # Pillow's own limit when none is configured: above 2x it Pillow raises, between 1x and 2x it only warns
    for pillow_limit in (100, 600):  # 900 px is 9x, then 1.5x the limit: both refused
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
        with pytest.raises(InputError, match="big.png: image for id 'b'.*decompression-bomb limit"):
            Decoder(8, 8, gray=False)(tmp_path / "big.png", "b")


def test_unreadable_file_names_the_file_and_id(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(InputError, match=r"x.jpg: cannot read image for id 'x7'"):
        Decoder(8, 8, gray=False)(tmp_path / "x.jpg", "x7")


def test_fit_modes():
    img = halves(40, 20)  # 2:1, red | blue
    squash = np.asarray(images.fit(img, 10, 10, "squash"))
    assert close(squash[5, 1], RED, tol=0) and close(squash[5, 8], BLUE, tol=0)
    crop = np.asarray(images.fit(img, 10, 10, "crop"))  # the centre 20x20: half red, half blue still
    assert close(crop[5, 1], RED, tol=0) and close(crop[5, 8], BLUE, tol=0)
    tall = halves(20, 40)  # 1:2: cropping keeps the middle rows, padding adds black columns
    pad = np.asarray(images.fit(tall, 10, 10, "pad"))
    assert close(pad[5, 0], (0, 0, 0), tol=0) and close(pad[5, 9], (0, 0, 0), tol=0)
    assert close(pad[5, 3], RED, tol=0) and close(pad[5, 6], BLUE, tol=0)
    with pytest.raises(ValueError, match="unknown mode 'zoom'"):
        images.fit(img, 10, 10, "zoom")


def test_wildly_different_sizes_all_fit(tmp_path):
    for name, size in [("dot.png", (1, 1)), ("strip.png", (3000, 4)), ("tall.png", (5, 900))]:
        Image.new("RGB", size, (10, 200, 30)).save(tmp_path / name)
        for mode in images.RESIZE_MODES:
            out = Decoder(24, 24, gray=False, resize=mode)(tmp_path / name, name)
            assert out.shape == (24, 24, 3) and out.dtype == np.uint8


def test_jpeg_draft_decodes_large_photos_at_a_reduced_scale(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(tmp_path / "p.jpg")
    small = images.open_image(tmp_path / "p.jpg", "p", (72, 72))
    assert small.size == (160, 120)  # 1/4 scale: the smallest that still covers 72 x 72
    assert images.open_image(tmp_path / "p.jpg", "p").size == (640, 480)


def photo_files(folder, n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = (int(v) for v in rng.integers(20, 60, 2))
        p = folder / f"{i}.{'jpg' if i % 2 else 'png'}"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_parallel_write_equals_one_image_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "CHUNK", 7)  # several chunks, and a short last one
    paths = photo_files(tmp_path, 30)
    ids = [p.stem for p in paths]
    dec = Decoder(16, 16, gray=False)
    expected = np.stack([dec(p, i) for p, i in zip(paths, ids)])
    for workers in (1, 2):
        shape = images.write_cache(tmp_path / f"c{workers}.npy", paths, ids, dec, workers=workers)
        assert shape == (30, 16, 16, 3)
        assert np.array_equal(np.load(tmp_path / f"c{workers}.npy"), expected)


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "CHUNK", 4)
    paths = photo_files(tmp_path, 20)
    paths[13].write_bytes(b"broken")
    for workers in (1, 2):
        with pytest.raises(InputError, match=f"{paths[13].name}: cannot read image for id '13'"):
            images.write_cache(
                tmp_path / "c.npy", paths, [p.stem for p in paths], Decoder(8, 8, gray=False), workers=workers
            )
        assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".c.npy*"))


def test_remove_stale_clears_only_temp_files(tmp_path):
    for name in (".train_images.npy.abc.npy", ".meta.json.x.json", "train_images.npy", ".other"):
        (tmp_path / name).write_bytes(b"x")
    images.remove_stale(tmp_path, ["train_images.npy", "meta.json"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other", "train_images.npy"]


def test_png_bytes_in_memory_decode_like_files(tmp_path):
    """Sources may be file-like (a zip member): the decoder takes anything Image.open takes."""
    img = halves(12, 12)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    img.save(tmp_path / "a.png")
    dec = Decoder(6, 6, gray=False)
    assert np.array_equal(dec(io.BytesIO(buf.getvalue()), "a"), dec(tmp_path / "a.png", "a"))


@pytest.mark.parametrize(
    "values, expected",
    [
        ([0.0, 0.5, 1.0], [0, 128, 255]),  # in [0, 1]: the usual float convention
        ([0.0, 257.0, 65535.0], [0, 1, 255]),  # beyond 1: the 16-bit range
    ],
)
def test_float_images_are_scaled_by_their_range(tmp_path, values, expected):
    Image.fromarray(np.array([values], dtype=np.float32).repeat(3, axis=0), "F").save(tmp_path / "depth.tiff")
    assert Image.open(tmp_path / "depth.tiff").mode == "F"
    out = Decoder(3, 3, gray=True)(tmp_path / "depth.tiff", "depth")
    assert out[0, :, 0].tolist() == expected


def test_cmyk_with_a_broken_colour_profile_still_converts(tmp_path):
    rgb = halves(32, 32, left=(200, 40, 40), right=(30, 160, 60))
    rgb.convert("CMYK").save(tmp_path / "print.jpg", quality=95, icc_profile=b"not an ICC profile")
    assert Image.open(tmp_path / "print.jpg").info.get("icc_profile")
    out = Decoder(32, 32, gray=False)(tmp_path / "print.jpg", "print")
    assert close(out[16, 4], (200, 40, 40), tol=20) and close(out[16, 28], (30, 160, 60), tol=20)


def test_a_raised_pixel_limit_lets_a_trusted_large_image_through(tmp_path, monkeypatch):
    Image.new("RGB", (30, 30), (9, 9, 9)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse 900 px
    out = Decoder(8, 8, gray=False, max_pixels=1000)(tmp_path / "big.png", "b")
    assert out.shape == (8, 8, 3) and int(out[4, 4, 0]) == 9
