// Fused CPU kernels for the rectifier zoo (rectifiers/nn/_activations_cpu.py builds this on first
// use; torch.ops.rectifiers_act.{forward,backward,apply,set_tables}); the functors and their math
// are in activations_math.h, the C++ autograd entry (apply) in activations_autograd.h.
//
// ONE elementwise mechanism for every activation: a small functor per activation gives
//   f(x)        the forward value                      (Act::fwd)
//   f'(x)       the derivative from the input          (Act::d_in)
//   f'(y)       the derivative from the output, where the output determines it (Act::d_out:
//               relu, leaky_relu/rrelu with slope >= 0, elu/selu with alpha >= 0, smelu), so
//               those activations can run in place and keep only their output for backward
//   df/dw       the derivative by a learnable per-channel parameter w (swish's beta)
// and two templates run any functor over a tensor: fwd_kernel (y = f(x), in place or not,
// optionally writing a 1-bit mask) and bwd_kernel (grad_input = g * f'(s) in one pass, and
// with a learnable parameter dE/dw_c = sum g * df/dw in the same pass). The loops are written so
// that g++ -O3 -march=native vectorises them: no calls into libm in the fp32/bf16 paths
// (exp/expm1/erfc are branch-free polynomial versions below), selects instead of branches.
//
// Layout: [outer][C][inner] (dense): NCHW-contiguous inner = prod(shape[2:]), channels_last
// inner = 1; no per-channel parameter: C = 1, inner = numel (any dense layout, memory order).
//
// Built with -fno-math-errno (else std::sqrt is not vectorised). 16-bit tables: activations_lut.h.
//
// Precision: fp32/bf16/fp16 compute in fp32 (bf16/fp16 load/store only), fp64 in fp64 with libm
// (the exact reference path of the tests). fp32 exp within 1 ulp, expm1 within 2 ulp; sau
// multiplies by 1/s (fp32); erfc within 1.5e-7 absolute (Abramowitz-Stegun 7.1.26, as ATen's).
//
// Determinism: the learnable-parameter sum is split into fixed work items (work_plan.h), their
// partials added serially in item order: bitwise reproducible for any number of threads.
//
// rrelu: the per-element slope is regenerated from (seed, memory offset) by a counter-based
// hash, so backward needs only the seed and the output, never a stored noise tensor.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/empty_strided.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include "activations_math.h"
#include "work_plan.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using namespace rectifiers_act;  // NOLINT: one translation unit

using namespace rectifiers_plan;  // NOLINT: Plan, make_plan, kBlock, kLanes (work_plan.h)

// which optional pieces a functor has (learnable parameter, derivative from the output, mask)
template <class F, typename A, typename = void>
struct HasDw : std::false_type {};
template <class F, typename A>
struct HasDw<F, A, std::void_t<decltype(F::d_w(A(0), P{}, A(0), 0u))>> : std::true_type {};
template <class F, typename A, typename = void>
struct HasSmall : std::false_type {};  // f' and df/dw from one value (F::small, F::d_in_s, d_w_s)
template <class F, typename A>
struct HasSmall<F, A, std::void_t<decltype(F::d_w_s(A(0), A(0), A(0)))>> : std::true_type {};
template <class F, typename A, typename = void>
struct HasOut : std::false_type {};
template <class F, typename A>
struct HasOut<F, A, std::void_t<decltype(F::d_out(A(0), P{}, A(0), 0u))>> : std::true_type {};
template <class F, typename A, typename = void>
struct HasMask : std::false_type {};
template <class F, typename A>
struct HasMask<F, A, std::void_t<decltype(F::mask(A(0), P{})), decltype(F::d_mask(A(0), P{}))>>
    : std::true_type {};

// ------------------------------------------------------------------------------ 1-bit masks
// A mask (mode kFromMask: relu and leaky_relu not in place, helu) keeps one bit per element in
// memory order: element i is bit i % 8 of byte i / 8, the last byte's unused bits 0. The kernels'
// vectorised loops write and read the bits of a chunk as bytes (0 or 1) in a stack buffer; these
// pack and unpack 8 at a time. Mask layouts have C = 1, so every run starts at a multiple of 8
// (the work plan's items are whole blocks of kBlock elements).
constexpr int64_t kMaskChunk = 2048;  // a multiple of 8
static_assert(kBlock % kMaskChunk == 0 && kMaskChunk % 8 == 0, "runs must start at a byte");

inline void pack_bits(const uint8_t* __restrict b, uint8_t* __restrict m, const int64_t n) {
  const int64_t full = n / 8;
  for (int64_t j = 0; j < full; ++j) {
    uint64_t v;
    std::memcpy(&v, b + 8 * j, 8);
    // byte k (0 or 1) lands on bit 56 + k; the other partial products stay below bit 56 without
    // carries (distinct bit positions) or overflow past bit 63
    m[j] = static_cast<uint8_t>((v * 0x0102040810204080ULL) >> 56);
  }
  if (n % 8 != 0) {
    uint32_t v = 0;
    for (int64_t k = 0; k < n % 8; ++k) v |= static_cast<uint32_t>(b[8 * full + k]) << k;
    m[full] = static_cast<uint8_t>(v);
  }
}

// the bits of n elements to n bytes (writes up to 8 * ceil(n / 8) bytes of b): byte k of the
// broadcast keeps bit k of the mask byte (0 or 2^k), + 0x7f sets its bit 7 iff it is nonzero
// (no carry out of the byte), and that bit moves to bit 0. Arithmetic, no table: g++ vectorises
// a table lookup here with (slow) hardware gathers.
inline void unpack_bits(const uint8_t* __restrict m, uint8_t* __restrict b, const int64_t n) {
  for (int64_t j = 0; j < (n + 7) / 8; ++j) {
    const uint64_t t = (static_cast<uint64_t>(m[j]) * 0x0101010101010101ULL) &
                       0x8040201008040201ULL;
    const uint64_t v = ((t + 0x7f7f7f7f7f7f7f7fULL) >> 7) & 0x0101010101010101ULL;
    std::memcpy(b + 8 * j, &v, 8);
  }
}

// ------------------------------------------------------------------------------ work plan
// Calls run(offset, n, channel) for the contiguous runs of one work item (a run has one channel
// when inner > 1; in channels_last rows, channel = -1 and element k has channel k % C).
template <typename Run>
inline void for_item(const Plan& p, int64_t it, Run&& run) {
  if (p.planes) {
    const int64_t plane = it / p.per_plane;
    const int64_t lo = plane * p.inner + (it % p.per_plane) * kBlock;
    const int64_t hi = std::min(lo + kBlock, (plane + 1) * p.inner);
    run(lo, hi - lo, plane % p.C);
  } else {
    const int64_t r1 = std::min(p.outer, (it + 1) * p.rows);
    for (int64_t r = it * p.rows; r < r1; ++r) {
      const int64_t base = r * p.C * p.inner;
      if (p.inner == 1) {
        run(base, p.C, int64_t(-1));
      } else {
        for (int64_t c = 0; c < p.C; ++c) run(base + c * p.inner, p.inner, c);
      }
    }
  }
}

// ------------------------------------------------------------------------------- kernels
// The inner loops take plain restrict pointers and their parameters by value, so nothing they
// store can alias what they read: g++ vectorises them without runtime alias checks. In place,
// x and y are the very same pointer (never a partial overlap). kRow: a channels_last row,
// element i has parameter w[i]; otherwise the whole run has parameter w[0].
template <class F, typename T, bool kInplace, bool kMask, bool kRow>
__attribute__((noinline))
void fwd_run(const T* __restrict x, T* __restrict y, uint8_t* __restrict m,
             const typename Compute<T>::type* __restrict w, const P prm, const int64_t n,
             const uint32_t base) {
  using A = typename Compute<T>::type;
  const P q = prm;  // a local whose address never escapes: kept in registers
  T* yy = kInplace ? const_cast<T*>(x) : y;
  const A w0 = w[0];
  if constexpr (kMask) {  // the mask bits of each chunk as bytes first, then packed (C = 1: w0)
    uint8_t b[kMaskChunk];
    for (int64_t c0 = 0; c0 < n; c0 += kMaskChunk) {
      const int64_t cn = std::min(kMaskChunk, n - c0);
      T* __restrict yc = yy + c0;
      const T* __restrict xc = kInplace ? yc : x + c0;
      for (int64_t i = 0; i < cn; ++i) {
        const A v = ld(xc[i]);
        b[i] = F::mask(v, q);
        yc[i] = st<T>(F::fwd(v, q, w0, base + static_cast<uint32_t>(c0 + i)));
      }
      pack_bits(b, m + c0 / 8, cn);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const A v = ld(kInplace ? yy[i] : x[i]);
    yy[i] = st<T>(F::fwd(v, q, kRow ? w[i] : w0, base + static_cast<uint32_t>(i)));
  }
}

template <class F, typename T, bool kInplace, bool kMask>
void fwd_kernel(const T* x, T* y, uint8_t* m, const typename Compute<T>::type* w, const P prm,
                const Plan p) {
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      for_item(p, it, [&](int64_t o, int64_t n, int64_t c) {
        uint8_t* mo = kMask ? m + o / 8 : nullptr;  // o % 8 == 0: mask layouts have C = 1
        const uint32_t base = static_cast<uint32_t>(o);
        if (c >= 0) {
          fwd_run<F, T, kInplace, kMask, false>(x + o, y + o, mo, w + c, prm, n, base);
        } else {
          fwd_run<F, T, kInplace, kMask, true>(x + o, y + o, mo, w, prm, n, base);
        }
      });
    }
  });
}

template <class F, typename T, int64_t kMode>
inline typename Compute<T>::type deriv(T s, const P& prm, typename Compute<T>::type w,
                                       uint32_t i) {
  static_assert(kMode != kFromMask, "bwd_run reads the mask itself");
  if constexpr (kMode == kFromOutput) {
    return F::d_out(ld(s), prm, w, i);
  } else {
    return F::d_in(ld(s), prm, w, i);
  }
}

// grad_input = g * f'(s) over one run (no parameter gradient)
template <class F, typename T, int64_t kMode, bool kRow>
__attribute__((noinline))
void bwd_run(const T* __restrict g, const T* __restrict s, const uint8_t* __restrict m,
             T* __restrict gi, const typename Compute<T>::type* __restrict w, const P prm,
             const int64_t n, const uint32_t base) {
  using A = typename Compute<T>::type;
  const A w0 = w[0];
  if constexpr (kMode == kFromMask) {
    if constexpr (HasMask<F, A>::value) {
      // the bits of each chunk unpacked to bytes, converted arithmetically (a bool select makes
      // g++ branch in fp32 or give up vectorising in bf16)
      const P q = prm;
      uint8_t b[kMaskChunk];
      for (int64_t c0 = 0; c0 < n; c0 += kMaskChunk) {
        const int64_t cn = std::min(kMaskChunk, n - c0);
        unpack_bits(m + c0 / 8, b, cn);
        const T* __restrict gc = g + c0;
        T* __restrict gic = gi + c0;
        for (int64_t i = 0; i < cn; ++i) {
          gic[i] = st<T>(ld(gc[i]) * F::d_mask(static_cast<A>(static_cast<int32_t>(b[i])), q));
        }
      }
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const A d =
          deriv<F, T, kMode>(s[i], prm, kRow ? w[i] : w0, base + static_cast<uint32_t>(i));
      gi[i] = st<T>(ld(g[i]) * d);
    }
  }
}

// the same plus the parameter-gradient sum of one run with one parameter (kLanes lanes)
template <class F, typename T>
__attribute__((noinline))
double bwd_run_learn(const T* __restrict g, const T* __restrict x, T* __restrict gi,
                     const typename Compute<T>::type wc, const P prm, const int64_t n,
                     const uint32_t base) {
  using A = typename Compute<T>::type;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A gv = ld(g[i + k]);
      const A xv = ld(x[i + k]);
      const uint32_t idx = base + static_cast<uint32_t>(i + k);
      gi[i + k] = st<T>(gv * F::d_in(xv, prm, wc, idx));
      lanes[k] += gv * F::d_w(xv, prm, wc, idx);
    }
  }
  A tail = 0;
  for (; i < n; ++i) {
    const A gv = ld(g[i]);
    const A xv = ld(x[i]);
    const uint32_t idx = base + static_cast<uint32_t>(i);
    gi[i] = st<T>(gv * F::d_in(xv, prm, wc, idx));
    tail += gv * F::d_w(xv, prm, wc, idx);
  }
  double sum = static_cast<double>(tail);
  for (int k = 0; k < kLanes; ++k) sum += static_cast<double>(lanes[k]);
  return sum;
}

template <class F, typename T>  // bwd_run_learn from a 16-bit table (activations_lut.h)
double lut_bwd_run_learn(const T* g, const T* x, T* gi, const float* sm, const float w0,
                         const int64_t n);

// one channels_last row: element c has parameter w[c] and accumulator acc[c]
template <class F, typename T>
__attribute__((noinline))
void bwd_row_learn(const T* __restrict g, const T* __restrict x, T* __restrict gi,
                   const typename Compute<T>::type* __restrict w,
                   typename Compute<T>::type* __restrict acc, const P prm, const int64_t C,
                   const uint32_t base) {
  using A = typename Compute<T>::type;
  for (int64_t c = 0; c < C; ++c) {
    const A gv = ld(g[c]);
    const A xv = ld(x[c]);
    const uint32_t idx = base + static_cast<uint32_t>(c);
    gi[c] = st<T>(gv * F::d_in(xv, prm, w[c], idx));
    acc[c] += gv * F::d_w(xv, prm, w[c], idx);
  }
}

// grad_input = g * f'(s); with kLearn also dE/dw_c = sum g * df/dw (s is then the input), from
// the table sm (F::small) where given (16-bit, C = 1)
template <class F, typename T, int64_t kMode, bool kLearn>
void bwd_kernel(const T* g, const T* s, const uint8_t* m, const typename Compute<T>::type* w,
                T* gi, double* gw, const P prm, const Plan p, const float* sm = nullptr) {
  using A = typename Compute<T>::type;
  std::vector<double> partial(kLearn ? (p.planes ? p.items : p.items * p.C) : 0, 0.0);
  double* part = partial.data();
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    std::vector<A> acc(kLearn && !p.planes ? p.C : 0);
    for (int64_t it = b0; it < b1; ++it) {
      if constexpr (kLearn) std::fill(acc.begin(), acc.end(), A(0));
      double item_sum = 0.0;
      for_item(p, it, [&](int64_t o, int64_t n, int64_t c) {
        const uint8_t* mo = kMode == kFromMask ? m + o / 8 : nullptr;
        const uint32_t base = static_cast<uint32_t>(o);
        if constexpr (kLearn) {
          if (c >= 0) {
            const double r = sm ? lut_bwd_run_learn<F, T>(g + o, s + o, gi + o, sm, w[c], n)
                                : bwd_run_learn<F, T>(g + o, s + o, gi + o, w[c], prm, n, base);
            if (p.planes) {
              item_sum += r;
            } else {
              acc[c] += static_cast<A>(r);
            }
          } else {
            bwd_row_learn<F, T>(g + o, s + o, gi + o, w, acc.data(), prm, n, base);
          }
        } else if (c >= 0) {
          bwd_run<F, T, kMode, false>(g + o, s + o, mo, gi + o, w + c, prm, n, base);
        } else {
          bwd_run<F, T, kMode, true>(g + o, s + o, mo, gi + o, w, prm, n, base);
        }
      });
      if constexpr (kLearn) {
        if (p.planes) {
          part[it] = item_sum;
        } else {
          for (int64_t c = 0; c < p.C; ++c) part[it * p.C + c] = static_cast<double>(acc[c]);
        }
      }
    }
  });
  if constexpr (kLearn) {
    std::fill(gw, gw + p.C, 0.0);
    for (int64_t it = 0; it < p.items; ++it) {
      if (p.planes) {
        gw[(it / p.per_plane) % p.C] += part[it];
      } else {
        for (int64_t c = 0; c < p.C; ++c) gw[c] += part[it * p.C + c];
      }
    }
  }
}


// --------------------------------------------------------------------------------- dispatch
template <typename Fn>
void with_functor(int64_t kind, Fn&& fn) {
  switch (kind) {
    case kRelu: return fn(Relu{});
    case kLeaky: return fn(Leaky{});
    case kRRelu: return fn(RRelu{});
    case kElu: return fn(Elu{});
    case kGelu: return fn(Gelu{});
    case kGeluTanh: return fn(GeluTanh{});
    case kSwish: return fn(Swish{});
    case kMish: return fn(Mish{});
    case kGolu: return fn(Golu{});
    case kSmelu: return fn(Smelu{});
    case kSau: return fn(Sau{});
    case kHelu: return fn(Helu{});
    default: TORCH_CHECK(false, "rectifiers_act: unknown activation kind ", kind);
  }
}

#include "activations_lut.h"  // 16-bit lookup tables (inside this anonymous namespace)

P params(c10::ArrayRef<double> p) {
  P r{0.0, 0.0, 0.0};
  if (p.size() > 0) r.p0 = p[0];
  if (p.size() > 1) r.p1 = p[1];
  if (p.size() > 2) r.p2 = p[2];
  return r;
}

void check_common(const at::Tensor& s, const at::Tensor& w, int64_t C, int64_t inner) {
  TORCH_CHECK(s.device().is_cpu(), "rectifiers_act: CPU tensors only, got ", s.device());
  TORCH_CHECK(s.is_non_overlapping_and_dense(), "rectifiers_act: input must be dense");
  const auto wt = s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(w.dim() == 1 && w.numel() == C && w.is_contiguous() && w.scalar_type() == wt,
              "rectifiers_act: w must be a contiguous (C,) tensor of the compute dtype");
  TORCH_CHECK(C >= 1 && inner >= 1 && s.numel() % (C * inner) == 0,
              "rectifiers_act: numel ", s.numel(), " is not a multiple of C*inner");
}

// a 1-bit mask: uint8, ceil(numel / 8) bytes, for a flat layout (C = 1, inner = numel)
void check_mask(const at::Tensor& mask, const at::Tensor& x, int64_t C, int64_t inner) {
  TORCH_CHECK(mask.scalar_type() == at::kByte && mask.dim() == 1 && mask.is_contiguous() &&
                  mask.numel() == (x.numel() + 7) / 8 && mask.device() == x.device(),
              "rectifiers_act: mask must be a contiguous uint8 tensor of ceil(numel / 8) bytes");
  TORCH_CHECK(C == 1 && inner == x.numel(), "rectifiers_act: a mask needs the flat layout");
}

// a 1-bit mask as a bool tensor of the given sizes and (dense) strides: for the differentiable
// backward (rectifiers::act_grad), which takes bool masks
at::Tensor unpack_mask(const at::Tensor& mask, c10::IntArrayRef sizes, c10::IntArrayRef strides) {
  at::Tensor out = at::empty_strided(sizes, strides, mask.options().dtype(at::kBool));
  TORCH_CHECK(out.is_non_overlapping_and_dense(), "rectifiers_act: unpack_mask: not dense");
  const at::Tensor m = mask.contiguous();
  TORCH_CHECK(m.scalar_type() == at::kByte && m.numel() == (out.numel() + 7) / 8,
              "rectifiers_act: unpack_mask: ", m.numel(), " bytes for ", out.numel(), " elements");
  const int64_t n = out.numel();
  std::vector<uint8_t> b(static_cast<size_t>((n + 7) / 8 * 8));
  unpack_bits(m.const_data_ptr<uint8_t>(), b.data(), n);
  std::memcpy(out.data_ptr<bool>(), b.data(), static_cast<size_t>(n));  // memory order
  return out;
}

void act_forward(const at::Tensor& x, int64_t kind, c10::ArrayRef<double> p, const at::Tensor& w,
                 int64_t C, int64_t inner, const at::Tensor& out,
                 const std::optional<at::Tensor>& mask) {
  check_common(x, w, C, inner);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.sizes() == x.sizes() &&
                  out.strides() == x.strides(),
              "rectifiers_act: out must have the input's dtype, shape and strides");
  const bool has_mask = mask.has_value() && mask->defined();
  if (has_mask) check_mask(*mask, x, C, inner);
  {
    const auto* xb = static_cast<const char*>(x.const_data_ptr());
    const auto* yb = static_cast<const char*>(out.const_data_ptr());
    const auto nb = static_cast<std::ptrdiff_t>(x.numel() * x.element_size());
    TORCH_CHECK(xb == yb || xb + nb <= yb || yb + nb <= xb,
                "rectifiers_act: out must be x itself or not overlap it");
  }
  const Plan pl = make_plan(x.numel(), C, inner);
  if (pl.items == 0) return;
  const P prm = params(p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "act_forward", [&] {
    using A = typename Compute<scalar_t>::type;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = out.data_ptr<scalar_t>();
    const A* wp = w.const_data_ptr<A>();
    uint8_t* mp = has_mask ? mask->data_ptr<uint8_t>() : nullptr;
    with_functor(kind, [&](auto f) {
      using F = decltype(f);
      if constexpr (HasMask<F, A>::value) {
        if (has_mask) {
          if (xp == yp) return fwd_kernel<F, scalar_t, true, true>(xp, yp, mp, wp, prm, pl);
          return fwd_kernel<F, scalar_t, false, true>(xp, yp, mp, wp, prm, pl);
        }
      } else {
        TORCH_CHECK(!has_mask, "rectifiers_act: this activation writes no mask");
      }
      if (lut_forward<F, scalar_t>(kind, xp, yp, wp, prm, pl)) return;
      if (xp == yp) return fwd_kernel<F, scalar_t, true, false>(xp, yp, mp, wp, prm, pl);
      return fwd_kernel<F, scalar_t, false, false>(xp, yp, mp, wp, prm, pl);
    });
  });
}

std::tuple<at::Tensor, at::Tensor> act_backward(const at::Tensor& g, const at::Tensor& s,
                                                int64_t kind, int64_t mode,
                                                c10::ArrayRef<double> p, const at::Tensor& w,
                                                int64_t C, int64_t inner,
                                                const std::optional<at::Tensor>& mask,
                                                bool need_w) {
  check_common(s, w, C, inner);
  TORCH_CHECK(g.scalar_type() == s.scalar_type() && g.sizes() == s.sizes() &&
                  g.strides() == s.strides(),
              "rectifiers_act: grad must have the saved tensor's dtype, shape and strides");
  TORCH_CHECK(mode >= kFromInput && mode <= kFromMask, "rectifiers_act: bad mode ", mode);
  TORCH_CHECK(!(need_w && mode != kFromInput),
              "rectifiers_act: the parameter gradient needs the saved input");
  const bool has_mask = mask.has_value() && mask->defined();
  TORCH_CHECK(has_mask == (mode == kFromMask), "rectifiers_act: mask iff mode is 'mask'");
  if (has_mask) check_mask(*mask, s, C, inner);
  at::Tensor gi = at::empty_like(s);
  at::Tensor gw = need_w ? at::empty({C}, s.options().dtype(at::kDouble))
                         : at::empty({0}, s.options().dtype(at::kDouble));
  const Plan pl = make_plan(s.numel(), C, inner);
  if (pl.items == 0) {
    gw.zero_();
    return {gi, gw};
  }
  const P prm = params(p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "act_backward", [&] {
    using A = typename Compute<scalar_t>::type;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const uint8_t* mp = has_mask ? mask->const_data_ptr<uint8_t>() : nullptr;
    const A* wp = w.const_data_ptr<A>();
    scalar_t* gip = gi.data_ptr<scalar_t>();
    double* gwp = need_w ? gw.data_ptr<double>() : nullptr;
    with_functor(kind, [&](auto f) {
      using F = decltype(f);
      if (mode == kFromMask) {
        TORCH_CHECK((HasMask<F, A>::value), "rectifiers_act: this activation keeps no mask");
        return bwd_kernel<F, scalar_t, kFromMask, false>(gp, sp, mp, wp, gip, gwp, prm, pl);
      }
      if (mode == kFromOutput) {
        if constexpr (HasOut<F, A>::value) {
          if (lut_backward<F, scalar_t>(kind, mode, gp, sp, gip, wp, prm, pl)) return;
          return bwd_kernel<F, scalar_t, kFromOutput, false>(gp, sp, mp, wp, gip, gwp, prm, pl);
        } else {
          TORCH_CHECK(false, "rectifiers_act: this activation needs its input for backward");
        }
      }
      if constexpr (HasDw<F, A>::value) {
        if (need_w) {
          const auto tab = lut_learn<F, scalar_t>(kind, wp, prm, pl);
          return bwd_kernel<F, scalar_t, kFromInput, true>(gp, sp, mp, wp, gip, gwp, prm, pl,
                                                           tab ? tab->d.data() : nullptr);
        }
      } else {
        TORCH_CHECK(!need_w, "rectifiers_act: this activation has no learnable parameter");
      }
      if (lut_backward<F, scalar_t>(kind, mode, gp, sp, gip, wp, prm, pl)) return;
      return bwd_kernel<F, scalar_t, kFromInput, false>(gp, sp, mp, wp, gip, gwp, prm, pl);
    });
  });
  return {gi, gw};
}

// tests and benchmarks: switch the 16-bit tables off (the direct loops) and on; returns the old
bool set_tables(bool on) { return g_lut_enabled.exchange(on); }

}  // namespace

#include "activations_autograd.h"  // the C++ autograd entry (apply and its node)

TORCH_LIBRARY(rectifiers_act, m) {
  m.def("set_tables(bool on) -> bool");
  m.def(
      "forward(Tensor x, int kind, float[] p, Tensor w, int C, int inner, Tensor(a!) out, "
      "Tensor(b!)? mask) -> ()");
  m.def(
      "backward(Tensor g, Tensor s, int kind, int mode, float[] p, Tensor w, int C, int inner, "
      "Tensor? mask, bool need_w) -> (Tensor, Tensor)");
  m.def("unpack_mask(Tensor mask, int[] sizes, int[] strides) -> Tensor");
  // internal: returns an undefined tensor (None) where the caller must take its general path
  m.def("apply(Tensor x, int kind, float[] p, Tensor? w, int mode, bool inplace) -> Tensor");
}

TORCH_LIBRARY_IMPL(rectifiers_act, CPU, m) {
  m.impl("forward", &act_forward);
  m.impl("backward", &act_backward);
  m.impl("unpack_mask", &unpack_mask);
}

TORCH_LIBRARY_IMPL(rectifiers_act, CompositeImplicitAutograd, m) {
  m.impl("apply", &rectifiers_act_ag::act_apply);
}

TORCH_LIBRARY_IMPL(rectifiers_act, CompositeExplicitAutograd, m) {
  m.impl("set_tables", &set_tables);
}
