"""IoU 与 NMS：box_iou / GIoU 对照 torchvision 的公式、逐对循环与像素计数；nms 对照逐框贪心参考。"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlbook.chapters import iou_nms as ch
from mlbook.testing import BadInput, assert_close, bad_input_params, seeded


def _boxes(r, n, grid=6, integer_frac=0.5):
    """前一部分是整数网格上的框（相接、相同、零面积常见），其余是连续坐标。"""
    m = int(n * integer_frac)
    xs = np.sort(r.integers(0, grid + 1, size=(n, 2)), axis=1)
    ys = np.sort(r.integers(0, grid + 1, size=(n, 2)), axis=1)
    b = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1).astype(float)
    c = np.sort(r.uniform(-grid, grid, size=(n - m, 2, 2)), axis=2)
    b[m:] = c.transpose(0, 2, 1).reshape(-1, 4)
    return b


# torchvision/ops/boxes.py 的公式，原样照抄（torchvision 在这里装不上）
def _tv_inter_union(b1, b2):
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    lt = torch.max(b1[:, None, :2], b2[:, :2])
    rb = torch.min(b1[:, None, 2:], b2[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter, area1[:, None] + area2 - inter


def _tv_box_iou(b1, b2):
    inter, union = _tv_inter_union(torch.tensor(b1), torch.tensor(b2))
    return (inter / union).numpy()


def _tv_giou(b1, b2):
    t1, t2 = torch.tensor(b1), torch.tensor(b2)
    inter, union = _tv_inter_union(t1, t2)
    lti = torch.min(t1[:, None, :2], t2[:, :2])
    rbi = torch.max(t1[:, None, 2:], t2[:, 2:])
    whi = (rbi - lti).clamp(min=0)
    areai = whi[:, :, 0] * whi[:, :, 1]
    return (inter / union - (areai - union) / areai).numpy()


def _iou_loop(b1, b2):
    """逐对 Python 循环，零面积对零面积记 0。"""
    out = np.zeros((len(b1), len(b2)))
    for i, a in enumerate(b1.tolist()):
        for j, b in enumerate(b2.tolist()):
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
            out[i, j] = w * h / union if union > 0 else 0.0
    return out


def _raster(b, lo, hi):
    """整数框 → 掩码，像素 (x, y) ∈ [x1, x2)×[y1, y2)。"""
    px = np.arange(lo, hi)
    b = b.astype(int)
    in_x = (px >= b[:, None, 0]) & (px < b[:, None, 2])
    in_y = (px >= b[:, None, 1]) & (px < b[:, None, 3])
    return in_y[:, :, None] & in_x[:, None, :]


def _nms_reference(boxes, scores, thr):
    """torchvision CPU 内核的双重循环：稳定降序、IoU > thr 才抑制（nan 不抑制）。"""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    area = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes.tolist()]
    suppressed = [False] * len(boxes)
    keep = []
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        bi = boxes[i].tolist()
        for j in order[a + 1:]:
            bj = boxes[j].tolist()
            w = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            h = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            with np.errstate(invalid="ignore", divide="ignore"):
                ovr = np.float64(w * h) / np.float64(area[i] + area[j] - w * h)
            if ovr > thr:
                suppressed[j] = True
    return keep


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("nm", [(1, 1), (7, 5), (40, 30)])
def test_box_iou_matches_torchvision_formula_and_loop(seed, nm):
    r = seeded(seed)
    b1, b2 = _boxes(r, nm[0]), _boxes(r, nm[1])
    b2[: min(nm) // 2] = b1[: min(nm) // 2]  # 相同的框
    ours = ch.box_iou(b1, b2)
    ref = _tv_box_iou(b1, b2)
    both_zero = (ch.box_area(b1)[:, None] == 0) & (ch.box_area(b2)[None] == 0)
    assert np.array_equal(np.isnan(ref), both_zero)
    assert_close(ours, np.where(both_zero, 0.0, ref), atol=0)
    assert_close(ours, _iou_loop(b1, b2), atol=0)
    assert ours.shape == nm and np.all((ours >= 0) & (ours <= 1))
    giou = ch.generalized_box_iou(b1, b2)
    ref_g = _tv_giou(b1, b2)
    ok = ~np.isnan(ref_g)
    assert np.array_equal(~ok, both_zero)
    assert_close(giou[ok], ref_g[ok], atol=1e-15)
    assert np.all((giou >= -1) & (giou <= ours + 1e-15))
    assert np.all(giou[~both_zero] > -1)  # 只有两个零面积框才会等于 -1


@pytest.mark.parametrize("seed", range(3))
def test_box_iou_and_area_match_pixel_counts(seed):
    r = seeded(seed)
    b1 = _boxes(r, 25, grid=8, integer_frac=1.0) - 3  # 含负坐标
    b2 = _boxes(r, 20, grid=8, integer_frac=1.0) - 3
    m1, m2 = _raster(b1, -3, 6), _raster(b2, -3, 6)
    inter = (m1[:, None] & m2[None]).sum(axis=(-1, -2))
    union = (m1[:, None] | m2[None]).sum(axis=(-1, -2))
    ref = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    assert_close(ch.box_area(b1), m1.sum(axis=(1, 2)), atol=0)
    assert_close(ch.box_iou(b1, b2), ref, atol=1e-15)
    # 亚像素坐标：坐标是 1/4 的倍数，放大 4 倍后光栅化（IoU 对缩放不变）
    q1, q2 = np.round(b1 * 1.75) / 4, np.round(b2 * 1.25) / 4
    m1, m2 = _raster(q1 * 4, -15, 12), _raster(q2 * 4, -15, 12)
    inter = (m1[:, None] & m2[None]).sum(axis=(-1, -2))
    union = (m1[:, None] | m2[None]).sum(axis=(-1, -2))
    ref = np.divide(inter, union, out=np.zeros(inter.shape), where=union > 0)
    assert_close(ch.box_iou(q1, q2), ref, atol=1e-15)


def test_iou_pair_matches_box_iou():
    r = seeded(7)
    b1, b2 = _boxes(r, 12), _boxes(r, 9)
    pair = np.array([[ch.iou_pair(a, b) for b in b2] for a in b1])
    assert_close(pair, ch.box_iou(b1, b2), atol=0)


def test_degenerate_boxes():
    pts = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2], [3, 0, 3, 5], [3, 1, 3, 2]], float)
    iou = ch.box_iou(pts, pts)
    expect = np.zeros((5, 5))
    expect[2, 2] = 1.0
    assert_close(iou, expect, atol=0)
    giou = ch.generalized_box_iou(pts, pts)
    assert giou[0, 1] == 0.0  # 同一个点：S(C) = 0
    assert giou[3, 4] == 0.0  # 同一条竖线上：S(C) = 0
    assert giou[0, 3] == -1.0  # 两个零面积框、包围框面积为正
    assert np.isfinite(giou).all()
    # 相接的框 IoU 为 0，GIoU 为 0（包围框恰为并集）
    touch = np.array([[0, 0, 1, 1], [1, 0, 2, 1]], float)
    assert ch.box_iou(touch, touch)[0, 1] == 0.0
    assert ch.generalized_box_iou(touch, touch)[0, 1] == 0.0
    # 嵌套：IoU = 面积比
    nest = np.array([[0, 0, 4, 4], [1, 1, 3, 2]], float)
    assert ch.box_iou(nest, nest)[0, 1] == 2 / 16


def test_empty_inputs():
    e, b = np.zeros((0, 4)), np.array([[0, 0, 1, 1.0]])
    assert ch.box_iou(e, b).shape == (0, 1)
    assert ch.box_iou(b, e).shape == (1, 0)
    assert ch.generalized_box_iou(e, e).shape == (0, 0)
    assert ch.box_area(e).shape == (0,)
    keep = ch.nms(e, np.zeros(0), 0.5)
    assert keep.shape == (0,) and keep.dtype == np.int64


def test_integer_boxes_accepted():
    b = np.array([[0, 0, 2, 2], [1, 1, 3, 3]])
    assert_close(ch.box_iou(b, b), ch.box_iou(b.astype(float), b.astype(float)), atol=0)
    assert ch.nms(b, np.array([1, 2]), 0.1).tolist() == [1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("thr", [0.0, 0.2, 0.5, 0.7, 1.0])
def test_nms_matches_greedy_reference(seed, thr):
    r = seeded(seed)
    n = 25 + 5 * seed
    b = _boxes(r, n)
    b[-3:] = b[:3]  # 相同的框
    s = np.round(r.uniform(size=n), 1)  # 大量并列
    keep = ch.nms(b, s, thr)
    assert keep.dtype == np.int64
    assert keep.tolist() == _nms_reference(b, s, thr)


@pytest.mark.parametrize("seed", range(4))
def test_nms_properties(seed):
    r = seeded(100 + seed)
    b = _boxes(r, 40)
    s = np.round(r.uniform(size=40), 1)
    thr = 0.4
    keep = ch.nms(b, s, thr)
    # 分数降序，并列时下标升序
    assert all((s[i], -i) > (s[j], -j) for i, j in zip(keep[:-1], keep[1:]))
    iou = ch.box_iou(b, b)
    kk = iou[np.ix_(keep, keep)]
    assert np.all(kk[~np.eye(len(keep), dtype=bool)] <= thr)
    # 每个被抑制的框都与某个排在它前面的保留框 IoU > thr
    rank = {int(i): k for k, i in enumerate(np.argsort(-s, kind="stable"))}
    for j in set(range(40)) - set(keep.tolist()):
        assert any(iou[i, j] > thr and rank[int(i)] < rank[j] for i in keep)


def test_nms_ties_threshold_and_extremes():
    pair = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], float)  # IoU 恰为 0.5
    assert ch.box_iou(pair, pair)[0, 1] == 0.5
    assert ch.nms(pair, [0.9, 0.9], 0.5).tolist() == [0, 1]  # 等于阈值不抑制
    assert ch.nms(pair, [0.9, 0.9], 0.4).tolist() == [0]  # 并列：下标小者优先
    assert ch.nms(pair, [0.8, 0.9], 0.4).tolist() == [1]
    same = np.tile([[1.0, 1.0, 3.0, 4.0]], (5, 1))
    assert ch.nms(same, np.ones(5), 0.99).tolist() == [0]
    assert ch.nms(same, np.ones(5), 1.0).tolist() == [0, 1, 2, 3, 4]
    pts = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 2, 2]], float)
    assert ch.nms(pts, [3, 2, 1], 0.0).tolist() == [0, 1, 2]


B = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], float)
S = np.array([0.9, 0.8])
BAD = [
    BadInput("一维 boxes1", lambda: ch.box_iou(B[0], B), "boxes1"),
    BadInput("boxes2 每行 5 个", lambda: ch.box_iou(B, np.zeros((2, 5))), "boxes2"),
    BadInput("三维 boxes", lambda: ch.box_area(np.zeros((1, 2, 4))), "boxes"),
    BadInput("x2 < x1", lambda: ch.box_iou(B, [[3, 0, 1, 2]]), "boxes2 第 0 行"),
    BadInput("y2 < y1", lambda: ch.generalized_box_iou([[0, 3, 1, 2]], B), "boxes1 第 0 行"),
    BadInput("boxes 含 nan", lambda: ch.box_area([[0, 0, np.nan, 1]]), "boxes"),
    BadInput("boxes 含 inf", lambda: ch.nms([[0, 0, np.inf, 1]], [1.0], 0.5), "boxes"),
    BadInput("字符串 boxes", lambda: ch.box_iou(B.astype(str), B), "boxes1", TypeError),
    BadInput("布尔 boxes", lambda: ch.box_iou(B, B > 1), "boxes2", TypeError),
    BadInput("scores 长度", lambda: ch.nms(B, [0.9], 0.5), "scores"),
    BadInput("scores 二维", lambda: ch.nms(B, S[None], 0.5), "scores"),
    BadInput("scores 含 nan", lambda: ch.nms(B, [0.9, np.nan], 0.5), "scores"),
    BadInput("复数 scores", lambda: ch.nms(B, S + 1j, 0.5), "scores", TypeError),
    BadInput("阈值 > 1", lambda: ch.nms(B, S, 1.5), "iou_threshold"),
    BadInput("阈值 < 0", lambda: ch.nms(B, S, -0.1), "iou_threshold"),
    BadInput("阈值 nan", lambda: ch.nms(B, S, float("nan")), "iou_threshold"),
    BadInput("阈值 None", lambda: ch.nms(B, S, None), "iou_threshold", TypeError),
    BadInput("阈值 bool", lambda: ch.nms(B, S, True), "iou_threshold", TypeError),
    BadInput("阈值数组", lambda: ch.nms(B, S, np.array([0.5])), "iou_threshold", TypeError),
]


@pytest.mark.parametrize("case", bad_input_params(BAD))
def test_bad_inputs(case):
    case.check()


_coord = st.integers(-20, 20)


@st.composite
def _box_sets(draw, max_n=6):
    n = draw(st.integers(1, max_n))
    rows = []
    for _ in range(n):
        x = sorted(draw(st.lists(_coord, min_size=2, max_size=2)))
        y = sorted(draw(st.lists(_coord, min_size=2, max_size=2)))
        rows.append([x[0], y[0], x[1], y[1]])
    return np.array(rows, dtype=float) / 4


@settings(max_examples=60, deadline=None)
@given(b1=_box_sets(), b2=_box_sets(), dx=_coord, dy=_coord, k=st.integers(-3, 3))
def test_iou_symmetric_and_invariant(b1, b2, dx, dy, k):
    """IoU、GIoU 对称；整体平移与 2 的幂次缩放（浮点运算精确）下不变；GIoU ≤ IoU。"""
    iou, giou = ch.box_iou(b1, b2), ch.generalized_box_iou(b1, b2)
    assert_close(ch.box_iou(b2, b1), iou.T, atol=0)
    assert_close(ch.generalized_box_iou(b2, b1), giou.T, atol=0)
    shift = np.array([dx, dy, dx, dy]) / 8
    assert_close(ch.box_iou(b1 + shift, b2 + shift), iou, atol=1e-15)
    c = 2.0**k
    assert_close(ch.box_iou(b1 * c, b2 * c), iou, atol=0)
    assert_close(ch.generalized_box_iou(b1 * c, b2 * c), giou, atol=0)
    assert np.all((giou >= -1) & (giou <= iou) & (iou >= 0) & (iou <= 1))


@settings(max_examples=60, deadline=None)
@given(b=_box_sets(max_n=10), seed=st.integers(0, 2**16), thr=st.sampled_from([0.0, 0.3, 0.5, 1.0]))
def test_nms_permutation_equivariant(b, seed, thr):
    """分数互不相同时，打乱输入顺序只会把输出下标同样换掉。"""
    r = seeded(seed)
    s = r.permutation(len(b)).astype(float)  # 互不相同
    perm = r.permutation(len(b))
    keep = ch.nms(b, s, thr)
    keep_p = ch.nms(b[perm], s[perm], thr)
    assert perm[keep_p].tolist() == keep.tolist()
    assert keep.tolist() == _nms_reference(b, s, thr)
