"""Code competitions, locally: `snakemake kernel` after a run, then the kernel's own code run as Kaggle would run
it (KAGGLE_INPUT holding the unpacked competition and the dataset under their slugs), and `snakemake predict` on
the test images: both must give the workflow's submission. Test-time views are seeded per image, so the test
set predicted in another order, batch or company gives the same numbers.

The run: a copy of the session's trained run (conftest.py `trained_run`: the tiny csv_images competition, 2 folds,
two backbones, tta=augment (random views), a stacked ensemble), with `snakemake kernel` added.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import (
    REPO,
    dry_run,
    run_snakemake,
    updated_workflow,
    write_csv_images_competition,
)


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory):
    shared = trained_run.copy(tmp_path_factory.mktemp("kernel") / "run")
    wd, cfg = shared.wd, shared.cfg
    assert cfg["train"]["tta"] == "augment" and cfg["ensemble"]["method"] == "stack"  # what these tests are about
    assert cfg["kaggle"] == {"owner": "someone", "enable_gpu": False, "max_bad_test_images": 0.05}
    assert shared.info["test_ids"][11:]  # 12 test images: the hidden test set below keeps 8 of them
    r = run_snakemake(wd, cfg, "--cores", "2", "kernel")  # an option first: --configfile takes several values
    assert "localrule train:" not in r.stdout + r.stderr  # only the kernel folders were made
    return wd, cfg, shared.info, shared.res


def dataset_slug(res: Path) -> str:
    return json.loads((res / "kernel-dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]


def hidden_rerun(wd: Path, res: Path, truncated: int, times: int = 5) -> tuple[Path, list[str], Path, list[str]]:
    """/kaggle/input as Kaggle mounts it for the scoring rerun: the competition's folder holds the hidden test
    set only (test/ and sample_submission.csv, no training side), `times` the public one's size in another
    order: each public image as it is and flipped or rotated, under new ids; `truncated` of them cut in half.
    Returns (the input folder, the hidden template's ids in order, a folder of the readable images, the ids of
    the truncated ones)."""
    from PIL import Image

    inp = kaggle_input(wd, res / "kernel-dataset", dataset_slug(res))
    comp, readable = inp / "tiny", wd / f"hidden-readable-{truncated}"
    shutil.rmtree(comp)
    shutil.rmtree(readable, ignore_errors=True)
    (comp / "test").mkdir(parents=True)
    readable.mkdir()
    views = [lambda a: a, np.fliplr, np.flipud, np.rot90, np.transpose]
    ids = []
    with zipfile.ZipFile(wd / "tiny.zip") as zf:
        public = [n for n in zf.namelist() if n.startswith("test/")]
        for k in range(times):
            for name in public:
                pixels = np.asarray(Image.open(zf.open(name)))
                ids.append(f"h{k}{Path(name).stem}")
                Image.fromarray(np.ascontiguousarray(views[k](pixels))).save(comp / "test" / f"{ids[-1]}.png")
    ids = [str(i) for i in np.random.default_rng(5).permutation(ids)]
    cut = ids[3 : 3 + truncated]
    for i in ids:
        data = (comp / "test" / f"{i}.png").read_bytes()
        if i in cut:
            (comp / "test" / f"{i}.png").write_bytes(data[: len(data) // 2])
        else:
            (readable / f"{i}.png").write_bytes(data)
    pd.DataFrame({"id": ids, "label": "0"}).to_csv(comp / "sample_submission.csv", index=False)
    return inp, ids, readable, cut


def kaggle_input(wd: Path, dataset_dir: Path, slug: str) -> Path:
    """/kaggle/input as Kaggle mounts it: the competition unpacked under its slug, the dataset under its own."""
    inp = wd / "input"
    shutil.rmtree(inp, ignore_errors=True)
    with zipfile.ZipFile(wd / "tiny.zip") as zf:
        zf.extractall(inp / "tiny")
    shutil.copytree(dataset_dir, inp / slug)
    return inp


def run_kernel(wd: Path, kernel_dir: Path, inp: Path, working: Path, **env) -> subprocess.CompletedProcess:
    meta = json.loads((kernel_dir / "kernel-metadata.json").read_text())
    full = {**os.environ, "KAGGLE_INPUT": str(inp), "KAGGLE_WORKING": str(working), **env}
    return subprocess.run(
        [sys.executable, str(kernel_dir / meta["code_file"])],
        cwd=wd,
        env=full,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.workflow
def test_kernel_folders_are_ready_to_push(run):
    wd, cfg, info, res = run
    ds, kernel = res / "kernel-dataset", res / "kernel"
    dmeta = json.loads((ds / "dataset-metadata.json").read_text())
    kmeta = json.loads((kernel / "kernel-metadata.json").read_text())
    assert dmeta["id"] == "someone/tiny-kagglecv" and 6 <= len(dmeta["title"]) <= 50 and dmeta["licenses"]
    assert kmeta["id"] == "someone/tiny-kagglecv" and kmeta["competition_sources"] == ["tiny"]
    assert kmeta["dataset_sources"] == [dmeta["id"]]
    assert kmeta["enable_internet"] is False and kmeta["enable_gpu"] is False
    assert (kernel / kmeta["code_file"]).is_file() and kmeta["kernel_type"] == "script"
    # every fold of every backbone, the ensemble with its fitted parameters, the data settings, our wheel
    for b in ("test_resnet", "test_convnext"):
        for k in range(2):
            assert (ds / "models" / b / f"fold{k}" / "model.pt").stat().st_size > 0
            assert json.loads((ds / "models" / b / f"fold{k}" / "config.json").read_text())["backbone"] == b
    scores = json.loads((ds / "scores.json").read_text())
    assert scores["ensemble"]["method"] == "stack" and scores["ensemble"]["params"]["model"]["coef"]
    assert json.loads((ds / "prepared" / "meta.json").read_text())["data"]["test_dir"] == "test"
    for name in ("scores.json", "prepared/meta.json"):  # the run's own files, copied byte for byte
        assert (ds / name).read_bytes() == (res / name).read_bytes(), name
    wheels = list((ds / "wheels").glob("kagglecv-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as zf:
        assert "kagglecv/kaggle/notebook.py" in zf.namelist() and "kagglecv/inference/predict.py" in zf.namelist()
    manifest = json.loads((ds / "manifest.json").read_text())
    assert manifest["bytes"] == sum(f["bytes"] for f in manifest["files"].values())
    assert not any(p.name.startswith(".") for p in res.iterdir() if "kernel" in p.name)  # no temp folders left
    record = json.loads((res / "kernel.mlflow.json").read_text())  # logged beside the results, not in the dataset
    assert record["params"]["dataset"] == "someone/tiny-kagglecv" and "kernel.mlflow.json" not in manifest["files"]


@pytest.mark.workflow
def test_kernel_run_locally_writes_the_workflow_submission(run, tmp_path):
    wd, cfg, info, res = run
    slug = json.loads((res / "kernel-dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    inp = kaggle_input(wd, res / "kernel-dataset", slug)
    r = run_kernel(wd, res / "kernel", inp, tmp_path / "working")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ours = pd.read_csv(tmp_path / "working" / "submission.csv", dtype=str, keep_default_na=False)
    theirs = pd.read_csv(res / "submission.csv", dtype=str, keep_default_na=False)
    assert list(ours.columns) == list(theirs.columns) and list(ours["id"]) == list(theirs["id"])
    assert list(ours["label"]) == list(theirs["label"])
    assert sorted(p.name for p in (tmp_path / "working").iterdir()) == ["submission.csv"]  # no cache left behind


@pytest.mark.workflow
def test_kernel_reads_a_hidden_test_set_in_another_order(run, tmp_path):
    """Kaggle reruns the notebook on a test set it never saw: here the same images under a shuffled template
    and fewer of them. Each image's probabilities must not depend on which others are there (TTA seeded per
    image); the stacked ensemble then gives the same labels as the workflow's for those ids."""
    wd, cfg, info, res = run
    slug = json.loads((res / "kernel-dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    inp = kaggle_input(wd, res / "kernel-dataset", slug)
    sample = pd.read_csv(inp / "tiny" / "sample_submission.csv", dtype=str)
    keep = sample.sample(frac=1.0, random_state=3).iloc[:8]
    for name in set(sample["id"]) - set(keep["id"]):
        (inp / "tiny" / "test" / f"{name}.png").unlink()
    keep.to_csv(inp / "tiny" / "sample_submission.csv", index=False)
    r = run_kernel(wd, res / "kernel", inp, tmp_path / "working")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ours = pd.read_csv(tmp_path / "working" / "submission.csv", dtype=str).set_index("id")
    theirs = pd.read_csv(res / "submission.csv", dtype=str).set_index("id")
    assert list(ours.index) == list(keep["id"])
    assert (ours["label"] == theirs.loc[ours.index, "label"]).all()


@pytest.mark.workflow
def test_kernel_survives_the_hidden_rerun(run, tmp_path):
    """The scoring rerun as Kaggle runs it: no training side, a hidden test set 5x the public one in another
    order, one truncated image. The submission is complete and valid, equal for every readable image to what
    `snakemake predict` gives on the same images; the truncated one gets the training prior, and the log lists it
    and ends with the count."""
    wd, cfg, info, res = run
    inp, ids, readable, cut = hidden_rerun(wd, res, truncated=1)
    r = run_kernel(wd, res / "kernel", inp, tmp_path / "working")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ours = pd.read_csv(tmp_path / "working" / "submission.csv", dtype=str, keep_default_na=False)
    assert list(ours.columns) == ["id", "label"] and ours["id"].tolist() == ids and (ours["label"] != "").all()
    run_snakemake(wd, cfg, "--cores", "2", "predict", "--config", f"predict_dir={readable}")
    predicted = pd.read_csv(res / "predictions" / f"{readable.name}.csv", dtype=str, keep_default_na=False)
    by_id = dict(zip(predicted["image"].str.removesuffix(".png"), predicted["label"]))
    assert len(by_id) == len(ids) - 1
    ours = ours.set_index("id")["label"]
    assert all(ours[i] == by_id[i] for i in by_id)
    prior = json.loads((res / "kernel-dataset" / "prior.json").read_text())["prior"]
    classes = json.loads((res / "prepared" / "meta.json").read_text())["classes"]
    assert ours[cut[0]] == classes[int(np.argmax(prior))]
    assert f"test id {cut[0]!r} (row 5)" in r.stdout and "predicted with the training prior" in r.stdout
    assert r.stdout.strip().splitlines()[-1].endswith("1 unreadable test image(s) predicted with the training prior")
    assert "projected" in r.stdout and "predict: 4/4 fold passes" in r.stdout  # progress and projected end


@pytest.mark.workflow
def test_kernel_refuses_more_unreadable_images_than_allowed(run, tmp_path):
    wd, cfg, info, res = run
    inp, ids, readable, cut = hidden_rerun(wd, res, truncated=4)  # 4 of 60 > kaggle.max_bad_test_images 0.05
    r = run_kernel(wd, res / "kernel", inp, tmp_path / "working")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "ERROR: kernel: 4 of 60 test images have no readable image, more than kaggle.max_bad_test_images (0.05 of "
            "the rows)"
        )
    )
    assert not (tmp_path / "working" / "submission.csv").exists()


@pytest.mark.workflow
def test_kernel_checks_its_weights_and_versions_before_decoding(run, tmp_path):
    """It prints the versions it runs with; a weights file that is not the manifest's stops it with one line,
    before any image is decoded."""
    wd, cfg, info, res = run
    slug = dataset_slug(res)
    inp = kaggle_input(wd, res / "kernel-dataset", slug)
    weights = inp / slug / "models" / "test_convnext" / "fold1" / "model.pt"
    weights.write_bytes(weights.read_bytes()[:-10])  # an upload cut short
    r = run_kernel(wd, res / "kernel", inp, tmp_path / "working")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"ERROR: {weights}: differs from the manifest")
    from importlib.metadata import version

    assert f"torch {version('torch')}" in r.stdout and "decode test" not in r.stdout + r.stderr


@pytest.mark.workflow
def test_snakemake_kernel_refuses_a_rerun_over_the_time_limit(run, tmp_path):
    """A hidden test set projected to outlast the kernel's time limit: `snakemake kernel` refuses with one line
    naming what to cut, and accepts once a member is cut. The projection is each fold's own prediction time
    (metrics.json), so the limit is set between the two configurations' projections."""
    wd, cfg, info, res = run
    copy = tmp_path / "wd"  # the module's run stays as it is for the other tests
    shutil.copytree(wd, copy, symlinks=True)
    plan = json.loads((res / "kernel-dataset" / "manifest.json").read_text())["kernel_run"]["budget"]
    members = {m: v["seconds_per_image"] for m, v in plan["members"].items()}
    rows = 10**6
    both = rows * (plan["decode_seconds_per_image"] + sum(members.values()))
    resnet = rows * (plan["decode_seconds_per_image"] + members["test_resnet"])
    limit = (both + resnet) / 2 / 0.7
    over = {**cfg, "kaggle": {**cfg["kaggle"], "hidden_test_rows": rows, "kernel_time_limit": limit}}
    r = run_snakemake(copy, over, "--cores", "2", "kernel", check=False)
    assert r.returncode != 0
    line = next(x for x in r.stderr.splitlines() if x.startswith("ERROR: kernel: the hidden rerun would take"))
    assert f"({rows:,} images x" in line and "above 0.7 x kaggle.kernel_time_limit" in line
    assert "cut TTA views (train.tta), folds or backbones" in line
    cut = {**over, "backbones": ["test_resnet"]}
    run_snakemake(copy, cut, "--cores", "2", "kernel")
    manifest = json.loads((copy / "results" / "tiny" / "kernel-dataset" / "manifest.json").read_text())
    assert manifest["members"] == ["test_resnet"] and manifest["kernel_run"]["budget"]["rows"] == rows


@pytest.mark.workflow
def test_updating_the_workflow_retrains_nothing(run, tmp_path):
    """A checkout changes every script's modification time: with the profile, nothing whose inputs did not
    change runs again."""
    wd, cfg, info, res = run
    r = dry_run(updated_workflow(tmp_path / "flow"), wd)
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:] + r.stderr[-2000:]


@pytest.mark.workflow
def test_kernel_without_its_dataset_says_what_to_attach(run, tmp_path):
    wd, cfg, info, res = run
    inp = tmp_path / "input"
    with zipfile.ZipFile(wd / "tiny.zip") as zf:
        zf.extractall(inp / "tiny")
    r = run_kernel(wd, res / "kernel", inp, tmp_path / "working")
    assert r.returncode != 0
    assert "tiny-kagglecv: not found" in r.stderr and "attach it to the notebook" in r.stderr
    assert not (tmp_path / "working" / "submission.csv").exists()


@pytest.mark.workflow
def test_predict_on_the_test_images_equals_the_submission(run):
    """`snakemake predict` on the competition's test folder: the ensemble's probabilities of ensemble_test.csv,
    with tta=augment (random views) and a stacked ensemble."""
    wd, cfg, info, res = run
    folder = wd / "test_images"
    with zipfile.ZipFile(wd / "tiny.zip") as zf:
        for name in zf.namelist():
            if name.startswith("test/"):
                folder.mkdir(exist_ok=True)
                (folder / Path(name).name).write_bytes(zf.read(name))
    run_snakemake(wd, cfg, "--cores", "2", "predict", "--config", f"predict_dir={folder}")
    pred = pd.read_csv(res / "predictions" / "test_images.csv")
    ens = pd.read_csv(res / "ensemble_test.csv", dtype={"id": str}).set_index("id")
    pred.index = [Path(n).stem for n in pred["image"]]
    cols = [c for c in ens.columns if c.startswith("p") and c[1:].isdigit()]
    ours = pred.loc[ens.index, [c for c in pred.columns if c not in ("image", "label")]].to_numpy()
    assert np.abs(ours - ens[cols].to_numpy()).max() < 1e-5
    summary = json.loads((res / "predictions" / "test_images.json").read_text())
    assert summary["method"] == "stack" and summary["consistency_check"]["ok"]


def test_slugs_fit_kaggle():
    from kagglecv.kaggle.kernel import default_slug, slug

    assert default_slug("aerial-cactus-identification") == "aerial-cactus-identification-kagglecv"
    long = default_slug("x" * 80)
    assert len(long) == 50 and not long.endswith("-")
    assert slug("My Models!") == "my-models" and len(slug("ab")) >= 6


def test_dataset_above_the_size_limit_is_refused(tmp_path):
    from kagglecv.core.errors import InputError
    from kagglecv.kaggle.kernel_dataset import check_size

    (tmp_path / "w.bin").write_bytes(b"\0" * 2048)
    assert check_size(tmp_path, 4096) == 2048
    with pytest.raises(InputError, match=r"above the Kaggle dataset limit .*kaggle.dataset_max_bytes"):
        check_size(tmp_path, 1024)


def test_wheel_builds_from_the_checkout_without_touching_it(tmp_path):
    from kagglecv.kaggle.kernel_dataset import build_wheel

    before = sorted(p.name for p in REPO.iterdir())
    wheel = build_wheel(REPO, tmp_path)
    assert wheel.name.startswith("kagglecv-") and wheel.suffix == ".whl"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "kagglecv/inference/predict.py" in names and not any("__pycache__" in n for n in names)
    assert "kagglecv/config.schema.yaml" in names  # kagglecv.config reads its defaults from it
    assert sorted(p.name for p in REPO.iterdir()) == before


@pytest.mark.parametrize("on_device", [False, True])
def test_tta_views_are_seeded_per_image_not_by_order(on_device):
    """The same image gets the same random views whatever its position, batch size or worker process (both
    data paths); without per-image seeding the shuffled set gets different views (the test can fail)."""
    import torch

    from kagglecv.data import batches as data

    rng = np.random.default_rng(0)
    cache = rng.integers(0, 255, (20, 12, 12, 3), dtype=np.uint8)
    dc = {"img_size": 16, "mean": [0.5] * 3, "std": [0.5] * 3}
    perm = rng.permutation(20)

    def views(batch_size, rows=None, per_image=True, workers=0):
        return torch.cat(
            [
                x
                for x, _ in data.make_batches(
                    cache,
                    None,
                    dc,
                    torch.device("cpu"),
                    augment="fastai",
                    shuffle=False,
                    batch_size=batch_size,
                    seed=7,
                    on_device=on_device,
                    rows=rows,
                    num_workers=workers,
                    per_image=per_image,
                )
            ]
        )

    plain = views(8)
    assert torch.equal(plain[perm], views(5, perm))
    if not on_device:
        assert torch.equal(plain[perm], views(5, perm, workers=2))
    assert not torch.equal(plain[perm], views(5, perm, per_image=False))
    assert not torch.equal(plain, views(8, per_image=True)[torch.roll(torch.arange(20), 1)])  # views differ by image


def test_fitted_ensembles_round_trip_through_json_exactly():
    """scores.json's `ensemble.params` reproduce every fitted method bit for bit: predict and the kernel apply
    them without fitting anything again."""
    from kagglecv.scoring import blend

    rng = np.random.default_rng(0)
    cases = [
        ("multiclass", "log_loss", rng.integers(0, 3, 120), lambda: rng.dirichlet([1, 1, 1], 120)),
        ("binary", "roc_auc", rng.integers(0, 2, 120), lambda: rng.dirichlet([1, 1], 120)),
        ("multilabel", "mean_column_auc", (rng.random((120, 3)) < 0.3).astype(int), lambda: rng.random((120, 3))),
        ("regression", "rmse", rng.random(120) * 10, lambda: rng.random((120, 1)) * 10),
    ]
    for kind, metric, y, make in cases:
        oofs = [make(), make()]
        for method, params in blend.fit_all(oofs, y, metric, kind=kind).items():
            back = blend.from_json(json.loads(json.dumps(blend.to_json(params))))
            assert np.array_equal(blend.apply(method, oofs, params, kind), blend.apply(method, oofs, back, kind)), (
                kind,
                method,
            )


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """As on Kaggle: a Python with torch and timm but no kagglecv: (its python, its environment)."""
    import sysconfig

    env_dir = tmp_path_factory.mktemp("bare") / "venv"
    made = subprocess.run([sys.executable, "-m", "venv", str(env_dir)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a venv with pip here: {made.stderr.strip()[-200:]}")
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # our site-packages as a plain path entry: torch, timm, pandas import; its .pth files (the editable
    # kagglecv) are not processed, so kagglecv is missing
    Path(purelib, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    missing = subprocess.run(
        [str(py), "-c", "import importlib.util as u, torch; print(u.find_spec('kagglecv'))"],
        capture_output=True,
        text=True,
        env=clean,
        cwd=env_dir,
    )
    assert missing.stdout.strip() == "None", missing.stderr[-2000:]
    proxy = "http://127.0.0.1:9"  # internet off: anything that tries the network fails at once
    return py, {**clean, "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "PIP_NO_INDEX": "1"}


def run_bare(bare_python, res: Path, inp: Path, working: Path) -> subprocess.CompletedProcess:
    """The kernel in `bare_python`, kagglecv missing (as a run before may have installed it)."""
    py, env = bare_python
    subprocess.run(
        [str(py), "-m", "pip", "uninstall", "--quiet", "--yes", "kagglecv"], env=env, capture_output=True, check=True
    )
    meta = json.loads((res / "kernel" / "kernel-metadata.json").read_text())
    return subprocess.run(
        [str(py), str(res / "kernel" / meta["code_file"])],
        cwd=working.parent,
        capture_output=True,
        text=True,
        timeout=600,
        env={**env, "KAGGLE_INPUT": str(inp), "KAGGLE_WORKING": str(working)},
    )


@pytest.mark.workflow
def test_kernel_installs_its_wheel_offline_when_kagglecv_is_missing(run, bare_python, tmp_path):
    """The kernel pip-installs the dataset's wheels (no index, no network) and still writes the workflow's
    submission."""
    wd, cfg, info, res = run
    slug = json.loads((res / "kernel-dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    r = run_bare(bare_python, res, kaggle_input(wd, res / "kernel-dataset", slug), tmp_path / "working")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    where = subprocess.run(
        [str(bare_python[0]), "-c", "import kagglecv; print(kagglecv.__file__)"],
        capture_output=True,
        text=True,
        env=bare_python[1],
        cwd=tmp_path,
    ).stdout
    assert str(bare_python[0].parents[1]) in where  # installed from the wheel into the venv
    assert (tmp_path / "working" / "submission.csv").read_bytes() == (res / "submission.csv").read_bytes()


@pytest.mark.workflow
def test_kernel_dataset_without_its_wheels_folder_says_how_to_upload_it(run, bare_python, tmp_path):
    """`kaggle datasets create -p` without --dir-mode skips folders: wheels/ never reaches Kaggle. One line naming
    the folder and the upload that keeps it, not pip's CalledProcessError."""
    wd, cfg, info, res = run
    slug = json.loads((res / "kernel-dataset" / "dataset-metadata.json").read_text())["id"].split("/")[1]
    inp = kaggle_input(wd, res / "kernel-dataset", slug)
    shutil.rmtree(inp / slug / "wheels")
    r = run_bare(bare_python, res, inp, tmp_path / "working")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == (
        f"ERROR: {inp / slug / 'wheels'}: not found; the dataset was uploaded without its folders (the kaggle client "
        "skips them without --dir-mode): upload it again with `kaggle datasets version -p "
        "results/tiny/kernel-dataset --dir-mode zip -m update`, or let `snakemake submit` upload it"
    )


def test_the_test_side_reads_alone_as_meta_json_says(tmp_path):
    """meta.json keeps the layout prepare recognised, and the test side reads from it with nothing of the training
    side there: a code competition's hidden rerun has test/ and sample_submission.csv only."""
    from kagglecv.config.data import DataConfig
    from kagglecv.data import prepare
    from kagglecv.data.competition import read_test_side

    info = write_csv_images_competition(tmp_path / "c.zip")
    meta = prepare.prepare(tmp_path / "c.zip", tmp_path / "prepared", DataConfig())
    assert meta["data"]["layout"] == "csv_images"
    hidden = tmp_path / "hidden"
    with zipfile.ZipFile(tmp_path / "c.zip") as zf:
        zf.extractall(hidden, [n for n in zf.namelist() if n.startswith("test/") or n == "sample_submission.csv"])
    cfg = DataConfig.of(meta["data"])
    _, side = read_test_side(hidden, cfg)
    assert side.template.ids == info["test_ids"] and [p.stem for p in side.images] == info["test_ids"]
    (hidden / "test" / f"{info['test_ids'][1]}.png").unlink()  # the kernel cannot drop a hidden row: it is listed
    missing = []
    _, side = read_test_side(hidden, cfg, missing=missing)
    assert side.images[1] is None and missing == [(info["test_ids"][1], f"has no image in {hidden / 'test'}/")]


def test_only_what_the_manifest_lists_is_uploaded(tmp_path):
    """Snakemake leaves a .snakemake_timestamp marker in every directory output: the copies pushed to Kaggle hold
    the manifest's files (and the kernel's code) only."""
    from kagglecv.core.files import write_json
    from kagglecv.kaggle.kernel import stamp_owner

    ds, kernel = tmp_path / "kernel-dataset", tmp_path / "kernel"
    (ds / "models" / "m" / "fold0").mkdir(parents=True)
    (ds / "models" / "m" / "fold0" / "model.pt").write_bytes(b"weights")
    write_json(ds / "dataset-metadata.json", {"id": "someone/tiny-kagglecv", "title": "tiny-kagglecv"})
    write_json(ds / "manifest.json", {"files": {"models/m/fold0/model.pt": {}, "dataset-metadata.json": {}}})
    kernel.mkdir()
    (kernel / "kernel.py").write_text("print(1)\n")
    write_json(
        kernel / "kernel-metadata.json",
        {"id": "someone/tiny-kagglecv", "code_file": "kernel.py", "dataset_sources": ["someone/tiny-kagglecv"]},
    )
    for folder in (ds, kernel, ds / "models"):
        (folder / ".snakemake_timestamp").write_text("")
    ds_copy, kernel_copy = stamp_owner(ds, kernel, "me", tmp_path / "push")
    assert sorted(p.relative_to(ds_copy).as_posix() for p in ds_copy.rglob("*") if p.is_file()) == [
        "dataset-metadata.json",
        "manifest.json",
        "models/m/fold0/model.pt",
    ]
    assert sorted(p.name for p in kernel_copy.iterdir()) == ["kernel-metadata.json", "kernel.py"]
    assert json.loads((kernel_copy / "kernel-metadata.json").read_text())["dataset_sources"] == ["me/tiny-kagglecv"]


def test_environment_check_names_the_wheel_to_ship(capsys):
    from kagglecv.core.errors import InputError
    from kagglecv.kaggle import rerun

    found = rerun.check_environment({"packages": {"numpy": np.__version__, "pandas": "1.0"}})
    assert found["numpy"] == np.__version__ and f"numpy {np.__version__}" in capsys.readouterr().out
    with pytest.raises(
        InputError,
        match=r"^kernel: numpy .* \(tested: 999.1\), no-such-package-kcv missing \(tested: "
        r"1.0\); download the wheel\(s\) \(pip download --no-deps -d wheels/ "
        r"numpy==999.1 no-such-package-kcv==1.0\), list them in kaggle.kernel_wheels",
    ):
        rerun.check_environment({"packages": {"numpy": "999.1", "no-such-package-kcv": "1.0"}})
    assert rerun.release("2.15.0+cu132") == (2, 15, 0) < rerun.release("2.15.1") and rerun.release("x") == ()
    assert set(rerun.tested_environment()["packages"]) == set(rerun.KERNEL_REQUIRES)


def test_dataset_files_and_free_disk_are_checked(tmp_path):
    from kagglecv.core.errors import InputError
    from kagglecv.core.files import file_sha256
    from kagglecv.kaggle import rerun

    (tmp_path / "a.bin").write_bytes(b"weights")
    manifest = {"files": {"a.bin": {"bytes": 7, "sha256": file_sha256(tmp_path / "a.bin")}}}
    rerun.verify_files(tmp_path, manifest)
    (tmp_path / "a.bin").write_bytes(b"weightz")
    with pytest.raises(InputError, match=r"a.bin: differs from the manifest .*upload results/<competition>/kernel-"):
        rerun.verify_files(tmp_path, manifest)
    (tmp_path / "a.bin").unlink()
    with pytest.raises(InputError, match=r"a.bin: not found; the kernel dataset is incomplete or stale"):
        rerun.verify_files(tmp_path, manifest)
    rerun.check_disk(tmp_path, 1, "a cache")
    with pytest.raises(InputError, match=rf"^{tmp_path}: .* GiB free, the cache needs 8589934592.00 GiB; free space"):
        rerun.check_disk(tmp_path, 2**63, "the cache")


def test_rerun_projection_and_its_limit():
    """Each fold's prediction time per image (its training job timed its validation and test rows), summed over
    folds and members, plus decoding, times the hidden rows and the device factor."""
    from kagglecv.core.errors import InputError
    from kagglecv.core.results import ModelRecord
    from kagglecv.kaggle import rerun

    meta = {"n_test": 10, "decode": {"workers": 2, "images_per_s": 400.0}}
    fold = ModelRecord(
        metrics={"tta_seconds": 3.0, "device": "cpu"}, config={"n_valid": 20, "tta_used": "dihedral"}
    )  # 0.1 s per image
    other = ModelRecord(
        metrics={"tta_seconds": 1.5, "device": "cpu"}, config={"n_valid": 20, "tta_used": "augment", "tta_n": 2}
    )
    folds = {"big": [fold] * 5, "small": [other] * 5}
    plan = rerun.project(folds, meta, enable_gpu=True, hidden_test_rows=10_000, speed_factor=None)
    assert plan["speed_factor"] == 0.25 and plan["decode_seconds_per_image"] == pytest.approx(2 / 400 / 4)
    assert plan["members"]["big"] == {"seconds_per_image": pytest.approx(0.5), "folds": 5, "views": 8}
    assert plan["projected_seconds"] == pytest.approx(10_000 * (2 / 400 / 4 + 0.25 * 0.75))
    rerun.check_budget(plan, limit=32400, safety=0.7)  # 1,888 s
    with pytest.raises(
        InputError,
        match=r"^kernel: the hidden rerun would take ~0.52 h \(10,000 images x 0.189 s: "
        r"decoding 0.0013 s, big 5 folds x 8 views 0.125 s, small 5 folds x 3 views "
        r"0.0625 s; timed on cpu, x0.25 for a gpu kernel\), above 0.7 x kaggle.kernel"
        r"_time_limit = 0.39 h; cut TTA views \(train.tta\), folds or backbones \(big "
        r"costs the most\)",
    ):
        rerun.check_budget(plan, limit=2000, safety=0.7)
    assert (
        rerun.project(
            {"big": [ModelRecord(fold.config, {"device": "cpu"})]},
            meta,
            enable_gpu=False,
            hidden_test_rows=None,
            speed_factor=None,
        )
        is None
    )  # not timed: not projected
    same = rerun.project(folds, meta, enable_gpu=False, hidden_test_rows=None, speed_factor=None)
    assert same["speed_factor"] == 1.0 and same["rows"] == 10


@pytest.mark.parametrize(
    "kind, classes, labels, y, expected",
    [
        ("multiclass", ["a", "b", "c"], ["a", "b", "b", "c"], [0, 1, 1, 2], [0.25, 0.5, 0.25]),
        ("multilabel", ["x", "y"], ["x", "x y", "", "y"], [1, 2, 0, 1], [0.5, 0.5]),
        ("regression", [], ["1.5", "2.5", "5"], [1.5, 2.5, 5.0], [3.0]),
    ],
)
def test_the_training_prior_is_the_labels_frequency_or_mean(kind, classes, labels, y, expected):
    from kagglecv.core.tasks import Task

    prior = Task(kind, tuple(classes)).prior(pd.DataFrame({"label": labels, "y": y}))
    assert prior.tolist() == pytest.approx(expected)


def test_the_kernel_owner_comes_from_the_local_credentials_without_a_network_call(tmp_path, monkeypatch):
    """kaggle.owner unset: the user name of KAGGLE_USERNAME, else of the first kaggle.json the client would read;
    none for a bare API token."""
    from kagglecv.kaggle.kernel import credential_username

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "cfg"))
    assert credential_username() is None
    (home / ".config" / "kaggle").mkdir(parents=True)
    (home / ".config" / "kaggle" / "kaggle.json").write_text(json.dumps({"username": "later", "key": "k"}))
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "kaggle.json").write_text(json.dumps({"username": "", "key": "token-only"}))
    assert credential_username() == "later"  # the first file that names one
    monkeypatch.setenv("KAGGLE_USERNAME", "alice")
    assert credential_username() == "alice"


def test_a_kernel_dataset_that_cannot_be_complete_is_one_line(tmp_path):
    """No student to ship, a factory file gone since training, no checkout to build the wheel from."""
    from kagglecv.core.errors import InputError
    from kagglecv.core.layout import Layout
    from kagglecv.kaggle.kernel_dataset import build_wheel, place_factory, student_scores

    L = Layout(tmp_path / "results" / "tiny")
    with pytest.raises(InputError, match="kernel_models: student needs a distilled student"):
        student_scores(L, {"models": {"test_resnet": {"cv": 0.5}}}, None)
    fold = L.model("mynet", 0)
    fold.path.mkdir(parents=True)
    fold.config.write_text(json.dumps({"model": str(tmp_path / "gone.py") + ":build"}))
    fold.metrics.write_text("{}")  # a model folder holds both (docs/extending.md)
    with pytest.raises(InputError, match=r"backbones: mynet: its model file .*gone.py is gone"):
        place_factory(L, "mynet", Layout(tmp_path / "out"))
    L.model("timm_member", 0).path.mkdir(parents=True)
    L.model("timm_member", 0).config.write_text(json.dumps({"model": None}))
    L.model("timm_member", 0).metrics.write_text("{}")
    place_factory(L, "timm_member", Layout(tmp_path / "out"))  # a timm name: nothing to carry
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="no pyproject.toml and kagglecv/ here"):
        build_wheel(tmp_path, tmp_path / "wheels")
