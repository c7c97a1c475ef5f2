from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from rectifiers.eval.metrics import ClassificationMetrics


def _example() -> tuple[torch.Tensor, torch.Tensor]:
    # 4 classes, 5 samples; rank of the label among the scores (0 = best):
    # s0 label 0 -> rank 0   s1 label 1 -> rank 2 (.4 and .3 beat .2)   s2 label 2 -> rank 2
    # s3 label 3 -> rank 2 (.4, .3 beat .2)     s4 label 0 -> rank 3 (lowest score)
    scores = torch.tensor([
        [0.5, 0.2, 0.15, 0.15],
        [0.1, 0.2, 0.3, 0.4],
        [0.4, 0.3, 0.2, 0.1],
        [0.3, 0.4, 0.1, 0.2],
        [0.05, 0.6, 0.25, 0.1],
    ])
    targets = torch.tensor([0, 1, 2, 3, 0])
    return scores, targets


def test_topk_error_matches_hand_computation():
    m = ClassificationMetrics(4, topk=(1, 2, 3, 5))
    s, t = _example()
    m.update(s[:2], t[:2])  # batching must not matter
    m.update(s[2:], t[2:])
    r = m.summary()
    assert m.topk == (1, 2, 3)  # k=5 > 4 classes is dropped
    assert r["n"] == 5
    assert r["top1_error"] == pytest.approx(100 * 4 / 5)  # only s0 right
    assert r["top2_error"] == pytest.approx(100 * 4 / 5)  # ranks 0, 2, 2, 2, 3
    assert r["top3_error"] == pytest.approx(100 * 1 / 5)  # only s4 (rank 3) misses


def test_confusion_and_per_class_error():
    m = ClassificationMetrics(4, topk=(1, 3), class_names=["a", "b", "c", "d"])
    m.update(*_example())
    expected = torch.zeros(4, 4, dtype=torch.int64)
    for true, pred in [(0, 0), (1, 3), (2, 0), (3, 1), (0, 1)]:
        expected[true, pred] += 1
    assert torch.equal(m.confusion, expected)
    rows = {r["name"]: r for r in m.per_class()}
    assert rows["a"]["n"] == 2 and rows["a"]["top1_error"] == pytest.approx(50.0)
    assert rows["a"]["top3_error"] == pytest.approx(50.0)
    assert rows["c"]["top1_error"] == pytest.approx(100.0)
    assert rows["c"]["top3_error"] == pytest.approx(0.0)


def test_empty_class_is_nan_and_null_in_json(tmp_path):
    m = ClassificationMetrics(3, topk=(1,))
    m.update(torch.tensor([[1.0, 0.0, 0.0]]), torch.tensor([0]))
    assert math.isnan(m.per_class()[2]["top1_error"])
    paths = m.save(tmp_path, prefix="run", extra={"views": "center"})
    data = json.loads(paths["json"].read_text())
    assert data["views"] == "center"
    assert data["metrics"]["per_class"][2]["top1_error"] is None
    assert data["metrics"]["top1_error"] == 0.0
    rows = list(csv.DictReader(paths["per_class_csv"].open()))
    assert [r["class"] for r in rows] == ["0", "1", "2"]
    conf = list(csv.reader(paths["confusion_csv"].open()))
    assert conf[0] == ["true\\pred", "0", "1", "2"] and conf[1] == ["0", "1", "0", "0"]
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporaries


def test_table_mentions_errors_and_classes():
    m = ClassificationMetrics(4, class_names=["cat", "dog", "emu", "fox"])
    m.update(*_example())
    table = m.format_table("demo")
    assert "top-1 error  80.00 %" in table and "fox" in table


def test_bad_input_is_rejected_with_a_clear_message():
    m = ClassificationMetrics(3)
    with pytest.raises(ValueError, match="num_classes"):
        m.update(torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="targets must lie"):
        m.update(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="class_names"):
        ClassificationMetrics(3, class_names=["a"])
