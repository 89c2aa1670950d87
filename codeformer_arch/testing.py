"""Seeded stand-in CodeFormer networks for tests and benchmarks (no real weights are shipped)."""

from __future__ import annotations

import torch

from .codeformer import CodeFormer

# The configuration of the official codeformer.pth (v0.1.0).
OFFICIAL_CONFIG = dict(dim_embd=512, n_head=8, n_layers=9, codebook_size=1024, latent_size=256,
                       connect_list=["32", "64", "128", "256"], nf=64, emb_dim=256)


def seeded_codeformer(seed: int = 0, network_class: type[CodeFormer] = CodeFormer, **config) -> CodeFormer:
    """A CodeFormer with deterministic random weights (the official config unless overridden).

    A fresh network's position embedding is zero and its codebook nearly so (upstream initialises it
    within +-1/codebook_size, which AdaIN's epsilon then flattens); both get unit-scale seeded values so
    that the code prediction and the codebook lookup carry signal. The fusion layers keep PyTorch's
    default (non-zero) initialisation, so ``w`` matters. The output conv is scaled down so that the
    outputs lie around [-1, 1], as a trained network's do.
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        network = network_class(**{**OFFICIAL_CONFIG, **config}).eval()
        with torch.no_grad():
            network.position_emb.normal_()
            network.quantize.embedding.weight.normal_()
            network.generator.blocks[-1].weight.mul_(0.2)
    return network


def _pick(conv: torch.nn.Conv2d, tap: tuple[int, int] = (1, 1), bias: float = 0.0) -> None:
    """Make ``conv`` copy its first input channels to its first output channels from one kernel tap."""
    conv.weight.zero_()
    for channel in range(min(conv.weight.shape[:2])):
        conv.weight[channel, channel, tap[0], tap[1]] = 1.0
    conv.bias.fill_(bias)


def with_input_skip(network: CodeFormer) -> CodeFormer:
    """Set ``network``'s 256 px skip path so that it carries the input's colours through, as a trained
    network's does (in place; returns it). The encoder's first blocks, the 256 px fusion block and the
    generator's tail become copies (residual branches zeroed), so that at 256 px the fusion blends the
    decoded codes and the (subsampled) input: ``(1 - w) * decoded + w * input``. The output at
    ``w = 1`` is then the input renormalised per channel (the final GroupNorm), at ``w = 0`` the
    codebook's decoding; everything upstream of the 256 px fusion stays random.
    """
    assert "256" in network.connect_list, "the 256 px fusion block is what carries the input"
    encoder, generator = network.encoder.blocks, network.generator.blocks
    residuals = [encoder[1], encoder[2], encoder[4], encoder[5], generator[19], generator[21], generator[22]]
    with torch.no_grad():
        _pick(encoder[0])  # RGB into the first three channels
        _pick(encoder[3].conv, tap=(0, 0))  # stride-2 subsampling
        _pick(generator[20].conv)  # nearest upsampling
        _pick(generator[-1])
        for block in residuals:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
            if block.skip_name is not None:
                _pick(block.conv_out, tap=(0, 0))
        fuse = network.fuse_convs_dict["256"]
        fuse.encode_enc.conv2.weight.zero_()
        fuse.encode_enc.conv2.bias.zero_()
        _pick(fuse.encode_enc.conv_out, tap=(0, 0))  # the encoder half of [enc, dec]
        fuse.scale[2].weight.zero_()
        fuse.scale[2].bias.fill_(-1.0)  # dec * scale = -dec
        _pick(fuse.shift[0], bias=2.0)  # +2 keeps [-1, 1] features clear of the LeakyReLU's kink
        _pick(fuse.shift[2], bias=-2.0)
    return network
