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
// optionally writing a 1-byte mask) and bwd_kernel (grad_input = g * f'(s) in one pass, and
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
void fwd_run(const T* __restrict x, T* __restrict y, bool* __restrict m,
             const typename Compute<T>::type* __restrict w, const P prm, const int64_t n,
             const uint32_t base) {
  using A = typename Compute<T>::type;
  const P q = prm;  // a local whose address never escapes: kept in registers
  T* yy = kInplace ? const_cast<T*>(x) : y;
  const A w0 = w[0];
  for (int64_t i = 0; i < n; ++i) {
    const A v = ld(kInplace ? yy[i] : x[i]);
    if constexpr (kMask) m[i] = F::mask(v, q);
    yy[i] = st<T>(F::fwd(v, q, kRow ? w[i] : w0, base + static_cast<uint32_t>(i)));
  }
}

template <class F, typename T, bool kInplace, bool kMask>
void fwd_kernel(const T* x, T* y, bool* m, const typename Compute<T>::type* w, const P prm,
                const Plan p) {
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      for_item(p, it, [&](int64_t o, int64_t n, int64_t c) {
        bool* mo = kMask ? m + o : nullptr;
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
inline typename Compute<T>::type deriv(T s, bool mv, const P& prm,
                                       typename Compute<T>::type w, uint32_t i) {
  using A = typename Compute<T>::type;
  if constexpr (kMode == kFromMask) {
    return static_cast<A>(mv);  // (bwd_run reads the mask itself)
  } else if constexpr (kMode == kFromOutput) {
    return F::d_out(ld(s), prm, w, i);
  } else {
    return F::d_in(ld(s), prm, w, i);
  }
}

// grad_input = g * f'(s) over one run (no parameter gradient)
template <class F, typename T, int64_t kMode, bool kRow>
__attribute__((noinline))
void bwd_run(const T* __restrict g, const T* __restrict s, const bool* __restrict m,
             T* __restrict gi, const typename Compute<T>::type* __restrict w, const P prm,
             const int64_t n, const uint32_t base) {
  using A = typename Compute<T>::type;
  const A w0 = w[0];
  if constexpr (kMode == kFromMask) {
    // the mask read as bytes and converted arithmetically: a bool select makes g++ branch (fp32)
    // or give up vectorising (bf16)
    const uint8_t* __restrict mb = reinterpret_cast<const uint8_t*>(m);
    for (int64_t i = 0; i < n; ++i) {
      gi[i] = st<T>(ld(g[i]) * static_cast<A>(static_cast<int32_t>(mb[i])));
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const A d = deriv<F, T, kMode>(s[i], false, prm, kRow ? w[i] : w0,
                                   base + static_cast<uint32_t>(i));
    gi[i] = st<T>(ld(g[i]) * d);
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
void bwd_kernel(const T* g, const T* s, const bool* m, const typename Compute<T>::type* w,
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
        const bool* mo = kMode == kFromMask ? m + o : nullptr;
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
struct HasMask<F, A, std::void_t<decltype(F::mask(A(0), P{}))>> : std::true_type {};

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

void act_forward(const at::Tensor& x, int64_t kind, c10::ArrayRef<double> p, const at::Tensor& w,
                 int64_t C, int64_t inner, const at::Tensor& out,
                 const std::optional<at::Tensor>& mask) {
  check_common(x, w, C, inner);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.sizes() == x.sizes() &&
                  out.strides() == x.strides(),
              "rectifiers_act: out must have the input's dtype, shape and strides");
  const bool has_mask = mask.has_value() && mask->defined();
  if (has_mask) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->strides() == x.strides() &&
                    mask->sizes() == x.sizes(),
                "rectifiers_act: mask must be bool with the input's strides");
  }
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
    bool* mp = has_mask ? mask->data_ptr<bool>() : nullptr;
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
  if (has_mask) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->strides() == s.strides() &&
                    mask->sizes() == s.sizes(),
                "rectifiers_act: mask must be bool with the saved tensor's strides");
  }
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
    const bool* mp = has_mask ? mask->const_data_ptr<bool>() : nullptr;
    const A* wp = w.const_data_ptr<A>();
    scalar_t* gip = gi.data_ptr<scalar_t>();
    double* gwp = need_w ? gw.data_ptr<double>() : nullptr;
    with_functor(kind, [&](auto f) {
      using F = decltype(f);
      if (mode == kFromMask) {
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
  // internal: returns an undefined tensor (None) where the caller must take its general path
  m.def("apply(Tensor x, int kind, float[] p, Tensor? w, int mode, bool inplace) -> Tensor");
}

TORCH_LIBRARY_IMPL(rectifiers_act, CPU, m) {
  m.impl("forward", &act_forward);
  m.impl("backward", &act_backward);
}

TORCH_LIBRARY_IMPL(rectifiers_act, CompositeImplicitAutograd, m) {
  m.impl("apply", &rectifiers_act_ag::act_apply);
}

TORCH_LIBRARY_IMPL(rectifiers_act, CompositeExplicitAutograd, m) {
  m.impl("set_tables", &set_tables);
}
