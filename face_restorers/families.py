"""The face restorer families: what each one is called, how its files are recognised and its network built,
its licence and its knobs. The one list that the registry and the ONNX loader both read."""

from __future__ import annotations

from ..codeformer_arch import build_network as build_codeformer
from ..codeformer_arch import detect as codeformer_detect
from ..gfpgan_arch import detect as gfpgan_detect
from ..gfpgan_arch.build import build_network as build_gfpgan
from ..gpen_arch import detect as gpen_detect
from ..gpen_arch.build import build_network as build_gpen
from ..restoreformer_arch import detect as restoreformer_detect
from ..restoreformer_arch.build import build_network as build_restoreformer
from .interface import ModelFamily

GFPGAN = ModelFamily(
    name="GFP-GAN",
    recognises=gfpgan_detect.is_gfpgan,
    detect=gfpgan_detect.detect_architecture,
    build=build_gfpgan,
    licence="Apache-2.0 (code); the official weights carry no separate licence",
    fidelity="the CS-SFT weight (1 = the official output)",
    default_fidelity=1.0,
    noise=True,
)

# sczhou/CodeFormer: "This project is licensed under NTU S-Lab License 1.0" (README; LICENSE), its weights included.
CODEFORMER_LICENCE = (
    "NTU S-Lab License 1.0 (code and weights): redistribution and use for non-commercial purposes only; "
    "commercial use needs the authors' permission"
)
CODEFORMER = ModelFamily(
    name="CodeFormer",
    recognises=codeformer_detect.is_restorer,
    detect=codeformer_detect.detect_architecture,
    build=build_codeformer,
    licence=CODEFORMER_LICENCE,
    fidelity="w (0 = the codebook's prior, 1 = closest to the input)",
    default_fidelity=0.5,  # upstream's inference_codeformer.py default
)
CODEFORMER_COLORIZATION = ModelFamily(  # its fusion layers are untrained: upstream runs it at w = 0 only
    name="CodeFormer colorization",
    recognises=codeformer_detect.is_colorization,
    detect=codeformer_detect.detect_architecture,
    build=build_codeformer,
    licence=CODEFORMER_LICENCE,
)

RESTOREFORMER = ModelFamily(
    name="RestoreFormer",
    recognises=restoreformer_detect.is_restoreformer,
    detect=restoreformer_detect.detect_architecture,
    build=build_restoreformer,
    licence="Apache-2.0 (code: GFPGAN's restoreformer_arch.py; the original wzhouxiff/RestoreFormer repository states "
            "none); the weights (GFPGAN v1.3.4 RestoreFormer.pth, RestoreFormerPlusPlus v1.0.0 RestoreFormer.ckpt) "
            "carry no separate licence",
    network_keys=restoreformer_detect.network_keys,
)

RESTOREFORMER_PP = ModelFamily(
    name="RestoreFormer++",
    recognises=restoreformer_detect.is_restoreformer_pp,
    detect=restoreformer_detect.detect_architecture,
    build=build_restoreformer,
    licence="Apache-2.0 (code and the v1.0.0 release weights, wzhouxiff/RestoreFormerPlusPlus)",
    network_keys=restoreformer_detect.network_keys,
)


GPEN = ModelFamily(
    name="GPEN",
    recognises=gpen_detect.is_gpen,
    detect=gpen_detect.detect_architecture,
    build=build_gpen,
    licence="our code: Apache-2.0; upstream GPEN (code and weights) has no licence file, its README said "
    "'(c) Alibaba, 2021. For academic and non-commercial use only.'",
    fidelity=None,
    noise=False,  # GPEN injects the encoder's features where StyleGAN2 injects noise: nothing random to seed
)

FAMILIES: tuple[ModelFamily, ...] = (GFPGAN, CODEFORMER, CODEFORMER_COLORIZATION, RESTOREFORMER, RESTOREFORMER_PP, GPEN)
