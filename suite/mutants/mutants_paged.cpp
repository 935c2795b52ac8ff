// Mutants of attention over a paged KV cache (problems.hpp's PagedKv), the page-table bugs of
// serving kernels, and of split-KV chunks (attention_chunk), the merge bugs of decode kernels. Each
// gathers the cache into the padded layout with one bug and runs the reference on it; calls in the
// padded layout are the reference's, so the mutants meet only attention.pagedEqualsContiguous.
#include <algorithm>
#include <limits>

#include "maskcheck/reference/reference.hpp"
#include "mutants_internal.hpp"

namespace maskcheck::mutants {
namespace {

enum class Bug : std::uint8_t {
  pages_in_order,   // the block table ignored: sequence b's pages taken as b * max_pages + i
  whole_last_page,  // every slot of the last page read, the tail past k_len included
  first_table_row,  // every sequence reads block table row 0
  full_page_lost,   // a last page that is full counted as empty (k_len % page_size == 0)
};

class PagedBug : public Named {
 public:
  PagedBug(std::string id, std::string how, Bug bug)
      : Named(std::move(id), std::move(how)), bug_(bug) {}

  AttentionResult attention_paged(const AttentionProblem& p, const PagedKv& kv, DType t,
                                  std::span<const double> q, std::span<const double> k_cache,
                                  std::span<const double> v_cache, bool want_lse) const override {
    validate_paged_inputs(p, kv, q.size(), k_cache.size(), v_cache.size());
    // The keys each sequence is taken to have, and where key j of sequence b is read from.
    AttentionProblem seen = p;
    MaskSpec& m = seen.mask;
    const std::int64_t P = kv.page_size;
    if (bug_ == Bug::whole_last_page || bug_ == Bug::full_page_lost) {
      m.k_lens.resize(static_cast<std::size_t>(m.B));
      for (std::int64_t b = 0; b < m.B; ++b) {
        std::int64_t len = p.mask.k_len(b);
        if (bug_ == Bug::whole_last_page) len = std::min(PagedKv::pages_of(len, P) * P, m.Lk);
        if (bug_ == Bug::full_page_lost && len > 0 && len % P == 0) len -= P;
        m.k_lens[static_cast<std::size_t>(b)] = static_cast<std::int32_t>(len);
      }
      m.cu_seqlens_q.clear();  // documents no longer add up to the lengths
      m.cu_seqlens_k.clear();
    }
    auto page_of = [&](std::int64_t b, std::int64_t i) -> std::int64_t {
      switch (bug_) {
        case Bug::pages_in_order:
          return kv.num_pages > 0 ? (b * kv.max_pages + i) % kv.num_pages : 0;
        case Bug::first_table_row:
          return kv.block_table[static_cast<std::size_t>(i)];
        default:
          return kv.block_table[static_cast<std::size_t>(b * kv.max_pages + i)];
      }
    };
    const std::int64_t Hkv = p.Hkv, Lk = m.Lk, D = p.D;
    std::vector<double> k(static_cast<std::size_t>(p.kv_numel()), 0.0), v(k.size(), 0.0);
    for (std::int64_t b = 0; b < m.B; ++b)
      for (std::int64_t j = 0; j < m.k_len(b); ++j) {
        const std::int64_t page = page_of(b, j / P);
        if (page < 0 || page >= kv.num_pages) continue;  // row 0's table may not reach this far
        const std::int64_t slot = page * P + j % P;
        for (std::int64_t h = 0; h < Hkv; ++h) {
          std::copy_n(k_cache.begin() + (slot * Hkv + h) * D, D,
                      k.begin() + ((b * Hkv + h) * Lk + j) * D);
          std::copy_n(v_cache.begin() + (slot * Hkv + h) * D, D,
                      v.begin() + ((b * Hkv + h) * Lk + j) * D);
        }
      }
    return ReferenceImplementation::attention(seen, t, q, k, v, want_lse);
  }

 private:
  Bug bug_;
};

// Split-KV chunks with one bug each (attention_chunk); the rest is the reference's.
enum class ChunkBug : std::uint8_t {
  empty_lse_zero,  // a chunk where the row sees no key reports lse 0 (and output 0)
  lse_base2,       // the chunk's lse in base 2 (log2 of the sum), as some kernels keep it
  end_inclusive,   // the chunk takes keys [begin, end]: the boundary key counted twice
};

class ChunkMutant : public Named {
 public:
  ChunkMutant(std::string id, std::string how, ChunkBug bug)
      : Named(std::move(id), std::move(how)), bug_(bug) {}

  AttentionResult attention_chunk(const AttentionProblem& p, DType t, std::span<const double> q,
                                  std::span<const double> k, std::span<const double> v,
                                  std::int64_t key_begin, std::int64_t key_end) const override {
    const std::int64_t end =
        bug_ == ChunkBug::end_inclusive ? std::min(key_end + 1, p.mask.Lk) : key_end;
    AttentionResult r = ReferenceImplementation::attention_chunk(p, t, q, k, v, key_begin, end);
    for (double& l : r.lse) {
      if (bug_ == ChunkBug::empty_lse_zero && l == -std::numeric_limits<double>::infinity()) l = 0;
      if (bug_ == ChunkBug::lse_base2) l *= 1.4426950408889634;
    }
    return r;
  }

 private:
  ChunkBug bug_;
};

}  // namespace

void add_attention_paged_mutants(std::vector<Mutant>& out) {
  const Op op = Op::attention;
  auto add = [&](std::string bug, std::string id, std::string how, Bug b) {
    // attention_paged alone carries the bug
    out.push_back(in_entry(Mutant::Entry::paged,
                           entry<PagedBug>(op, std::move(bug), std::move(id), std::move(how), b)));
  };
  add("block table ignored", "paged-pages-in-order",
      "sequence b's i-th page is taken to be page b * max_pages + i, as if the cache were "
      "allocated in order: any other page order reads other sequences' keys",
      Bug::pages_in_order);
  add("last page read whole", "paged-whole-last-page",
      "every slot of a sequence's last page is attended, the slots past its length included: "
      "whatever they hold (NaN after a free) leaks in",
      Bug::whole_last_page);
  add("block table row 0 for every sequence", "paged-first-table-row",
      "the table's row stride is dropped: every sequence reads sequence 0's pages",
      Bug::first_table_row);
  add("a full last page counted as empty", "paged-full-page-lost",
      "the last page's fill is computed as k_len % page_size, 0 for a full page: a sequence of "
      "128 keys in pages of 16 (or of 1) sees 112 (127)",
      Bug::full_page_lost);
  auto chunk = [&](std::string bug, std::string id, std::string how, ChunkBug b) {
    // attention_chunk alone carries the bug
    out.push_back(
        in_entry(Mutant::Entry::chunk,
                 entry<ChunkMutant>(op, std::move(bug), std::move(id), std::move(how), b)));
  };
  chunk("an empty split-KV chunk reports log-sum-exp 0", "split-empty-chunk-lse-zero",
        "a chunk in which a row sees no key returns output 0 with lse 0 instead of -inf: the "
        "merge gives that zero output the weight of a chunk of sum 1",
        ChunkBug::empty_lse_zero);
  chunk("split-KV log-sum-exp in base 2", "split-lse-base2",
        "each chunk's log-sum-exp is log2 of its sum (the base-2 statistic of exp2 kernels) and "
        "the merge treats it as natural",
        ChunkBug::lse_base2);
  chunk("split-KV chunk end inclusive", "split-end-inclusive",
        "a chunk covers keys [begin, end] instead of [begin, end): each inner boundary key is "
        "counted by two chunks",
        ChunkBug::end_inclusive);
}

}  // namespace maskcheck::mutants
