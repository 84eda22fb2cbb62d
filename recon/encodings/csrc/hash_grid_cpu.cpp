// Multi-resolution hash encoding (instant-ngp style), CPU kernels.
//
// Layout (mirrors recon/encodings/hash_grid.py, which is the reference):
//   x      (n, 3)        points in [-1, 1]^3, mapped to u = clamp((x + 1) / 2, 0, 1)
//   table  (E, F)        all levels' feature rows; level l owns rows [offset[l], offset[l] + size[l])
//   enc    (n, L * F)    level-major concatenation of trilinearly interpolated features
//   jac    (n, L * F, 3) d enc / d x, per unit of x (includes the 1/2 of the [-1,1] -> [0,1] map)
// A level is hashed when size[l] < (res[l] + 1)^3; its size is then a power of two.
//
// Second derivatives (d jac / d x) are deliberately not provided: callers use finite
// differences for divergence-type terms, and the backward here is first-order only.

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr uint32_t kPrimeY = 2654435761u;
constexpr uint32_t kPrimeZ = 805459861u;
constexpr int kMaxFeatures = 32;
// Points are processed in chunks, level by level inside a chunk: one level's table (<= a few MB)
// then stays hot in L2/L3 for the whole chunk, instead of all levels (tens of MB) competing for
// the cache when a point walks every level in turn. Measured on the bench; see bench/hashgrid.py.
constexpr int64_t kChunk = 4096;

struct Level {
  int64_t res;
  int64_t offset;
  int64_t size;
  bool hashed;
};

// The 8 cell corners of one point at one level: absolute table rows, weights and (optionally)
// d weight / d x.
template <typename scalar_t>
struct Cell {
  int64_t row[8];
  scalar_t w[8];
  scalar_t dw[8][3];
};

template <typename scalar_t, bool kWithGrad>
inline void locate(const scalar_t* p, const Level& lv, Cell<scalar_t>& c) {
  scalar_t f[3];
  scalar_t dscale[3];
  int64_t i0[3];
  const scalar_t res = static_cast<scalar_t>(lv.res);
  for (int d = 0; d < 3; ++d) {
    scalar_t u = (p[d] + scalar_t(1)) * scalar_t(0.5);
    // Same gradient convention as torch.clamp: pass-through on the closed interval.
    const bool inside = u >= scalar_t(0) && u <= scalar_t(1);
    u = u > scalar_t(0) ? u : scalar_t(0);  // also maps NaN to 0: never index out of range
    u = u < scalar_t(1) ? u : scalar_t(1);
    const scalar_t pos = u * res;
    int64_t i = static_cast<int64_t>(std::floor(pos));
    if (i > lv.res - 1) i = lv.res - 1;  // u == 1 lies in the last cell, with f == 1
    i0[d] = i;
    f[d] = pos - static_cast<scalar_t>(i);
    dscale[d] = inside ? res * scalar_t(0.5) : scalar_t(0);
  }
  // Per-axis index parts; a corner's index combines one part per axis.
  int64_t part[3][2];
  if (lv.hashed) {
    const uint32_t mask = static_cast<uint32_t>(lv.size - 1);
    uint32_t h[3][2];
    for (int b = 0; b < 2; ++b) {
      h[0][b] = static_cast<uint32_t>(i0[0] + b);
      h[1][b] = static_cast<uint32_t>(i0[1] + b) * kPrimeY;
      h[2][b] = static_cast<uint32_t>(i0[2] + b) * kPrimeZ;
    }
    for (int k = 0; k < 8; ++k) {
      const uint32_t hk = h[0][k & 1] ^ h[1][(k >> 1) & 1] ^ h[2][(k >> 2) & 1];
      c.row[k] = lv.offset + static_cast<int64_t>(hk & mask);
    }
  } else {
    const int64_t s = lv.res + 1;
    for (int b = 0; b < 2; ++b) {
      part[0][b] = i0[0] + b;
      part[1][b] = (i0[1] + b) * s;
      part[2][b] = (i0[2] + b) * s * s;
    }
    for (int k = 0; k < 8; ++k)
      c.row[k] = lv.offset + part[0][k & 1] + part[1][(k >> 1) & 1] + part[2][(k >> 2) & 1];
  }
  const scalar_t wa[3][2] = {{scalar_t(1) - f[0], f[0]},
                             {scalar_t(1) - f[1], f[1]},
                             {scalar_t(1) - f[2], f[2]}};
  for (int k = 0; k < 8; ++k) {
    const int bx = k & 1, by = (k >> 1) & 1, bz = (k >> 2) & 1;
    c.w[k] = wa[0][bx] * wa[1][by] * wa[2][bz];
    if (kWithGrad) {
      c.dw[k][0] = (bx ? dscale[0] : -dscale[0]) * wa[1][by] * wa[2][bz];
      c.dw[k][1] = (by ? dscale[1] : -dscale[1]) * wa[0][bx] * wa[2][bz];
      c.dw[k][2] = (bz ? dscale[2] : -dscale[2]) * wa[0][bx] * wa[1][by];
    }
  }
}

int n_threads() { return std::max(1, at::get_num_threads()); }

template <typename scalar_t, int FT, bool kJac>
void forward_impl(const scalar_t* x, const scalar_t* table, scalar_t* enc, scalar_t* jac,
                  int64_t n, const std::vector<Level>& levels, int64_t n_active, int f_dyn) {
  const int F = FT > 0 ? FT : f_dyn;
  const int64_t L = static_cast<int64_t>(levels.size());
  const int64_t LF = L * F;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(n_threads())
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    const int64_t begin = ch * kChunk;
    const int64_t end = std::min(n, begin + kChunk);
    Cell<scalar_t> c;
    for (int64_t l = 0; l < L; ++l) {
      if (l >= n_active) {  // inactive levels: zeros, and no table reads at all
        for (int64_t i = begin; i < end; ++i) {
          std::memset(enc + i * LF + l * F, 0, sizeof(scalar_t) * F);
          if (kJac) std::memset(jac + (i * LF + l * F) * 3, 0, sizeof(scalar_t) * F * 3);
        }
        continue;
      }
      const Level lv = levels[l];
      for (int64_t i = begin; i < end; ++i) {
        locate<scalar_t, kJac>(x + i * 3, lv, c);
        scalar_t acc[FT > 0 ? FT : kMaxFeatures];
        scalar_t jacc[FT > 0 ? FT : kMaxFeatures][3];
        for (int f = 0; f < F; ++f) {
          acc[f] = 0;
          if (kJac) jacc[f][0] = jacc[f][1] = jacc[f][2] = 0;
        }
        for (int k = 0; k < 8; ++k) {
          const scalar_t* t = table + c.row[k] * F;
          for (int f = 0; f < F; ++f) {
            acc[f] += c.w[k] * t[f];
            if (kJac) {
              jacc[f][0] += c.dw[k][0] * t[f];
              jacc[f][1] += c.dw[k][1] * t[f];
              jacc[f][2] += c.dw[k][2] * t[f];
            }
          }
        }
        scalar_t* e = enc + i * LF + l * F;
        for (int f = 0; f < F; ++f) e[f] = acc[f];
        if (kJac) {
          scalar_t* j = jac + (i * LF + l * F) * 3;
          for (int f = 0; f < F; ++f) {
            j[3 * f + 0] = jacc[f][0];
            j[3 * f + 1] = jacc[f][1];
            j[3 * f + 2] = jacc[f][2];
          }
        }
      }
    }
  }
}

// grad_table: race-free without atomics because levels own disjoint row ranges and each level is
// handled by exactly one thread. Every thread also zeroes the rows of its levels (parallel memset).
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
    scalar_t* gt = g_table + lv.offset * F;
    std::memset(gt, 0, sizeof(scalar_t) * lv.size * F);
    if (l >= n_active) continue;
    Cell<scalar_t> c;
    for (int64_t i = 0; i < n; ++i) {
      locate<scalar_t, kGradJac>(x + i * 3, lv, c);
      const scalar_t* ge = g_enc ? g_enc + i * LF + l * F : nullptr;
      const scalar_t* gj = kGradJac ? g_jac + (i * LF + l * F) * 3 : nullptr;
      for (int k = 0; k < 8; ++k) {
        scalar_t* row = g_table + c.row[k] * F;
        for (int f = 0; f < F; ++f) {
          scalar_t v = ge ? c.w[k] * ge[f] : scalar_t(0);
          if (kGradJac)
            v += c.dw[k][0] * gj[3 * f] + c.dw[k][1] * gj[3 * f + 1] + c.dw[k][2] * gj[3 * f + 2];
          row[f] += v;
        }
      }
    }
  }
}

// grad_x = sum_k grad_enc_k * jac_k, with jac recomputed on the fly (never materialised).
template <typename scalar_t, int FT>
void backward_x_impl(const scalar_t* x, const scalar_t* table, const scalar_t* g_enc,
                     scalar_t* g_x, int64_t n, const std::vector<Level>& levels, int64_t n_active,
                     int f_dyn) {
  const int F = FT > 0 ? FT : f_dyn;
  const int64_t LF = static_cast<int64_t>(levels.size()) * F;
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(n_threads())
  for (int64_t ch = 0; ch < n_chunks; ++ch) {
    const int64_t begin = ch * kChunk;
    const int64_t end = std::min(n, begin + kChunk);
    Cell<scalar_t> c;
    for (int64_t i = begin; i < end; ++i) g_x[3 * i] = g_x[3 * i + 1] = g_x[3 * i + 2] = 0;
    for (int64_t l = 0; l < n_active; ++l) {
      const Level lv = levels[l];
      for (int64_t i = begin; i < end; ++i) {
        locate<scalar_t, true>(x + i * 3, lv, c);
        const scalar_t* ge = g_enc + i * LF + l * F;
        scalar_t gx0 = 0, gx1 = 0, gx2 = 0;
        for (int k = 0; k < 8; ++k) {
          const scalar_t* t = table + c.row[k] * F;
          scalar_t s = 0;
          for (int f = 0; f < F; ++f) s += t[f] * ge[f];
          gx0 += c.dw[k][0] * s;
          gx1 += c.dw[k][1] * s;
          gx2 += c.dw[k][2] * s;
        }
        g_x[3 * i] += gx0;
        g_x[3 * i + 1] += gx1;
        g_x[3 * i + 2] += gx2;
      }
    }
  }
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
  auto enc = torch::empty({n, L * F}, table.options());
  auto jac = with_jac ? torch::empty({n, L * F, 3}, table.options()) : torch::empty({0}, table.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hashgrid_forward", [&] {
    dispatch_features(F, [&](auto fc) {
      constexpr int FT = decltype(fc)::value;
      if (with_jac)
        forward_impl<scalar_t, FT, true>(x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                         enc.data_ptr<scalar_t>(), jac.data_ptr<scalar_t>(), n,
                                         levels, n_active, static_cast<int>(F));
      else
        forward_impl<scalar_t, FT, false>(x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(),
                                          enc.data_ptr<scalar_t>(), nullptr, n, levels, n_active,
                                          static_cast<int>(F));
    });
  });
  return {enc, jac};
}

// grad_enc / grad_jac may be empty (numel 0) meaning "no gradient flows into that output".
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
  if (has_ge)
    TORCH_CHECK(grad_enc.is_contiguous() && grad_enc.size(0) == n && grad_enc.size(1) == L * F &&
                    grad_enc.scalar_type() == table.scalar_type(), "bad grad_enc");
  if (has_gj)
    TORCH_CHECK(grad_jac.is_contiguous() && grad_jac.numel() == n * L * F * 3 &&
                    grad_jac.scalar_type() == table.scalar_type(), "bad grad_jac");
  torch::Tensor g_table = need_table ? torch::empty_like(table) : torch::empty({0}, table.options());
  torch::Tensor g_x = need_x ? torch::empty_like(x) : torch::empty({0}, x.options());
  AT_DISPATCH_FLOATING_TYPES(table.scalar_type(), "hashgrid_backward", [&] {
    dispatch_features(F, [&](auto fc) {
      constexpr int FT = decltype(fc)::value;
      const scalar_t* ge = has_ge ? grad_enc.data_ptr<scalar_t>() : nullptr;
      if (need_table) {
        if (has_gj)
          backward_table_impl<scalar_t, FT, true>(x.data_ptr<scalar_t>(), ge,
                                                  grad_jac.data_ptr<scalar_t>(),
                                                  g_table.data_ptr<scalar_t>(), n, levels,
                                                  n_active, static_cast<int>(F));
        else
          backward_table_impl<scalar_t, FT, false>(x.data_ptr<scalar_t>(), ge, nullptr,
                                                   g_table.data_ptr<scalar_t>(), n, levels,
                                                   n_active, static_cast<int>(F));
      }
      if (need_x) {
        if (has_ge)
          backward_x_impl<scalar_t, FT>(x.data_ptr<scalar_t>(), table.data_ptr<scalar_t>(), ge,
                                        g_x.data_ptr<scalar_t>(), n, levels, n_active,
                                        static_cast<int>(F));
        else
          g_x.zero_();
      }
    });
  });
  return {g_table, g_x};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "surfrecon multi-resolution hash-grid encoding, CPU kernels";
  m.def("forward", &hashgrid_forward, "enc (n, L*F) and, if with_jac, jac (n, L*F, 3)",
        py::arg("x"), py::arg("table"), py::arg("res"), py::arg("offsets"), py::arg("sizes"),
        py::arg("n_active"), py::arg("with_jac"));
  m.def("backward", &hashgrid_backward, "grad_table and grad_x (first order only)",
        py::arg("x"), py::arg("table"), py::arg("grad_enc"), py::arg("grad_jac"), py::arg("res"),
        py::arg("offsets"), py::arg("sizes"), py::arg("n_active"), py::arg("need_table"),
        py::arg("need_x"));
}
