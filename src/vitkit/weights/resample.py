"""Resampling of position embeddings and bias tables: the pure functions live in
:mod:`vitkit.layers.resample` (the models use them to fit files to their geometry); re-exported here."""
from ..layers.resample import (INTERPOLATIONS, embed_bias_table, resample_bias_table, resample_grid_embed,
                               resample_pos_embed, square_grid)

__all__ = ["INTERPOLATIONS", "embed_bias_table", "resample_bias_table", "resample_grid_embed",
           "resample_pos_embed", "square_grid"]
