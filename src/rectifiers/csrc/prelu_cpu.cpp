// Fused CPU kernels for PReLU (He et al. 2015, Eq. 1-4), built on first use by
// rectifiers/nn/_prelu_cpu.py and registered as torch.ops.rectifiers_prelu.{forward,backward}.
//
// Layout: the caller views the input as [outer][C][inner] (row-major, dense):
//   NCHW-contiguous     outer = N,          inner = H*W*... (channel = (i / inner) % C)
//   channels_last       outer = N*H*W*...,  inner = 1       (channel = i % C)
//   channel-shared      outer = 1, C = 1,   inner = numel
// so one kernel handles every rank >= 1 and both memory formats.
//
// forward:  y = x > 0 ? x : a_c * x                 (Eq. 1; in place when out aliases x)
// backward: one pass over (g, s) writes
//   grad_input = pos ? g : a_c * g                   (Eq. 2 times g)
//   and the per-channel slope gradient
//   dE/da_c    = sum over !pos of (g * v)            (Eq. 2-3)
// where pos = s > 0 (or an explicit bool mask) and v = s. The caller passes s = x
// (out-of-place) or s = y (in-place; it then divides the sum by a_c since y = a_c * x there).
//
// Both expressions are the same selects and roundings as ATen's prelu kernels (the per-element
// product g * v is rounded to the tensor dtype before it is summed, as ATen's
// _prelu_kernel_backward materialises it), so forward and grad_input are bitwise equal to
// torch.nn.PReLU and the slope gradient differs only in summation order.
//
// Determinism: work is split into fixed items (independent of the thread count); each item
// writes its own partial sum and the partials are reduced serially in item order, so the
// result is bitwise reproducible for any number of threads. No full-size temporaries.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/_prelu_kernel.h>
#include <ATen/ops/_prelu_kernel_backward.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include "activations_math.h"  // ld / st: vectorisable bf16/fp16 load and store
#include "work_plan.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <vector>

#include "prelu_autograd.h"      // the C++ autograd entry's device-independent pieces
#include "prelu_avx512.h"       // RECTIFIERS_AVX512: the fp32/bf16 loop bodies in AVX-512
#include "slope_copies.h"       // host copies of GPU slopes for the in-place layer

namespace {

// bf16/fp16/fp32 arithmetic happens in fp32 (as ATen's vector code), fp64 in fp64
using rectifiers_act::Compute;
using namespace rectifiers_plan;  // NOLINT: Plan, make_plan, kBlock, kLanes
#ifdef RECTIFIERS_AVX512
using namespace rectifiers_prelu_avx512;  // NOLINT: kVec, fwd16, bwd16, first, kAll
#endif

void check_inputs(const at::Tensor& s, const at::Tensor& w, int64_t C, int64_t inner) {
  TORCH_CHECK(s.device().is_cpu(), "rectifiers_prelu: CPU tensors only, got ", s.device());
  TORCH_CHECK(s.is_non_overlapping_and_dense(), "rectifiers_prelu: input must be dense");
  TORCH_CHECK(w.dim() == 1 && w.numel() == C && w.is_contiguous() &&
                  w.scalar_type() == s.scalar_type(),
              "rectifiers_prelu: weight must be a contiguous (C,) tensor of the input dtype");
  TORCH_CHECK(C >= 1 && inner >= 1 && s.numel() % (C * inner) == 0,
              "rectifiers_prelu: numel ", s.numel(), " is not a multiple of C*inner = ",
              C * inner);
}

// One contiguous run of one channel. X and Y are either distinct (restrict) or the very same
// pointer (in place, kInplace): never a partial overlap, so both forms vectorise. The inner
// loops here are noinline: inlined into the parallel_for lambda, g++ stopped vectorising them.
template <typename T, bool kInplace>
__attribute__((noinline)) void fwd_run(const T* __restrict x, T* __restrict y,
                                       typename Compute<T>::type a, int64_t n) {
  using A = typename Compute<T>::type;
  T* yy = kInplace ? const_cast<T*>(x) : y;
  int64_t i = 0;
#ifdef RECTIFIERS_AVX512
  // bf16 only: g++'s own fp32 loop (vectorised, scalar tail) measured 1.2-1.4x faster on 7x7
  // and 14x14 planes; a masked tail here was slower still (in place, a masked store followed
  // by the next run's loads from the same cache line stalls store forwarding on Zen 4)
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    const T* xx = kInplace ? yy : x;
    const __m512 av = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16) fwd16(xx + i, yy + i, av, kAll);
  }
#endif
  for (; i < n; ++i) {
    const T xv = kInplace ? yy[i] : x[i];
    const A v = rectifiers_act::ld(xv);
    // select in fp32, one store: st(ld(x)) == x for every non-NaN x, so this is bitwise the
    // select of x itself, and g++ vectorises it for bf16 too
    yy[i] = rectifiers_act::st<T>(v > A(0) ? v : a * v);
  }
}

// channels_last rows (inner == 1): the item's rows are one flat run in which element i has
// slope wt[i % tlen]; wt repeats the C slopes to a tile of tlen = C * m >= kTile elements, so
// the loop is long enough to vectorise even for small C (C = 16 is one vector per row).
constexpr int64_t kTile = 256;

// The slopes in the compute type, and for channels_last rows their repeated tile (empty in
// planes mode and NCHW rows).
template <typename A>
struct SlopeTable {
  std::vector<A> w, tile;
  template <typename T>
  SlopeTable(const T* wsrc, const Plan& p) : w(wsrc, wsrc + p.C) {  // T -> A
    if (p.inner != 1 || p.planes) return;
    const int64_t m = std::max<int64_t>(1, kTile / p.C);
    tile.resize(p.C * m);
    for (int64_t k = 0; k < p.C * m; ++k) tile[k] = w[k % p.C];
  }
};

template <typename T, bool kInplace>
__attribute__((noinline)) void fwd_tile(const T* __restrict x, T* __restrict y,
                     const typename Compute<T>::type* __restrict wt, int64_t n) {
  using A = typename Compute<T>::type;
  T* yy = kInplace ? const_cast<T*>(x) : y;
  int64_t i = 0;
#ifdef RECTIFIERS_AVX512
  if constexpr (std::is_same_v<T, c10::BFloat16>) {  // (fp32: g++'s loop)
    const T* xx = kInplace ? yy : x;
    for (; i + 16 <= n; i += 16) fwd16(xx + i, yy + i, _mm512_loadu_ps(wt + i), kAll);
  }
#endif
  for (; i < n; ++i) {
    const T xv = kInplace ? yy[i] : x[i];
    const A v = rectifiers_act::ld(xv);
    yy[i] = rectifiers_act::st<T>(v > A(0) ? v : wt[i] * v);
  }
}

template <typename T, bool kInplace>
void forward_impl(const T* x, T* y, const T* w, const Plan p) {
  using A = typename Compute<T>::type;
  const SlopeTable<A> sl(w, p);
  const A* wt = sl.tile.data();
  const A* wp = sl.w.data();
  const int64_t tlen = static_cast<int64_t>(sl.tile.size());
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      if (p.planes) {
        const int64_t plane = it / p.per_plane;
        const int64_t lo = plane * p.inner + (it % p.per_plane) * kBlock;
        const int64_t hi = std::min(lo + kBlock, (plane + 1) * p.inner);
        fwd_run<T, kInplace>(x + lo, y + lo, wp[plane % p.C], hi - lo);
      } else {
        const int64_t r0 = it * p.rows, r1 = std::min(p.outer, (it + 1) * p.rows);
        if (p.inner == 1) {
          const int64_t end = r1 * p.C;
          for (int64_t o = r0 * p.C; o < end; o += tlen) {
            fwd_tile<T, kInplace>(x + o, y + o, wt, std::min(tlen, end - o));
          }
          continue;
        }
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t base = r * p.C * p.inner;
          for (int64_t c = 0; c < p.C; ++c) {
            const int64_t o = base + c * p.inner;
            fwd_run<T, kInplace>(x + o, y + o, wp[c], p.inner);
          }
        }
      }
    }
  });
}

// One element of the backward: writes grad_input, returns the slope-gradient term.
template <typename T, bool kMask>
inline typename Compute<T>::type bwd_elem(T gt, T st, bool mv, T* gi,
                                          typename Compute<T>::type a) {
  using A = typename Compute<T>::type;
  const A gv = rectifiers_act::ld(gt);
  const A sv = rectifiers_act::ld(st);
  const bool pos = kMask ? mv : (sv > A(0));
  // (a NaN g on the positive side comes back as the canonical NaN in bf16)
  *gi = rectifiers_act::st<T>(pos ? gv : a * gv);
  // round the product to T first: the same per-element value ATen's backward sums
  const A prod = rectifiers_act::ld(rectifiers_act::st<T>(gv * sv));
  return pos ? A(0) : prod;
}

// One contiguous run of one channel: adds its slope-gradient terms to the kLanes accumulators
// `lanes` (element i of the run to lane i % kLanes), folded by the caller (fold_lanes) once per
// plane, or in NCHW rows mode once per channel and work item (a fold per 7x7 plane cost as
// much as the plane's body).
template <typename T, bool kMask>
__attribute__((noinline)) void bwd_run(const T* __restrict g, const T* __restrict s,
                                       const bool* __restrict m, T* __restrict gi,
                                       typename Compute<T>::type a,
                                       typename Compute<T>::type* __restrict lanes, int64_t n) {
  int64_t i = 0;
#ifdef RECTIFIERS_AVX512
  if constexpr (kVec<T>) {
    static_assert(kLanes == 16, "one AVX-512 register of fp32 lanes");
    __m512 acc = _mm512_loadu_ps(lanes);
    const __m512 av = _mm512_set1_ps(a);
    for (; i + kLanes <= n; i += kLanes) {
      bwd16<T, kMask>(g + i, s + i, kMask ? m + i : nullptr, gi + i, av, acc, kAll);
    }
    if (i < n) {  // the tail's terms go to lanes 0..n-i-1
      bwd16<T, kMask>(g + i, s + i, kMask ? m + i : nullptr, gi + i, av, acc, first(n - i));
    }
    _mm512_storeu_ps(lanes, acc);
    return;
  }
#endif
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      lanes[k] += bwd_elem<T, kMask>(g[i + k], s[i + k], kMask ? m[i + k] : false, gi + i + k, a);
    }
  }
  for (int k = 0; i < n; ++i, ++k) {
    lanes[k] += bwd_elem<T, kMask>(g[i], s[i], kMask ? m[i] : false, gi + i, a);
  }
}

// kLanes accumulators to one sum: a pairwise fold, a fixed order, in the compute type
template <typename A>
inline double fold_lanes(const A* lanes) {
  static_assert(kLanes == 16, "the fold below is written for 16 lanes");
  A h[8];
#pragma GCC unroll 8
  for (int k = 0; k < 8; ++k) h[k] = lanes[k] + lanes[k + 8];
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) h[k] += h[k + 4];
  return static_cast<double>((h[0] + h[2]) + (h[1] + h[3]));
}

// channels_last rows as one flat run (see fwd_tile): element i has slope wt[i] and adds its
// term to accumulator acc[i] of a tile of accumulators, folded into C sums by the caller.
template <typename T, bool kMask>
__attribute__((noinline)) void bwd_tile(const T* __restrict g, const T* __restrict s,
                                        const bool* __restrict m, T* __restrict gi,
                                        const typename Compute<T>::type* __restrict wt,
                                        typename Compute<T>::type* __restrict acc, int64_t n) {
  int64_t i = 0;
#ifdef RECTIFIERS_AVX512
  if constexpr (std::is_same_v<T, c10::BFloat16>) {  // (fp32: g++'s loop)
    for (; i + 16 <= n; i += 16) {
      __m512 a16 = _mm512_loadu_ps(acc + i);
      bwd16<T, kMask>(g + i, s + i, kMask ? m + i : nullptr, gi + i, _mm512_loadu_ps(wt + i),
                      a16, kAll);
      _mm512_storeu_ps(acc + i, a16);
    }
  }
#endif
  for (; i < n; ++i) {
    acc[i] += bwd_elem<T, kMask>(g[i], s[i], kMask ? m[i] : false, gi + i, wt[i]);
  }
}

template <typename T, bool kMask>
void backward_impl(const T* g, const T* s, const bool* m, const T* w, T* gi, double* gw,
                   const Plan p) {
  // gw: C fp64 sums (the caller turns them into the slope gradient's dtype)
  using A = typename Compute<T>::type;
  // planes mode: one partial per item; rows mode: C partials per item
  std::vector<double> partial(p.planes ? p.items : p.items * p.C, 0.0);
  double* part = partial.data();
  auto at_ = [](const bool* mp, int64_t o) { return kMask ? mp + o : nullptr; };
  const SlopeTable<A> sl(w, p);
  const A* wt = sl.tile.data();
  const A* wp = sl.w.data();
  const int64_t tlen = static_cast<int64_t>(sl.tile.size());
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    // rows mode: per-channel lanes (NCHW) or the channels_last tile's accumulators
    std::vector<A> acc(p.planes ? 0 : std::max(p.C * kLanes, tlen));
    for (int64_t it = b0; it < b1; ++it) {
      if (p.planes) {
        const int64_t plane = it / p.per_plane;
        const int64_t lo = plane * p.inner + (it % p.per_plane) * kBlock;
        const int64_t hi = std::min(lo + kBlock, (plane + 1) * p.inner);
        A lanes[kLanes] = {};
        bwd_run<T, kMask>(g + lo, s + lo, at_(m, lo), gi + lo, wp[plane % p.C], lanes, hi - lo);
        part[it] = fold_lanes(lanes);
      } else {
        std::fill(acc.begin(), acc.end(), A(0));
        A* ac = acc.data();
        const int64_t r0 = it * p.rows, r1 = std::min(p.outer, (it + 1) * p.rows);
        if (p.inner == 1) {
          const int64_t end = r1 * p.C;
          for (int64_t o = r0 * p.C; o < end; o += tlen) {
            bwd_tile<T, kMask>(g + o, s + o, at_(m, o), gi + o, wt, ac, std::min(tlen, end - o));
          }
          for (int64_t c = 0; c < p.C; ++c) {  // fold the tile: fixed order
            double sum = 0.0;
            for (int64_t k = c; k < tlen; k += p.C) sum += static_cast<double>(ac[k]);
            part[it * p.C + c] = sum;
          }
          continue;
        }
        for (int64_t r = r0; r < r1; ++r) {
          const int64_t base = r * p.C * p.inner;
          for (int64_t c = 0; c < p.C; ++c) {
            const int64_t o = base + c * p.inner;
            bwd_run<T, kMask>(g + o, s + o, at_(m, o), gi + o, wp[c], ac + c * kLanes, p.inner);
          }
        }
        for (int64_t c = 0; c < p.C; ++c) part[it * p.C + c] = fold_lanes(ac + c * kLanes);
      }
    }
  });
  // serial reduction in item order: deterministic for any thread count
  std::fill(gw, gw + p.C, 0.0);
  if (p.planes) {
    for (int64_t it = 0; it < p.items; ++it) {
      gw[(it / p.per_plane) % p.C] += part[it];
    }
  } else {
    for (int64_t it = 0; it < p.items; ++it) {
      for (int64_t c = 0; c < p.C; ++c) {
        gw[c] += part[it * p.C + c];
      }
    }
  }
}

void prelu_forward(const at::Tensor& x, const at::Tensor& w, int64_t C, int64_t inner,
                   const at::Tensor& out) {
  check_inputs(x, w, C, inner);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.sizes() == x.sizes() &&
                  out.strides() == x.strides(),
              "rectifiers_prelu: out must have the input's dtype, shape and strides");
  {
    // the kernels assume out is x itself or disjoint from it (no partial overlap)
    const auto* xb = static_cast<const char*>(x.const_data_ptr());
    const auto* yb = static_cast<const char*>(out.const_data_ptr());
    const auto nb = static_cast<std::ptrdiff_t>(x.numel() * x.element_size());
    TORCH_CHECK(xb == yb || xb + nb <= yb || yb + nb <= xb,
                "rectifiers_prelu: out must be x itself or not overlap it");
  }
  const Plan p = make_plan(x.numel(), C, inner);
  if (p.items == 0) return;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "prelu_forward",
                                  [&] {
                                    const scalar_t* xp = x.const_data_ptr<scalar_t>();
                                    scalar_t* yp = out.data_ptr<scalar_t>();
                                    const scalar_t* wp = w.const_data_ptr<scalar_t>();
                                    if (xp == yp) {
                                      forward_impl<scalar_t, true>(xp, yp, wp, p);
                                    } else {
                                      forward_impl<scalar_t, false>(xp, yp, wp, p);
                                    }
                                  });
}

// grad_dtype: the slope gradient's dtype (the slope parameter's); divide: s is the output y,
// so the fp64 sum is divided by the slope (y = a * x on the negative side) before rounding.
std::tuple<at::Tensor, at::Tensor> prelu_backward(const at::Tensor& g, const at::Tensor& s,
                                                  const at::Tensor& w,
                                                  const std::optional<at::Tensor>& mask,
                                                  int64_t C, int64_t inner, bool divide,
                                                  at::ScalarType grad_dtype) {
  check_inputs(s, w, C, inner);
  TORCH_CHECK(g.scalar_type() == s.scalar_type() && g.sizes() == s.sizes() &&
                  g.strides() == s.strides(),
              "rectifiers_prelu: grad must have the saved tensor's dtype, shape and strides");
  const bool has_mask = mask.has_value() && mask->defined();
  if (has_mask) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->sizes() == s.sizes() &&
                    mask->strides() == s.strides(),
                "rectifiers_prelu: mask must be bool with the saved tensor's strides");
  }
  at::Tensor gi = at::empty_like(s);
  std::vector<double> sums(C, 0.0);
  const Plan p = make_plan(s.numel(), C, inner);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, s.scalar_type(), "prelu_backward", [&] {
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* sp = s.const_data_ptr<scalar_t>();
        const scalar_t* wp = w.const_data_ptr<scalar_t>();
        scalar_t* gip = gi.data_ptr<scalar_t>();
        if (p.items == 0) return;
        if (has_mask) {
          backward_impl<scalar_t, true>(gp, sp, mask->const_data_ptr<bool>(), wp, gip,
                                        sums.data(), p);
        } else {
          backward_impl<scalar_t, false>(gp, sp, nullptr, wp, gip, sums.data(), p);
        }
        if (divide) {
          for (int64_t c = 0; c < C; ++c) sums[c] /= static_cast<double>(wp[c]);
        }
      });
  at::Tensor gw = at::empty({C}, s.options().dtype(grad_dtype));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, grad_dtype, "prelu_grad_w", [&] {
    scalar_t* gwp = gw.data_ptr<scalar_t>();
    for (int64_t c = 0; c < C; ++c) gwp[c] = static_cast<scalar_t>(sums[c]);
  });
  return {gi, gw};
}

// ------------------------------------------------------------ autograd entry (the hot path)
//
// apply(x, weight, inplace) is what rectifiers.nn.prelu calls first. For the common case (plain
// dense CPU or CUDA tensors, channel-wise or shared slopes, no forward-mode tangent, no
// functorch transform or Python dispatch mode active) it runs the forward here and records a
// hand-written autograd node (built like PyTorch's generated ones, lighter than a
// torch::autograd::Function), so neither forward nor backward runs any Python. On the CPU the
// kernels are the fused ones above; on CUDA ATen's _prelu_kernel and _prelu_kernel_backward
// (+ one reduction), and an in-place layer reads its slopes from the host copies of
// slope_copies.h. Anything else returns an undefined tensor (None in Python) and Python takes
// its general path: the same kernels and saving rules, plus every error message and the
// composite/vmap/forward-AD routes.

using namespace rectifiers_prelu_ag;  // NOLINT: Layout, SaveMode, NodePtr, backward_composite

struct PReLUBackward : public LayerNode {  // s_: the input, or the output in place; w_: slopes
  at::Tensor w1_;  // the slopes in s's dtype, (C,), no autograd history

  std::string name() const override { return "PReLUBackward"; }

  ag::variable_list apply(ag::variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const at::Tensor s = s_.unpack(self_ptr(this, 0));
    const at::Tensor weight = w_.unpack();
    at::Tensor mask = mask_.unpack();
    ag::variable_list out(2);  // x, weight
    at::Tensor g = grads[0];
    if (!g.defined()) return out;
    at::Tensor gi, gw;
    const bool cpu = s.device().is_cpu();
    if (at::GradMode::is_enabled() || !plain(g) || !plain_tls() || (!cpu && mask.defined())) {
      // differentiated (create_graph=True), batched, or a sign mask off the CPU: ATen ops
      std::tie(gi, gw) = backward_composite(g, s, weight, mode_, mask);
    } else if (cpu) {
      if (g.strides() != s.strides() || g.scalar_type() != s.scalar_type()) {
        g = at::empty_like(s).copy_(g);  // e.g. an expanded grad from .sum().backward()
      }
      if (mask.defined() && mask.strides() != s.strides()) {
        mask = at::empty_like(s, s.options().dtype(at::kBool)).copy_(mask);
      }
      std::tie(gi, gw) = prelu_backward(g, s, w1_, mask, lay_.C, lay_.inner,
                                        mode_ != kSaveInput, weight.scalar_type());
    } else {
      // ATen's fused backward: the input gradient and the per-element slope terms in one
      // pass, then one reduction; with the output saved (slopes in [tiny, 1]) y's sign is x's
      at::Tensor terms;
      std::tie(gi, terms) = at::_prelu_kernel_backward(g, s, slope_view(w1_, s));
      const auto acc = at::promote_types(weight.scalar_type(), at::kFloat);
      gw = terms.sum(reduce_dims(s, w1_.numel() == 1), false, acc);
      if (mode_ != kSaveInput) gw = at::div(gw, w1_.to(acc).reshape(gw.sizes()));
    }
    if (should_compute_output(0)) out[0] = gi;
    if (should_compute_output(1)) {
      gw = gw.to(weight.scalar_type());  // no-op from the CPU kernel
      out[1] = gw.sizes() == weight.sizes() ? gw : gw.reshape(weight.sizes());
    }
    return out;
  }
};

// y = prelu(x) into a new tensor, or into x itself (in place); no autograd recording
at::Tensor run_forward(const at::Tensor& x, const at::Tensor& w1, const Layout& lay,
                       bool inplace) {
  if (x.device().is_cpu()) {
    at::Tensor out = inplace ? x : at::empty_like(x);  // keeps x's memory format
    prelu_forward(x, w1, lay.C, lay.inner, out);
    return out;
  }
  const at::AutoDispatchBelowADInplaceOrView guard;
  at::Tensor y = at::_prelu_kernel(x, slope_view(w1, x));
  return inplace ? x.copy_(y) : y;  // (ATen has no in-place channel-wise PReLU kernel)
}

// The layer with its node: saves s (the input, or the output in place) and the mask, if any.
at::Tensor record(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& w1,
                  const Layout& lay, int64_t mode) {
  auto node = make_node<PReLUBackward>();
  auto* n = static_cast<PReLUBackward*>(node.get());
  n->set_next_edges(ag::collect_next_edges(x, weight));
  n->w1_ = w1;
  n->lay_ = lay;
  n->mode_ = mode;
  n->w_ = ag::SavedVariable(weight, false);
  if (mode == kSaveInput) {
    n->s_ = ag::SavedVariable(x, false);
    at::Tensor out = run_forward(x, w1, lay, false);
    ag::set_history(out, node);
    return out;
  }
  if (mode == kSaveMask) {
    const at::AutoDispatchBelowADInplaceOrView guard;
    n->mask_ = ag::SavedVariable(x.gt(0), false);
  }
  run_forward(x, w1, lay, true);
  ag::increment_version(x);
  ag::rebase_history(x, node);
  n->s_ = ag::SavedVariable(x, true, x.is_view());
  return x;
}

at::Tensor prelu_apply(const at::Tensor& x, const at::Tensor& weight, bool inplace) {
  const at::Tensor none;
  if (!plain(x) || !plain(weight) || !plain_tls() || x.device() != weight.device()) return none;
  const auto dt = x.scalar_type();
  if (dt != at::kFloat && dt != at::kDouble && dt != at::kBFloat16 && dt != at::kHalf) return none;
  if (!at::isFloatingType(weight.scalar_type()) || weight.dim() > 1) return none;
  if (x.dim() < 2 || x.numel() == 0) return none;
  const bool shared = weight.numel() == 1;
  if (!shared && weight.numel() != x.size(1)) return none;
  if (x._fw_grad(0).defined() || weight._fw_grad(0).defined()) return none;
  const Layout lay = layout_of(x, shared);
  if (!lay.ok) return none;
  const bool grad = at::GradMode::is_enabled() && (x.requires_grad() || weight.requires_grad());
  at::Tensor w1 = weight;
  if (weight.dim() != 1 || weight.scalar_type() != dt || !weight.is_contiguous()) {
    at::NoGradGuard no_grad;
    w1 = weight.reshape({-1}).to(dt).contiguous();
  }
  if (!inplace) return grad ? record(x, weight, w1, lay, kSaveInput) : run_forward(x, w1, lay, false);
  if (x.is_inference() && !c10::InferenceMode::is_enabled()) return none;
  if (grad && x.requires_grad() &&
      (x.is_leaf() || (x.is_view() && x._base().is_leaf() && x._base().requires_grad()))) {
    return none;  // Python refuses before writing, with torch's wording
  }
  if (!grad) {
    run_forward(x, w1, lay, true);
    if (!x.is_inference()) ag::increment_version(x);
    return x;
  }
  const int64_t mode = x.device().is_cpu()
                           ? save_mode(w1)
                           : save_mode(rectifiers_slopes::registry().read(weight).reshape({-1}).to(dt));
  if (mode == kSaveInput) {
    // y does not give x back: a recorded copy of x keeps double backward reaching x
    return x.copy_(record(x.clone(), weight, w1, lay, mode));
  }
  return record(x, weight, w1, lay, mode);
}

int64_t prefetch_slopes() { return rectifiers_slopes::registry().prefetch(); }

}  // namespace

TORCH_LIBRARY(rectifiers_prelu, m) {
  m.def("forward(Tensor x, Tensor w, int C, int inner, Tensor(a!) out) -> ()");
  m.def(
      "backward(Tensor g, Tensor s, Tensor w, Tensor? mask, int C, int inner, bool divide, "
      "ScalarType grad_dtype) -> (Tensor, Tensor)");
  // internal: returns an undefined tensor (None) where the caller must take its general path
  m.def("apply(Tensor x, Tensor weight, bool inplace) -> Tensor");
  // after an optimizer step: host copies of the tracked GPU slopes (slope_copies.h)
  m.def("prefetch_slopes() -> int");
}

TORCH_LIBRARY_IMPL(rectifiers_prelu, CPU, m) {
  m.impl("forward", &prelu_forward);
  m.impl("backward", &prelu_backward);
}

TORCH_LIBRARY_IMPL(rectifiers_prelu, CompositeImplicitAutograd, m) {
  m.impl("apply", &prelu_apply);
}

TORCH_LIBRARY_IMPL(rectifiers_prelu, CompositeExplicitAutograd, m) {
  m.impl("prefetch_slopes", &prefetch_slopes);
}
