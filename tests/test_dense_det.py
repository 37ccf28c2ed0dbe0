"""Detection: Faster/Mask R-CNN on tiny Swin and ViT backbones (forward/backward), COCO AP against
hand-worked answers and an independent numpy count, and the COCO / YOLO readers."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.dense import CocoEvaluator, build_detector
from vitkit.dense.det_data import CocoDetection, YoloDetection, collate_detection, detection_transform

TINY = dict(out_channels=16, min_size=64, max_size=96, box_head_dim=32, mask_head_dim=8)


def _targets():
    m0 = torch.zeros(1, 60, 80, dtype=torch.uint8)
    m0[0, 5:40, 5:30] = 1
    m1 = torch.zeros(2, 70, 50, dtype=torch.uint8)
    m1[0, 10:60, 10:40] = 1
    m1[1, :10, :10] = 1
    return [dict(boxes=torch.tensor([[5.0, 5, 30, 40]]), labels=torch.tensor([1]), masks=m0),
            dict(boxes=torch.tensor([[10.0, 10, 40, 60], [0, 0, 10, 10]]), labels=torch.tensor([2, 3]), masks=m1)]


@pytest.mark.parametrize("name,kind", [("swin_micro_patch2_window4_32", "mask_rcnn"),
                                       ("swin_micro_patch2_window4_32", "faster_rcnn"),
                                       ("vit_micro_patch4_32", "mask_rcnn"),
                                       ("vit_micro_patch4_32", "faster_rcnn")])
def test_rcnn_forward_backward(name, kind):
    det = build_detector(name, 3, kind=kind, **TINY)
    images = [torch.rand(3, 60, 80), torch.rand(3, 70, 50)]
    losses = det(images, _targets())
    assert ("loss_mask" in losses) == (kind == "mask_rcnn")
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    missing = [n for n, p in det.named_parameters() if p.grad is None]
    assert not missing, missing
    det.eval()
    with torch.no_grad():
        out = det(images)
    assert out[1]["boxes"].shape[1] == 4 and (out[1]["boxes"][:, 2] <= 50 + 1e-3).all()  # original size
    if kind == "mask_rcnn":
        assert out[0]["masks"].shape[-2:] == (60, 80)


def test_builder_errors_name_the_fix():
    with pytest.raises(ValueError, match="choose 'mask_rcnn' or 'faster_rcnn'"):
        build_detector("swin_micro_patch2_window4_32", 3, kind="retinanet")
    with pytest.raises(ValueError, match="without background"):
        build_detector("swin_micro_patch2_window4_32", 0)


# ------------------------------------------------------------------------------ AP
def _box_target(boxes, labels, H=100, W=100):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.zeros(len(boxes), H, W, dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
        masks[i, y0:y1, x0:x1] = 1
    return dict(boxes=boxes, labels=torch.tensor(labels), masks=masks)


def _pred(boxes, labels, scores, H=100, W=100):
    t = _box_target(boxes, labels, H, W)
    return dict(boxes=t["boxes"], labels=t["labels"], scores=torch.tensor(scores),
                masks=t["masks"][:, None].float() * 0.9)


def test_ap_hand_worked_precision_recall_curve():
    """2 objects; detections by score: hit, miss, hit → precision 1 up to recall ½, then 2/3.
    101-point AP = (51·1 + 50·⅔) / 101 at every IoU threshold (the boxes are exact)."""
    ev = CocoEvaluator(1, ("bbox", "segm"))
    ev.add(7, _box_target([[10, 10, 30, 30], [50, 50, 90, 90]], [1, 1]),
           _pred([[10, 10, 30, 30], [0, 0, 5, 5], [50, 50, 90, 90]], [1, 1, 1], [0.9, 0.8, 0.7]), (100, 100))
    res = ev.compute()
    want = (51 + 50 * 2 / 3) / 101
    for kind in ("bbox", "segm"):
        assert res[kind]["AP"] == pytest.approx(want, abs=1e-9)
        assert res[kind]["AP50"] == pytest.approx(want, abs=1e-9)


def test_ap_counts_iou_thresholds_and_averages_classes():
    """Class 1: one box at IoU 0.6875 with its object → found at thresholds .50/.55/.60/.65 of
    ten → AP 0.4, AP50 1, AP75 0. Class 2: its only detection is on the wrong object → AP 0.
    Mean over the two classes: 0.2."""
    ev = CocoEvaluator(2, ("bbox", "segm"))
    gt = _box_target([[0, 0, 16, 16], [40, 40, 60, 60]], [1, 2])
    pred = _pred([[0, 0, 16, 11], [70, 70, 90, 90]], [1, 2], [0.9, 0.8])
    ev.add(1, gt, pred, (100, 100))
    res = ev.compute()
    for kind in ("bbox", "segm"):  # 16×11 of a 16×16 box or mask: IoU 176/256 = 0.6875
        assert res[kind]["AP"] == pytest.approx(0.2, abs=1e-9)
        assert res[kind]["AP50"] == pytest.approx(0.5, abs=1e-9)
        assert res[kind]["AP75"] == pytest.approx(0.0, abs=1e-9)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _numpy_ap(images, thr):
    """One class: greedy matching by score (each detection takes the unmatched object of highest
    IoU ≥ thr), precision made non-increasing, read at recall 0, 0.01, …, 1."""
    hits, scores, n_gt = [], [], 0
    for gt, boxes, sc in images:
        n_gt += len(gt)
        taken = np.zeros(len(gt), bool)
        ious = _iou(boxes, gt) if len(gt) and len(boxes) else np.zeros((len(boxes), len(gt)))
        for d in np.argsort(-sc, kind="stable"):
            cand = np.where(~taken & (ious[d] >= thr))[0]
            hit = len(cand) > 0
            if hit:
                taken[cand[np.argmax(ious[d, cand])]] = True
            hits.append(hit)
            scores.append(sc[d])
    order = np.argsort(-np.array(scores), kind="stable")
    tp = np.cumsum(np.array(hits)[order])
    recall, precision = tp / n_gt, tp / np.arange(1, len(tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, np.linspace(0, 1, 101), side="left")
    return float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx]))


def test_box_ap_equals_an_independent_numpy_count():
    rng = np.random.default_rng(3)
    ev = CocoEvaluator(1, ("bbox",))
    images = []
    for img_id in range(5):
        gt = rng.uniform(0, 150, (4, 2))
        gt = np.concatenate([gt, gt + rng.uniform(20, 60, (4, 2))], 1)
        dt = np.concatenate([gt + rng.normal(0, 6, gt.shape), rng.uniform(0, 200, (3, 4))])
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 5)
        sc = rng.uniform(0, 1, len(dt))
        images.append((gt, dt, sc))
        ev.add(img_id, dict(boxes=torch.tensor(gt), labels=torch.ones(4, dtype=torch.long)),
               dict(boxes=torch.tensor(dt), labels=torch.ones(len(dt), dtype=torch.long), scores=torch.tensor(sc)),
               (256, 256))
    res = ev.compute()["bbox"]
    assert res["AP50"] == pytest.approx(_numpy_ap(images, 0.5), abs=1e-6)
    assert res["AP75"] == pytest.approx(_numpy_ap(images, 0.75), abs=1e-6)
    want = np.mean([_numpy_ap(images, t) for t in np.linspace(0.5, 0.95, 10)])
    assert res["AP"] == pytest.approx(want, abs=1e-6)
    assert 0.05 < res["AP"] < 0.95  # a case where matching actually matters


def test_no_detections_give_zero_ap_not_a_crash():
    ev = CocoEvaluator(1)
    ev.add(0, _box_target([[0, 0, 10, 10]], [1]), dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long),
                                                      scores=torch.zeros(0)), (100, 100))
    assert ev.compute()["bbox"]["AP"] == 0.0


# ------------------------------------------------------------------------------ readers
def test_yolo_reader_boxes_polygons_and_flip(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "images" / "train" / "a.jpg")
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "images" / "train" / "b.jpg")  # no .txt
    (tmp_path / "labels" / "train" / "a.txt").write_text("2 0.25 0.5 0.5 0.5\n0 0.5 0.25 0.75 0.25 0.75 0.75 0.5 0.75\n")
    ds = YoloDetection(tmp_path, "train")
    img, t = ds[0]
    assert ds.masks  # polygons present → instance masks
    torch.testing.assert_close(t["boxes"].as_subclass(torch.Tensor), torch.tensor([[0.0, 10, 40, 30], [40, 10, 60, 30]]))
    assert t["labels"].tolist() == [3, 1]  # class ids + 1: 0 is the background
    assert t["masks"].shape == (2, 40, 80) and t["masks"][1, 20, 50] == 1 and t["masks"][1, 20, 30] == 0
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 40, 80)
    flip = YoloDetection(tmp_path, "train", transforms=detection_transform(True, hflip=1.0))
    fimg, ft = flip[0]
    assert fimg.dtype == torch.float32 and float(fimg.max()) <= 1.0
    torch.testing.assert_close(ft["boxes"].as_subclass(torch.Tensor)[0], torch.tensor([40.0, 10, 80, 30]))
    assert ft["masks"][1, 20, 80 - 1 - 50] == 1
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5\n")
    with pytest.raises(ValueError, match="a.txt:1"):
        YoloDetection(tmp_path, "train")


def test_random_crop_policy_keeps_boxes_masks_and_labels_together(tmp_path):
    """The Swin 3× crop branch (resize the short side to 400–600, crop 384–600 a side): each kept
    box is its mask's tight bounding box, boxes cut away go with their masks and labels, the crop
    size is in range, and the draws follow the sample's seed."""
    from torchvision import tv_tensors

    from vitkit.data.sampler import seeded_call

    H, W = 800, 1000
    img = tv_tensors.Image(torch.randint(0, 255, (3, H, W), dtype=torch.uint8))
    rects = [(0, 0, 40, 50), (740, 930, 800, 1000), (350, 420, 520, 560)]  # y0, x0, y1, x1: two in corners
    masks = torch.zeros(len(rects), H, W, dtype=torch.uint8)
    for i, (y0, x0, y1, x1) in enumerate(rects):
        masks[i, y0:y1, x0:x1] = 1
    target = dict(boxes=tv_tensors.BoundingBoxes([[x0, y0, x1, y1] for y0, x0, y1, x1 in rects], format="XYXY",
                                                 canvas_size=(H, W)),
                  labels=torch.tensor([1, 2, 3]), masks=tv_tensors.Mask(masks), iscrowd=torch.zeros(3, dtype=torch.long))
    tf = detection_transform(True, hflip=0.5, crop_policy=1.0)
    sizes, kept = set(), []
    for seed in range(16):
        out_img, t = seeded_call(seed, tf, img, target)
        h, w = out_img.shape[-2:]
        assert 384 <= h <= 600 and 384 <= w <= 600
        sizes.add((h, w))
        boxes, m = t["boxes"].as_subclass(torch.Tensor), t["masks"].as_subclass(torch.Tensor)
        assert len(boxes) == len(m) == len(t["labels"])
        kept.append(len(boxes))
        for box, mask in zip(boxes, m):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            tight = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            assert (box - tight).abs().max() <= 1.5, (seed, box, tight)
        again_img, again = seeded_call(seed, tf, img, target)
        assert torch.equal(again_img, out_img) and torch.equal(again["boxes"], t["boxes"])
    assert len(sizes) > 6 and min(kept) < 3  # sizes vary; some crops cut boxes away
    off = detection_transform(True, hflip=0.0)(img, target)[0]
    assert off.shape[-2:] == (H, W)


def test_coco_reader_maps_categories_and_masks(tmp_path):
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "x.jpg")
    ann = dict(images=[dict(id=5, file_name="x.jpg", height=30, width=40)],
               categories=[dict(id=18, name="dog"), dict(id=3, name="car")],
               annotations=[dict(id=1, image_id=5, category_id=18, bbox=[2, 3, 10, 8], area=80.0, iscrowd=0,
                                 segmentation=[[2, 3, 12, 3, 12, 11, 2, 11]])])
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    ds = CocoDetection(tmp_path, tmp_path / "ann.json")
    img, t = ds[0]
    assert ds.class_names == ("car", "dog") and t["labels"].tolist() == [2] and t["image_id"] == 5
    torch.testing.assert_close(t["boxes"].as_subclass(torch.Tensor), torch.tensor([[2.0, 3, 12, 11]]))
    assert t["masks"].shape == (1, 30, 40) and t["masks"][0, 6, 6] == 1 and t["masks"][0, 20, 20] == 0
    images, targets = collate_detection([ds[0]])
    assert type(images[0]) is torch.Tensor and type(targets[0]["boxes"]) is torch.Tensor


def test_coco8_labels_read(shared_data):
    ds = YoloDetection(shared_data / "coco8" / "coco8-seg", "val")
    assert len(ds) == 4 and ds.masks and ds.num_classes == 80
    img, t = ds[0]
    assert len(t["boxes"]) == len(t["masks"]) > 0
    inside = t["masks"].flatten(1).sum(1) > 0
    assert inside.all()  # every polygon rasterises to some pixels
