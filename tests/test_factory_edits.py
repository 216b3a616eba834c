"""A user who edits their model factory (docs/extending.md, `model: FILE.py:FUNCTION`): the file and the modules it
imports from its folder are inputs of the jobs that build the model, their hash is in each job's resolved config
and resume checkpoint, a checkpoint that does not fit the model is discarded with one line, and the Kaggle kernel
ships what the factory imports and checks that every shipped model loads from the dataset alone."""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import pytest
import torch

from kagglecv.config.factories import factory_sha256, factory_sources
from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError

from helpers import REPO, killed_snakemake, run_snakemake, tiny_config, write_csv_images_competition

# nets/mynet.py imports its sibling nets/helper.py, as a user's code does, with no PYTHONPATH set. It sleeps in
# each training batch so that the job can be killed between its epochs.
MYNET = textwrap.dedent("""
    import time

    import torch.nn as nn
    from helper import body

    WIDTH = {width}


    class Slow(nn.Module):
        def forward(self, x):
            if self.training:
                time.sleep(0.4)
            return x


    def build(num_outputs, in_chans, pretrained, img_size, width=WIDTH):
        net = nn.Sequential(Slow(), body(in_chans, width))
        return net if num_outputs == 0 else nn.Sequential(net, nn.Linear(width, num_outputs))
""")
HELPER = textwrap.dedent("""
    import torch.nn as nn


    def body(in_chans, width):
        return nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
""")
TARGET = "results/tiny/submission.csv"


def write_nets(folder: Path, width: int = 8) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mynet.py").write_text(MYNET.format(width=width))
    (folder / "helper.py").write_text(HELPER)


def test_the_sources_are_the_file_and_what_it_imports_from_its_folder(tmp_path, monkeypatch):
    nets = tmp_path / "nets"
    write_nets(nets)
    (nets / "unused.py").write_text("x = 1\n")
    (nets / "pkg").mkdir()
    (nets / "pkg" / "__init__.py").write_text("from .part import y\n")
    (nets / "pkg" / "part.py").write_text("y = 2\n")
    (nets / "helper.py").write_text(HELPER + "\nimport os, pkg  # a package of the folder, and the standard library\n")
    monkeypatch.chdir(tmp_path)
    ref = "nets/mynet.py:build"
    assert [p.as_posix() for p in factory_sources(ref)] == [
        "nets/mynet.py",
        "nets/helper.py",
        "nets/pkg/__init__.py",
        "nets/pkg/part.py",
    ]
    assert factory_sources("test_resnet") == [] and factory_sha256("their.module:build") is None
    before = factory_sha256(ref)
    (nets / "unused.py").write_text("x = 2\n")
    assert factory_sha256(ref) == before  # not imported: not the model's code
    (nets / "pkg" / "part.py").write_text("y = 3\n")
    assert factory_sha256(ref) != before


@pytest.mark.workflow
@pytest.mark.timeout(900)
def test_an_edited_factory_retrains_across_a_kill_and_ships_with_its_weights(tmp_path):
    """Issue 34, case 1: a 3-epoch job killed (SIGKILL) after epoch 1 with nets/mynet.py at width 8, the file then
    changed to width 16: the next run discards the checkpoint with one line and finishes; editing a module the
    factory imports retrains too; the kernel ships both files and loads every model from the dataset alone."""
    wd = tmp_path / "wd"
    write_nets(wd / "nets", width=8)
    write_csv_images_competition(tmp_path / "tiny.zip")
    cfg = tiny_config(
        tmp_path / "tiny.zip",
        backbones=[{"name": "mynet", "model": "nets/mynet.py:build", "img_size": 16}],
        mlflow={"enabled": False},
        kaggle={"owner": "someone", "enable_gpu": False},
    )
    cfg["train"].update(epochs=3, tta="none")
    resume = wd / "results/tiny/models/mynet/fold0/resume.pt"
    killed_snakemake(wd, cfg, TARGET, ready=resume.exists, timeout=300, poll=0.02)  # after its first checkpoint
    saved = torch.load(resume, weights_only=True)
    assert saved["epoch"] < 3 and not (resume.parent / "metrics.json").exists()
    write_nets(wd / "nets", width=16)  # the edit: another model, the checkpoint no longer fits it

    run_snakemake(wd, cfg, "--unlock")
    r = run_snakemake(wd, cfg, TARGET)
    log = (wd / "results/tiny/logs/train/mynet/fold0.log").read_text()
    assert "saved with other model code (nets/mynet.py:build); starting over" in log, log[-3000:]
    assert "Error(s) in loading state_dict" not in log + r.stdout + r.stderr
    assert not resume.exists()
    resolved = json.loads((resume.parent / "config.json").read_text())
    assert resolved["factory_sha256"] == factory_sha256(str(wd / "nets/mynet.py") + ":build")
    weights = torch.load(resume.parent / "model.pt", weights_only=True)["state_dict"]
    assert weights["0.1.0.weight"].shape[0] == 16  # the edited width

    dry = run_snakemake(wd, cfg, TARGET, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-2000:]
    (wd / "nets" / "helper.py").write_text(HELPER + "\n# an edit of the module the factory imports\n")
    dry = run_snakemake(wd, cfg, TARGET, "-n", "--quiet", "rules")
    counts = dict(line.split()[:2] for line in dry.stdout.splitlines() if line.startswith(("train", "prepare")))
    assert counts == {"train": "2"}, dry.stdout

    run_snakemake(wd, cfg, "kernel")
    shipped = wd / "results/tiny/kernel-dataset/models/mynet"
    assert (shipped / "mynet.py").read_text() == MYNET.format(width=16)
    assert (shipped / "helper.py").read_text() == (wd / "nets" / "helper.py").read_text()


# ---------------------------------------------------------------- the kernel's load check


OUTSIDE = textwrap.dedent("""
    import torch.nn as nn
    from outside_helper import WIDTH  # found only through PYTHONPATH: not beside the factory


    def build(num_outputs, in_chans, pretrained, img_size):
        return nn.Sequential(nn.Flatten(), nn.Linear(in_chans * img_size * img_size, num_outputs))
""")


def test_the_kernel_refuses_a_model_that_does_not_load_from_the_dataset_alone(tmp_path, monkeypatch):
    """A factory importing a module from outside its folder works where PYTHONPATH finds it, and would fail on
    Kaggle: the kernel build loads every shipped model in an isolated Python and refuses, in one line."""
    from kagglecv.inference.models import build_model
    from kagglecv.kaggle.kernel_dataset import check_loads

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "outside_helper.py").write_text("WIDTH = 4\n")
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "mynet.py").write_text(OUTSIDE)
    monkeypatch.syspath_prepend(str(tmp_path / "elsewhere"))  # the user's PYTHONPATH
    cfg = TrainConfig(backbone="mynet", model=f"{tmp_path}/nets/mynet.py:build", img_size=8)
    model, dc = build_model(cfg, n_outputs=3, in_chans=1)
    dataset = tmp_path / "dataset"
    fold = dataset / "models" / "mynet" / "fold0"
    fold.mkdir(parents=True)
    resolved = {**dataclasses.asdict(cfg), **dc, "n_outputs": 3, "task": "multiclass"}
    torch.save({"state_dict": model.state_dict(), "config": resolved}, fold / "model.pt")
    (dataset / "models" / "mynet" / "mynet.py").write_text(OUTSIDE)  # shipped, as place_factory ships it
    with pytest.raises(InputError) as e:
        check_loads(dataset, ["models/mynet/fold0/model.pt"], 1, REPO)
    line = str(e.value)
    assert (
        "\n" not in line
        and line.startswith("kernel: models/mynet/fold0/model.pt does not load from the kernel dataset alone")
        and "outside_helper" in line
    ), line
    (dataset / "models" / "mynet" / "outside_helper.py").write_text("WIDTH = 4\n")  # shipped beside it: loads
    check_loads(dataset, ["models/mynet/fold0/model.pt"], 1, REPO)


def test_a_checkpoint_that_does_not_fit_the_model_is_discarded_with_one_line(tmp_path, capsys):
    """The same code and settings, yet weights of another shape (a timm version, a module imported from elsewhere):
    the job starts over instead of failing at every attempt."""
    from kagglecv.data import folds, prepare
    from kagglecv.training.train import run

    write_csv_images_competition(tmp_path / "c.zip")
    prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    folds.make_folds(tmp_path / "prep" / "train.csv", tmp_path / "folds.csv", 2, seed=0)
    cfg = TrainConfig(backbone="test_resnet", epochs=2, img_size=16, batch_size=16, tta="none", device="cpu", threads=1)
    out = tmp_path / "m"
    run(cfg, tmp_path / "prep", tmp_path / "folds.csv", out, track=False)
    first = (out / "oof.csv").read_bytes()
    state = torch.load(out / "model.pt", weights_only=True)
    resolved = state["config"]  # as the job resolved it (config.json holds the same, its tuples as lists)
    from kagglecv.core.layout import PreparedFiles
    from kagglecv.training.resume import data_fingerprint

    bad = {
        k: (torch.zeros(v.shape[0] + 2, *v.shape[1:]) if k == "fc.weight" else v)
        for k, v in state["state_dict"].items()
    }
    torch.save(
        {
            "epoch": 1,
            "history": [],
            "model": bad,
            "config": resolved,
            "data": data_fingerprint(PreparedFiles(tmp_path / "prep"), tmp_path / "folds.csv"),
        },
        out / "resume.pt",
    )
    capsys.readouterr()
    run(cfg, tmp_path / "prep", tmp_path / "folds.csv", out, track=False)
    printed = capsys.readouterr().out
    assert f"{out}/resume.pt: saved for another model (fc.weight: " in printed and "starting over" in printed
    assert (out / "oof.csv").read_bytes() == first and not (out / "resume.pt").exists()
