#!/usr/bin/env python3
"""maskcheck <-> PyTorch interop test (CTest label `interop`).

1. `maskcheck verify --mutants` kills mutant:causal-off-by-one with
   attention.agreesWithReference and saves the shrunk case as .safetensors files. Each one loads
   with safetensors.torch.load_file with the dtypes, shapes and metadata it promises; `maskcheck
   eval` replays it on the mutant (bit for bit what verify recorded) and on the reference (which
   differs, as the property said); the reference agrees with torch's scaled_dot_product_attention
   and logsumexp on every row with a visible key, and gives zeros / -inf on the others. The keep
   mask comes from this file's own transcription of the predicate, itself checked against
   `maskcheck eval masks` of the same spec.
2. Cases written here with safetensors.torch.save_file (metadata included) run through `maskcheck
   eval`: GQA attention in bf16 (top-left causal against SDPA's is_causal=True, and left padding
   + bottom-right causal + a window against an explicit mask), cross-entropy with ignore_index,
   weights and label smoothing against torch.nn.functional.cross_entropy and autograd, and
   causal-LM labels against the shift-by-one rule.

usage: interop_test.py --maskcheck build/bin/maskcheck --workdir DIR
Exits 77 (CTest: skipped) when torch or safetensors cannot be imported.
"""
import argparse
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import torch
    import torch.nn.functional as F
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
except ImportError as e:  # pragma: no cover - depends on the environment
    print(f"interop_test: SKIPPED: {e}; the test needs torch and safetensors "
          "(ci/setup.sh installs them into the venv that MASKCHECK_PYTHON names)")
    sys.exit(77)

TORCH_DTYPES = {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16,
                "bf16": torch.bfloat16}
# Half an ulp of 1 in each dtype: the reference rounds its fp64-accumulated result once.
UNIT_ROUNDOFF = {"f64": 2.0**-53, "f32": 2.0**-24, "f16": 2.0**-11, "bf16": 2.0**-8}
# The spacing of the subnormals, the absolute rounding error near zero.
SUBNORMAL = {"f64": 2.0**-1074, "f32": 2.0**-149, "f16": 2.0**-24, "bf16": 2.0**-133}
UNBOUNDED = "unbounded"

MASKCHECK = ""
WORK = Path()
checks = 0


def check(cond, message):
    global checks
    checks += 1
    if not cond:
        raise AssertionError(message)


def run(*args, expect=0):
    """Runs maskcheck; returns its output; fails unless the exit code is `expect`."""
    p = subprocess.run([MASKCHECK, *map(str, args)], capture_output=True, text=True)
    out = p.stdout + p.stderr
    check(p.returncode == expect,
          f"maskcheck {' '.join(map(str, args))} exited {p.returncode}, expected {expect}:\n{out}")
    return out


def metadata(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


def eval_case(op, impl, case, name):
    out = WORK / f"{name}.result.safetensors"
    run("eval", op, "--impl", impl, "--in", case, "--out", out)
    return load_file(str(out)), metadata(out)


# ---- the predicate, transcribed from reference/include/maskcheck/reference/predicate.hpp ------

def keep_mask(spec):
    """[B, Lq, Lk] bool keep-mask of a MaskSpec given as maskcheck.problem's "mask" JSON."""
    B, Lq, Lk = spec["B"], spec["Lq"], spec["Lk"]
    q_lens = spec.get("q_lens") or [Lq] * B
    k_lens = spec.get("k_lens") or [Lk] * B
    left = spec.get("padding", "right") == "left"
    top_left = spec.get("alignment", "bottom_right") == "top_left"
    window = spec.get("window") or {}
    wl, wr = window.get("left", UNBOUNDED), window.get("right", UNBOUNDED)
    cu_q, cu_k = spec.get("cu_seqlens_q") or [], spec.get("cu_seqlens_k") or []
    prefix = spec.get("prefix_lens") or [0] * B
    chunk = spec.get("chunk", 0)
    sinks = spec.get("sink_tokens", 0)
    keep = torch.zeros(B, Lq, Lk, dtype=torch.bool)
    for b in range(B):
        q0 = Lq - q_lens[b] if left else 0
        k0 = Lk - k_lens[b] if left else 0
        for q in range(q0, q0 + q_lens[b]):
            qi = q - q0
            seg_q, seg_q_len, seg_k, seg_k_len = 0, q_lens[b], 0, k_lens[b]
            if cu_q:
                d = max(i for i in range(len(cu_q[b]) - 1) if cu_q[b][i] <= qi)
                seg_q, seg_q_len = cu_q[b][d], cu_q[b][d + 1] - cu_q[b][d]
                seg_k, seg_k_len = cu_k[b][d], cu_k[b][d + 1] - cu_k[b][d]
            diag = (qi - seg_q) + (0 if top_left else seg_k_len - seg_q_len)
            lo, hi = 0, seg_k_len
            if spec.get("causal"):  # prefix-LM: the whole prefix too
                hi = min(hi, max(diag + 1, prefix[b]))
            if wr != UNBOUNDED:
                hi = min(hi, diag + wr + 1)
            if chunk > 0:  # the chunk of the diagonal (Python's // floors)
                lo = max(lo, diag // chunk * chunk)
                hi = min(hi, diag // chunk * chunk + chunk)
            sink_lo = lo  # attention sinks: exempt from the window's left bound only
            if wl != UNBOUNDED:
                lo = max(lo, diag - wl)
            if hi > lo:
                keep[b, q, k0 + seg_k + lo:k0 + seg_k + hi] = True
                # StreamingLLM: the segment's first `sinks` keys, for rows that see a key.
                keep[b, q, k0 + seg_k + sink_lo:k0 + seg_k + min(hi, sinks)] = True
    return keep


def check_keep_mask_against_maskcheck(spec, name):
    """`maskcheck eval masks` builds the same keep-mask from the spec as keep_mask() here."""
    path = WORK / f"{name}.mask.safetensors"
    save_file({}, str(path), metadata={"maskcheck.op": "masks", "maskcheck.dtype": "f32",
                                       "maskcheck.problem": json.dumps(spec),
                                       "maskcheck.options": json.dumps({"encoding": "keep"})})
    result, _ = eval_case("masks", "reference", path, name + ".mask")
    check(torch.equal(result["mask"] == 1, keep_mask(spec)),
          f"{name}: maskcheck's keep mask differs from this test's predicate for {spec}")


# ---- attention in torch ---------------------------------------------------------------------

def torch_attention(problem, q, k, v, keep):
    """fp64 SDPA with the keep-mask (GQA through enable_gqa), the per-row log-sum-exp, and per
    row the largest visible |score| and sum_j p_j |v_j| (for the error bounds)."""
    D, H, Hkv = problem["D"], problem["H"], problem["Hkv"]
    scale = problem.get("scale")
    scale = 1 / math.sqrt(D) if scale is None else scale
    q64, k64, v64 = q.double(), k.double(), v.double()
    mask = keep[:, None, :, :]  # [B, 1, Lq, Lk], broadcast over heads
    out = F.scaled_dot_product_attention(q64, k64, v64, attn_mask=mask, scale=scale,
                                         enable_gqa=H != Hkv)
    kk = k64.repeat_interleave(H // Hkv, dim=1)
    vv = v64.repeat_interleave(H // Hkv, dim=1)
    scores = (q64 @ kk.transpose(-1, -2)) * scale
    lse = torch.logsumexp(scores.masked_fill(~mask, -math.inf), dim=-1)
    max_score = scores.abs().masked_fill(~mask, 0).amax(dim=-1, keepdim=True)
    p = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1).nan_to_num(0)
    return out, lse, max_score, p @ vv.abs()


def check_attention_result(name, problem, dtype, inputs, result):
    """maskcheck's reference output and lse against torch on rows with a visible key; zeros and
    -inf on rows without one. The reference stores scores and probabilities in the case dtype
    (it is also the naive same-dtype baseline), so in f16/bf16 it differs from fp64 torch by the
    error that rounding implies: a score s moves by u|s|, a probability by a factor
    exp(2u max|s|) and by u, the output once more by u; hence the bounds below (twice that)."""
    keep = keep_mask(problem["mask"])
    want_out, want_lse, max_score, weighted_abs_v = torch_attention(
        problem, inputs["q"], inputs["k"], inputs["v"], keep)
    got = result["out"]
    check(got.dtype == TORCH_DTYPES[dtype], f"{name}: out is {got.dtype}, case dtype {dtype}")
    got = got.double()
    rows = keep.any(dim=-1)[:, None, :].expand(got.shape[:3])  # [B, H, Lq]
    u = UNIT_ROUNDOFF[dtype]
    bound = 2 * ((2 * max_score + 1) * u * weighted_abs_v + u * want_out.abs()) \
        + SUBNORMAL[dtype] + 1e-13
    err = (got - want_out).abs()
    bad = (err > bound) & rows[..., None]
    check(not bool(bad.any()),
          f"{name}: out differs from torch SDPA at {bad.nonzero()[:3].tolist()} by "
          f"{err[bad][:3].tolist()} (bounds {bound[bad][:3].tolist()})")
    check(bool((got[~rows] == 0).all()), f"{name}: a fully masked row is not all zeros")
    if "lse" in result:
        lse = result["lse"]
        check(lse.dtype == torch.float64, f"{name}: lse is {lse.dtype}, not float64")
        lse_bound = (4 * u * max_score[..., 0] + 1e-12)[rows]
        lse_err = (lse[rows] - want_lse[rows]).abs()
        check(bool((lse_err <= lse_bound).all()),
              f"{name}: lse differs from torch.logsumexp by up to {lse_err.max().item():.3g}")
        check(bool((lse[~rows] == -math.inf).all()), f"{name}: a fully masked row's lse is not -inf")


# ---- 1. counterexample files of verify ------------------------------------------------------

def test_counterexample_files():
    ce_dir = WORK / "counterexamples"
    mutant = "mutant:causal-off-by-one"
    prop = "attention.agreesWithReference"
    out = run("verify", "--mutants", "--impl", mutant, "--property", prop, "--cases", 100,
              "--seed", 7, "--counterexamples", ce_dir, "--json", WORK / "verify.json")
    check("Kill rate: 1/1" in out, f"verify did not kill {mutant}:\n{out}")
    row = json.loads((WORK / "verify.json").read_text())["results"][0]
    files = row.get("counterexample_files", [])
    check(len(files) >= 1, f"verify saved no counterexample file:\n{out}")
    check(sorted(map(str, ce_dir.iterdir())) == sorted(files),
          f"the directory holds other files than verify listed: {files}")
    for i, path in enumerate(files):
        check(Path(path).name ==
              f"mutant_causal-off-by-one__attention.agreesWithReference__call{i}.safetensors",
              f"unexpected file name {path}")
        tensors, meta = load_file(path), metadata(path)
        for key, value in {"maskcheck.format": "maskcheck.case/1", "maskcheck.op": "attention",
                           "maskcheck.call": "attention", "maskcheck.implementation": mutant,
                           "maskcheck.property": prop, "maskcheck.call_index": str(i),
                           "maskcheck.reproduced": "true"}.items():
            check(meta.get(key) == value, f"{path}: metadata {key} = {meta.get(key)!r}, "
                                          f"expected {value!r}")
        check(f"--property {prop}" in meta["maskcheck.replay"], meta["maskcheck.replay"])
        check(meta["maskcheck.seed"] == str(row["seed"]), "seed differs from the JSON row")
        check(meta["maskcheck.eval"].startswith(f"maskcheck eval attention --impl {mutant} --in "),
              meta["maskcheck.eval"])
        problem = json.loads(meta["maskcheck.problem"])
        options = json.loads(meta["maskcheck.options"])
        dtype = meta["maskcheck.dtype"]
        m = problem["mask"]
        B, H, Hkv, D, Lq, Lk = m["B"], problem["H"], problem["Hkv"], problem["D"], m["Lq"], m["Lk"]
        check(m["causal"], f"{path}: the shrunk case of a causal bug is not causal: {problem}")
        for name, shape in {"q": (B, H, Lq, D), "k": (B, Hkv, Lk, D), "v": (B, Hkv, Lk, D),
                            "recorded.out": (B, H, Lq, D)}.items():
            check(name in tensors, f"{path}: no tensor {name}; has {sorted(tensors)}")
            check(tuple(tensors[name].shape) == shape,
                  f"{path}: {name} has shape {tuple(tensors[name].shape)}, expected {shape}")
            check(tensors[name].dtype == TORCH_DTYPES[dtype],
                  f"{path}: {name} is {tensors[name].dtype}, case dtype {dtype}")
        for name in ("q_lens", "k_lens"):
            if m[name]:
                check(tensors[name].dtype == torch.int32 and tensors[name].tolist() == m[name],
                      f"{path}: tensor {name} does not match the problem's {m[name]}")
        if options.get("want_lse"):
            check(tuple(tensors["recorded.lse"].shape) == (B, H, Lq), f"{path}: recorded.lse")

        # Replays: the mutant gives back exactly what it returned under verify; the reference
        # differs there, and agrees with PyTorch.
        mutated, _ = eval_case("attention", mutant, path, f"ce{i}.mutant")
        check(torch.equal(mutated["out"], tensors["recorded.out"]),
              f"{path}: replaying {mutant} does not reproduce recorded.out")
        reference, rmeta = eval_case("attention", "reference", path, f"ce{i}.reference")
        check(rmeta["maskcheck.format"] == "maskcheck.result/1", f"result format {rmeta}")
        check(rmeta["maskcheck.implementation"] == "reference", "result implementation")
        check(not torch.equal(reference["out"], mutated["out"]),
              f"{path}: reference and {mutant} agree on the counterexample")
        check_keep_mask_against_maskcheck(m, f"ce{i}")
        check_attention_result(f"{path} (reference)", problem, dtype, tensors, reference)
    print(f"interop_test: {len(files)} counterexample file(s) of {mutant} loaded and replayed")


# ---- 2. cases written in PyTorch ------------------------------------------------------------

def test_attention_cases_from_torch():
    g = torch.Generator().manual_seed(1)
    B, H, Hkv, Lq, Lk, D = 2, 4, 2, 5, 7, 16

    def qkv(lq, lk):
        return {"q": torch.randn(B, H, lq, D, generator=g).to(torch.bfloat16),
                "k": torch.randn(B, Hkv, lk, D, generator=g).to(torch.bfloat16),
                "v": torch.randn(B, Hkv, lk, D, generator=g).to(torch.bfloat16)}

    # PyTorch's is_causal=True is top-left: the same as maskcheck's alignment top_left. Shapes
    # and the dtype come from the tensors; only what they cannot say is in the metadata.
    t = qkv(Lq, Lk)
    path = WORK / "torch_top_left.safetensors"
    save_file(t, str(path), metadata={
        "maskcheck.op": "attention",
        "maskcheck.problem": json.dumps({"mask": {"causal": True, "alignment": "top_left"}})})
    result, meta = eval_case("attention", "reference", path, "torch_top_left")
    check(meta["maskcheck.dtype"] == "bf16", f"dtype inferred as {meta.get('maskcheck.dtype')}")
    full = json.loads(meta["maskcheck.problem"])
    check(keep_mask(full["mask"]).equal(torch.ones(Lq, Lk, dtype=torch.bool).tril()[None].expand(B, -1, -1)),
          "top-left causal is not the lower triangle of PyTorch's is_causal=True")
    want = F.scaled_dot_product_attention(t["q"].double(), t["k"].double(), t["v"].double(),
                                          is_causal=True, enable_gqa=True)
    got = result["out"].double()
    check(torch.allclose(got, want, rtol=0.05, atol=0.05),
          f"top-left causal attention differs from SDPA(is_causal=True) by "
          f"{(got - want).abs().max().item()}")
    check_attention_result("torch_top_left", full, "bf16", t, result)

    # Left padding, bottom-right causal and a sliding window, lengths as int32 tensors.
    t = qkv(Lq, Lk)
    t["q_lens"] = torch.tensor([5, 3], dtype=torch.int32)
    t["k_lens"] = torch.tensor([7, 4], dtype=torch.int32)
    problem = {"mask": {"padding": "left", "causal": True,
                        "window": {"left": 2, "right": UNBOUNDED}}, "scale": 0.3}
    path = WORK / "torch_left_padded.safetensors"
    save_file(t, str(path), metadata={"maskcheck.op": "attention",
                                      "maskcheck.problem": json.dumps(problem),
                                      "maskcheck.options": json.dumps({"want_lse": True})})
    result, meta = eval_case("attention", "reference", path, "torch_left_padded")
    full = json.loads(meta["maskcheck.problem"])  # every field, as maskcheck read the case
    check(full["mask"]["k_lens"] == [7, 4] and full["H"] == H and full["Hkv"] == Hkv,
          f"problem as read: {full}")
    check_keep_mask_against_maskcheck(full["mask"], "torch_left_padded")
    check_attention_result("torch_left_padded", full, "bf16", t, result)

    # Attention sinks (StreamingLLM) under the same left padding and window: the first 2 valid
    # keys of each sequence stay visible.
    problem["mask"]["sink_tokens"] = 2
    path = WORK / "torch_sinks.safetensors"
    save_file(t, str(path), metadata={"maskcheck.op": "attention",
                                      "maskcheck.problem": json.dumps(problem),
                                      "maskcheck.options": json.dumps({"want_lse": True})})
    result, meta = eval_case("attention", "reference", path, "torch_sinks")
    full = json.loads(meta["maskcheck.problem"])
    check(full["mask"]["sink_tokens"] == 2, f"problem as read: {full}")
    check(not keep_mask(full["mask"]).equal(keep_mask({**full["mask"], "sink_tokens": 0})),
          "the sinks case masks like the window alone")
    check_keep_mask_against_maskcheck(full["mask"], "torch_sinks")
    check_attention_result("torch_sinks", full, "bf16", t, result)

    # Prefix-LM and chunks (bottom-right, Lq != Lk: diagonals past the first chunk).
    problem = {"mask": {"causal": True, "prefix_lens": [4, 1], "chunk": 3}, "scale": 0.5}
    path = WORK / "torch_prefix_chunk.safetensors"
    t = qkv(Lq, Lk)
    save_file(t, str(path), metadata={"maskcheck.op": "attention",
                                      "maskcheck.problem": json.dumps(problem),
                                      "maskcheck.options": json.dumps({"want_lse": True})})
    result, meta = eval_case("attention", "reference", path, "torch_prefix_chunk")
    full = json.loads(meta["maskcheck.problem"])
    check(full["mask"]["prefix_lens"] == [4, 1] and full["mask"]["chunk"] == 3,
          f"problem as read: {full}")
    check_keep_mask_against_maskcheck(full["mask"], "torch_prefix_chunk")
    check_attention_result("torch_prefix_chunk", full, "bf16", t, result)
    print("interop_test: attention cases written with safetensors.torch agree with SDPA")


def test_cross_entropy_case_from_torch():
    g = torch.Generator().manual_seed(2)
    N, V, eps = 6, 10, 0.1
    logits = (3 * torch.randn(N, V, generator=g)).float()
    labels = torch.tensor([3, -100, 0, 9, -100, 4], dtype=torch.int64)
    weights = torch.tensor([1.0, 2.0, 0.5, 0.0, 1.0, 1.5], dtype=torch.float32)
    path = WORK / "torch_cross_entropy.safetensors"
    save_file({"logits": logits, "labels": labels, "weights": weights}, str(path),
              metadata={"maskcheck.op": "cross_entropy",
                        "maskcheck.problem": json.dumps({"label_smoothing": eps,
                                                         "reduction": "mean"}),
                        "maskcheck.options": json.dumps({"backward": True})})
    r, _ = eval_case("cross_entropy", "reference", path, "torch_cross_entropy")

    x = logits.double().requires_grad_()
    rows = F.cross_entropy(x, labels, ignore_index=-100, label_smoothing=eps, reduction="none")
    valid = labels != -100
    w = weights.double() * valid
    loss = (w * rows).sum() / w.sum()
    loss.backward()
    check(r["loss"].shape == () and r["loss"].dtype == torch.float64, "loss is a 0-d F64")
    check(math.isclose(r["loss"].item(), loss.item(), rel_tol=1e-6),
          f"loss {r['loss'].item()} vs torch {loss.item()}")
    check(torch.allclose(r["losses"], (w * rows).detach(), rtol=1e-6, atol=1e-7), "losses")
    check(r["count"].item() == int(valid.sum()), f"count {r['count'].item()}")
    check(math.isclose(r["weight_sum"].item(), w.sum().item()), "weight_sum")
    check(r["dlogits"].dtype == torch.float32, "dlogits in the case dtype")
    check(torch.allclose(r["dlogits"].double(), x.grad, rtol=1e-5, atol=1e-7),
          f"dlogits differ from autograd by {(r['dlogits'].double() - x.grad).abs().max()}")
    check(bool((r["dlogits"][~valid] == 0).all()), "ignored rows get exactly zero gradient")
    print("interop_test: cross-entropy case agrees with F.cross_entropy and autograd")


def test_lm_labels_case_from_torch():
    eos = pad = 2  # pad == eos: the labels must come from the mask, never from the ids
    ids = torch.tensor([[5, 6, 7, eos, pad, pad], [8, 9, eos, 4, 3, eos]], dtype=torch.int64)
    keep = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    prompt = torch.tensor([0, 3], dtype=torch.int32)
    path = WORK / "torch_lm_labels.safetensors"
    save_file({"ids": ids, "keep": keep, "prompt_lens": prompt}, str(path),
              metadata={"maskcheck.op": "lm_labels"})
    r, _ = eval_case("lm_labels", "reference", path, "torch_lm_labels")
    want = torch.full_like(ids, -100)
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if keep[b, t] and keep[b, t + 1] and t + 1 >= prompt[b]:
                want[b, t] = ids[b, t + 1]
    check(torch.equal(r["labels"], want), f"labels {r['labels'].tolist()} vs {want.tolist()}")
    print("interop_test: causal-LM labels case agrees with the shift-by-one rule")


def test_wrong_op_is_refused():
    out = run("eval", "softmax", "--in", WORK / "torch_lm_labels.safetensors", expect=2)
    check("holds a lm_labels case" in out, out)


def main():
    global MASKCHECK, WORK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maskcheck", required=True)
    parser.add_argument("--workdir", required=True)
    args = parser.parse_args()
    MASKCHECK, WORK = args.maskcheck, Path(args.workdir)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    print(f"interop_test: torch {torch.__version__}, maskcheck {MASKCHECK}")
    test_counterexample_files()
    test_attention_cases_from_torch()
    test_cross_entropy_case_from_torch()
    test_lm_labels_case_from_torch()
    test_wrong_op_is_refused()
    print(f"interop_test: {checks} checks passed")


if __name__ == "__main__":
    main()
