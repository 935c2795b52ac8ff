// ggml finding: ggml_flash_attn_ext on the CPU accumulates the unnormalized P V sum in f16 when V
// is f16 (the KV cache type llama.cpp uses by default), even with GGML_PREC_F32 requested. The sum
// grows with the number of visible keys and stops growing once it passes 2048 (f16 spacing 2),
// so long rows lose their late keys: 2080 equal scores over V = 1 give 2048 / 2080 = 0.9846
// instead of 1. The same call with V in f32 is exact.
//
// Exits 1 while the bug is there (prints "BUG REPRODUCED"), 0 once it is fixed, 2 on a setup error.
#include <ggml-cpu.h>
#include <ggml.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

// out[0] of softmax(q k^T) v with q = k = 0 (every score equal) and v = 1: exactly 1 in any
// precision that adds up to Lk correctly.
static double run(enum ggml_type kv_type, int Lk) {
  const int D = 4, Lq = 2;  // two queries: ggml's one-query-per-thread path, not the split-KV one
  struct ggml_init_params ip = {(size_t)64 << 20, NULL, false};
  struct ggml_context* ctx = ggml_init(ip);
  if (!ctx) return NAN;
  struct ggml_tensor* q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, Lq, 1, 1);
  struct ggml_tensor* k = ggml_new_tensor_4d(ctx, kv_type, D, Lk, 1, 1);
  struct ggml_tensor* v = ggml_new_tensor_4d(ctx, kv_type, D, Lk, 1, 1);
  struct ggml_tensor* mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, Lk, Lq, 1, 1);
  memset(q->data, 0, ggml_nbytes(q));
  memset(k->data, 0, ggml_nbytes(k));
  memset(mask->data, 0, ggml_nbytes(mask));  // every key visible (f16 +0)
  for (int i = 0; i < D * Lk; ++i) {
    if (kv_type == GGML_TYPE_F16)
      ((ggml_fp16_t*)v->data)[i] = ggml_fp32_to_fp16(1.0f);
    else
      ((float*)v->data)[i] = 1.0f;
  }
  struct ggml_tensor* out = ggml_flash_attn_ext(ctx, q, k, v, mask, 1.0f, 0.0f, 0.0f);
  ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
  struct ggml_cgraph* gf = ggml_new_graph(ctx);
  ggml_build_forward_expand(gf, out);
  double r = NAN;
  if (ggml_graph_compute_with_ctx(ctx, gf, 1) == GGML_STATUS_SUCCESS) r = ((float*)out->data)[0];
  ggml_free(ctx);
  return r;
}

int main(void) {
  printf("%s (commit %s)\n", ggml_version(), ggml_commit());
  const int lengths[] = {2048, 2080, 4096};
  int bug = 0;
  for (int i = 0; i < 3; ++i) {
    const double f16 = run(GGML_TYPE_F16, lengths[i]), f32 = run(GGML_TYPE_F32, lengths[i]);
    if (isnan(f16) || isnan(f32)) {
      fprintf(stderr, "setup error: ggml_graph_compute failed\n");
      return 2;
    }
    printf("Lk %4d, V = 1: out %.6f with K, V f16, %.6f with K, V f32 (want 1)\n", lengths[i], f16,
           f32);
    if (fabs(f16 - 1.0) > 1e-3) bug = 1;
  }
  if (bug) {
    printf("BUG REPRODUCED: f16 P V accumulation loses keys beyond a sum of 2048 (GGML_PREC_F32 "
           "requested)\n");
    return 1;
  }
  printf("fixed: every row sums to 1\n");
  return 0;
}
