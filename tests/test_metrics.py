import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bench.harness.metrics import Conventions, IoUAccumulator


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


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(masks, masks), min_size=1, max_size=3))
def test_skip_sums_are_the_score_sums_of_queries_holding_the_class(pairs):
    acc = IoUAccumulator((1, 2))
    episode = [(np.where(p == 255, 0, p).astype(np.uint8), g) for g, p in pairs]
    acc.update_episode([p for p, _ in episode], [g for _, g in episode], (1, 2))
    for j in (1, 2):
        holding = [(p, g) for p, g in episode if (g == j).any()]
        inter = sum(int(((p == j) & (g == j) & (g != 255)).sum()) for p, g in holding)
        union = sum(int((((p == j) | (g == j)) & (g != 255)).sum()) for p, g in holding)
        assert (acc.inter_skip[j], acc.union_skip[j]) == (inter, union)
        assert acc.inter_skip[j] <= acc.inter[j] and acc.union_skip[j] <= acc.union[j]


# A 2-way episode (way 1 = class 7 "A", way 2 = class 9 "B"), one query per way, 10 pixels each:
# query 1 holds only A, query 2 only B. In query 1 one A pixel is predicted as B and one background
# pixel as B; in query 2 one B pixel is missed and one background pixel is predicted as A.
GT1, PRED1 = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 2, 2, 0, 0, 0, 0, 0]
GT2, PRED2 = [2, 2, 2, 2, 2, 0, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0, 0, 0, 1]


def _two_way():
    acc = IoUAccumulator((7, 9))
    acc.update_episode([np.array([PRED1], np.uint8), np.array([PRED2], np.uint8)],
                       [np.array([GT1], np.uint8), np.array([GT2], np.uint8)], (7, 9))
    return acc


def test_absent_ways_scored_and_skipped_by_hand():
    acc = _two_way()
    # score: A = q1 I3/U4 + q2 (one FP of A) I0/U1 = 3/5; B = q1 (two FPs of B) I0/U2 + q2 I4/U5 = 4/7
    assert acc.inter == {7: 3, 9: 4} and acc.union == {7: 5, 9: 7}
    assert np.isclose(acc.compute(Conventions("score"))["miou"], 100 * (3 / 5 + 4 / 7) / 2)  # 58.57
    # skip (PANet): A only on q1 = 3/4, B only on q2 = 4/5
    assert acc.inter_skip == {7: 3, 9: 4} and acc.union_skip == {7: 4, 9: 5}
    assert np.isclose(acc.compute(Conventions("skip"))["miou"], 100 * (3 / 4 + 4 / 5) / 2)  # 77.5


def test_fbiou_merged_and_per_class_by_hand():
    acc = _two_way()
    # background: q1 I5 (pixels 5-9) / U6 (4-9); q2 I4 (5-8) / U6 (4-9) -> 9/12
    # merged foreground: q1 I4 (pixel 3, an A predicted as B, is a hit) / U5; q2 I4 / U6 -> 8/11
    assert acc.fb_inter == [9, 8] and acc.fb_union == [12, 11]
    assert np.isclose(acc.compute(Conventions("score", "merged"))["fbiou"], 100 * (9 / 12 + 8 / 11) / 2)  # 73.86
    # per class (PANet's binary mIoU): foreground = the class sums added, pixel 3 is a miss
    assert np.isclose(acc.compute(Conventions("score", "per_class"))["fbiou"], 100 * (9 / 12 + 7 / 12) / 2)  # 66.67
    assert np.isclose(acc.compute(Conventions("skip", "per_class"))["fbiou"], 100 * (9 / 12 + 7 / 9) / 2)  # 76.39


def test_per_episode_iou_by_hand():
    acc = _two_way()
    # a second, 1-way episode of A: I1/U2
    acc.update_episode([np.array([[1, 0, 0, 0]], np.uint8)], [np.array([[1, 1, 0, 0]], np.uint8)], (7,))
    pooled = acc.compute(Conventions("score"))
    assert np.isclose(pooled["class_iou"]["7"], 100 * 4 / 7)  # (3 + 0 + 1) / (4 + 1 + 2)
    per_episode = acc.compute(Conventions("score", iou="per-episode"))
    assert np.isclose(per_episode["class_iou"]["7"], 100 * (3 / 5 + 1 / 2) / 2)  # episodes' IoU averaged
    assert np.isclose(per_episode["class_iou"]["9"], 100 * 4 / 7)  # B is in one episode only
    assert np.isclose(per_episode["miou"], 100 * ((3 / 5 + 1 / 2) / 2 + 4 / 7) / 2)
    skipped = acc.compute(Conventions("skip", iou="per-episode"))
    assert np.isclose(skipped["class_iou"]["7"], 100 * (3 / 4 + 1 / 2) / 2)
