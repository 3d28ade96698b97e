import numpy as np
import pytest

from minescape.accuracy import confusion_matrix, evaluate, metrics_from_matrix


def test_confusion_matrix_ignores_nodata_and_orders_codes():
    truth = np.array([1, 1, 2, 2, 3, 0])
    pred = np.array([1, 2, 2, 2, 3, 1])
    cm = confusion_matrix(truth, pred, [1, 2, 3])
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]


def test_scores_against_hand_computation():
    # Congalton's textbook-style example
    cm = np.array([[65, 4, 22, 24], [6, 81, 5, 8], [0, 11, 85, 19], [4, 7, 3, 90]])
    m = metrics_from_matrix(cm, [1, 2, 3, 4])
    assert m.overall_accuracy == pytest.approx(321 / 434)
    po, pe = 321 / 434, sum(cm.sum(1) * cm.sum(0)) / 434**2
    assert m.kappa == pytest.approx((po - pe) / (1 - pe))
    assert m.producers_accuracy[0] == pytest.approx(65 / 115)
    assert m.users_accuracy[0] == pytest.approx(65 / 75)
    assert m.f1[1] == pytest.approx(2 * 81 / (100 + 103))
    assert m.iou[1] == pytest.approx(81 / (100 + 103 - 81))


def test_perfect_and_empty():
    m = evaluate(np.array([1, 2, 2]), np.array([1, 2, 2]), [1, 2])
    assert m.overall_accuracy == 1 and m.kappa == 1
    e = evaluate(np.array([0, 0]), np.array([0, 0]), [1, 2])
    assert e.n == 0 and np.isnan(e.overall_accuracy)
    d = m.to_dict(["a", "b"])
    assert d["f1"]["a"] == 1.0 and d["confusion_matrix"] == [[1, 0], [0, 2]]


def test_values_that_are_no_code_are_ignored_not_wrapped():
    """An int16 nodata of -1 (numpy would wrap -1 round to the last code), a float NaN, 2.5 and a value beyond the
    codes are ignored; the eight pixels of codes that remain all agree."""
    truth = np.array([-1, -1, 2, 3, 2, 3, 2, 3, 2, 3, 7, 2], dtype=np.int16)
    pred = np.array([3, 3, 2, 3, 2, 3, 2, 3, 2, 3, 3, 9], dtype=np.int16)
    cm = confusion_matrix(truth, pred, [2, 3])
    assert cm.tolist() == [[4, 0], [0, 4]]
    cm = confusion_matrix(np.array([np.nan, 2.5, 2, 3]), np.array([3.0, 3.0, 2.0, 3.0]), [2, 3])
    assert cm.tolist() == [[1, 0], [0, 1]]
