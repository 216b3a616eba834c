"""The image cache at real sizes: sized to what the backbones need, read memory-mapped by row with flat memory,
and rebuilt only when it would change."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kagglecv.config import members, resources
from kagglecv.config.data import DataConfig
from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.data import batches as data
from kagglecv.data import prepare
from kagglecv.data.demo import write_competition
from kagglecv.inference.models import build_model

from helpers import digits_images, run_snakemake, tiny_config, write_csv_images_competition

DC = {"img_size": 12, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}


# ---------------------------------------------------------------- sizing


def test_cache_side_follows_the_largest_backbone():
    data_cfg = {"image_size": None, "cache_margin": 0.125}
    small = {"a": {"img_size": 64}, "b": {"img_size": 32}}
    assert members.cache_side(small, data_cfg) == 72  # 64 px training, 12.5 % margin
    assert members.cache_side({**small, "c": {"img_size": 48}}, data_cfg) == 72  # a smaller one changes nothing
    assert members.cache_side({**small, "d": {"img_size": 128}}, data_cfg) == 144  # a larger one grows it
    assert members.cache_side(small, {**data_cfg, "cache_margin": 0}) == 64
    assert members.cache_side(small, {**data_cfg, "image_size": 100}) == 100  # an explicit side wins


@pytest.mark.parametrize(
    "name, settings",
    [
        ("resnet10t", {}),
        ("test_resnet", {}),
        ("test_vit", {"extra": {"img_size": 32}}),
        ("test_resnet", {"img_size": 40}),
    ],
)
def test_input_size_is_what_the_built_model_trains_at(name, settings):
    _, dc = build_model(
        TrainConfig(backbone=name, img_size=settings.get("img_size"), extra=settings.get("extra", {})), 2, 3
    )
    assert members.input_size(name, settings) == dc["img_size"]


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(InputError, match="unknown timm model 'resnet_does_not_exist'"):
        members.input_size("resnet_does_not_exist", {})


def test_prepare_side_keeps_an_unchanged_native_cache(tmp_path):
    meta = tmp_path / "meta.json"
    assert members.prepare_side(72, meta) == 72  # nothing prepared yet
    native = {"image_shape": [8, 8, 1], "cache": {"side": 18, "distinct_sizes": 1, "largest": [8, 8]}}
    meta.write_text(json.dumps(native))
    assert members.prepare_side(72, meta) == 18  # 8x8 kept either way: no rebuild, no retraining
    assert members.prepare_side(6, meta) == 6  # now the images must shrink: a rebuild
    resized = {"image_shape": [18, 18, 3], "cache": {"side": 18, "distinct_sizes": 40, "largest": [500, 375]}}
    meta.write_text(json.dumps(resized))
    assert members.prepare_side(36, meta) == 36 and members.prepare_side(18, meta) == 18


def test_train_threads_share_the_cores():
    assert resources.train_threads(None, 8, 2) == 4
    assert resources.train_threads(None, 2, 2) == 1
    assert resources.train_threads(None, 2, None) == 2  # a lone job uses the whole machine
    assert resources.train_threads(None, 3, 8) == 1
    assert resources.train_threads(6, 2, 2) == 6  # configured wins


def test_a_job_in_slurm_uses_no_more_threads_than_its_cpus():
    slurm = {"SLURM_JOB_ID": "7", "SLURM_CPUS_ON_NODE": "4"}
    assert resources.allotted_threads(16, {}) == 16  # outside Slurm: what Snakemake gave
    assert resources.allotted_threads(16, {"SLURM_CPUS_PER_TASK": "2"}) == 16  # a leftover variable, no job
    assert resources.allotted_threads(16, slurm) == 4
    assert resources.allotted_threads(16, {**slurm, "SLURM_CPUS_PER_TASK": "2"}) == 2  # --cpus-per-task first
    assert resources.allotted_threads(1, {**slurm, "SLURM_CPUS_PER_TASK": "2"}) == 1  # never more than asked
    assert resources.allotted_threads(3, {**slurm, "SLURM_CPUS_PER_TASK": "x"}) == 3


# ---------------------------------------------------------------- reading


@pytest.fixture
def cache(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (200, 20, 20, 3), dtype=np.uint8)
    np.save(tmp_path / "cache.npy", arr)
    return arr, data.open_cache(tmp_path / "cache.npy"), rng.permutation(200)[:120], rng.integers(0, 3, 200)


def batches_of(it) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in it]


@pytest.mark.parametrize("on_device", [False, True])
@pytest.mark.parametrize("augment, shuffle", [("none", False), ("light", True)])
def test_memory_mapped_rows_give_the_same_batches_as_an_in_memory_copy(cache, on_device, augment, shuffle):
    arr, mapped, rows, y = cache
    assert isinstance(mapped, np.memmap)
    kw = dict(augment=augment, shuffle=shuffle, batch_size=32, seed=7, on_device=on_device)
    copied = batches_of(data.make_batches(arr[rows], y[rows], DC, torch.device("cpu"), **kw))  # the old path
    by_row = batches_of(data.make_batches(mapped, y[rows], DC, torch.device("cpu"), rows=rows, **kw))
    assert len(copied) == len(by_row) > 1
    for (xa, ya), (xb, yb) in zip(copied, by_row):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_dataloader_workers_read_the_memory_mapped_cache(cache):
    arr, mapped, rows, y = cache
    kw = dict(augment="none", shuffle=False, batch_size=16, seed=0, on_device=False, rows=rows)
    one = batches_of(data.make_batches(mapped, y[rows], DC, torch.device("cpu"), num_workers=0, **kw))
    two = batches_of(data.make_batches(mapped, y[rows], DC, torch.device("cpu"), num_workers=2, **kw))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, two))


def rss_file_kb() -> int:
    """This process's resident file-backed pages (mapped files), from the kernel."""
    return int(re.search(r"RssFile:\s+(\d+) kB", open("/proc/self/status").read()).group(1))


def test_reading_the_whole_cache_keeps_resident_memory_flat(tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.ones((1500, 128, 128, 3), dtype=np.uint8))  # 74 MB
    identity = lambda image: {"image": image}  # noqa: E731 - no copy beyond what the dataset makes

    def growth_mb() -> float:
        mapped = data.open_cache(tmp_path / "big.npy")
        ds = data.CachedImages(mapped, None, identity)
        before = rss_file_kb()
        peak = max(rss_file_kb() if k % 100 == 0 else 0 for k in range(len(ds)) if ds[k] is not None)
        return (max(peak, rss_file_kb()) - before) / 1024

    assert growth_mb() < data.RELEASE_BYTES / 2**20 + 4  # pages are handed back as the job reads
    monkeypatch.setattr(data, "RELEASE_BYTES", 1 << 40)
    assert growth_mb() > 60  # control: without the release, the whole file becomes resident


# ---------------------------------------------------------------- prepare


def mixed_size_competition(path, n_per_class=8, sizes=((40, 30), (24, 24), (64, 48))):
    """A csv_images zip whose PNGs come in several sizes (upscaled digits)."""
    imgs, labels = digits_images(n_per_class, (0, 1, 2))
    test_imgs, _ = digits_images(2, (0, 1, 2), offset=n_per_class)
    ids, test_ids = [f"tr{i:03d}" for i in range(len(imgs))], [f"te{i:03d}" for i in range(len(test_imgs))]
    names = [f"train/{i}.png" for i in ids] + [f"test/{i}.png" for i in test_ids]
    images = {  # the images upscaled to each of the sizes in turn
        name: np.asarray(Image.fromarray(img).resize(sizes[k % len(sizes)], Image.NEAREST))
        for k, (name, img) in enumerate(zip(names, imgs + test_imgs))
    }
    return write_competition(
        path, pd.DataFrame({"id": ids, "label": labels}), images, pd.DataFrame({"id": test_ids, "label": 0})
    )


def test_prepare_sizes_the_cache_to_the_side_it_is_given(tmp_path):
    zip_path = mixed_size_competition(tmp_path / "mixed.zip")
    meta = prepare.prepare(zip_path, tmp_path / "p18", DataConfig(image_size=18), workers=2)
    assert meta["image_shape"] == [18, 18, 1] and meta["cache"]["distinct_sizes"] == 3
    assert np.load(tmp_path / "p18/train_images.npy", mmap_mode="r").shape == (24, 18, 18, 1)
    # images that all share a size no larger than the side keep it (digits: 8x8 under any backbone)
    native = prepare.prepare(tiny_zip_path(tmp_path), tmp_path / "pn", DataConfig(image_size=72))
    assert native["image_shape"] == [8, 8, 1]


def tiny_zip_path(tmp_path):
    path = tmp_path / "tiny.zip"
    if not path.exists():
        write_csv_images_competition(path)
    return path


KILLABLE_PREPARE = """
import sys
from kagglecv.config.data import DataConfig
from kagglecv.data.prepare import prepare
prepare(sys.argv[1], sys.argv[2], DataConfig(image_size=64), workers=1)
"""


def test_a_killed_prepare_leaves_nothing_a_rerun_mistakes_for_complete(tmp_path):
    comp = tmp_path / "comp"
    (comp / "train").mkdir(parents=True), (comp / "test").mkdir()
    rng = np.random.default_rng(0)
    for i in range(1500):
        Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)).save(
            comp / "train" / f"{'cat' if i % 2 else 'dog'}.{i}.jpg", quality=80
        )
    for i in range(20):
        Image.fromarray(rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)).save(comp / "test" / f"{i}.jpg")
    pd.DataFrame({"id": range(20), "label": 0.5}).to_csv(comp / "sample_submission.csv", index=False)
    out = tmp_path / "prepared"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE_PREPARE, str(comp), str(out)])
    deadline = time.monotonic() + 120
    while not list(out.glob(".train_images.npy.*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "prepare finished before it could be killed; make the fixture larger"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finals = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert not finals & {"train_images.npy", "test_images.npy", "meta.json"}, finals
    assert list(out.glob(".train_images.npy.*")), "the kill should have left a temp file behind"
    meta = prepare.prepare(comp, out, DataConfig(image_size=64), workers=2)  # the rerun
    assert meta["n_train"] == 1500 and meta["image_shape"] == [64, 64, 3]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # stale temp files are gone


# ---------------------------------------------------------------- the DAG


def prepare_jobs(r) -> int:
    m = re.search(r"^prepare\s+(\d+)$", r.stdout, flags=re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.workflow
def test_a_larger_backbone_rebuilds_the_cache_and_a_smaller_one_does_not(tmp_path):
    zip_path = mixed_size_competition(tmp_path / "mixed.zip")
    cfg = tiny_config(zip_path, backbones=[{"name": "test_resnet", "img_size": 32}])
    target = "results/tiny/prepared/meta.json"  # after a plain flag: --configfile and --quiet take many values
    run_snakemake(tmp_path, cfg, "-p", target)
    assert json.loads((tmp_path / "results/tiny/prepared/meta.json").read_text())["image_shape"] == [36, 36, 1]

    def planned(*backbones):
        r = run_snakemake(
            tmp_path, {**cfg, "backbones": [*cfg["backbones"], *backbones]}, "-p", target, "-n", "--quiet", "rules"
        )
        return prepare_jobs(r)

    assert planned() == 0
    assert planned({"name": "test_convnext", "img_size": 24}) == 0
    assert planned({"name": "test_convnext", "img_size": 48}) == 1
    # native-size images (8x8 digits): no backbone size changes their cache, so nothing is rebuilt
    native = tiny_config(tiny_zip_path(tmp_path), backbones=["test_resnet"])
    run_snakemake(tmp_path / "n", native, "-p", target)
    r = run_snakemake(
        tmp_path / "n",
        {**native, "backbones": ["test_resnet", {"name": "test_vit", "img_size": 64}]},
        "-p",
        target,
        "-n",
        "--quiet",
        "rules",
    )
    assert prepare_jobs(r) == 0


@pytest.mark.workflow
def test_training_threads_follow_cores_and_gpu_slots(tmp_path):
    cfg = tiny_config(tiny_zip_path(tmp_path))
    for args, want in [(("--cores", "8", "--resources", "gpu=2"), 4), (("--cores", "2"), 2)]:
        r = run_snakemake(tmp_path, cfg, "-n", *args, profile="none")  # the profile would set gpu=2
        threads = re.findall(r"rule train:.*?threads: (\d+)", r.stdout, flags=re.S)
        assert threads and set(threads) == {str(want)}, r.stdout[-2000:]
