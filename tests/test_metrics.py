import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench.harness.metrics import IoUAccumulator


def test_hand_computed_two_way_case():
    gt = np.array([[0, 1, 1, 255],
                   [2, 2, 0, 0]], np.uint8)
    pred = np.array([[1, 1, 0, 2],
                     [2, 0, 0, 0]], np.uint8)
    acc = IoUAccumulator((7, 9))
    acc.update(pred, gt, (7, 9))  # way 1 = class 7, way 2 = class 9
    # valid pixels exclude (0,3). class 7: pred {(0,0),(0,1)}, gt {(0,1),(0,2)} -> I=1, U=3
    # class 9: pred {(1,0)}, gt {(1,0),(1,1)} -> I=1, U=2  (the pred 2 at the ignored pixel is dropped)
    assert acc.inter == {7: 1, 9: 1} and acc.union == {7: 3, 9: 2}
    # FB: pred fg {(0,0),(0,1),(1,0)}, gt fg {(0,1),(0,2),(1,0),(1,1)} among 7 valid pixels
    # fg I=2, U=5; bg: pred bg {(0,2),(1,1),(1,2),(1,3)}, gt bg {(0,0),(1,2),(1,3)} -> I=2, U=5
    assert acc.fb_inter == [2, 2] and acc.fb_union == [5, 5]
    out = acc.compute()
    assert np.isclose(out["miou"], 100 * (1 / 3 + 1 / 2) / 2)
    assert np.isclose(out["fbiou"], 40.0)


def test_sums_over_episodes_not_mean_of_episodes():
    acc = IoUAccumulator((3,))
    acc.update(np.array([[1, 1, 1, 1]], np.uint8), np.array([[1, 0, 0, 0]], np.uint8), (3,))  # 1/4
    acc.update(np.array([[1, 1, 0, 0]], np.uint8), np.array([[1, 1, 0, 0]], np.uint8), (3,))  # 2/2
    assert np.isclose(acc.compute()["miou"], 100 * 3 / 6)  # not (25 + 100) / 2


def test_all_background_prediction_closed_form():
    gt = np.array([[1, 1, 0, 0, 0, 255]], np.uint8)
    acc = IoUAccumulator((5,))
    acc.update(np.zeros_like(gt), gt, (5,))
    out = acc.compute()
    assert out["miou"] == 0.0
    assert np.isclose(out["fbiou"], 100 * (3 / 5) / 2)


masks = arrays(np.uint8, (6, 7), elements=st.sampled_from([0, 1, 2, 255]))


@settings(max_examples=60, deadline=None)
@given(masks, masks)
def test_properties(gt, pred):
    pred = np.where(pred == 255, 0, pred).astype(np.uint8)
    acc = IoUAccumulator((4, 8))
    acc.update(pred, gt, (4, 8))
    for c in (4, 8):
        assert 0 <= acc.inter[c] <= acc.union[c]
    perfect = IoUAccumulator((4, 8))
    perfect.update(np.where(gt == 255, 0, gt).astype(np.uint8), gt, (4, 8))
    res = perfect.compute()
    present = [c for j, c in enumerate((4, 8), 1) if (gt == j).any()]
    if present:
        assert np.isclose(res["miou"], 100.0)
    # ignored pixels never change the sums
    other = np.where(gt == 255, (pred + 1) % 3, pred).astype(np.uint8)
    acc2 = IoUAccumulator((4, 8))
    acc2.update(other, gt, (4, 8))
    assert acc2.inter == acc.inter and acc2.union == acc.union and acc2.fb_union == acc.fb_union


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(masks, masks), min_size=2, max_size=4))
def test_merge_equals_single_accumulator(pairs):
    whole, parts = IoUAccumulator((1, 2)), []
    for gt, pred in pairs:
        pred = np.where(pred == 255, 0, pred).astype(np.uint8)
        whole.update(pred, gt, (1, 2))
        part = IoUAccumulator((1, 2))
        part.update(pred, gt, (1, 2))
        parts.append(part)
    merged = IoUAccumulator((1, 2))
    for p in parts:
        merged.merge(p)
    assert merged.inter == whole.inter and merged.union == whole.union and merged.fb_inter == whole.fb_inter
