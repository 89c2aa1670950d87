"""GFPGANer's algorithm (facexlib FaceRestoreHelper + per-face network loop + CPU paste), without downloads.

Used by the end-to-end parity test and by the benchmark as the baseline.
facexlib's helper normally builds (and downloads) its own detector and parser;
here it is assembled from its parts with models we loaded from local files.
"""

from __future__ import annotations

import numpy as np
import torch


def make_face_helper(retinaface_path, parser_network=None, upscale: int = 1):
    from facexlib.detection.retinaface import RetinaFace
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper
    from safetensors.torch import load_file

    helper = FaceRestoreHelper.__new__(FaceRestoreHelper)
    helper.template_3points = False
    helper.upscale_factor = upscale
    helper.crop_ratio = (1, 1)
    helper.face_size = (512, 512)
    helper.face_template = np.array(
        [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935], [201.26117, 371.41043], [313.08905, 371.15118]]
    )
    helper.save_ext = "png"
    helper.pad_blur = False
    helper.device = torch.device("cpu")
    detector = RetinaFace(network_name="mobile0.25", half=False, device="cpu")
    detector.load_state_dict(load_file(str(retinaface_path)), strict=True)
    helper.face_det = detector.eval()
    helper.use_parse = parser_network is not None
    helper.face_parse = parser_network
    helper.clean_all()
    helper.det_faces = []
    helper.pad_input_imgs = []
    return helper


def gfpganer_enhance(
    helper,
    network,
    bgr: np.ndarray,
    use_reference_forward: bool = True,
    upsample_img: np.ndarray | None = None,
    pixel_centres: bool = False,
) -> tuple[np.ndarray, int]:
    """GFPGANer.enhance(has_aligned=False, paste_back=True, weight=1) on a uint8 BGR image.

    ``network`` is called as the official GFPGAN module (``network(x, return_rgb=False,
    randomize_noise=False)[0]``) when ``use_reference_forward``, else as ours.
    ``upsample_img`` is the upscaled background GFPGANer's bg_upsampler would give
    (the helper's ``upscale`` times the input's size). When upscaling, facexlib shifts
    the pasted faces by ``0.5 * upscale`` pixels where the pixel-centre mapping is
    ``0.5 * upscale - 0.5``; ``pixel_centres`` removes that extra half pixel. Returns
    the restored BGR image and the number of faces.
    """
    helper.clean_all()
    helper.det_faces = []
    helper.read_image(bgr)
    helper.get_face_landmarks_5(only_center_face=False, eye_dist_threshold=5)
    helper.align_warp_face()
    for cropped in helper.cropped_faces:
        x = torch.from_numpy(cropped[:, :, ::-1].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        x = (x - 0.5) / 0.5
        with torch.no_grad():
            out = network(x, return_rgb=False, randomize_noise=False)[0] if use_reference_forward else network(x)
        out = out.squeeze(0).float().clamp(-1, 1)
        out = ((out + 1) / 2).permute(1, 2, 0).numpy()[:, :, ::-1]
        helper.add_restored_face((out * 255.0).round().astype(np.uint8))
    helper.get_inverse_affine(None)
    if pixel_centres and helper.upscale_factor > 1:
        for inverse_affine in helper.inverse_affine_matrices:
            inverse_affine[:, 2] -= 0.5
    restored = helper.paste_faces_to_input_image(upsample_img=upsample_img)
    return restored, len(helper.cropped_faces)
