"""Position-embedding similarity and patch-embedding principal components (ViT Fig. 7 left, centre)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.analysis import patch_embedding_components, position_embedding_similarity
from vitkit.models.vit import VisionTransformer


def test_position_similarity_is_the_cosine_of_grid_embeddings():
    model = vitkit.create_model("vit_micro_patch4_32")
    sim = position_embedding_similarity(model)
    assert sim.shape == (8, 8, 8, 8)
    pos = model.pos_embed.detach()[0, 1:]  # class token excluded, row-major grid
    i, j, k, l = 2, 5, 7, 1
    expected = F.cosine_similarity(pos[i * 8 + j], pos[k * 8 + l], dim=0)
    torch.testing.assert_close(sim[i, j, k, l], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.diagonal(sim.reshape(64, 64)), torch.ones(64), atol=1e-6, rtol=0)


def test_position_similarity_needs_an_absolute_embedding_on_swin():
    with pytest.raises(ValueError, match="ape=True"):
        position_embedding_similarity(vitkit.create_model("swin_micro_patch2_window4_32"))
    sim = position_embedding_similarity(vitkit.create_model("swin_micro_patch2_window4_32", ape=True))
    assert sim.shape == (16, 16, 16, 16)


def test_patch_components_are_the_top_eigenvectors_of_the_filter_covariance():
    model = vitkit.create_model("vit_micro_patch4_32")
    comps, explained = patch_embedding_components(model, n=5)
    assert comps.shape == (5, 3, 4, 4)
    w = model.patch_embed.proj.weight.detach().double().numpy().reshape(64, -1)
    cov = np.cov(w, rowvar=False)  # (48, 48) over the 64 filters
    vals, vecs = np.linalg.eigh(cov)
    top = vecs[:, ::-1][:, :5].T  # (5, 48), largest eigenvalue first
    got = comps.reshape(5, -1).double().numpy()
    np.testing.assert_allclose(np.abs((got * top).sum(1)), np.ones(5), atol=1e-4)  # same directions up to sign
    np.testing.assert_allclose(explained.numpy(), vals[::-1][:5] / vals.sum(), rtol=1e-4)


def test_hybrid_patch_embedding_has_no_pixel_filters():
    model = VisionTransformer(img_size=64, patch_size=1, stem_depths=(1,), embed_dim=32, depth=1, num_heads=1)
    with pytest.raises(ValueError, match="hybrid"):
        patch_embedding_components(model)
