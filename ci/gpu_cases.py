#!/usr/bin/env python3
"""Case files for `maskcheck eval` on a GPU machine (ci/gpu.sh), and the comparison of results.

  python3 ci/gpu_cases.py write DIR            one .safetensors case per line of CASES into DIR;
                                               prints "<op> <path>" per case
  python3 ci/gpu_cases.py compare CASE GOT WANT
                                               compares eval's result files GOT (--impl cuda) and
                                               WANT (--impl reference) of CASE; exit 1 on a mismatch

The cases: attention in fp16 (padded, causal, grouped-query heads), attention in bf16 with scores
near 5e30 and the softmax in fp32 near |max * scale * log2 e| = 2^31 (issue 18: exponents relative
to the row max), the attention backward in bf16 (padded, causal, grouped-query heads, the call
attention_backward), and cross-entropy forward + backward in bf16 with label smoothing and ignored
rows.
Standard library only: the GPU machine need not have the safetensors package.
"""
import json
import math
import random
import struct
import sys
from pathlib import Path

FORMATS = {"F64": "d", "F32": "f", "F16": "e", "I64": "q", "I32": "i", "U8": "B"}
SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "U8": 1}


def bf16_bits(x):
    """Round-to-nearest-even fp32 -> bf16 bits (finite x)."""
    u = struct.unpack("<I", struct.pack("<f", x))[0]
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF


def round_to(dtype, x):
    if dtype == "BF16":
        return struct.unpack("<f", struct.pack("<I", bf16_bits(x) << 16))[0]
    return struct.unpack("<" + FORMATS[dtype], struct.pack("<" + FORMATS[dtype], x))[0]


def encode(dtype, values):
    if dtype == "BF16":
        return struct.pack("<%dH" % len(values), *(bf16_bits(v) for v in values))
    return struct.pack("<%d%s" % (len(values), FORMATS[dtype]), *values)


def write(path, tensors, metadata):
    """tensors: name -> (dtype, shape, flat values)."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, (dtype, shape, values) in tensors.items():
        blob = encode(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def read(path):
    """name -> flat list of floats (or ints), metadata."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        count = (b - a) // SIZES[t["dtype"]]
        if t["dtype"] == "BF16":
            bits = struct.unpack("<%dH" % count, raw)
            out[name] = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in bits]
        else:
            out[name] = list(struct.unpack("<%d%s" % (count, FORMATS[t["dtype"]]), raw))
    return out, meta


def padded_attention(rng, dtype, backward=False):
    """q, k, v (and dout) N(0, 1) in dtype, 2 sequences (130 / 66 queries, 300 / 180 keys), 4 query
    heads on 2 kv heads, D 64."""
    B, H, Hkv, Lq, Lk, D = 2, 4, 2, 130, 300, 64
    def normal(n):
        return [round_to(dtype, rng.gauss(0, 1)) for _ in range(n)]
    tensors = {"q": (dtype, [B, H, Lq, D], normal(B * H * Lq * D)),
               "k": (dtype, [B, Hkv, Lk, D], normal(B * Hkv * Lk * D)),
               "v": (dtype, [B, Hkv, Lk, D], normal(B * Hkv * Lk * D))}
    if backward:
        tensors["dout"] = (dtype, [B, H, Lq, D], normal(B * H * Lq * D))
    tensors["q_lens"] = ("I32", [B], [130, 66])
    tensors["k_lens"] = ("I32", [B], [300, 180])
    return tensors


def attention_normal(rng):
    return ("attention", padded_attention(rng, "F16"), {"mask": {"causal": True}},
            {"out": 4e-3, "lse": 1e-5})


def attention_huge(rng):
    # q = (A, 1, 0...), k_j = (B, -k_j u, 0...): q.k_j = 2^102 - k_j 2^79 exactly in fp32; ties of
    # the top (k_j = 0) share the weight, the others get 0. Default scale 1/sqrt(128).
    B, H, Hkv, Lq, Lk, D = 2, 2, 1, 130, 300, 128
    q = [0.0] * (B * H * Lq * D)
    for r in range(B * H * Lq):
        q[r * D], q[r * D + 1] = 2.0 ** 51, 1.0
    k = [0.0] * (B * Hkv * Lk * D)
    for r in range(B * Hkv * Lk):
        k[r * D] = 2.0 ** 51
        k[r * D + 1] = 0.0 if rng.random() < 0.25 else -rng.randint(1, 255) * 2.0 ** 79
    v = [round_to("BF16", rng.uniform(-1, 1)) for _ in range(B * Hkv * Lk * D)]
    tensors = {"q": ("BF16", [B, H, Lq, D], q), "k": ("BF16", [B, Hkv, Lk, D], k),
               "v": ("BF16", [B, Hkv, Lk, D], v),
               "q_lens": ("I32", [B], [130, 66]), "k_lens": ("I32", [B], [300, 180])}
    return "attention", tensors, {"mask": {"causal": True}}, {"out": 3e-2, "lse": 1e-6}


def attention_backward(rng):
    tol = {"dq": 3e-2, "dk": 3e-2, "dv": 3e-2}
    return ("attention", padded_attention(rng, "BF16", backward=True), {"mask": {"causal": True}},
            tol, None, "attention_backward")


def softmax_huge(rng):
    # x = 2^20 - k 2^-3 (exact in fp32), scale such that |max * scale * log2 e| = 2^31.
    B, H, Lq, Lk = 2, 1, 7, 3000
    x = [2.0 ** 20 - (0 if rng.random() < 0.25 else rng.randint(1, 255)) * 0.125
         for _ in range(B * H * Lq * Lk)]
    scale = 2.0 ** 31 / (2.0 ** 20 * math.log2(math.e))
    tensors = {"x": ("F32", [B, H, Lq, Lk], x),
               "q_lens": ("I32", [B], [7, 4]), "k_lens": ("I32", [B], [3000, 1800])}
    return "softmax", tensors, {"mask": {"causal": True}, "scale": scale}, {"y": 2e-5}


def cross_entropy(rng):
    N, V = 8, 50000
    logits = [round_to("BF16", rng.gauss(0, 4)) for _ in range(N * V)]
    labels = [0, -100, V - 1, 17, -100, V // 2, 3, 4]
    tensors = {"logits": ("BF16", [N, V], logits), "labels": ("I64", [N], labels)}
    tol = {"loss": 1e-5, "losses": 1e-5, "dlogits": 3e-2}
    return "cross_entropy", tensors, {"label_smoothing": 0.1}, tol, {"backward": True}


CASES = {"attention_f16": attention_normal, "attention_bf16_huge": attention_huge,
         "softmax_f32_huge": softmax_huge, "cross_entropy_bf16": cross_entropy,
         "attention_backward_bf16": attention_backward}


def cmd_write(directory):
    Path(directory).mkdir(parents=True, exist_ok=True)
    for i, (name, make) in enumerate(CASES.items()):
        # (op, tensors, problem, tolerance[, options[, call]])
        op, tensors, problem, tol, *rest = make(random.Random(i + 1))
        meta = {"maskcheck.op": op, "maskcheck.problem": json.dumps(problem),
                "maskcheck.gpu_cases.tolerance": json.dumps(tol)}
        if rest and rest[0] is not None:
            meta["maskcheck.options"] = json.dumps(rest[0])
        if len(rest) > 1:
            meta["maskcheck.call"] = rest[1]
        path = Path(directory) / (name + ".safetensors")
        write(path, tensors, meta)
        print(op, path)


def cmd_compare(case, got_path, want_path):
    _, meta = read(case)
    tol = json.loads(meta["maskcheck.gpu_cases.tolerance"])
    got, _ = read(got_path)
    want, _ = read(want_path)
    ok = True
    for name, rtol in tol.items():
        if name not in got or name not in want or len(got[name]) != len(want[name]):
            print(f"  {name}: missing or of another size")
            ok = False
            continue
        worst, where = 0.0, -1
        for i, (g, w) in enumerate(zip(got[name], want[name])):
            if g == w:
                continue
            err = abs(g - w) / (rtol * (1 + abs(w)))  # <= 1 passes; NaN fails
            if not err <= worst:
                worst, where = err, i
        verdict = "ok" if worst <= 1 else "MISMATCH"
        ok &= worst <= 1
        detail = "" if where < 0 else f" (at {where}: got {got[name][where]!r} want {want[name][where]!r})"
        print(f"  {name}: {len(got[name])} values, worst error {worst:.3g} of the tolerance "
              f"{rtol:g} (1 + |want|){detail}: {verdict}")
    return 0 if ok else 1


def main(argv):
    if len(argv) == 3 and argv[1] == "write":
        cmd_write(argv[2])
        return 0
    if len(argv) == 5 and argv[1] == "compare":
        return cmd_compare(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
