// ggml finding: an empty batch axis (ne[3] = 0) kills the process with SIGFPE while the graph is
// built: ggml_soft_max_ext and ggml_flash_attn_ext check the mask's broadcast with
// `a->ne[3] % mask->ne[3]`, and the mask of an empty batch has ne[3] = 0 (integer division by
// zero, before any GGML_ASSERT can report it). An empty batch should give an empty result, or a
// GGML_ASSERT naming the shape.
//
// Exits 1 while the bug is there (prints "BUG REPRODUCED"), 0 once it is fixed, 2 on a setup error.
#include <ggml.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void build(int op) {
  struct ggml_init_params ip = {(size_t)1 << 20, NULL, true};
  struct ggml_context* ctx = ggml_init(ip);
  if (!ctx) exit(2);
  const int Lq = 4, Lk = 4, D = 8, H = 1, B = 0;
  if (op == 0) {
    struct ggml_tensor* x = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, Lk, Lq, H, B);
    struct ggml_tensor* mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, Lk, Lq, 1, B);
    ggml_soft_max_ext(ctx, x, mask, 1.0f, 0.0f);
  } else {
    struct ggml_tensor* q = ggml_new_tensor_4d(ctx, GGML_TYPE_F32, D, Lq, H, B);
    struct ggml_tensor* k = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, D, Lk, H, B);
    struct ggml_tensor* v = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, D, Lk, H, B);
    struct ggml_tensor* mask = ggml_new_tensor_4d(ctx, GGML_TYPE_F16, Lk, Lq, 1, B);
    ggml_flash_attn_ext(ctx, q, k, v, mask, 1.0f, 0.0f, 0.0f);
  }
  ggml_free(ctx);
}

int main(void) {
  printf("%s (commit %s)\n", ggml_version(), ggml_commit());
  const char* names[] = {"ggml_soft_max_ext", "ggml_flash_attn_ext"};
  int bug = 0;
  for (int op = 0; op < 2; ++op) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      build(op);
      _exit(0);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 2;
    if (WIFSIGNALED(status)) {
      printf("%s with B = 0: killed by signal %d%s\n", names[op], WTERMSIG(status),
             WTERMSIG(status) == SIGFPE ? " (SIGFPE)" : "");
      if (WTERMSIG(status) == SIGFPE) bug = 1;
    } else {
      printf("%s with B = 0: exit %d\n", names[op], WEXITSTATUS(status));
    }
  }
  if (bug) {
    printf("BUG REPRODUCED: an empty batch axis divides by zero in graph construction\n");
    return 1;
  }
  printf("fixed: no SIGFPE\n");
  return 0;
}
