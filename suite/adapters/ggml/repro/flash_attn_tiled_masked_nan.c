// ggml finding: ggml_flash_attn_ext on the CPU lets masked keys reach visible rows once a batch has
// 64 queries or more. Its one-query path skips every key whose mask is -inf, so the contents of
// masked (padded, out-of-window, unused KV cache) positions cannot matter; its tiled path (Q tiles
// of GGML_FA_TILE_Q = 64 rows, used for prompt processing) multiplies the whole K tile, adds the
// mask and multiplies the softmax by the whole V tile, so a NaN or inf in a masked V (0 * NaN) or a
// masked K whose score overflows (inf + -inf) turns visible rows into NaN. Same call, same mask:
// 63 queries are right, 64 are NaN.
//
// Exits 1 while the bug is there (prints "BUG REPRODUCED"), 0 once it is fixed, 2 on a setup error.
#include <ggml-cpu.h>
#include <ggml.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

// Every query sees key 0 only (V[0] = 1); keys 1.. are masked and their V is NaN (or K huge):
// every output must be 1.
static int bad_rows(int Lq, int poison_k) {
  const int D = 8, Lk = 64;
  struct ggml_init_params ip = {(size_t)64 << 20, NULL, false};
  struct ggml_context* ctx = ggml_init(ip);
  if (!ctx) return -1;
  struct ggml_tensor* q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, Lq, 1, 1);
  struct ggml_tensor* k = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, Lk, 1, 1);
  struct ggml_tensor* v = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, Lk, 1, 1);
  struct ggml_tensor* mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, Lk, Lq, 1, 1);
  for (int i = 0; i < D * Lq; ++i) ((float*)q->data)[i] = 1.0f;
  for (int j = 0; j < Lk; ++j)
    for (int d = 0; d < D; ++d) {
      ((float*)k->data)[j * D + d] = (j > 0 && poison_k) ? 3e38f : 0.0f;
      ((float*)v->data)[j * D + d] = (j > 0 && !poison_k) ? NAN : 1.0f;
    }
  for (int i = 0; i < Lq; ++i)
    for (int j = 0; j < Lk; ++j)
      ((ggml_fp16_t*)mask->data)[i * Lk + j] = ggml_fp32_to_fp16(j == 0 ? 0.0f : -INFINITY);
  struct ggml_tensor* out = ggml_flash_attn_ext(ctx, q, k, v, mask, 1.0f, 0.0f, 0.0f);
  ggml_flash_attn_ext_set_prec(out, GGML_PREC_F32);
  struct ggml_cgraph* gf = ggml_new_graph(ctx);
  ggml_build_forward_expand(gf, out);
  int bad = -1;
  if (ggml_graph_compute_with_ctx(ctx, gf, 1) == GGML_STATUS_SUCCESS) {
    bad = 0;
    for (int i = 0; i < Lq; ++i) {
      int row_bad = 0;
      for (int d = 0; d < D; ++d)
        if (!(fabsf(((float*)out->data)[i * D + d] - 1.0f) <= 1e-6f)) row_bad = 1;
      bad += row_bad;
    }
  }
  ggml_free(ctx);
  return bad;
}

int main(void) {
  printf("%s (commit %s)\n", ggml_version(), ggml_commit());
  int bug = 0;
  for (int poison_k = 0; poison_k <= 1; ++poison_k)
    for (int Lq = 63; Lq <= 64; ++Lq) {
      const int bad = bad_rows(Lq, poison_k);
      if (bad < 0) {
        fprintf(stderr, "setup error: ggml_graph_compute failed\n");
        return 2;
      }
      printf("Lq %d, masked keys %s: %d of %d rows wrong (want 0)\n", Lq,
             poison_k ? "K = 3e38 (score overflows)" : "V = NaN", bad, Lq);
      if (bad) bug = 1;
    }
  if (bug) {
    printf("BUG REPRODUCED: the tiled path (>= 64 queries) lets masked keys reach visible rows\n");
    return 1;
  }
  printf("fixed: masked keys reach no row\n");
  return 0;
}
