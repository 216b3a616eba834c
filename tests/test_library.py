"""The library's pieces, tested directly (no Snakemake)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from kagglecv.config.data import DataConfig
from kagglecv.config.train import TrainConfig
from kagglecv.core.errors import InputError
from kagglecv.data import folds, prepare
from kagglecv.data.demo import make_digits_competition
from kagglecv.inference.models import build_model
from kagglecv.inference.tta import dihedral_views, resolve_tta, tta_blend
from kagglecv.scoring import blend, ensemble, metrics, submission
from kagglecv.training.schedule import one_cycle

from helpers import edit_zip, write_csv_images_competition


def test_demo_competition_is_laid_out_like_kaggle(tmp_path):
    make_digits_competition(tmp_path / "d.zip", tmp_path / "solution.csv")
    names = zipfile.ZipFile(tmp_path / "d.zip").namelist()
    assert {"train.csv", "sample_submission.csv"} <= set(names)
    train = pd.read_csv(zipfile.ZipFile(tmp_path / "d.zip").open("train.csv"))
    sample = pd.read_csv(zipfile.ZipFile(tmp_path / "d.zip").open("sample_submission.csv"))
    solution = pd.read_csv(tmp_path / "solution.csv")
    assert list(train.columns) == ["id", "label"] and list(sample.columns) == ["id", "label"]
    assert len(train) + len(sample) == 1797
    assert set(train["id"]).isdisjoint(sample["id"]) and list(solution["id"]) == list(sample["id"])
    assert sum(n.startswith("test/") for n in names) == len(sample)
    assert "solution.csv" not in " ".join(names)  # the labels never ship with the competition


@pytest.mark.parametrize("with_ext", [False, True])
def test_prepare_reads_ids_with_or_without_extension(tmp_path, with_ext):
    info = write_csv_images_competition(tmp_path / "c.zip", with_ext=with_ext)
    meta = prepare.prepare(tmp_path / "c.zip", tmp_path / "prep")
    assert meta["layout"] == "csv_images" and meta["classes"] == ["0", "1", "2"] and meta["task"] == "multiclass"
    x = np.load(tmp_path / "prep" / "train_images.npy")
    assert x.dtype == np.uint8 and x.shape == (24, 8, 8, 1)
    assert pd.read_csv(tmp_path / "prep" / "test.csv", dtype=str)["id"].tolist() == info["test_ids"]


def test_prepare_keeps_string_labels_and_reads_a_folder(tmp_path):
    write_csv_images_competition(tmp_path / "c.zip", classes=(0, 1), label_names={0: "cat", 1: "dog"})
    zipfile.ZipFile(tmp_path / "c.zip").extractall(tmp_path / "folder")
    meta = prepare.prepare(tmp_path / "folder", tmp_path / "prep")
    assert meta["classes"] == ["cat", "dog"] and meta["task"] == "binary"


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda n, d: None if n == "train/tr003.png" else d, "train id 'tr003' has no image"),
        (lambda n, d: b"not a png" if n == "train/tr004.png" else d, "cannot read image for id 'tr004'"),
        # two columns beside the id, neither named for the template's target (one alone would be the labels)
        (
            lambda n, d: (
                b"id,klass,note\n" + b"".join(r + b",x\n" for r in d.splitlines()[1:]) if n == "train.csv" else d
            ),
            "no target column 'label'",
        ),
        (lambda n, d: d.replace(b"id,label", b"image,label") if n == "train.csv" else d, "no id column 'id'"),
        (lambda n, d: None if n == "test/te002.png" else d, "test id 'te002' has no image"),
        (lambda n, d: b"" if n == "train.csv" else d, "train.csv: the file is empty"),
        (lambda n, d: d.decode().encode("utf-16") if n == "train.csv" else d, "train.csv: not UTF-8 text"),
        (lambda n, d: None if n == "sample_submission.csv" else d, "no sample_submission.csv found"),
        (lambda n, d: b"id\nte000\n" if n == "sample_submission.csv" else d, "no target column beside 'id'"),
        (
            lambda n, d: (
                b"id,label\n" + b"".join(f"tr{i:03d},0\n".encode() for i in range(24)) if n == "train.csv" else d
            ),
            r"only one class \('0'\) in the training labels",
        ),
    ],
)
def test_prepare_bad_input_names_the_problem(tmp_path, tiny_zip, edit, expected):
    bad = edit_zip(tiny_zip[0], tmp_path / "bad.zip", edit)
    with pytest.raises(InputError, match=expected) as e:
        prepare.prepare(bad, tmp_path / "prep")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "prep" / "meta.json").exists()


def test_prepare_settings_that_cannot_work_are_one_line(tmp_path, tiny_zip):
    with pytest.raises(InputError, match="nowhere.zip: not found; set data.path"):
        prepare.prepare(tmp_path / "nowhere.zip", tmp_path / "prep")
    with pytest.raises(InputError, match="data.resize: unknown mode 'stretchy'; use one of"):
        prepare.prepare(tiny_zip[0], tmp_path / "prep", DataConfig(resize="stretchy"))
    with pytest.raises(InputError, match="data.layout: unknown layout 'tiles'; use auto"):
        prepare.prepare(tiny_zip[0], tmp_path / "prep", DataConfig(layout="tiles"))
    assert not (tmp_path / "prep" / "meta.json").exists()


def test_folds_are_stratified_and_reproducible(tmp_path):
    df = pd.DataFrame({"id": [f"i{k}" for k in range(60)], "label": [k % 3 for k in range(60)]})
    df["y"] = df["label"]
    df.to_csv(tmp_path / "train.csv", index=False)
    a = folds.make_folds(tmp_path / "train.csv", tmp_path / "a.csv", 5, seed=7)
    b = folds.make_folds(tmp_path / "train.csv", tmp_path / "b.csv", 5, seed=7)
    c = folds.make_folds(tmp_path / "train.csv", tmp_path / "c.csv", 5, seed=8)
    assert (a["fold"] == b["fold"]).all() and not (a["fold"] == c["fold"]).all()
    assert (pd.crosstab(a["fold"], a["y"]) == 4).all().all()  # every class equally in every fold


def test_folds_refuse_a_class_smaller_than_folds(tmp_path):
    df = pd.DataFrame({"id": list("abcdefg"), "label": ["x"] * 5 + ["rare"] * 2, "y": [0] * 5 + [1] * 2})
    df.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(InputError, match=r"class 'rare' has 2 sample\(s\), fewer than folds=3"):
        folds.make_folds(tmp_path / "train.csv", tmp_path / "folds.csv", 3, seed=0)
    assert not (tmp_path / "folds.csv").exists()


def test_metrics_know_their_direction():
    y = np.array([0, 1, 1, 0])
    good = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    assert metrics.score("accuracy", y, good) == 1.0 and metrics.score("roc_auc", y, good) == 1.0
    assert metrics.score("log_loss", y, good) < metrics.score("log_loss", y, good[:, ::-1])
    assert not metrics.greater_is_better("log_loss") and metrics.greater_is_better("roc_auc")


def _fake_fold_outputs(root, name, folds_df, test_ids, rng, noise):
    dirs = []
    for k in sorted(folds_df["fold"].unique()):
        d = root / name / f"fold{k}"
        d.mkdir(parents=True)
        part = folds_df[folds_df["fold"] == k]
        p = np.eye(3)[part["y"]] * 0.6 + rng.random((len(part), 3)) * noise
        p /= p.sum(1, keepdims=True)
        pd.concat(
            [part[["id", "y", "fold"]].reset_index(drop=True), pd.DataFrame(p, columns=["p0", "p1", "p2"])], axis=1
        ).to_csv(d / "oof.csv", index=False)
        t = rng.random((len(test_ids), 3))
        pd.concat(
            [pd.DataFrame({"id": test_ids}), pd.DataFrame(t / t.sum(1, keepdims=True), columns=["p0", "p1", "p2"])],
            axis=1,
        ).to_csv(d / "test.csv", index=False)
        dirs.append(d)
    return dirs


def test_ensemble_scores_every_backbone_and_the_mean(tmp_path):
    rng = np.random.default_rng(0)
    fdf = pd.DataFrame(
        {"id": [f"i{k}" for k in range(30)], "y": [k % 3 for k in range(30)], "fold": [k % 2 for k in range(30)]}
    )
    fdf.to_csv(tmp_path / "folds.csv", index=False)
    dirs = {
        "a": _fake_fold_outputs(tmp_path, "a", fdf, ["t1", "t2"], rng, 0.5),
        "b.x": _fake_fold_outputs(tmp_path, "b.x", fdf, ["t1", "t2"], rng, 0.9),
    }
    scores = ensemble.combine(dirs, tmp_path / "folds.csv", "accuracy", tmp_path / "out", method="mean")
    on_disk = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert scores.to_dict() == on_disk and list(scores.to_dict()) == list(on_disk)  # the file, keys in order
    assert set(scores.models) == {"a", "b.x"}
    assert len(scores.models["a"]["folds"]) == 2 and scores.ensemble.method == "mean"
    oof = pd.read_csv(tmp_path / "out" / "ensemble_oof.csv")
    a = pd.concat(pd.read_csv(d / "oof.csv") for d in dirs["a"]).set_index("id").loc[oof["id"]]
    b = pd.concat(pd.read_csv(d / "oof.csv") for d in dirs["b.x"]).set_index("id").loc[oof["id"]]
    np.testing.assert_allclose(oof["p1"], (a["p1"].to_numpy() + b["p1"].to_numpy()) / 2)
    assert scores.ensemble.cv == pytest.approx(metrics.score("accuracy", oof["y"], oof[["p0", "p1", "p2"]]))


def _prepared(tmp_path, classes, target_columns, ids):
    d = tmp_path / "prep"
    d.mkdir()
    (d / "meta.json").write_text(
        json.dumps(
            {
                "id_column": "id",
                "target_columns": target_columns,
                "classes": classes,
                "task": "binary" if len(classes) == 2 else "multiclass",
            }
        )
    )
    pd.DataFrame({"id": ids, **{c: 0 for c in target_columns}}).to_csv(d / "sample_submission.csv", index=False)
    return d


def test_submission_follows_the_sample_order_and_format(tmp_path):
    prep = _prepared(tmp_path, ["cat", "dog"], ["label"], ["3", "1", "2"])
    pd.DataFrame({"id": ["1", "2", "3"], "p0": [0.9, 0.2, 0.4], "p1": [0.1, 0.8, 0.6]}).to_csv(
        tmp_path / "t.csv", index=False
    )
    labels = submission.make_submission(
        tmp_path / "t.csv", prep, prep / "sample_submission.csv", "accuracy", tmp_path / "s.csv"
    )
    assert labels["id"].tolist() == ["3", "1", "2"] and labels["label"].tolist() == ["dog", "cat", "dog"]
    probs = submission.make_submission(
        tmp_path / "t.csv", prep, prep / "sample_submission.csv", "log_loss", tmp_path / "s2.csv"
    )
    assert probs["label"].tolist() == [0.6, 0.1, 0.8]  # P(dog), as Dogs vs Cats wants


@pytest.mark.parametrize(
    "preds, expected",
    [
        ({"id": ["1", "2"], "p0": [0.5, 0.5], "p1": [0.5, 0.5]}, "no prediction for id '3'"),
        ({"id": ["1", "2", "3"], "p0": [0.5, np.nan, 0.5], "p1": [0.5, 0.5, 0.5]}, "id '2' is not finite"),
    ],
)
def test_submission_refuses_missing_or_non_finite(tmp_path, preds, expected):
    prep = _prepared(tmp_path, [0, 1], ["label"], ["1", "2", "3"])
    pd.DataFrame(preds).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputError, match=expected):
        submission.make_submission(
            tmp_path / "t.csv", prep, prep / "sample_submission.csv", "accuracy", tmp_path / "s.csv"
        )
    assert not (tmp_path / "s.csv").exists()


def test_one_cycle_has_the_configured_shape():
    cfg = TrainConfig(backbone="x", lr=0.01, pct_start=0.25, div_factor=25, final_div_factor=1e5)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = one_cycle(opt, cfg, total_steps=100)
    lrs, moms = [], []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"]), moms.append(opt.param_groups[0]["betas"][0])
        opt.step(), sched.step()
    assert lrs[0] == pytest.approx(0.01 / 25) and max(lrs) == pytest.approx(0.01, rel=1e-3)
    assert int(np.argmax(lrs)) in (24, 25) and lrs[-1] < 0.01 / 25 / 1e4
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=1e-3)
    assert moms[-1] == pytest.approx(0.95, abs=1e-3)


def test_dihedral_tta_gives_eight_distinct_views():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)  # asymmetric
    views = dihedral_views(x)
    assert len(views) == 8
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert tta_blend(np.ones((2, 2)), [np.zeros((2, 2))], beta=0.25)[0, 0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "augment,expected", [("none", "none"), ("light", "none"), ("flip", "flip"), ("fastai", "dihedral")]
)
def test_auto_tta_uses_only_the_views_training_taught(augment, expected):
    assert resolve_tta("auto", augment) == expected
    assert resolve_tta("augment", augment) == "augment" and resolve_tta("none", "fastai") == "none"  # explicit wins


def test_model_input_comes_from_the_data_config():
    model, dc = build_model(TrainConfig(backbone="test_resnet"), n_outputs=5, in_chans=1)
    assert dc["img_size"] == 160 and len(dc["mean"]) == 1  # test_resnet's own input size; grayscale stats
    _, dc = build_model(TrainConfig(backbone="test_resnet", img_size=24), n_outputs=5, in_chans=3)
    assert dc["img_size"] == 24 and len(dc["mean"]) == 3
    with pytest.raises(InputError, match="test_convnext cannot take 8x8 input"):
        build_model(TrainConfig(backbone="test_convnext", img_size=8), n_outputs=2, in_chans=3)
    with pytest.raises(InputError, match="unknown timm model 'no_such_net'"):
        build_model(TrainConfig(backbone="no_such_net"), n_outputs=2, in_chans=3)


def test_hill_climbing_weights_favour_the_better_model():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    good = np.eye(3)[y] * 0.5 + rng.random((300, 3))
    noise = rng.random((300, 3))  # both models' rows are probabilities, as the OOF files hold them
    w = blend.hill_climb_fit([noise / noise.sum(1, keepdims=True), good / good.sum(1, keepdims=True)], y, "log_loss")
    w = w["weights"]
    assert w[1] > w[0] and sum(w) == pytest.approx(1.0)


def test_fitted_ensembles_are_scored_honestly():
    """On pure-noise predictions a stacker fit and scored on the same rows looks better than chance;
    the nested score must not."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    fold = np.arange(200) % 5
    oofs = [rng.dirichlet([1, 1], 200) for _ in range(12)]
    in_sample = metrics.score("roc_auc", y, blend.stack_apply(oofs, blend.stack_fit(oofs, y, "roc_auc")))
    honest = metrics.score("roc_auc", y, blend.nested_oof("stack", oofs, y, fold, "roc_auc"))
    assert in_sample > 0.6 and abs(honest - 0.5) < 0.1


def test_auto_picks_the_best_honest_method(tmp_path):
    rng = np.random.default_rng(0)
    fdf = pd.DataFrame(
        {"id": [f"i{k}" for k in range(60)], "y": [k % 3 for k in range(60)], "fold": [k % 3 for k in range(60)]}
    )
    fdf.to_csv(tmp_path / "folds.csv", index=False)
    dirs = {n: _fake_fold_outputs(tmp_path, n, fdf, ["t1"], rng, noise) for n, noise in (("a", 0.6), ("b", 1.5))}
    scores = ensemble.combine(dirs, tmp_path / "folds.csv", "log_loss", tmp_path / "out", method="auto")
    assert set(scores.methods) == set(blend.METHODS) - {"rank_mean"}  # ranks only for AUC metrics
    assert scores.ensemble.chosen_by == "cv"
    best = min(scores.methods, key=lambda m: scores.methods[m]["cv"])
    assert scores.ensemble.method == best
    assert scores.ensemble.cv <= min(m["cv"] for m in scores.models.values()) + 1e-9


def test_pretrained_weights_load_exactly_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("test_resnet")  # an ImageNet-shaped checkpoint: 1000 classes
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    model, _ = build_model(
        TrainConfig(backbone="test_resnet", pretrained_file=str(tmp_path / "w.safetensors")), n_outputs=7, in_chans=3
    )
    body = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    assert body and all(torch.equal(model.state_dict()[k], v) for k, v in body.items())
    assert model.state_dict()["fc.weight"].shape == (7, source.num_features)  # a new head for 7 classes
    with pytest.raises(InputError, match="pretrained weights for test_resnet not found"):
        build_model(TrainConfig(backbone="test_resnet", pretrained_file=str(tmp_path / "nope.pth")), 2, 3)


def test_pretrained_without_weights_offline_is_a_clear_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    # conftest.py sets HF_HUB_OFFLINE=1 for the session before anything imports huggingface_hub (which reads it at
    # import): with nothing cached, the hub refuses at once instead of retrying a closed network for ~50 s.
    assert constants.is_offline_mode()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache, whatever this machine holds
    with pytest.raises(InputError, match="backbones: pretrained weights for resnet18 not found") as e:
        build_model(TrainConfig(backbone="resnet18", pretrained=True), n_outputs=2, in_chans=3)
    assert "pretrained_file" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "metric, predicted, expected",
    [
        ("accuracy", ["dog", "cat", "cat", "cat"], 0.75),  # labels for ids a-d: c is wrong
        ("roc_auc", ["0.9", "0.2", "0.25", "0.3"], 0.75),  # P(dog): of the (dog, cat) pairs only (c, d) is misordered
    ],
)
def test_the_local_public_score_reads_the_submission_as_kaggle_would(tmp_path, metric, predicted, expected):
    """kagglecv.scoring.submission.score_against (the demo's holdout rule): the submission against held-aside labels, by
    id, whatever the order of either file."""
    meta = {"task": "binary", "id_column": "id", "target_columns": ["label"], "classes": ["cat", "dog"]}
    pd.DataFrame({"id": ["d", "c", "b", "a"], "label": predicted[::-1]}).to_csv(tmp_path / "sub.csv", index=False)
    pd.DataFrame({"id": ["a", "b", "c", "d"], "label": ["dog", "cat", "dog", "cat"]}).to_csv(
        tmp_path / "solution.csv", index=False
    )
    result = submission.score_against(tmp_path / "sub.csv", tmp_path / "solution.csv", meta, metric)
    assert result == {"metric": metric, "score": pytest.approx(expected), "n": 4}


@pytest.mark.parametrize(
    "method, params, read",
    [
        ("best_single", {"model": 1}, ["b"]),
        ("hill_climb", {"weights": [0.75, 0.0, 0.25]}, ["a", "c"]),
        ("mean", None, ["a", "b", "c"]),
    ],
)
def test_prediction_skips_the_members_the_ensemble_gives_no_weight(tmp_path, monkeypatch, method, params, read):
    """`snakemake predict` and the kernel run the folds of the members the stored recipe reads, and nothing else
    (a best_single ensemble of a round-two model and its student predicts one model, not three); the answer is
    the recipe's on all of them."""
    from kagglecv.inference import predict

    rng = np.random.default_rng(0)
    probs = {m: rng.dirichlet(np.ones(3), size=5) for m in "abc"}
    calls = []

    def fake_backbone_probs(fold_dirs, images, *args):  # a fold model's forward passes, recorded
        member = fold_dirs[0].parent.name
        calls.append(member)
        return probs[member], {"member": member}

    monkeypatch.setattr(predict, "backbone_probs", fake_backbone_probs)
    res = tmp_path / "results" / "c"
    res.mkdir(parents=True)
    scores = {
        "task": "multiclass",
        "models": {m: {"cv": 0.5, "folds": [0.5, 0.5]} for m in "abc"},
        "ensemble": {"method": method, "members": ["a", "b", "c"], "params": blend.to_json(params)},
    }
    (res / "scores.json").write_text(json.dumps(scores))
    out, info = predict.ensemble_predict(res, np.zeros((5, 4, 4, 1), np.uint8), "cpu")
    assert calls == read and info["predicted"] == read and info["members"] == ["a", "b", "c"]
    expected = blend.apply(method, [probs[m] for m in "abc"], params)
    assert np.allclose(out, expected)
