// Multi-resolution hash encoding (instant-ngp style), CPU kernels.
//
// Layout (mirrors recon/encodings/hash_grid.py, which is the reference):
//   x      (n, 3)        points in [-1, 1]^3, mapped to u = clamp((x + 1) / 2, 0, 1)
//   table  (E, F)        all levels' feature rows; level l owns [offset[l], offset[l] + size[l])
//   enc    (n, L * F)    per-level trilinearly interpolated features, concatenated by level
//   jac    (n, 3, L * F) d enc / d x, per unit of x (includes the 1/2 of the [-1,1] -> [0,1] map),
//          axis-major per point, so that contracting it with a (n, L * F) gradient reads
//          contiguous rows (the Python side returns the (n, L * F, 3) transposed view)
// A level is hashed when size[l] < (res[l] + 1)^3; its size is then a power of two.
//
// Second derivatives (d jac / d x) are deliberately not provided: callers use finite
// differences for divergence-type terms, and the backward here is first-order only.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <sys/mman.h>

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;
constexpr int kMaxFeatures = 32;

struct Level {
  int64_t res;
  int64_t offset;
  int64_t size;
  bool hashed;
};

// One point's cell at one level. Corner k = bx + 2 by + 4 bz sits at (i0 + (bx, by, bz)).
template <typename scalar_t>
struct Cell {
  int64_t row[8];  // absolute table row of each corner
  scalar_t f[3];   // position inside the cell, in [0, 1]
  scalar_t s[3];   // d pos / d x: N/2 inside the cube, 0 on clamped axes
};

template <typename scalar_t>
inline void locate(const scalar_t* p, const Level& lv, Cell<scalar_t>& c) {
  int64_t i0[3];
  const scalar_t res = static_cast<scalar_t>(lv.res);
  for (int d = 0; d < 3; ++d) {
    scalar_t u = (p[d] + scalar_t(1)) * scalar_t(0.5);
    // Same gradient convention as torch.clamp: pass-through on the closed interval.
    const bool inside = u >= scalar_t(0) && u <= scalar_t(1);
    u = u > scalar_t(0) ? u : scalar_t(0);  // also maps NaN to 0: never index out of range
    u = u < scalar_t(1) ? u : scalar_t(1);
    const scalar_t pos = u * res;
    // pos >= 0, so truncation is floor; std::floor is a libm call without SSE4.1.
    int64_t i = static_cast<int64_t>(pos);
    if (i > lv.res - 1) i = lv.res - 1;  // u == 1 lies in the last cell, with f == 1
    i0[d] = i;
    c.f[d] = pos - static_cast<scalar_t>(i);
    c.s[d] = inside ? res * scalar_t(0.5) : scalar_t(0);
  }
  // A corner's row combines one per-axis part per axis (xor for hashed, sum for dense levels).
  if (lv.hashed) {
    const uint32_t mask = static_cast<uint32_t>(lv.size - 1);
    uint32_t h[3][2];
    for (int b = 0; b < 2; ++b) {
      h[0][b] = static_cast<uint32_t>(i0[0] + b);
      h[1][b] = static_cast<uint32_t>(i0[1] + b) * kPrimeY;
      h[2][b] = static_cast<uint32_t>(i0[2] + b) * kPrimeZ;
    }
    for (int k = 0; k < 8; ++k) {
      const uint32_t hk = h[0][k & 1] ^ h[1][(k >> 1) & 1] ^ h[2][k >> 2];
      c.row[k] = lv.offset + static_cast<int64_t>(hk & mask);
    }
  } else {
    const int64_t st = lv.res + 1;
    int64_t part[3][2];
    for (int b = 0; b < 2; ++b) {
      part[0][b] = i0[0] + b;
      part[1][b] = (i0[1] + b) * st;
      part[2][b] = (i0[2] + b) * st * st;
    }
    for (int k = 0; k < 8; ++k)
      c.row[k] = lv.offset + part[0][k & 1] + part[1][(k >> 1) & 1] + part[2][k >> 2];
  }
}

// Trilinear interpolation of corner values v[8] as a tree of lerps (x, then y, then z), which
// yields the three partial derivatives with a handful of extra operations instead of 24 corner
// weight derivatives. Returns the value; writes d value / d x to g when kGrad.
template <typename scalar_t, bool kGrad>
inline scalar_t trilerp(const scalar_t v[8], const Cell<scalar_t>& c, scalar_t* g) {
  const scalar_t fx = c.f[0], fy = c.f[1], fz = c.f[2];
  const scalar_t d00 = v[1] - v[0], d10 = v[3] - v[2], d01 = v[5] - v[4], d11 = v[7] - v[6];
  const scalar_t e00 = v[0] + fx * d00, e10 = v[2] + fx * d10;
  const scalar_t e01 = v[4] + fx * d01, e11 = v[6] + fx * d11;
  const scalar_t dy0 = e10 - e00, dy1 = e11 - e01;
  const scalar_t g0 = e00 + fy * dy0, g1 = e01 + fy * dy1;
  const scalar_t dz = g1 - g0;
  if (kGrad) {
    const scalar_t dx0 = d00 + fy * (d10 - d00), dx1 = d01 + fy * (d11 - d01);
    g[0] = (dx0 + fz * (dx1 - dx0)) * c.s[0];
    g[1] = (dy0 + fz * (dy1 - dy0)) * c.s[1];
    g[2] = dz * c.s[2];
  }
  return g0 + fz * dz;
}

// Trilinear corner weights w[k] = A[bx] B[by] C[bz].
template <typename scalar_t>
inline void corner_weights(const Cell<scalar_t>& c, scalar_t w[8]) {
  const scalar_t A[2] = {scalar_t(1) - c.f[0], c.f[0]};
  const scalar_t B[2] = {scalar_t(1) - c.f[1], c.f[1]};
  const scalar_t C[2] = {scalar_t(1) - c.f[2], c.f[2]};
  for (int k = 0; k < 8; ++k) w[k] = A[k & 1] * B[(k >> 1) & 1] * C[k >> 2];
}

// Calls body(i, cell) for points i in [begin, end) at one level, locating each point's cell
// kAhead points early and prefetching its table rows: on large tables every corner read is a
// cache miss, and keeping ~kAhead points' misses in flight hides most of the latency.
constexpr int kAhead = 16;  // power of two

template <bool kWrite, typename scalar_t, typename Body>
inline void for_each_cell(const scalar_t* x, const Level& lv, const scalar_t* rows, int F,
                          int64_t begin, int64_t end, Body&& body) {
  Cell<scalar_t> ring[kAhead];
  auto stage = [&](int64_t q) {
    Cell<scalar_t>& c = ring[q & (kAhead - 1)];
    locate(x + q * 3, lv, c);
    for (int k = 0; k < 8; ++k) __builtin_prefetch(rows + c.row[k] * F, kWrite ? 1 : 0, 3);
  };
  for (int64_t q = begin; q < std::min(end, begin + kAhead); ++q) stage(q);
  for (int64_t i = begin; i < end; ++i) {
    body(i, static_cast<const Cell<scalar_t>&>(ring[i & (kAhead - 1)]));
    if (i + kAhead < end) stage(i + kAhead);  // reuses the slot just consumed
  }
}

int n_threads() { return std::max(1, at::get_num_threads()); }

// Contiguous share [begin, end) of n items for the calling OpenMP thread.
inline void thread_range(int64_t n, int64_t& begin, int64_t& end) {
  const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
  begin = n * t / nt;
  end = n * (t + 1) / nt;
}

// Work is level-major: each thread takes a contiguous share of the points and walks them one level
// at a time, so one level's table (<= 2^19 rows * F floats, a few MB) is reused from L2/L3 instead
// of all levels' tables (tens of MB) evicting each other when a point walks every level.
// Outputs are written in place, F values per row and level (and per axis for jac); staging them
// in a level-major scratch buffer and transposing measured no faster.
template <typename scalar_t, int FT, bool kJac>
void forward_impl(const scalar_t* x, const scalar_t* table, scalar_t* enc, scalar_t* jac,
                  int64_t n, const std::vector<Level>& levels, int64_t n_active, int f_dyn) {
  const int F = FT > 0 ? FT : f_dyn;
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t LF = L * F;
#pragma omp parallel num_threads(n_threads())
  {
    int64_t begin, end;
    thread_range(n, begin, end);
    for (int64_t l = 0; l < n_active; ++l) {
      const Level lv = levels[l];
      for_each_cell<false>(x, lv, table, F, begin, end, [&](int64_t i, const Cell<scalar_t>& c) {
        scalar_t* e = enc + i * LF + l * F;
        if (kJac) {
          scalar_t v[8], d[3];
          scalar_t* j = jac + i * 3 * LF + l * F;  // axis a of feature f at j[a * LF + f]
          for (int f = 0; f < F; ++f) {
            for (int k = 0; k < 8; ++k) v[k] = table[c.row[k] * F + f];
            e[f] = trilerp<scalar_t, true>(v, c, d);
            j[f] = d[0];
            j[LF + f] = d[1];
            j[2 * LF + f] = d[2];
          }
        } else {
          // Without derivatives, 8 shared corner weights beat a lerp tree per feature.
          scalar_t w[8];
          corner_weights(c, w);
          scalar_t acc[FT > 0 ? FT : kMaxFeatures] = {};
          for (int k = 0; k < 8; ++k) {
            const scalar_t* t = table + c.row[k] * F;
            for (int f = 0; f < F; ++f) acc[f] += w[k] * t[f];
          }
          for (int f = 0; f < F; ++f) e[f] = acc[f];
        }
      });
    }
    // Inactive levels are zero (and never read the table).
    if (n_active < L) {
      for (int64_t i = begin; i < end; ++i) {
        std::memset(enc + i * LF + n_active * F, 0, sizeof(scalar_t) * (L - n_active) * F);
        if (kJac)
          for (int a = 0; a < 3; ++a)
            std::memset(jac + (i * 3 + a) * LF + n_active * F, 0, sizeof(scalar_t) * (L - n_active) * F);
      }
    }
  }
}

// grad_table from output gradients g_enc (n, L*F) and g_jac (n, 3, L*F), either may be null.
// Each level pass reads its F values (and F from each of g_jac's 3 rows) of every point in place:
// constant-stride streams the hardware prefetcher follows (measured faster than transposing the
// gradients to a level-major buffer first, which costs an extra pass and buffer).
// Race-free without atomics: levels own disjoint row ranges and each level is handled by exactly
// one thread, which also zeroes its rows (a parallel memset).
//
// Corner (a, b, c) receives ge*w + sum_d gj_d * dw/dx_d with w = A[a] B[b] C[c] (the per-axis
// lerp weights). Factored as P[bc] * u[a] + A[a] * Q[bc] with P = B C, u = ge A + gj_x A',
// Q = gj_y B' C + gj_z B C' (primes: per-axis weight derivatives), to share products.
template <typename scalar_t, int FT, bool kGradJac>
void backward_table_impl(const scalar_t* x, const scalar_t* g_enc, const scalar_t* g_jac,
                         scalar_t* g_table, int64_t n, const std::vector<Level>& levels,
                         int64_t n_active, int f_dyn) {
  const int F = FT > 0 ? FT : f_dyn;
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t LF = L * F;
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads())
  for (int64_t l = 0; l < L; ++l) {
    const Level lv = levels[l];
    std::memset(g_table + lv.offset * F, 0, sizeof(scalar_t) * lv.size * F);
    if (l >= n_active) continue;
    const scalar_t* ge_l = g_enc ? g_enc + l * F : nullptr;
    const scalar_t* gj_l = kGradJac ? g_jac + l * F : nullptr;
    for_each_cell<true>(x, lv, g_table, F, 0, n, [&](int64_t i, const Cell<scalar_t>& c) {
      const scalar_t A[2] = {scalar_t(1) - c.f[0], c.f[0]};
      const scalar_t B[2] = {scalar_t(1) - c.f[1], c.f[1]};
      const scalar_t C[2] = {scalar_t(1) - c.f[2], c.f[2]};
      scalar_t P[4];
      for (int bc = 0; bc < 4; ++bc) P[bc] = B[bc & 1] * C[bc >> 1];
      for (int f = 0; f < F; ++f) {
        const scalar_t ge = ge_l ? ge_l[i * LF + f] : scalar_t(0);
        scalar_t val[8];
        if (kGradJac) {
          const scalar_t* gj = gj_l + i * 3 * LF + f;
          const scalar_t gx = gj[0] * c.s[0], gy = gj[LF] * c.s[1], gz = gj[2 * LF] * c.s[2];
          const scalar_t u[2] = {ge * A[0] - gx, ge * A[1] + gx};
          scalar_t Q[4];
          for (int bc = 0; bc < 4; ++bc) {
            const int b = bc & 1, cz = bc >> 1;
            Q[bc] = (b ? gy : -gy) * C[cz] + (cz ? gz : -gz) * B[b];
          }
          for (int k = 0; k < 8; ++k) val[k] = P[k >> 1] * u[k & 1] + A[k & 1] * Q[k >> 1];
        } else {
          for (int k = 0; k < 8; ++k) val[k] = ge * A[k & 1] * P[k >> 1];
        }
        for (int k = 0; k < 8; ++k) g_table[c.row[k] * F + f] += val[k];
      }
    });
  }
}

// grad_x = sum_k grad_enc_k * jac_k with jac recomputed on the fly (never materialised):
// per level, the gradient of the scalar field sum_f ge_f * table_f. g_enc is (n, L*F).
template <typename scalar_t, int FT>
void backward_x_impl(const scalar_t* x, const scalar_t* table, const scalar_t* g_enc,
                     scalar_t* g_x, int64_t n, const std::vector<Level>& levels, int64_t n_active,
                     int f_dyn) {
  const int F = FT > 0 ? FT : f_dyn;
  const int64_t LF = static_cast<int64_t>(levels.size()) * F;
#pragma omp parallel num_threads(n_threads())
  {
    int64_t begin, end;
    thread_range(n, begin, end);
    for (int64_t l = 0; l < n_active; ++l) {
      const Level lv = levels[l];
      for_each_cell<false>(x, lv, table, F, begin, end, [&](int64_t i, const Cell<scalar_t>& c) {
        scalar_t v[8], g[3];
        const scalar_t* ge = g_enc + i * LF + l * F;
        for (int k = 0; k < 8; ++k) {
          const scalar_t* t = table + c.row[k] * F;
          scalar_t s = 0;
          for (int f = 0; f < F; ++f) s += t[f] * ge[f];
          v[k] = s;
        }
        trilerp<scalar_t, true>(v, c, g);
        for (int d = 0; d < 3; ++d) g_x[3 * i + d] += g[d];
      });
    }
  }
}

// Large buffers (grad_table is ~50 MB for 16 levels of 2^19 rows; the Jacobian of 256k points is
// ~100 MB) come straight from mmap with transparent huge pages requested. The default allocator
// hands such sizes to mmap with 4 KiB pages, and a fresh allocation per call then spends more
// time in page faults than the kernel spends computing (measured ~0.4 ms per MB on the bench VM).
// Small buffers use torch's allocator. Falls back to it whenever mmap fails.
torch::Tensor big_empty(at::IntArrayRef sizes, const at::TensorOptions& opt) {
  constexpr size_t kHuge = size_t(2) << 20;
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t bytes =
      static_cast<size_t>(numel) * c10::elementSize(c10::typeMetaToScalarType(opt.dtype()));
  if (bytes < 4 * kHuge) return torch::empty(sizes, opt);
  const size_t len = bytes + kHuge;  // slack to align the start to a huge-page boundary
  void* base = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) return torch::empty(sizes, opt);
  const uintptr_t aligned = (reinterpret_cast<uintptr_t>(base) + kHuge - 1) & ~uintptr_t(kHuge - 1);
#ifdef MADV_HUGEPAGE
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);  // advisory; ignore failure
#endif
  return torch::from_blob(
      reinterpret_cast<void*>(aligned), sizes, [base, len](void*) { munmap(base, len); }, opt);
}

std::vector<Level> make_levels(const std::vector<int64_t>& res, const std::vector<int64_t>& offsets,
                               const std::vector<int64_t>& sizes, int64_t n_rows) {
  TORCH_CHECK(res.size() == offsets.size() && res.size() == sizes.size(),
              "res, offsets and sizes must have one entry per level");
  std::vector<Level> levels(res.size());
  for (size_t l = 0; l < res.size(); ++l) {
    const int64_t r = res[l], s = sizes[l], dense = (r + 1) * (r + 1) * (r + 1);
    TORCH_CHECK(r >= 1 && s >= 1 && s <= dense, "bad level ", l);
    TORCH_CHECK(offsets[l] >= 0 && offsets[l] + s <= n_rows, "level ", l, " exceeds the table");
    const bool hashed = s < dense;
    TORCH_CHECK(!hashed || (s & (s - 1)) == 0, "hashed level sizes must be powers of two");
    levels[l] = Level{r, offsets[l], s, hashed};
  }
  return levels;
}

void check_inputs(const torch::Tensor& x, const torch::Tensor& table) {
  TORCH_CHECK(x.device().is_cpu() && table.device().is_cpu(), "CPU tensors expected");
  TORCH_CHECK(x.dim() == 2 && x.size(1) == 3, "x must be (n, 3)");
  TORCH_CHECK(table.dim() == 2, "table must be (rows, F)");
  TORCH_CHECK(table.size(1) <= kMaxFeatures, "at most ", kMaxFeatures, " features per level");
  TORCH_CHECK(x.scalar_type() == table.scalar_type(), "x and table dtypes differ");
  TORCH_CHECK(x.is_contiguous() && table.is_contiguous(), "contiguous tensors expected");
}

// Calls fn.template operator()<F>() with F a compile-time constant for common sizes, else 0.
template <typename Fn>
void dispatch_features(int64_t F, Fn&& fn) {
  switch (F) {
    case 1: fn(std::integral_constant<int, 1>{}); break;
    case 2: fn(std::integral_constant<int, 2>{}); break;
    case 4: fn(std::integral_constant<int, 4>{}); break;
    case 8: fn(std::integral_constant<int, 8>{}); break;
    default: fn(std::integral_constant<int, 0>{}); break;
  }
}

}  // namespace

std::vector<torch::Tensor> hashgrid_forward(torch::Tensor x, torch::Tensor table,
                                            std::vector<int64_t> res,
                                            std::vector<int64_t> offsets,
                                            std::vector<int64_t> sizes, int64_t n_active,
                                            bool with_jac) {
  check_inputs(x, table);
  const auto levels = make_levels(res, offsets, sizes, table.size(0));
  const int64_t n = x.size(0), F = table.size(1), L = static_cast<int64_t>(levels.size());
  n_active = std::max<int64_t>(0, std::min(n_active, L));
  const auto opt = table.options();
  auto enc = big_empty({n, L * F}, opt);
  auto jac = with_jac ? big_empty({n, 3, L * F}, opt) : torch::empty({0}, opt);
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hashgrid_forward", [&] {
    dispatch_features(F, [&](auto fc) {
      constexpr int FT = decltype(fc)::value;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* tp = table.data_ptr<scalar_t>();
      if (with_jac)
        forward_impl<scalar_t, FT, true>(xp, tp, enc.data_ptr<scalar_t>(), jac.data_ptr<scalar_t>(),
                                         n, levels, n_active, static_cast<int>(F));
      else
        forward_impl<scalar_t, FT, false>(xp, tp, enc.data_ptr<scalar_t>(), nullptr, n, levels,
                                          n_active, static_cast<int>(F));
    });
  });
  return {enc, jac};
}

// grad_enc (n, L*F) / grad_jac (n, 3, L*F) may be empty (numel 0): no gradient reaches that output.
std::vector<torch::Tensor> hashgrid_backward(torch::Tensor x, torch::Tensor table,
                                             torch::Tensor grad_enc, torch::Tensor grad_jac,
                                             std::vector<int64_t> res,
                                             std::vector<int64_t> offsets,
                                             std::vector<int64_t> sizes, int64_t n_active,
                                             bool need_table, bool need_x) {
  check_inputs(x, table);
  const auto levels = make_levels(res, offsets, sizes, table.size(0));
  const int64_t n = x.size(0), F = table.size(1), L = static_cast<int64_t>(levels.size());
  n_active = std::max<int64_t>(0, std::min(n_active, L));
  const bool has_ge = grad_enc.numel() > 0, has_gj = grad_jac.numel() > 0;
  TORCH_CHECK(!has_ge || (grad_enc.numel() == n * L * F &&
                          grad_enc.scalar_type() == table.scalar_type()), "bad grad_enc");
  TORCH_CHECK(!has_gj || (grad_jac.numel() == n * L * F * 3 &&
                          grad_jac.scalar_type() == table.scalar_type()), "bad grad_jac");
  const auto opt = table.options();
  const torch::Tensor ge_c = has_ge ? grad_enc.contiguous() : grad_enc;
  const torch::Tensor gj_c = has_gj ? grad_jac.contiguous() : grad_jac;
  torch::Tensor g_table = need_table ? big_empty(table.sizes(), opt) : torch::empty({0}, opt);
  torch::Tensor g_x = need_x ? torch::zeros_like(x) : torch::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hashgrid_backward", [&] {
    dispatch_features(F, [&](auto fc) {
      constexpr int FT = decltype(fc)::value;
      const scalar_t* xp = x.data_ptr<scalar_t>();
      const scalar_t* ge = has_ge ? ge_c.data_ptr<scalar_t>() : nullptr;
      if (need_table) {
        scalar_t* gt = g_table.data_ptr<scalar_t>();
        if (has_gj)
          backward_table_impl<scalar_t, FT, true>(xp, ge, gj_c.data_ptr<scalar_t>(), gt, n,
                                                  levels, n_active, static_cast<int>(F));
        else
          backward_table_impl<scalar_t, FT, false>(xp, ge, nullptr, gt, n, levels, n_active,
                                                   static_cast<int>(F));
      }
      if (need_x && has_ge)
        backward_x_impl<scalar_t, FT>(xp, table.data_ptr<scalar_t>(), ge,
                                      g_x.data_ptr<scalar_t>(), n, levels, n_active,
                                      static_cast<int>(F));
    });
  });
  return {g_table, g_x};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "surfrecon multi-resolution hash-grid encoding, CPU kernels";
  m.def("forward", &hashgrid_forward, "enc (n, L*F) and, if with_jac, jac (n, 3, L*F)",
        py::arg("x"), py::arg("table"), py::arg("res"), py::arg("offsets"), py::arg("sizes"),
        py::arg("n_active"), py::arg("with_jac"));
  m.def("backward", &hashgrid_backward, "grad_table and grad_x (first order only)",
        py::arg("x"), py::arg("table"), py::arg("grad_enc"), py::arg("grad_jac"), py::arg("res"),
        py::arg("offsets"), py::arg("sizes"), py::arg("n_active"), py::arg("need_table"),
        py::arg("need_x"));
}
