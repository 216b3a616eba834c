"""Per task: the loss the model trains on, the target scale, and TTA averaged on the predictions' scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from kagglecv.core.tasks import Task
from kagglecv.inference.tta import predict, tta_views
from kagglecv.training.loop import task_loss


class Corner(torch.nn.Module):
    """Outputs the top-left pixel of the first `width` channels: a prediction that every TTA view changes."""

    def __init__(self, width: int):
        super().__init__()
        self.width = width

    def forward(self, x):
        return x[:, : self.width, 0, 0] * 3.0


def batches(x):
    return [(x, torch.zeros(len(x)))]


def test_losses_per_task():
    torch.manual_seed(0)
    out = torch.randn(6, 3)
    cls = torch.tensor([0, 2, 1, 1, 0, 2])
    assert torch.isclose(task_loss(Task("multiclass", ("a", "b", "c")), out, cls), F.cross_entropy(out, cls))
    flags = torch.randint(0, 2, (6, 3)).float()
    assert torch.isclose(
        task_loss(Task("multilabel", ("a", "b", "c")), out, flags), F.binary_cross_entropy_with_logits(out, flags)
    )
    values = torch.randn(6)
    assert torch.isclose(task_loss(Task("regression"), out[:, :1], values), F.smooth_l1_loss(out[:, 0], values))


def test_numeric_targets_are_standardised_on_training_rows_and_restored_by_activate():
    y = np.array([1.0, 50.0, 100.0, 30.0], dtype=np.float32)
    task = Task("regression").fitted_scale(y)
    assert task.scale == pytest.approx((float(y.mean()), float(y.std())))
    z = task.standardise(y)
    assert abs(z.mean()) < 1e-6 and z.std() == pytest.approx(1.0)
    assert np.allclose(task.activate(torch.from_numpy(z)[:, None]).numpy()[:, 0], y, atol=1e-4)
    assert Task("multiclass", ("a", "b")).fitted_scale(y).scale == (0.0, 1.0)  # classification: untouched


@pytest.mark.parametrize(
    "task",
    [Task("multilabel", ("a", "b", "c")), Task("multiclass", ("a", "b", "c")), Task("regression", scale=(40.0, 12.0))],
)
def test_tta_averages_after_activation(task):
    torch.manual_seed(1)
    x = torch.randn(5, 3, 8, 8)
    model = Corner(task.outputs)
    got = predict(model, batches(x), torch.device("cpu"), None, tta="dihedral", task=task)
    views = [model(v) for v in tta_views(x, "dihedral")]
    expected = torch.stack([task.activate(v) for v in views]).mean(0).numpy()
    assert np.allclose(got, expected, atol=1e-6)
    if task.kind != "regression":  # averaging logits would give a different answer
        assert not np.allclose(got, task.activate(torch.stack(views).mean(0)).numpy(), atol=1e-3)


def test_targets_per_task_from_prepared_rows():
    rows = pd.DataFrame({"label": ["a c", "", "b"], "y": [2, 0, 1]})
    assert Task("multilabel", ("a", "b", "c")).targets(rows).tolist() == [[1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert Task("multiclass", ("a", "b", "c")).targets(rows).tolist() == [2, 0, 1]
    assert Task("ordinal", ("0", "1", "2")).targets(rows).dtype == np.float32
