"""Tiny stand-in ONNX graphs shaped like insightface's SCRFD detector and ArcFace recogniser.

They are routed by insightface's real ``model_zoo`` exactly as the released files are:

* detector: one input ``input.1`` of shape 1×3×h×w (dynamic) and 9 outputs — scores, boxes
  and 5-point keypoints for strides 8, 16, 32, two anchors per cell, laid out (cells·2)×{1,4,10}
  as SCRFD's ``forward`` reads them (scores for all strides first, then boxes, then keypoints).
  Its weights are designed, not random: a stride-32 cell fires when it is almost all bright
  (mean normalised pixel > 0.5); every other stride never fires. Each firing cell reports a
  64×64 box centred on the cell and keypoints on the ArcFace template, so a white 32×32 patch
  aligned to the 32-pixel grid of the detector input is "a face".
* recogniser: ``input.1`` N×3×112×112 -> conv 8×8/8 -> flatten -> 512 (random weights).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)
ANCHORS = 2
# insightface.utils.face_align.arcface_dst: the 5-point template in a 112×112 crop.
ARCFACE_DST = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


def _head(nodes, inits, name, stride, channels, per_anchor, weight, bias, sigmoid=False):
    w = numpy_helper.from_array(weight.astype(np.float32), f"{name}_w")
    b = numpy_helper.from_array(bias.astype(np.float32), f"{name}_b")
    inits += [w, b]
    nodes.append(helper.make_node("Conv", ["input.1", w.name, b.name], [f"{name}_c"], name=f"conv_{name}",
                                  kernel_shape=[stride, stride], strides=[stride, stride]))
    src = f"{name}_c"
    if sigmoid:
        nodes.append(helper.make_node("Sigmoid", [src], [f"{name}_s"], name=f"sig_{name}"))
        src = f"{name}_s"
    nodes.append(helper.make_node("Transpose", [src], [f"{name}_t"], name=f"tr_{name}", perm=[0, 2, 3, 1]))
    shape = numpy_helper.from_array(np.array([-1, per_anchor], np.int64), f"{name}_shape")
    inits.append(shape)
    nodes.append(helper.make_node("Reshape", [f"{name}_t", shape.name], [name], name=f"rs_{name}"))
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"n{stride}", per_anchor])


def make_scrfd(path: Path) -> Path:
    """Write the bright-patch SCRFD stand-in to ``path``."""
    nodes: list = []
    inits: list = []
    outs = {"score": [], "bbox": [], "kps": []}
    # Box and keypoints relative to the anchor point (the cell's top-left corner), in stride units.
    s = 32.0
    centre = np.array([16.0, 16.0])
    box = np.array([(centre[0] - 32) * -1, (centre[1] - 32) * -1, centre[0] + 32, centre[1] + 32]) / s
    kps = ((centre + (ARCFACE_DST - 56.0) * (64.0 / 112.0)) / s).ravel()
    for stride in STRIDES:
        zeros = lambda c: np.zeros((c, 3, stride, stride), np.float32)  # noqa: E731
        if stride == 32:
            k = 20.0
            sw = np.full((ANCHORS, 3, stride, stride), k / (3 * stride * stride), np.float32)
            sb = np.full(ANCHORS, -k * 0.5, np.float32)
        else:
            sw, sb = zeros(ANCHORS), np.full(ANCHORS, -30.0, np.float32)
        outs["score"].append(_head(nodes, inits, f"score_{stride}", stride, ANCHORS, 1, sw, sb, sigmoid=True))
        outs["bbox"].append(_head(nodes, inits, f"bbox_{stride}", stride, 4 * ANCHORS, 4,
                                  zeros(4 * ANCHORS), np.tile(box, ANCHORS)))
        outs["kps"].append(_head(nodes, inits, f"kps_{stride}", stride, 10 * ANCHORS, 10,
                                 zeros(10 * ANCHORS), np.tile(kps, ANCHORS)))
    graph = helper.make_graph(
        nodes, "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
        outs["score"] + outs["bbox"] + outs["kps"], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_arcface(path: Path, seed: int = 0, dim: int = 512) -> Path:
    """Write a random recogniser N×3×112×112 -> N×dim to ``path``."""
    rng = np.random.default_rng(seed)
    cw = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 8, 8)).astype(np.float32), "conv_w")
    fw = numpy_helper.from_array(rng.normal(0, 0.05, (8 * 14 * 14, dim)).astype(np.float32), "fc_w")
    fb = numpy_helper.from_array(np.zeros(dim, np.float32), "fc_b")
    nodes = [
        helper.make_node("Conv", ["input.1", "conv_w"], ["c"], name="conv_0", kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Relu", ["c"], ["r"], name="relu_0"),
        helper.make_node("Flatten", ["r"], ["f"], name="flatten_0", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["683"], name="fc_0"),
    ]
    graph = helper.make_graph(
        nodes, "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", dim])],
        [cw, fw, fb],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def make_pack(root: Path, pack: str = "buffalo_l", det: str = "det_10g.onnx", rec: str = "w600k_r50.onnx") -> Path:
    """Lay out ``<root>/models/<pack>/{det,rec}`` like insightface's unpacked zip; return the folder."""
    folder = Path(root) / "models" / pack
    folder.mkdir(parents=True, exist_ok=True)
    make_scrfd(folder / det)
    make_arcface(folder / rec)
    return folder
