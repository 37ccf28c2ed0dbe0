"""Segmentation: UperNet forward/backward, mIoU/pixel accuracy against a by-hand numpy count,
sliding-window inference, data readers and the alignment of image and label under augmentation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vitkit.dense import SegMetric, build_segmenter, confusion_matrix, predict_logits, scores_from_confusion
from vitkit.dense.seg_data import (IGNORE, SegSpec, collate_pad, open_segmentation, train_transform)
from vitkit.dense.visualize import colorize, overlay


@pytest.mark.parametrize("name,kw,size", [
    ("swin_micro_patch2_window4_32", {}, (40, 56)),
    ("vit_micro_patch4_32", dict(backbone_kwargs=dict(vit_indices=(1, 3, 4, 5), vit_out_channels=16)), (30, 46)),
])
def test_upernet_forward_backward(name, kw, size):
    seg = build_segmenter(name, num_classes=5, channels=16, aux_channels=8, **kw)
    x = torch.randn(2, 3, *size)
    out, aux = seg(x, return_aux=True)
    assert out.shape == aux.shape == (2, 5, *size)  # padded to the stride inside, cropped back
    y = torch.randint(0, 5, (2, *size))
    (nn.functional.cross_entropy(out, y) + 0.4 * nn.functional.cross_entropy(aux, y)).backward()
    missing = [n for n, p in seg.named_parameters() if p.grad is None]
    assert not missing, missing
    seg.eval()
    with torch.no_grad():
        torch.testing.assert_close(seg(x), seg(x))  # eval is deterministic (dropout off)


def test_groupnorm_head_trains_with_batch_one():
    seg = build_segmenter("swin_micro_patch2_window4_32", num_classes=3, channels=16, aux=False, norm="gn")
    seg(torch.randn(1, 3, 32, 32)).sum().backward()
    with pytest.raises(ValueError, match="norm='ln' is not supported"):
        build_segmenter("swin_micro_patch2_window4_32", num_classes=3, norm="ln")


def _by_hand(pred: np.ndarray, gt: np.ndarray, k: int, ignore: int) -> tuple[float, float]:
    """mIoU and pixel accuracy counted pixel by pixel, without a confusion matrix."""
    ious = []
    for c in range(k):
        inter = union = 0
        for p, g in zip(pred.ravel(), gt.ravel()):
            if g == ignore:
                continue
            inter += int(p == c and g == c)
            union += int(p == c or g == c)
        if union:
            ious.append(inter / union)
    valid = gt != ignore
    return float(np.mean(ious)), float((pred[valid] == gt[valid]).mean())


def test_miou_and_pixel_accuracy_equal_a_count_by_hand():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 4, size=(3, 9, 11))
    gt[rng.random(gt.shape) < 0.2] = IGNORE
    pred = np.where(rng.random(gt.shape) < 0.6, np.where(gt == IGNORE, 0, gt), rng.integers(0, 5, gt.shape))
    pred[pred == 4] = 3
    m = SegMetric(num_classes=5, ignore_index=IGNORE)  # class 4: never present, never predicted
    for i in range(3):  # accumulated image by image = computed at once
        m.update(torch.from_numpy(pred[i:i + 1]), torch.from_numpy(gt[i:i + 1]))
    s = m.compute()
    miou, acc = _by_hand(pred, gt, 5, IGNORE)
    assert s["mIoU"] == pytest.approx(miou, abs=1e-12)
    assert s["aAcc"] == pytest.approx(acc, abs=1e-12)
    assert np.isnan(s["iou"][4])


def test_known_small_example_and_label_range_error():
    gt = torch.tensor([[0, 0, 1, IGNORE]])
    pred = torch.tensor([[0, 1, 1, 0]])
    s = scores_from_confusion(confusion_matrix(pred, gt, 2))
    # class 0: inter 1, union 2 → 0.5; class 1: inter 1, union 2 → 0.5; 2 of 3 labelled pixels right
    assert s["iou"] == [0.5, 0.5] and s["mIoU"] == 0.5 and s["aAcc"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="label values must be in 0..1"):
        confusion_matrix(pred, torch.tensor([[0, 2, 1, 1]]), 2)


class _PixelwiseModel(nn.Module):
    """A 1×1 convolution: the same answer for a pixel whatever window it is seen in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_sliding_window_covers_every_pixel_and_equals_whole_image():
    model = _PixelwiseModel()
    x = torch.randn(2, 3, 37, 53)
    whole = predict_logits(model, x, num_classes=4, mode="whole")
    for crop, stride in (((16, 16), (11, 11)), ((37, 20), (37, 7)), ((64, 64), (32, 32))):
        slide = predict_logits(model, x, num_classes=4, mode="slide", crop=crop, stride=stride)
        torch.testing.assert_close(slide, whole)
    flipped = predict_logits(model, x, num_classes=4, flip=True, scales=(1.0,))
    torch.testing.assert_close(flipped, whole)


def _write_folder(root, split, n, size, values):
    rng = np.random.default_rng(n)
    (root / split / "images").mkdir(parents=True)
    (root / split / "labels").mkdir(parents=True)
    for i in range(n):
        lab = rng.choice(values, size=size).astype(np.uint8)
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / "images" / f"f{i}.jpg")
        Image.fromarray(lab).save(root / split / "labels" / f"f{i}.png")


def test_readers_map_void_unknown_and_zero_label(tmp_path):
    _write_folder(tmp_path, "train", 2, (6, 8), [0, 1, 2, 11, 200])
    ds = open_segmentation(tmp_path, "train", fmt="camvid")
    raw = np.asarray(Image.open(ds.items[0][1]))
    _, mask = ds[0]
    assert ds.spec.num_classes == 11
    assert (mask.numpy()[raw == 11] == IGNORE).all() and (mask.numpy()[raw == 200] == IGNORE).all()
    assert (mask.numpy()[raw == 2] == 2).all()
    assert ds.unknown_values == {200}  # counted and reported, not silent
    ade = SegSpec(num_classes=150, reduce_zero_label=True)
    assert ade.lut[0] == IGNORE and ade.lut[1] == 0 and ade.lut[150] == 149 and ade.lut[151] == IGNORE
    with pytest.raises(ValueError, match="needs num_classes"):
        open_segmentation(tmp_path, "train", fmt="folder")
    with pytest.raises(FileNotFoundError, match="no 'val' split"):
        open_segmentation(tmp_path, "val", fmt="folder", num_classes=3)


def test_augmentations_keep_image_and_label_aligned(tmp_path):
    """Paint each pixel with its class's colour; after scale/crop/pad/flip each labelled pixel
    must still carry its class's colour (nearest-neighbour resizing at scale 1 keeps it exact)."""
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 3, size=(30, 40)).astype(np.uint8)
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "labels").mkdir(parents=True)
    Image.fromarray(palette[lab]).save(tmp_path / "train" / "images" / "a.png")
    Image.fromarray(lab).save(tmp_path / "train" / "labels" / "a.png")
    tf = train_transform((24, 48), base_size=(30, 40), scale_range=(1.0, 1.0), hflip=0.5, photometric=False,
                         mean=(0, 0, 0), std=(1, 1, 1))
    ds = open_segmentation(tmp_path, "train", fmt="folder", num_classes=3, transform=tf)
    for _ in range(6):
        img, mask = ds[0]
        assert img.shape == (3, 24, 48) and mask.shape == (24, 48) and img.dtype == torch.float32
        assert (mask == IGNORE).any()  # 40 wide → padded to 48 with the ignore label
        keep = mask != IGNORE
        colour = torch.from_numpy(palette).float().div(255)[mask[keep]]  # (n, 3)
        torch.testing.assert_close(img.permute(1, 2, 0)[keep], colour)
        assert (img.permute(1, 2, 0)[~keep] == 0).all()
    imgs, labs = collate_pad([ds[0], (torch.zeros(3, 10, 12), torch.zeros(10, 12, dtype=torch.long))])
    assert imgs.shape == (2, 3, 24, 48) and (labs[1, 10:] == IGNORE).all()


def test_random_scale_fits_the_image_into_base_size_h_w():
    from vitkit.dense.seg_data import RandomScale

    img, mask = torch.zeros(3, 30, 40, dtype=torch.uint8), torch.zeros(30, 40, dtype=torch.long)
    from torchvision import tv_tensors

    out, m = RandomScale((60, 200), (1.0, 1.0))(tv_tensors.Image(img), tv_tensors.Mask(mask))
    assert out.shape[-2:] == m.shape == (60, 80)  # limited by the height: ×2
    out, _ = RandomScale((300, 60), (0.5, 0.5))(tv_tensors.Image(img), tv_tensors.Mask(mask))
    assert out.shape[-2:] == (22, 30)  # limited by the width: ×1.5, then ×0.5


def test_overlay_colours_classes_and_leaves_ignored_pixels():
    image = np.full((2, 3, 3), 100, np.uint8)
    label = np.array([[0, 1, IGNORE], [1, 0, IGNORE]])
    palette = [(255, 0, 0), (0, 0, 255)]
    assert (colorize(label, palette)[0, 1] == [0, 0, 255]).all() and (colorize(label, palette)[0, 2] == 0).all()
    out = overlay(image, label, palette, alpha=0.5)
    assert tuple(out[0, 0]) == (178, 50, 50) and tuple(out[0, 2]) == (100, 100, 100)


@pytest.mark.parametrize("task", ["segmentation", "detection"])
def test_dense_train_without_data_names_the_fix_and_writes_nothing(tmp_path, task):
    from vitkit.dense import train_det, train_seg
    from vitkit.dense.recipes import DetRecipe, SegRecipe

    mod, recipe = (train_seg, SegRecipe) if task == "segmentation" else (train_det, DetRecipe)
    with pytest.raises(ValueError, match="no data: pass data=PATH"):
        mod.train(recipe(data="", out=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()
