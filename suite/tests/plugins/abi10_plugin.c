// A plugin built against ABI 1.0's header (abi_1_0/maskcheck/plugin.h, kept as 1.0 shipped it):
// a correct masked softmax in float64 and float32, computed from the keep tensor. Its table is
// followed by 0xFF bytes, where ABI 1.1's fields would be: a maskcheck that read a 1.0 table past
// its end would find garbage storage declarations there and refuse it (or worse), so this plugin
// loading and passing shows that 1.0 plugins keep working.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <maskcheck/plugin.h>

#if MASKCHECK_PLUGIN_ABI_VERSION_MINOR != 0
#error "abi10_plugin.c must be built against the ABI 1.0 header"
#endif

static double load(const DLTensor* t, int64_t i) {
  return t->dtype.bits == 64 ? ((const double*)t->data)[i] : ((const float*)t->data)[i];
}
static void store(const DLTensor* t, int64_t i, double v) {
  if (t->dtype.bits == 64)
    ((double*)t->data)[i] = v;
  else
    ((float*)t->data)[i] = (float)v;
}

static maskcheck_status abi10_softmax(const maskcheck_softmax_args* a, char* msg, size_t msg_size) {
  (void)msg;
  (void)msg_size;
  if (a->query) return a->mask->keep ? MASKCHECK_OK : MASKCHECK_INVALID_ARGUMENT;
  const int64_t B = a->x->shape[0], H = a->x->shape[1], Lq = a->x->shape[2], Lk = a->x->shape[3];
  const uint8_t* keep = (const uint8_t*)a->mask->keep->data;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t q = 0; q < Lq; ++q) {
        const int64_t row = ((b * H + h) * Lq + q) * Lk;
        const uint8_t* sees = keep + (b * Lq + q) * Lk;
        double max = -INFINITY, sum = 0;
        for (int64_t k = 0; k < Lk; ++k)
          if (sees[k] && load(a->x, row + k) * a->scale > max) max = load(a->x, row + k) * a->scale;
        for (int64_t k = 0; k < Lk; ++k)
          if (sees[k]) sum += exp(load(a->x, row + k) * a->scale - max);
        for (int64_t k = 0; k < Lk; ++k)
          store(a->y, row + k, sees[k] ? exp(load(a->x, row + k) * a->scale - max) / sum : 0.0);
      }
  return MASKCHECK_OK;
}

static struct {
  maskcheck_plugin table;
  unsigned char after[256];
} blob = {
    {
        .abi_major = MASKCHECK_PLUGIN_ABI_VERSION_MAJOR,
        .abi_minor = MASKCHECK_PLUGIN_ABI_VERSION_MINOR,
        .name = "abi10",
        .version = "1.0",
        .description = "a plugin built against ABI 1.0",
        .device_type = kDLCPU,
        .flags = MASKCHECK_FLAG_KEEP_TENSOR,
        .softmax_dtypes = MASKCHECK_DTYPE_F64 | MASKCHECK_DTYPE_F32,
        .softmax_forward = abi10_softmax,
    },
    {0},
};

MASKCHECK_PLUGIN_EXPORT const maskcheck_plugin* maskcheck_plugin_v1(void) {
  memset(blob.after, 0xFF, sizeof blob.after);
  return &blob.table;
}
