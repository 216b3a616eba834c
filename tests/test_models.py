"""Models beyond a timm name (kagglecv.inference.models): the user's factories, heads on timm bodies, metadata beside
the image (kagglecv.data.meta), and one job on several devices (kagglecv.training.distributed, run on CPU with gloo)."""

from __future__ import annotations

import json
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch

from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.data.demo import write_competition
from kagglecv.data.meta import MetaEncoder, column
from kagglecv.data.prepare import prepare
from kagglecv.inference.models import GeM, Net, build_model
from kagglecv.training.train import run

from helpers import digits_images

FACTORY = textwrap.dedent("""
    import torch.nn as nn

    def build(num_outputs, in_chans, pretrained, img_size, width=8):
        body = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())
        return body if num_outputs == 0 else nn.Sequential(body, nn.Linear(width, num_outputs))

    def wrong(num_outputs, in_chans, pretrained, img_size):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_outputs + 1))

    def not_a_module(**kw):
        return "a model"

    def raises(**kw):
        raise RuntimeError("no such width\\nsecond line")

    def unpooled(num_outputs, in_chans, pretrained, img_size):
        return nn.Conv2d(in_chans, 4, 3)

    NOT_A_FUNCTION = 3
""")


@pytest.fixture
def factory_file(tmp_path):
    path = tmp_path / "outside" / "mynet.py"  # outside the repository, as a user's file would be
    path.parent.mkdir()
    path.write_text(FACTORY)
    return path


def test_a_factory_file_builds_the_model_with_its_arguments(factory_file):
    cfg = TrainConfig(backbone="mynet", model=f"{factory_file}:build", model_args={"width": 5}, img_size=16)
    model, dc = build_model(cfg, n_outputs=3, in_chans=1)
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
    assert model[0][0].out_channels == 5  # model_args reached the factory
    assert dc["img_size"] == 16 and len(dc["mean"]) == 1  # timm's defaults, grey


def test_model_args_of_a_timm_name_reach_timm_create_model():
    """A timm entry's model_args are timm.create_model's keyword arguments (tune.space searches them): they were
    once handed to factories only, and a timm entry's were dropped without a word. They win over `extra`."""
    from kagglecv.config.members import explicit_input_size

    x = torch.zeros(2, 1, 32, 32)
    plain, _ = build_model(TrainConfig(backbone="resnet18", img_size=32), n_outputs=3, in_chans=1)
    args = dict(model_args={"output_stride": 16, "drop_path_rate": 0.1}, extra={"output_stride": 8})
    strided, _ = build_model(TrainConfig(backbone="resnet18", img_size=32, **args), n_outputs=3, in_chans=1)
    assert plain.forward_features(x).shape[-1] == 1 and strided.forward_features(x).shape[-1] == 2
    assert strided.layer4[1].drop_path.drop_prob == 0.1 and strided(x).shape == (2, 3)
    assert explicit_input_size({"model_args": {"img_size": 96}, "extra": {"img_size": 64}}) == 96


def test_a_factory_module_is_imported_by_name(factory_file, monkeypatch):
    monkeypatch.syspath_prepend(str(factory_file.parent))
    model, _ = build_model(TrainConfig(backbone="mynet", model="mynet:build", img_size=12), n_outputs=4, in_chans=3)
    assert model(torch.zeros(1, 3, 12, 12)).shape == (1, 4)


@pytest.mark.parametrize(
    "ref, message",
    [
        ("{dir}/nope.py:build", "model file .*nope.py not found"),
        ("{dir}/mynet.py:missing", "has no 'missing'"),
        ("{dir}/mynet.py:wrong", r"gives outputs of shape \(4,\) for one image, the task needs \(3,\)"),
        ("{dir}/mynet.py:not_a_module", "returned str, not a torch.nn.Module"),
        ("no_such_package_xyz.models:build", "cannot import model 'no_such_package_xyz.models:build'"),
        ("just-a-name", "unknown timm model 'just-a-name'"),
        ("{dir}/mynet.py", "is not FILE.py:FUNCTION or MODULE:FUNCTION"),
        ("{dir}/mynet.py:NOT_A_FUNCTION", "is not callable"),
        ("{dir}/mynet.py:raises", r"failed to build \(RuntimeError: no such width\)"),
        ("{dir}/broken.py:build", r"cannot import model .*broken.py:build' \(ZeroDivisionError: division by zero\)"),
    ],
)
def test_a_bad_factory_is_one_line_naming_the_entry(factory_file, ref, message):
    (factory_file.parent / "broken.py").write_text("x = 1 / 0\n")
    cfg = TrainConfig(backbone="mynet", model=ref.format(dir=factory_file.parent), img_size=16)
    with pytest.raises(InputError, match=message) as e:
        build_model(cfg, n_outputs=3, in_chans=1)
    assert "\n" not in str(e.value) and ("mynet" in str(e.value) or "just-a-name" in str(e.value))


@pytest.mark.parametrize(
    "settings, n_meta, message",
    [
        ({"model": "{dir}/mynet.py:build", "head": "gem"}, 0, "head: gem is for timm bodies"),
        ({"head": "max"}, 0, "head 'max' is not one of"),
        (
            {"pretrained_file": "{dir}/missing.safetensors"},
            0,
            "missing.safetensors: pretrained weights for mynet not found",
        ),
        ({"model": "{dir}/mynet.py:unpooled"}, 2, r"must return pooled features N x F .* returned \(2, 4, 14, 14\)"),
        ({"model": "test_resnet", "pretrained": True}, 0, "pretrained weights for mynet not found"),
    ],
)
def test_a_model_setting_that_cannot_work_is_one_line(factory_file, settings, n_meta, message):
    """What the entry asks of the model is checked before any epoch (HF_HUB_OFFLINE: no weights to be had)."""
    settings = {k: v.format(dir=factory_file.parent) if isinstance(v, str) else v for k, v in settings.items()}
    with pytest.raises(InputError, match=message) as e:
        build_model(TrainConfig(backbone="mynet", img_size=16, **settings), n_outputs=3, in_chans=1, n_meta=n_meta)
    assert "\n" not in str(e.value)


def test_a_factory_file_moved_is_found_where_the_kernel_dataset_carries_it(factory_file, tmp_path):
    carried = tmp_path / "dataset" / "mynet"
    carried.mkdir(parents=True)
    factory_file.rename(carried / "mynet.py")
    cfg = TrainConfig(backbone="mynet", model=f"{factory_file}:build", img_size=8)  # where it was written
    with pytest.raises(InputError, match="not found"):
        build_model(cfg, n_outputs=2, in_chans=1)
    model, _ = build_model(cfg, n_outputs=2, in_chans=1, search=carried)
    assert model(torch.zeros(1, 1, 8, 8)).shape == (1, 2)


def test_a_factory_body_with_metadata_is_fused_and_asks_for_the_metadata(factory_file):
    model, _ = build_model(
        TrainConfig(backbone="mynet", model=f"{factory_file}:build", img_size=8), n_outputs=2, in_chans=1, n_meta=3
    )
    assert isinstance(model, Net) and model(torch.zeros(2, 1, 8, 8), torch.zeros(2, 3)).shape == (2, 2)
    with pytest.raises(ValueError, match="call it as model\\(images, meta\\)"):
        model(torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("head", ["gem", "multi_dropout"])
def test_heads_on_a_timm_body(head):
    torch.manual_seed(0)
    model, _ = build_model(TrainConfig(backbone="test_resnet", head=head, img_size=32), n_outputs=3, in_chans=3)
    assert isinstance(model, Net) and model(torch.randn(4, 3, 32, 32)).shape == (4, 3)
    if head == "gem":
        assert isinstance(model.pool, GeM) and model.pool.p.requires_grad  # p is learned
        x = torch.rand(2, 5, 4, 4) + 0.1
        assert torch.allclose(GeM(1.0)(x), x.mean((-2, -1)), atol=1e-5)  # p=1: average pooling
    else:
        x = torch.randn(4, 3, 32, 32)
        model.train()
        assert not torch.allclose(model(x), model(x))  # different masks each call
        model.eval()
        assert torch.allclose(model(x), model(x))  # eval: the plain linear layer


def test_gem_refuses_a_body_without_a_feature_map():
    with pytest.raises(InputError, match="head: gem pools a convolutional feature map"):
        build_model(TrainConfig(backbone="test_vit", head="gem"), n_outputs=2, in_chans=3)


# ---------------------------------------------------------------- metadata


def frame(**cols) -> pd.DataFrame:
    return pd.DataFrame({column(k): v for k, v in cols.items()})


def test_meta_encoder_fits_on_the_rows_it_is_given():
    specs = [{"name": "age", "kind": "number"}, {"name": "site", "kind": "text"}]
    train = frame(age=["10", "30", ""], site=["head", "torso", "head"])
    enc = MetaEncoder.fit(train, specs)
    assert enc.columns[0]["mean"] == 20.0 and enc.columns[0]["std"] == 10.0  # the missing age is left out
    assert enc.columns[1]["categories"] == ["head", "torso"]
    out = enc.transform(frame(age=["40", "NA"], site=["torso", "palms"]))
    # age standardised + missing flag; site one-hot with "other" last: "palms" was never seen in training
    assert out.tolist() == [[2.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 1.0]]
    assert enc.width == 5 and MetaEncoder.from_json(json.loads(json.dumps(enc.to_json()))).columns == enc.columns
    # fitted on other rows, other statistics: what the encoder sees is exactly what it is given
    assert MetaEncoder.fit(frame(age=["40", "50"], site=["x", "x"]), specs).columns[0]["mean"] == 45.0


def meta_competition(path, *, signal: bool = True, drop_test_column: bool = False, empty_column: bool = False):
    """csv_images with two metadata columns: `kind` (text) decides the label with the digit when `signal`."""
    rng = np.random.default_rng(0)
    imgs, digits = digits_images(12, classes=(0, 1, 2))
    test_imgs, _ = digits_images(3, classes=(0, 1, 2), offset=12)
    kinds = rng.choice(["a", "b"], len(imgs))
    labels = [f"{d}{k}" if signal else str(d) for d, k in zip(digits, kinds)]
    train = pd.DataFrame(
        {
            "id": [f"tr{i}" for i in range(len(imgs))],
            "label": labels,
            "kind": kinds,
            "age": ["" if empty_column else str(a) for a in rng.integers(20, 80, len(imgs))],
        }
    )
    test = pd.DataFrame(
        {
            "id": [f"te{i}" for i in range(len(test_imgs))],
            "kind": rng.choice(["a", "b", "c"], len(test_imgs)),
            "age": rng.integers(20, 80, len(test_imgs)).astype(str),
        }
    )
    if drop_test_column:
        test = test.drop(columns=["age"])
    images = {f"train/{i}.png": img for i, img in zip(train["id"], imgs)}
    images |= {f"test/{i}.png": img for i, img in zip(test["id"], test_imgs)}
    sample = pd.DataFrame({"id": test["id"], "label": labels[0]})
    return write_competition(path, train, images, sample, files={"test.csv": test})


def test_prepare_keeps_the_metadata_and_refuses_what_the_model_cannot_have(tmp_path):
    from kagglecv.config.data import DataConfig

    cfg = DataConfig(meta_columns=["kind", "age"])
    meta = prepare(meta_competition(tmp_path / "c.zip"), tmp_path / "p", cfg)
    assert meta["meta_columns"] == [{"name": "kind", "kind": "text"}, {"name": "age", "kind": "number"}]
    train, test = pd.read_csv(tmp_path / "p/train.csv", dtype=str), pd.read_csv(tmp_path / "p/test.csv", dtype=str)
    assert {"meta:kind", "meta:age"} <= set(train.columns) and list(test.columns) == ["id", "meta:kind", "meta:age"]
    with pytest.raises(InputError, match=r"test.csv: no column 'age' \(data.meta_columns\)"):
        prepare(meta_competition(tmp_path / "d.zip", drop_test_column=True), tmp_path / "q", cfg)
    with pytest.raises(InputError, match=r"column 'age' \(data.meta_columns\) is empty in every row"):
        prepare(meta_competition(tmp_path / "e.zip", empty_column=True), tmp_path / "r", cfg)


def folds_for(prepared, tmp_path, k=2):
    from kagglecv.data.folds import make_folds

    task = json.loads((prepared / "meta.json").read_text())["task"]
    make_folds(prepared / "train.csv", tmp_path / "folds.csv", k, 0, task=task)
    return tmp_path / "folds.csv"


def test_a_model_with_metadata_trains_predicts_and_encodes_on_its_training_rows_only(tmp_path):
    from kagglecv.config.data import DataConfig
    from kagglecv.data.batches import open_cache
    from kagglecv.inference.predict import backbone_probs, load_fold_model
    from kagglecv.training.fold import load_fold

    prepared = tmp_path / "p"
    prepare(meta_competition(tmp_path / "c.zip"), prepared, DataConfig(meta_columns=["kind", "age"]))
    fcsv = folds_for(prepared, tmp_path)
    cfg = TrainConfig(backbone="test_resnet", epochs=1, img_size=16, batch_size=8, threads=1)
    r = run(cfg, prepared, fcsv, tmp_path / "m", track=False)
    resolved = json.loads((tmp_path / "m/config.json").read_text())
    age = resolved["meta_encoder"][1]
    folds = pd.read_csv(fcsv, dtype=str, keep_default_na=False)
    train_ages = folds.loc[folds["fold"] != "0", "meta:age"].astype(float)
    assert age["mean"] == pytest.approx(train_ages.mean())  # the fold's training rows, not all of them
    assert age["mean"] != pytest.approx(folds["meta:age"].astype(float).mean())
    assert 0 <= r["score"] <= 1 and len(pd.read_csv(tmp_path / "m/test.csv")) == 9
    # rebuilt for prediction with its encoder; without the metadata it says what is missing
    model, *_ = load_fold_model(tmp_path / "m/model.pt", in_chans=1, device_pref="cpu")
    assert model.kagglecv_meta.width == 5  # kind: a, b and other; age and its missing flag
    test_rows = pd.read_csv(prepared / "test.csv", dtype=str, keep_default_na=False)
    probs, _ = backbone_probs([tmp_path / "m"], open_cache(prepared / "test_images.npy"), "cpu", test_rows)
    stored = pd.read_csv(tmp_path / "m/test.csv").filter(like="p").to_numpy()
    assert np.allclose(probs, stored, atol=1e-6)  # the same encoding as at training time
    with pytest.raises(InputError, match="read metadata beside the image"):
        backbone_probs([tmp_path / "m"], open_cache(prepared / "test_images.npy"), "cpu")
    assert load_fold(cfg, prepared, fcsv).meta.shape == (36, 5)


def test_mixup_with_metadata_is_refused(tmp_path):
    from kagglecv.config.data import DataConfig
    from kagglecv.training.fold import load_fold

    prepare(meta_competition(tmp_path / "c.zip"), tmp_path / "p", DataConfig(meta_columns=["kind"]))
    with pytest.raises(InputError, match="mixup mixes images, not their metadata"):
        load_fold(TrainConfig(backbone="x", mixup_alpha=0.4), tmp_path / "p", folds_for(tmp_path / "p", tmp_path))


# ---------------------------------------------------------------- several devices in one job


@pytest.mark.timeout(900)
def test_two_processes_train_what_one_would(tmp_path):
    """gpus: 2 on CPU: two gloo processes, each half of every batch, gradients averaged. Batch norm sees half a
    batch per process, so the numbers move a little, not the model."""
    from helpers import write_csv_images_competition

    write_csv_images_competition(tmp_path / "c.zip", n_per_class=16)
    prepare(tmp_path / "c.zip", tmp_path / "p")
    fcsv = folds_for(tmp_path / "p", tmp_path)
    base = dict(backbone="test_resnet", epochs=2, img_size=16, batch_size=16, threads=2, device="cpu", tta="none")
    one = run(TrainConfig(**base), tmp_path / "p", fcsv, tmp_path / "one", track=False)
    rows = []  # on_epoch in this process, with process 0's rows (a tuning trial's pruner is asked there)
    cfg = TrainConfig(**base, gpus=2)
    two = run(cfg, tmp_path / "p", fcsv, tmp_path / "two", track=False, on_epoch=lambda *r: rows.append(r))
    assert one["processes"] == 1 and two["processes"] == 2
    history = pd.read_csv(tmp_path / "two" / "history.csv")
    assert [e for e, _ in rows] == [1, 2] and [r["valid_accuracy"] for _, r in rows] == list(history["valid_accuracy"])
    assert not list((tmp_path / "two").glob(".epochs-*"))  # the relay's file is gone
    a = pd.read_csv(tmp_path / "one/oof.csv").filter(like="p").to_numpy()
    b = pd.read_csv(tmp_path / "two/oof.csv").filter(like="p").to_numpy()
    assert a.shape == b.shape and not np.array_equal(a, b)  # really another run
    assert np.abs(a - b).mean() < 0.05, np.abs(a - b).mean()


@pytest.mark.timeout(900)
def test_what_on_epoch_raises_stops_every_process_of_a_two_device_job(tmp_path):
    """A tuning trial on two devices is pruned after an epoch as one on a single device is: what on_epoch raises
    in the launching process stops both processes before the next epoch, and nothing is written as a result."""
    from helpers import write_csv_images_competition

    write_csv_images_competition(tmp_path / "c.zip", n_per_class=16)
    prepare(tmp_path / "c.zip", tmp_path / "p")
    fcsv = folds_for(tmp_path / "p", tmp_path)
    cfg = TrainConfig(backbone="test_resnet", epochs=20, img_size=16, batch_size=16, threads=2, device="cpu", gpus=2)

    class Pruned(Exception):
        pass

    def prune(epoch, row):
        assert "valid_accuracy" in row
        raise Pruned(f"pruned at epoch {epoch}")

    t0 = time.perf_counter()
    with pytest.raises(Pruned, match="pruned at epoch 1"):
        run(cfg, tmp_path / "p", fcsv, tmp_path / "out", track=False, on_epoch=prune)
    resume = torch.load(tmp_path / "out" / "resume.pt", weights_only=True)
    assert resume["epoch"] < 10, resume["epoch"]  # stopped soon after the report (polled twice a second), not at 20
    assert not (tmp_path / "out" / "oof.csv").exists() and not list((tmp_path / "out").glob(".epochs-*"))
    assert time.perf_counter() - t0 < 300


def test_metadata_fusion_learns_a_target_that_depends_on_image_and_metadata_together():
    """label = (image class) XOR (metadata flag): no sum of an image logit and a metadata logit gives it, so a linear
    head over [image features, metadata features] stays at 0.75 at best; the fusion layer learns it."""
    torch.manual_seed(0)
    a, k = torch.randint(0, 2, (256,)), torch.randint(0, 2, (256,))
    x = torch.nn.functional.one_hot(a, 2).float().view(-1, 2, 1, 1)  # the "image": its class, as two channels
    meta, y = k.float().view(-1, 1), a ^ k
    net = Net(torch.nn.Flatten(), 2, 2, n_meta=1)
    opt = torch.optim.Adam(net.parameters(), 0.01)
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x, meta), y).backward()
        opt.step()
    net.eval()
    assert (net(x, meta).argmax(1) == y).float().mean().item() == 1.0


def test_predict_reads_each_images_metadata_by_file_name_or_stem(tmp_path):
    """`snakemake predict --config predict_meta=...` / `kagglecv predict --meta`: a row per image by its
    file name or its name without the extension, in the images' order; what is missing is one line."""
    from kagglecv.inference.predict import read_meta_csv

    meta = {"meta_columns": [{"name": "kind"}, {"name": "age"}]}
    pd.DataFrame(
        {"image": ["b", "a.png", "c.jpg"], "age": [3, 1, 2], "kind": ["x", "y", "z"], "other": [0, 0, 0]}
    ).to_csv(tmp_path / "meta.csv", index=False)
    got = read_meta_csv(tmp_path / "meta.csv", ["a.png", "b.png", "c.jpg"], meta)
    assert got.to_dict("list") == {column("kind"): ["y", "x", "z"], column("age"): ["1", "3", "2"]}  # as read
    assert read_meta_csv(tmp_path / "meta.csv", ["a.png"], {"meta_columns": []}) is None  # a run without
    with pytest.raises(InputError, match=r"meta.csv: no row for image 'd.png' in column 'image'; list every image"):
        read_meta_csv(tmp_path / "meta.csv", ["a.png", "d.png"], meta)
    pd.DataFrame({"image": ["a"], "kind": ["x"]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(InputError, match=r"short.csv: no column 'age'; the run's models read kind, age"):
        read_meta_csv(tmp_path / "short.csv", ["a.png"], meta)
