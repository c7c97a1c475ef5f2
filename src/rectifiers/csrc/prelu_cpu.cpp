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
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

namespace {

// Elements per work item: large enough to amortise scheduling, small enough that 2-64
// threads get balanced work on activation-sized tensors.
constexpr int64_t kBlock = 16384;
// Below this many elements per (outer, channel) plane, iterate rows of C*inner elements.
constexpr int64_t kPlaneMin = 64;
// Independent accumulators per item: fixed order, vectorisable without -ffast-math.
constexpr int kLanes = 16;

template <typename T>
struct Compute {
  using type = float;  // bf16/fp16/fp32 arithmetic happens in fp32 (as ATen's vector code)
};
template <>
struct Compute<double> {
  using type = double;
};

struct Plan {
  int64_t outer, C, inner;
  bool planes;        // true: items are blocks of one (outer, channel) plane
  int64_t per_plane;  // planes: items per plane
  int64_t rows;       // rows mode: rows (of C*inner elements) per item
  int64_t items;
};

Plan make_plan(int64_t numel, int64_t C, int64_t inner) {
  Plan p{};
  p.C = C;
  p.inner = inner;
  p.outer = (C * inner) > 0 ? numel / (C * inner) : 0;
  p.planes = inner >= kPlaneMin;
  if (p.planes) {
    p.per_plane = (inner + kBlock - 1) / kBlock;
    p.items = p.outer * C * p.per_plane;
  } else {
    p.rows = std::max<int64_t>(1, kBlock / std::max<int64_t>(1, C * inner));
    p.items = (p.outer + p.rows - 1) / p.rows;
  }
  return p;
}

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
// pointer (in place, kInplace): never a partial overlap, so both forms vectorise.
template <typename T, bool kInplace>
inline void fwd_run(const T* __restrict x, T* __restrict y, typename Compute<T>::type a,
                    int64_t n) {
  using A = typename Compute<T>::type;
  T* yy = kInplace ? const_cast<T*>(x) : y;
  for (int64_t i = 0; i < n; ++i) {
    const T xv = kInplace ? yy[i] : x[i];
    const A v = static_cast<A>(xv);
    yy[i] = v > A(0) ? xv : static_cast<T>(a * v);
  }
}

// One channels_last row: element c has slope w[c].
template <typename T, bool kInplace>
inline void fwd_row(const T* __restrict x, T* __restrict y, const T* __restrict w, int64_t C) {
  using A = typename Compute<T>::type;
  T* yy = kInplace ? const_cast<T*>(x) : y;
  for (int64_t c = 0; c < C; ++c) {
    const T xv = kInplace ? yy[c] : x[c];
    const A v = static_cast<A>(xv);
    yy[c] = v > A(0) ? xv : static_cast<T>(static_cast<A>(w[c]) * v);
  }
}

template <typename T, bool kInplace>
void forward_impl(const T* x, T* y, const T* w, const Plan p) {
  using A = typename Compute<T>::type;
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      if (p.planes) {
        const int64_t plane = it / p.per_plane;
        const int64_t lo = plane * p.inner + (it % p.per_plane) * kBlock;
        const int64_t hi = std::min(lo + kBlock, (plane + 1) * p.inner);
        fwd_run<T, kInplace>(x + lo, y + lo, static_cast<A>(w[plane % p.C]), hi - lo);
      } else {
        const int64_t r1 = std::min(p.outer, (it + 1) * p.rows);
        for (int64_t r = it * p.rows; r < r1; ++r) {
          const int64_t base = r * p.C * p.inner;
          if (p.inner == 1) {
            fwd_row<T, kInplace>(x + base, y + base, w, p.C);
          } else {
            for (int64_t c = 0; c < p.C; ++c) {
              const int64_t o = base + c * p.inner;
              fwd_run<T, kInplace>(x + o, y + o, static_cast<A>(w[c]), p.inner);
            }
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
  const A gv = static_cast<A>(gt);
  const A sv = static_cast<A>(st);
  const bool pos = kMask ? mv : (sv > A(0));
  *gi = pos ? gt : static_cast<T>(a * gv);
  // round the product to T first: the same per-element value ATen's backward sums
  const A prod = static_cast<A>(static_cast<T>(gv * sv));
  return pos ? A(0) : prod;
}

// One contiguous run of one channel: returns its slope-gradient sum (kLanes accumulators).
template <typename T, bool kMask>
inline double bwd_run(const T* __restrict g, const T* __restrict s, const bool* __restrict m,
                      T* __restrict gi, typename Compute<T>::type a, int64_t n) {
  using A = typename Compute<T>::type;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      lanes[k] += bwd_elem<T, kMask>(g[i + k], s[i + k], kMask ? m[i + k] : false, gi + i + k, a);
    }
  }
  A tail = 0;
  for (; i < n; ++i) {
    tail += bwd_elem<T, kMask>(g[i], s[i], kMask ? m[i] : false, gi + i, a);
  }
  double sum = static_cast<double>(tail);
  for (int k = 0; k < kLanes; ++k) {
    sum += static_cast<double>(lanes[k]);
  }
  return sum;
}

// One channels_last row: element c has slope w[c] and its own accumulator acc[c].
template <typename T, bool kMask>
inline void bwd_row(const T* __restrict g, const T* __restrict s, const bool* __restrict m,
                    T* __restrict gi, const T* __restrict w,
                    typename Compute<T>::type* __restrict acc, int64_t C) {
  using A = typename Compute<T>::type;
  for (int64_t c = 0; c < C; ++c) {
    acc[c] += bwd_elem<T, kMask>(g[c], s[c], kMask ? m[c] : false, gi + c, static_cast<A>(w[c]));
  }
}

template <typename T, bool kMask>
void backward_impl(const T* g, const T* s, const bool* m, const T* w, T* gi, double* gw,
                   const Plan p) {
  using A = typename Compute<T>::type;
  // planes mode: one partial per item; rows mode: C partials per item
  std::vector<double> partial(p.planes ? p.items : p.items * p.C, 0.0);
  double* part = partial.data();
  auto at_ = [](const bool* mp, int64_t o) { return kMask ? mp + o : nullptr; };
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    std::vector<A> acc(p.planes ? 0 : p.C);
    for (int64_t it = b0; it < b1; ++it) {
      if (p.planes) {
        const int64_t plane = it / p.per_plane;
        const int64_t lo = plane * p.inner + (it % p.per_plane) * kBlock;
        const int64_t hi = std::min(lo + kBlock, (plane + 1) * p.inner);
        part[it] = bwd_run<T, kMask>(g + lo, s + lo, at_(m, lo), gi + lo,
                                     static_cast<A>(w[plane % p.C]), hi - lo);
      } else {
        std::fill(acc.begin(), acc.end(), A(0));
        A* ac = acc.data();
        const int64_t r1 = std::min(p.outer, (it + 1) * p.rows);
        for (int64_t r = it * p.rows; r < r1; ++r) {
          const int64_t base = r * p.C * p.inner;
          if (p.inner == 1) {
            bwd_row<T, kMask>(g + base, s + base, at_(m, base), gi + base, w, ac, p.C);
          } else {
            for (int64_t c = 0; c < p.C; ++c) {
              const int64_t o = base + c * p.inner;
              ac[c] += static_cast<A>(bwd_run<T, kMask>(g + o, s + o, at_(m, o), gi + o,
                                                        static_cast<A>(w[c]), p.inner));
            }
          }
        }
        for (int64_t c = 0; c < p.C; ++c) {
          part[it * p.C + c] = static_cast<double>(ac[c]);
        }
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

std::tuple<at::Tensor, at::Tensor> prelu_backward(const at::Tensor& g, const at::Tensor& s,
                                                  const at::Tensor& w,
                                                  const std::optional<at::Tensor>& mask,
                                                  int64_t C, int64_t inner) {
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
  at::Tensor gw = at::empty({C}, s.options().dtype(at::kDouble));
  const Plan p = make_plan(s.numel(), C, inner);
  if (p.items == 0) {
    gw.zero_();
    return {gi, gw};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kBFloat16, at::kHalf, s.scalar_type(), "prelu_backward", [&] {
        const scalar_t* gp = g.const_data_ptr<scalar_t>();
        const scalar_t* sp = s.const_data_ptr<scalar_t>();
        const scalar_t* wp = w.const_data_ptr<scalar_t>();
        scalar_t* gip = gi.data_ptr<scalar_t>();
        double* gwp = gw.data_ptr<double>();
        if (has_mask) {
          backward_impl<scalar_t, true>(gp, sp, mask->const_data_ptr<bool>(), wp, gip, gwp, p);
        } else {
          backward_impl<scalar_t, false>(gp, sp, nullptr, wp, gip, gwp, p);
        }
      });
  return {gi, gw};
}

}  // namespace

TORCH_LIBRARY(rectifiers_prelu, m) {
  m.def("forward(Tensor x, Tensor w, int C, int inner, Tensor(a!) out) -> ()");
  m.def(
      "backward(Tensor g, Tensor s, Tensor w, Tensor? mask, int C, int inner) -> "
      "(Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rectifiers_prelu, CPU, m) {
  m.impl("forward", &prelu_forward);
  m.impl("backward", &prelu_backward);
}
