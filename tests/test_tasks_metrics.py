"""Metrics, decision thresholds and ensemble blending for every task kind (binary ... ordinal)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from kagglecv.core.errors import InputError
from kagglecv.scoring import blend, metrics, thresholds

RNG = np.random.default_rng


def _classes(n=300, k=4, seed=0):
    rng = RNG(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n) + 0.6 * np.eye(k)[y]
    return y, p / p.sum(1, keepdims=True)


def _tags(n=300, labels=5, seed=0, rate=0.3):
    rng = RNG(seed)
    y = (rng.random((n, labels)) < rate).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, labels)), 0, 1)
    return y, p


def _grades(n=400, seed=0, shrink=0.5, noise=0.5):
    """Grades 0..4 and a regressor shrunk towards the mean, as one trained on squared error is."""
    rng = RNG(seed)
    y = rng.integers(0, 5, n).astype(float)
    return y, (2 + shrink * (y - 2) + noise * rng.standard_normal(n))[:, None]


# ---------------------------------------------------------------- metrics against scikit-learn


def test_classification_metrics_match_sklearn():
    y, p = _classes()
    d = p.argmax(1)
    assert metrics.score("accuracy", y, p) == pytest.approx(skm.accuracy_score(y, d))
    assert metrics.score("roc_auc", y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    assert metrics.score("log_loss", y, p) == pytest.approx(skm.log_loss(y, p))
    assert metrics.score("f1_micro", y, p) == pytest.approx(skm.f1_score(y, d, average="micro"))
    assert metrics.score("f1_macro", y, p) == pytest.approx(skm.f1_score(y, d, average="macro"))
    assert metrics.score("qwk", y, p) == pytest.approx(skm.cohen_kappa_score(y, d, weights="quadratic"))
    onehot = np.eye(4)[y]
    assert metrics.score("mean_column_auc", y, p) == pytest.approx(
        np.mean([skm.roc_auc_score(onehot[:, j], p[:, j]) for j in range(4)])
    )
    yb, pb = _classes(k=2, seed=1)
    assert metrics.score("roc_auc", yb, pb) == pytest.approx(skm.roc_auc_score(yb, pb[:, 1]))


def test_multilabel_metrics_match_sklearn():
    y, p = _tags()
    y[:, 4] = 0  # a label no row has: no AUC, skipped by the column mean
    d = (p > 0.5).astype(int)
    assert metrics.score("f2_samples", y, p) == pytest.approx(
        skm.fbeta_score(y, d, beta=2, average="samples", zero_division=0)
    )
    column_auc = np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(4)])
    assert metrics.score("mean_column_auc", y, p) == pytest.approx(column_auc)
    assert metrics.score("roc_auc", y, p) == pytest.approx(column_auc)
    assert metrics.score("log_loss", y, p) == pytest.approx(
        np.mean([skm.log_loss(y[:, j], p[:, j], labels=[0, 1]) for j in range(5)])
    )
    assert metrics.score("f1_micro", y, p) == pytest.approx(skm.f1_score(y, d, average="micro"))
    assert metrics.score("accuracy", y, p) == pytest.approx(skm.accuracy_score(y, d))
    t = [0.3, 0.4, 0.5, 0.6, 0.7]
    assert metrics.score("f2_samples", y, p, thresholds=t) == pytest.approx(
        skm.fbeta_score(y, (p > t).astype(int), beta=2, average="samples", zero_division=0)
    )
    assert np.isnan(metrics.score("mean_column_auc", np.zeros((3, 2)), np.full((3, 2), 0.5)))


def test_regression_and_ordinal_metrics_match_sklearn():
    rng = RNG(2)
    y = rng.normal(50, 20, 200)
    pred = (y + rng.normal(0, 10, 200))[:, None]
    assert metrics.score("rmse", y, pred) == pytest.approx(skm.root_mean_squared_error(y, pred[:, 0]))
    assert metrics.score("mae", y, pred) == pytest.approx(skm.mean_absolute_error(y, pred[:, 0]))
    g, v = _grades()
    rounded = np.clip(np.rint(v[:, 0]), 0, 4).astype(int)  # default cut points: the nearest grade
    assert metrics.score("qwk", g, v) == pytest.approx(
        skm.cohen_kappa_score(g.astype(int), rounded, weights="quadratic")
    )
    assert metrics.score("accuracy", g, v) == pytest.approx(skm.accuracy_score(g.astype(int), rounded))
    cuts = [0.8, 1.6, 2.4, 3.2]
    decided = np.digitize(v[:, 0], cuts)
    assert metrics.score("qwk", g, v, thresholds=cuts) == pytest.approx(
        skm.cohen_kappa_score(g.astype(int), decided, weights="quadratic")
    )


def test_ordinal_grades_come_from_the_task_not_the_rows():
    """A fold without grade 4: with the task's grades a 3.9 still decides 4, and QWK weights keep grade order."""
    y, v = np.array([0.0, 1, 2, 3]), np.array([[0.1], [1.2], [2.2], [3.9]])
    grades = [0.0, 1, 2, 3, 4]
    assert metrics.score("accuracy", y, v) == 1.0  # grades of y: 0..3, so 3.9 decides 3
    assert metrics.score("accuracy", y, v, grades=grades) == 0.75
    with pytest.raises(InputError, match=r"y: value 2.5 is not one of the grades"):
        metrics.score("qwk", np.array([2.5, 1.0]), np.array([[1.0], [1.0]]), grades=grades)


def test_metrics_know_their_direction():
    lower = {"log_loss", "rmse", "mae"}
    for name in metrics.METRICS:
        assert metrics.greater_is_better(name) == (name not in lower), name


def test_check_metric_names_what_fits():
    for metric, kinds in metrics.TASKS.items():
        for kind in kinds:
            metrics.check_metric(metric, kind)
    with pytest.raises(
        InputError,
        match=r"metric: f2_samples does not fit a multiclass task; use one of "
        r"accuracy, f1_macro, f1_micro, log_loss, mean_column_auc, qwk, roc_auc, map@<k>$",
    ):
        metrics.check_metric("f2_samples", "multiclass")
    with pytest.raises(InputError, match=r"metric: rmse does not fit a binary task"):
        metrics.check_metric("rmse", "binary")
    with pytest.raises(InputError, match=r"metric: unknown metric 'auc'; use one of accuracy, f1_macro"):
        metrics.check_metric("auc", "binary")
    with pytest.raises(InputError, match=r"task: unknown task 'ranking'"):
        metrics.check_metric("accuracy", "ranking")
    with pytest.raises(InputError, match="unknown metric"):
        metrics.score("auc", [0, 1], [[0.5, 0.5], [0.5, 0.5]])


def test_which_metrics_need_thresholds():
    assert metrics.needs_thresholds("f2_samples", "multilabel") and metrics.needs_thresholds("f1_micro", "multilabel")
    assert metrics.needs_thresholds("qwk", "ordinal") and metrics.needs_thresholds("accuracy", "ordinal")
    assert not metrics.needs_thresholds("mean_column_auc", "multilabel")
    assert not metrics.needs_thresholds("rmse", "ordinal") and not metrics.needs_thresholds("qwk", "multiclass")
    assert not metrics.needs_thresholds("accuracy", "binary") and not metrics.needs_thresholds("rmse", "regression")


# ---------------------------------------------------------------- thresholds


def test_decide_per_kind():
    p = np.array([[0.2, 0.7], [0.6, 0.4]])
    assert thresholds.decide(p, None, "multilabel").tolist() == [[0, 1], [1, 0]]
    assert thresholds.decide(p, [0.1, 0.5], "multilabel").tolist() == [[1, 1], [1, 0]]
    assert thresholds.decide(p, None, "multiclass").tolist() == [1, 0]
    v = np.array([[-1.0], [0.49], [0.5], [1.7], [9.0]])
    assert thresholds.decide(v, None, "ordinal", [0, 1, 2]).tolist() == [0, 0, 1, 2, 2]
    assert thresholds.decide(v, [0.0, 2.0], "ordinal", [0, 1, 2]).tolist() == [0, 1, 1, 1, 2]
    assert thresholds.decide(v, None, "regression").tolist() == v[:, 0].tolist()
    with pytest.raises(InputError, match="thresholds: 3 thresholds for 2 labels"):
        thresholds.decide(p, [0.5] * 3, "multilabel")
    with pytest.raises(InputError, match="grades: ordinal decisions need the task's grades"):
        thresholds.decide(v, None, "ordinal")
    with pytest.raises(InputError, match=r"thresholds: cut points \[2.0, 1.0\] do not fit grades"):
        thresholds.decide(v, [2.0, 1.0], "ordinal", [0, 1, 2])


def test_class_probability_rows_of_a_submission_sum_to_one(tmp_path):
    """dog-breed and leaf score log loss over one column per class, and graders check that each row sums to one:
    a float32 softmax averaged over models misses by ~1e-7, so the written rows are renormalised in float64."""
    import warnings

    from kagglecv.core.tasks import Task
    from kagglecv.scoring.submission import decisions

    rng = np.random.default_rng(0)
    logits = softmax(rng.normal(size=(500, 120)).astype(np.float32))
    preds = (logits + softmax(rng.normal(size=(500, 120)).astype(np.float32))) / np.float32(2)
    assert not np.allclose(preds.sum(1), 1, rtol=np.sqrt(np.finfo(np.float64).eps), atol=0)  # what came in
    out = decisions(Task("multiclass", tuple(str(k) for k in range(120))), preds, "class_columns", "log_loss", None)
    pd.DataFrame(out).to_csv(tmp_path / "s.csv", index=False)  # as kagglecv.core.files.write_csv writes it
    back = pd.read_csv(tmp_path / "s.csv").to_numpy()
    assert np.abs(back.sum(1) - 1).max() < 1e-12 and (back.argmax(1) == preds.argmax(1)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn warns where rows do not sum to one
        skm.log_loss(rng.integers(0, 120, 500), back, labels=range(120))


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_fast_f2_search_equals_sklearn():
    y, p = _tags(n=120, seed=3, rate=0.2)
    y[:5] = 0  # rows without any tag: F2 0 by sklearn's zero_division=0
    decided = (p > 0.5).astype(int)
    cands = (p[:, 2, None] > thresholds.GRID).astype(int)
    fast = thresholds._fbeta_samples_trials(y, decided, 2, cands, beta=2.0)
    slow = [metrics.score("f2_samples", y, p, thresholds=[0.5, 0.5, t, 0.5, 0.5]) for t in thresholds.GRID]
    np.testing.assert_allclose(fast, slow)


def test_fitted_label_thresholds_beat_one_half_on_skewed_labels():
    """Under-confident probabilities of rare tags: F2 wants low thresholds (Planet)."""
    rng = RNG(4)
    y = (rng.random((600, 6)) < 0.15).astype(int)
    p = 1 / (1 + np.exp(-(2.0 * y - 2.5 + rng.standard_normal((600, 6)))))
    fitted = thresholds.fit("f2_samples", y, p)
    assert len(fitted) == 6 and np.mean(fitted) < 0.5
    assert metrics.score("f2_samples", y, p, thresholds=fitted) > metrics.score("f2_samples", y, p) + 0.05


def test_fitted_cut_points_beat_rounding_a_shrunk_regressor():
    y, v = _grades(shrink=0.5, noise=0.3, seed=5)
    cuts = thresholds.fit("qwk", y, v)
    assert len(cuts) == 4 and cuts == sorted(cuts)
    assert metrics.score("qwk", y, v, thresholds=cuts) > metrics.score("qwk", y, v) + 0.05
    assert thresholds.fit("accuracy", y, v, grades=[0, 1, 2, 3, 4, 5]) is not None  # grades given: 5 cuts
    assert len(thresholds.fit("accuracy", y, v, grades=[0, 1, 2, 3, 4, 5])) == 5


def test_no_thresholds_where_nothing_is_decided_by_them():
    y, p = _classes()
    assert thresholds.fit("accuracy", y, p) is None and thresholds.fit("roc_auc", y, p) is None
    assert thresholds.fit("mean_column_auc", *_tags()) is None
    assert thresholds.fit("rmse", *_grades()) is None
    score, per_fold = thresholds.nested("roc_auc", y, p, np.arange(len(y)) % 3)
    assert score == metrics.score("roc_auc", y, p) and per_fold == [None] * 3


@pytest.mark.parametrize("case", ["multilabel", "ordinal"])
def test_nested_thresholds_score_no_better_than_in_sample(case):
    """Predictions that carry no signal: thresholds fitted on the rows they score look useful; nested ones don't."""
    rng = RNG(6)
    if case == "multilabel":
        metric, y, pred = "f2_samples", (rng.random((300, 4)) < 0.3).astype(int), rng.random((300, 4))
    else:
        metric, y, pred = "qwk", rng.integers(0, 5, 300).astype(float), rng.normal(2, 1, (300, 1))
    fold = np.arange(300) % 5
    in_sample = metrics.score(metric, y, pred, thresholds=thresholds.fit(metric, y, pred))
    honest, per_fold = thresholds.nested(metric, y, pred, fold)
    assert len(per_fold) == 5 and all(t is not None for t in per_fold)
    assert honest <= in_sample


def test_nested_thresholds_keep_real_signal():
    y, v = _grades(n=500, shrink=0.5, noise=0.3, seed=7)
    honest, _ = thresholds.nested("qwk", y, v, np.arange(500) % 5, grades=[0, 1, 2, 3, 4])
    assert honest > metrics.score("qwk", y, v) + 0.03  # cut points learnt on other folds still help


# ---------------------------------------------------------------- blending per task kind


def _oofs(kind, n=150, models=3, seed=8):
    rng = RNG(seed)
    if kind == "multiclass":
        y = rng.integers(0, 3, n)
        preds = [rng.dirichlet(np.ones(3), n) + (0.3 + 0.2 * m) * np.eye(3)[y] for m in range(models)]
        return y, [p / p.sum(1, keepdims=True) for p in preds]
    if kind == "multilabel":
        y = (rng.random((n, 4)) < 0.3).astype(int)
        y[:, 3] = 0  # a label absent from every row
        return y, [np.clip(0.3 * y + 0.7 * rng.random((n, 4)), 0, 1) for _ in range(models)]
    y = rng.integers(0, 5, n).astype(float)
    return y, [(y + rng.normal(0, 0.5 + m, n))[:, None] for m in range(models)]


def test_methods_that_make_sense():
    assert blend.methods("multiclass", "accuracy", 1) == ["mean"]
    assert blend.methods("multilabel", "mean_column_auc", 1) == ["mean"]
    assert blend.methods("binary", "roc_auc", 2) == ["mean", "rank_mean", "best_single", "hill_climb", "stack"]
    assert blend.methods("multilabel", "mean_column_auc", 3)[:2] == ["mean", "rank_mean"]
    for kind, metric in (
        ("multiclass", "log_loss"),
        ("multilabel", "f2_samples"),
        ("regression", "rmse"),
        ("ordinal", "qwk"),
    ):
        assert blend.methods(kind, metric, 3) == ["mean", "best_single", "hill_climb", "stack"]


@pytest.mark.parametrize(
    "kind,metric",
    [
        ("multiclass", "accuracy"),
        ("multilabel", "f2_samples"),
        ("multilabel", "mean_column_auc"),
        ("regression", "rmse"),
        ("ordinal", "qwk"),
    ],
)
def test_every_method_blends_every_kind(kind, metric):
    y, oofs = _oofs(kind)
    fold = np.arange(len(y)) % 3
    params = blend.fit_all(oofs, y, metric, kind=kind)
    assert list(params) == blend.methods(kind, metric, len(oofs))
    for m in params:
        honest = blend.nested_oof(m, oofs, y, fold, metric, kind=kind)
        test = blend.apply(m, [p[:20] for p in oofs], params[m], kind=kind)
        assert honest.shape == oofs[0].shape and test.shape == (20, oofs[0].shape[1]), m
        assert np.isfinite(metrics.score(metric, y, honest)), m
        assert blend.describe(m, params[m], ["a", "b", "c"]) is None or isinstance(
            blend.describe(m, params[m], ["a", "b", "c"]), dict
        )


@pytest.mark.parametrize("kind", ["multiclass", "multilabel", "ordinal"])
def test_one_model_is_its_own_ensemble(kind):
    y, oofs = _oofs(kind, models=1)
    (method,) = blend.methods(kind, "accuracy" if kind != "multilabel" else "f2_samples", 1)
    out = blend.nested_oof(method, oofs, y, np.arange(len(y)) % 3, "accuracy", kind=kind)
    np.testing.assert_array_equal(out, oofs[0])


def test_rank_mean_normalises_class_rows_only():
    y, oofs = _oofs("multilabel")
    ranked = blend.rank_apply(oofs, kind="multilabel")
    assert ranked.max() <= 1 and not np.allclose(ranked.sum(1), 1)
    assert metrics.score("mean_column_auc", y, ranked) > 0.5
    _, oofs = _oofs("multiclass")
    np.testing.assert_allclose(blend.rank_apply(oofs, kind="multiclass").sum(1), 1)


def test_stacking_per_kind():
    rng = RNG(9)
    a, b = rng.normal(0, 1, 300), rng.normal(0, 1, 300)
    y = 0.7 * a + 0.3 * b + 5
    params = blend.stack_fit([a[:, None], b[:, None]], y, "rmse", kind="regression")
    assert blend.describe("stack", params, ["a", "b"])["coef"] == pytest.approx({"a": 0.7, "b": 0.3}, abs=0.01)
    assert blend.stack_apply([a[:, None], b[:, None]], params, kind="regression")[:, 0] == pytest.approx(y, abs=0.01)
    y, oofs = _oofs("multilabel")
    params = blend.stack_fit(oofs, y, "f2_samples", kind="multilabel")
    assert len(params["models"]) == 4 and params["models"][3] == 0.0  # the absent label keeps its rate
    out = blend.stack_apply(oofs, params, kind="multilabel")
    assert out.shape == y.shape and (out[:, 3] == 0).all() and ((0 <= out) & (out <= 1)).all()
    assert blend.describe("stack", params, ["a", "b", "c"]) == {"type": "LogisticRegression", "per_label": 4}
