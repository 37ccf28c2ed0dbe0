"""Swin's window mathematics and the masking rule at sizes that are not window multiples.

The rule (issue 2): pad to window multiples *before* the cyclic shift; a token may attend only to
tokens that were its neighbours before the shift, and never to padding. The test below recovers
every attention weight's original (pre-shift) image coordinates independently of the library and
checks the rule on the maps the model actually used.
"""
from __future__ import annotations

import math

import pytest
import torch

import vitkit
from vitkit.layers.window import (
    relative_position_index,
    resample_relative_bias_table,
    shift_window_mask,
    window_partition,
    window_reverse,
)


def test_partition_reverse_roundtrip_and_order():
    x = torch.randn(2, 12, 8, 5)
    w = window_partition(x, 3, 4)
    assert w.shape == (2 * 4 * 2, 12, 5)
    torch.testing.assert_close(window_reverse(w, 3, 4, 12, 8), x, rtol=0, atol=0)
    # window 1 of image 0 is rows 0..2, cols 4..7, row-major inside
    torch.testing.assert_close(w[1].view(3, 4, 5), x[0, 0:3, 4:8])


def test_relative_position_index_encodes_offsets():
    M = 4
    idx = relative_position_index(M, M, M)
    assert idx.shape == (16, 16)
    centre = (M - 1) * (2 * M - 1) + (M - 1)
    assert torch.all(idx.diagonal() == centre)  # zero offset
    # token 0 = (0,0), token 5 = (1,1): offset (-1,-1) from 5 to 0
    assert idx[0, 5] == (M - 2) * (2 * M - 1) + (M - 2)
    assert idx.max() < (2 * M - 1) ** 2 and idx.min() >= 0
    # a smaller window indexes the same table with the same offsets
    small = relative_position_index(2, 3, M)
    assert small[0, 0] == centre


def test_bias_table_resampling_identity_and_shape():
    table = torch.randn(13 * 13, 3)
    assert resample_relative_bias_table(table, 7) is table
    out = resample_relative_bias_table(table, 12)
    assert out.shape == (23 * 23, 3)
    const = torch.full((13 * 13, 2), 0.7)
    torch.testing.assert_close(resample_relative_bias_table(const, 12), torch.full((23 * 23, 2), 0.7))


def test_no_mask_needed_at_window_multiples_without_shift():
    assert shift_window_mask(14, 21, 7, 7, 0, 0) is None
    assert shift_window_mask(14, 21, 7, 7, 3, 3) is not None
    assert shift_window_mask(15, 21, 7, 7, 0, 0) is not None  # padding alone needs a mask


def _original_coords(Hp: int, Wp: int, wh: int, ww: int, sh: int, sw: int) -> torch.Tensor:
    """(nW, N, 2) pre-shift (row, col) of each token in each window, computed from scratch."""
    coords = []
    for wi in range(Hp // wh):
        for wj in range(Wp // ww):
            win = []
            for ti in range(wh):
                for tj in range(ww):
                    r, c = wi * wh + ti, wj * ww + tj  # position in the shifted, padded frame
                    win.append(((r + sh) % Hp, (c + sw) % Wp))  # where it came from
            coords.append(win)
    return torch.tensor(coords)


@pytest.mark.parametrize("size", [(252, 300), (100, 100), (60, 92)])
def test_no_attention_to_padding_or_across_the_wrap(size):
    M = 7
    model = vitkit.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(2, 2, 2, 2),
                                num_heads=(1, 2, 2, 4)).eval()
    for stage in model.stages:
        for blk in stage.blocks:
            blk.attn.capture = True
    with torch.no_grad():
        model(torch.randn(1, 3, *size))
    H, W = math.ceil(size[0] / 4), math.ceil(size[1] / 4)
    checked_shifted_pad = 0
    for s, stage in enumerate(model.stages):
        if s > 0:
            H, W = math.ceil(H / 2), math.ceil(W / 2)
        for b, blk in enumerate(stage.blocks):
            wh, ww = min(M, H), min(M, W)
            sh = M // 2 if b % 2 and H > M else 0
            sw = M // 2 if b % 2 and W > M else 0
            Hp, Wp = math.ceil(H / wh) * wh, math.ceil(W / ww) * ww
            coords = _original_coords(Hp, Wp, wh, ww, sh, sw)  # (nW, N, 2)
            attn = blk.attn.attn_map  # (nW, heads, N, N) for batch 1
            assert attn.shape == (coords.shape[0], blk.attn.num_heads, wh * ww, wh * ww)
            valid = (coords[..., 0] < H) & (coords[..., 1] < W)  # (nW, N): real tokens
            dr = (coords[:, :, None, 0] - coords[:, None, :, 0]).abs()
            dc = (coords[:, :, None, 1] - coords[:, None, :, 1]).abs()
            neighbours = (dr < wh) & (dc < ww)  # could share a window before the shift
            allowed = valid[:, :, None] & valid[:, None, :] & neighbours  # (nW, N, N)
            q_real = valid[:, None, :, None].expand_as(attn)
            forbidden = ~allowed[:, None].expand_as(attn)
            # real queries put exactly zero weight on padding and on wrapped-around tokens
            assert not attn[q_real & forbidden].any(), (s, b)
            sums = (attn * allowed[:, None]).sum(-1)[valid[:, None, :].expand(-1, attn.shape[1], -1)]
            torch.testing.assert_close(sums, torch.ones_like(sums))
            if (sh or sw) and (Hp != H or Wp != W):
                checked_shifted_pad += 1
    assert checked_shifted_pad > 0  # the case timm gets wrong was exercised


def test_output_does_not_depend_on_opposite_border_through_the_shift():
    """At 252×300 a change in the bottom-right image corner must not reach the top-left tokens of
    the first stage's output through the wrap (only through the 7×7 neighbourhoods, two blocks)."""
    model = vitkit.create_model("swin_tiny_patch4_window7_224", embed_dim=24, depths=(2, 2, 2, 2),
                                num_heads=(1, 2, 2, 4)).eval()
    x = torch.randn(1, 3, 252, 300)
    x2 = x.clone()
    x2[..., -8:, -8:] += 5.0
    with torch.no_grad():
        a = model.forward_intermediates(x, indices=[0])[0]
        b = model.forward_intermediates(x2, indices=[0])[0]
    # first stage map is 63×75; two blocks can move information at most ~2 windows away
    torch.testing.assert_close(a[..., :40, :40], b[..., :40, :40], rtol=0, atol=0)
    assert not torch.equal(a[..., -2:, -2:], b[..., -2:, -2:])
