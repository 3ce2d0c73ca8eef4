#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 ImageNet weights (legacy PyTorch .pth) to ONNX.

Needs only numpy and onnx: torch is deliberately not used, so the .pth is read
with a restricted unpickler and the graph is built with onnx.helper.

Outputs of the produced graph, for an input "input" float32 [N,3,224,224]:
  features  [N,1280]  global-average-pooled penultimate activations (not normalised)
  logits    [N,1000]  ImageNet-1k class scores

Usage: convert_efficientnet_lite0.py WEIGHTS.pth OUT.onnx
"""
import collections
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

IMAGE_SIZE = 224
OPSET = 17
# IR 8 is what opset 17 shipped with; older runtimes embedded in other tools load it too.
IR_VERSION = 8
# TF-trained weights: BatchNorm epsilon of the original model (not PyTorch's 1e-5).
BN_EPS = 1e-3
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64}

# EfficientNet-Lite0 stages: (repeats, kernel, stride, expand_ratio, in_ch, out_ch).
# Lite variants drop squeeze-excitation and use ReLU6 instead of Swish.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM_CH, HEAD_CH, NUM_CLASSES = 32, 1280, 1000


class _Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class _TensorRef:
    def __init__(self, storage, offset, shape, strides):
        self.storage, self.offset, self.shape, self.strides = storage, offset, shape, strides

    def array(self):
        base = self.storage.data
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.shape, strides=[s * item for s in self.strides]
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, offset, shape, strides, _requires_grad, _hooks, *_):
    return _TensorRef(storage, offset, tuple(shape), tuple(strides))


class _LegacyUnpickler(pickle.Unpickler):
    """Resolves only the handful of globals a state_dict needs; anything else is refused."""

    def __init__(self, fh, storages):
        super().__init__(fh)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel, view_meta = pid
        if kind != "storage" or view_meta is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(STORAGE_DTYPES[storage_type], numel)
        return self.storages[key]


def load_legacy_state_dict(path):
    """Read a pre-zip torch.save() file: magic, protocol, sys_info, state_dict pickle,
    storage key list, then each storage as <int64 LE numel><raw little-endian data>."""
    storages = {}
    with open(path, "rb") as fh:
        if pickle.load(fh) != LEGACY_MAGIC:
            raise ValueError(f"{path}: not a legacy torch.save file (bad magic)")
        pickle.load(fh)  # protocol version
        sys_info = pickle.load(fh)
        if not sys_info.get("little_endian", False):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        state = _LegacyUnpickler(fh, storages).load()
        for key in pickle.load(fh):
            st = storages[key]
            (numel,) = struct.unpack("<q", fh.read(8))
            if numel != st.numel:
                raise ValueError(f"storage {key}: header says {numel}, pickle says {st.numel}")
            nbytes = numel * np.dtype(st.dtype).itemsize
            st.data = np.frombuffer(fh.read(nbytes), dtype=st.dtype)
            if st.data.size != numel:
                raise ValueError(f"storage {key}: truncated file")
        if fh.read(1):
            raise ValueError(f"{path}: trailing bytes after the last storage")
    return {name: ref.array() for name, ref in state.items()}


def tf_same_pads(size, kernel, stride):
    """TensorFlow 'SAME' padding, extra pixel at the end; returns (begin, end, out_size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class GraphBuilder:
    def __init__(self, weights):
        self.w = weights
        self.used = set()
        self.nodes, self.inits = [], []
        self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"))
        self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"))

    def take(self, name):
        self.used.add(name)
        return self.w[name]

    def conv_bn(self, x, conv, bn, size, stride, groups, relu6):
        """Conv + BatchNorm folded into one Conv (plus Clip for ReLU6); returns (name, size)."""
        w = self.take(f"{conv}.weight").astype(np.float64)
        gamma, beta = self.take(f"{bn}.weight"), self.take(f"{bn}.bias")
        mean, var = self.take(f"{bn}.running_mean"), self.take(f"{bn}.running_var")
        self.used.add(f"{bn}.num_batches_tracked")
        scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + BN_EPS)
        w_fold = (w * scale[:, None, None, None]).astype(np.float32)
        b_fold = (beta - mean * scale).astype(np.float32)

        k = w.shape[2]
        begin, end, out = tf_same_pads(size, k, stride)
        self.inits.append(numpy_helper.from_array(w_fold, f"{conv}.w"))
        self.inits.append(numpy_helper.from_array(b_fold, f"{conv}.b"))
        y = f"{conv}.out"
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{conv}.w", f"{conv}.b"], [y], name=conv,
            kernel_shape=[k, k], strides=[stride, stride], group=groups,
            pads=[begin, begin, end, end],
        ))
        if relu6:
            self.nodes.append(helper.make_node(
                "Clip", [y, "relu6_min", "relu6_max"], [f"{conv}.relu6"], name=f"{conv}.relu6"))
            y = f"{conv}.relu6"
        return y, out

    def build(self):
        x, size = self.conv_bn("input", "_conv_stem", "_bn0", IMAGE_SIZE, 2, 1, True)
        idx = 0
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for r in range(repeats):
                x, size = self.mbconv(idx, x, size, kernel, stride if r == 0 else 1,
                                      expand, cin if r == 0 else cout, cout)
                idx += 1
        x, size = self.conv_bn(x, "_conv_head", "_bn1", size, 1, 1, True)

        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pooled"], name="pool"))
        self.nodes.append(helper.make_node("Flatten", ["pooled"], ["features"], name="flatten", axis=1))
        self.inits.append(numpy_helper.from_array(self.take("_fc.weight"), "fc.w"))
        self.inits.append(numpy_helper.from_array(self.take("_fc.bias"), "fc.b"))
        self.nodes.append(helper.make_node(
            "Gemm", ["features", "fc.w", "fc.b"], ["logits"], name="fc", transB=1))

        unused = sorted(set(self.w) - self.used)
        if unused:
            raise ValueError(f"weights not consumed by the graph: {unused[:5]}...")
        return self.model()

    def mbconv(self, idx, x, size, kernel, stride, expand, cin, cout):
        p = f"_blocks.{idx}"
        mid = cin * expand
        if self.w[f"{p}._depthwise_conv.weight"].shape != (mid, 1, kernel, kernel):
            raise ValueError(f"{p}: weights do not match the Lite0 architecture table")
        inp = x
        if expand != 1:
            x, size = self.conv_bn(x, f"{p}._expand_conv", f"{p}._bn0", size, 1, 1, True)
        x, size = self.conv_bn(x, f"{p}._depthwise_conv", f"{p}._bn1", size, stride, mid, True)
        x, size = self.conv_bn(x, f"{p}._project_conv", f"{p}._bn2", size, 1, 1, False)
        if stride == 1 and cin == cout:
            y = f"{p}.add"
            self.nodes.append(helper.make_node("Add", [x, inp], [y], name=y))
            x = y
        return x, size

    def model(self):
        n = "N"
        graph = helper.make_graph(
            self.nodes, "efficientnet_lite0",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [n, 3, IMAGE_SIZE, IMAGE_SIZE])],
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [n, HEAD_CH]),
             helper.make_tensor_value_info("logits", TensorProto.FLOAT, [n, NUM_CLASSES])],
            initializer=self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="adrec-convert_efficientnet_lite0", ir_version=IR_VERSION,
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__.strip().splitlines()[-1])
    weights = load_legacy_state_dict(argv[1])
    if weights["_conv_stem.weight"].shape != (STEM_CH, 3, 3, 3):
        sys.exit("unexpected stem shape: is this EfficientNet-Lite0?")
    model = GraphBuilder(weights).build()
    onnx.save(model, argv[2])
    print(f"wrote {argv[2]}: {len(model.graph.node)} nodes, "
          f"{sum(int(np.prod(t.dims)) for t in model.graph.initializer)} parameters")


if __name__ == "__main__":
    main(sys.argv)
