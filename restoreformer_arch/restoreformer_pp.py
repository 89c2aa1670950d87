"""RestoreFormer++ (Wang et al., TPAMI 2023) in plain PyTorch, the network of the released ``RestoreFormer++.ckpt``.

RestoreFormer's network with multi-scale cross-attention: the decoder also attends at the 32 px level,
its queries the encoder's 32 px features; 4 attention heads instead of 8. The rest (encoder, codebook,
blocks, keys) is RestoreFormer's. ``forward(x)``: ``[N,3,S,S]`` in [-1, 1] in and out.
"""

from __future__ import annotations

from .restoreformer import RestoreFormer


class RestoreFormerPlusPlus(RestoreFormer):
    """RestoreFormer++ at the official config unless told otherwise (upstream's ``VQVAEGANMultiHeadTransformer``
    with ``head_size=4, ex_multi_scale_num=1``)."""

    def __init__(self, *, decoder_attn_resolutions: tuple[int, ...] = (16, 32), head_size: int = 4, **config):
        super().__init__(decoder_attn_resolutions=decoder_attn_resolutions, head_size=head_size, **config)
