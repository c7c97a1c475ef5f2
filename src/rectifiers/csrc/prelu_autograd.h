// The device-independent pieces of PReLU's C++ autograd entry (prelu_cpu.cpp: apply and its
// node): which tensors the C++ path takes, what an in-place layer keeps for backward, the
// backward with differentiable ATen ops, and node construction across torch versions.

#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/div.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/function.h>

#include "activations_math.h"  // Compute<T>: the arithmetic type of a storage type

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

namespace rectifiers_prelu_ag {

namespace ag = torch::autograd;

// torch < 2.12 holds autograd nodes in std::shared_ptr, later releases in c10::intrusive_ptr
// (pytorch/pytorch#181782): NodePtr is whichever this torch uses.
using NodePtr = decltype(ag::Edge::function);

template <typename N, typename P = NodePtr>
P make_node() {
  if constexpr (std::is_same_v<P, std::shared_ptr<ag::Node>>) {
    return P(new N());
  } else {
    return c10::make_intrusive<N>();
  }
}

// The owning pointer of a node from inside it (getptr() or shared_from_this()).
template <typename N>
auto self_ptr(N* n, int) -> decltype(n->getptr()) {
  return n->getptr();
}
template <typename N>
auto self_ptr(N* n, long) -> decltype(n->shared_from_this()) {  // NOLINT(runtime/int)
  return n->shared_from_this();
}

enum SaveMode : int64_t { kSaveInput = 0, kSaveOutput = 1, kSaveMask = 2 };

struct Layout {
  int64_t C = 0, inner = 0;
  bool ok = false;
};

// rectifiers._cpp.kernel_layout in C++: [outer][C][inner] for NCHW-contiguous / channels_last
inline Layout layout_of(const at::Tensor& x, bool shared) {
  const bool cl = (x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast)) ||
                  (x.dim() == 5 && x.is_contiguous(at::MemoryFormat::ChannelsLast3d));
  if (shared) {
    if (x.is_contiguous() || cl) return {1, std::max<int64_t>(x.numel(), 1), true};
    return {};
  }
  if (x.is_contiguous()) {
    int64_t inner = 1;
    for (int64_t d = 2; d < x.dim(); ++d) inner *= x.size(d);
    return {x.size(1), std::max<int64_t>(inner, 1), true};
  }
  if (cl) return {x.size(1), 1, true};
  return {};
}

// What in-place mode must keep for an exact backward (rectifiers.nn.prelu._save_mode), from
// the slopes on the host in the input's dtype: the output alone if tiny <= a <= 1 for every
// slope, the output and a sign mask if some slopes are in [-1, -tiny], a copy of the input
// otherwise. tiny = finfo(dtype).tiny ** 0.25.
inline int64_t save_mode(const at::Tensor& w1) {
  bool exact = true, negative = false;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, w1.scalar_type(), "prelu_mode", [&] {
    using A = typename rectifiers_act::Compute<scalar_t>::type;
    const A tiny = static_cast<A>(
        std::pow(static_cast<double>(std::numeric_limits<scalar_t>::min()), 0.25));
    const scalar_t* p = w1.const_data_ptr<scalar_t>();
    for (int64_t i = 0; i < w1.numel(); ++i) {
      const A a = static_cast<A>(p[i]);
      const A m = std::abs(a);
      exact = exact && m >= tiny && m <= A(1);  // nan fails both
      negative = negative || a < A(0);
    }
  });
  return !exact ? kSaveInput : (negative ? kSaveMask : kSaveOutput);
}

// A strided CPU or CUDA tensor with no extra dispatch keys (no subclass, functorch wrapper,
// conjugate/negative bit, sparse or nested layout).
inline bool plain(const at::Tensor& t) {
  static const c10::DispatchKeySet kCpu({c10::DispatchKey::CPU, c10::DispatchKey::AutogradCPU,
                                         c10::DispatchKey::ADInplaceOrView,
                                         c10::DispatchKey::AutocastCPU});
  static const c10::DispatchKeySet kCuda({c10::DispatchKey::CUDA,
                                          c10::DispatchKey::AutogradCUDA,
                                          c10::DispatchKey::ADInplaceOrView,
                                          c10::DispatchKey::AutocastCUDA});
  if (!t.defined() || t.layout() != at::kStrided) return false;
  if (t.device().is_cpu()) return kCpu.isSupersetOf(t.key_set());
  return t.device().is_cuda() && kCuda.isSupersetOf(t.key_set());
}

// No torch_dispatch mode and no functorch transform on this thread.
inline bool plain_tls() {
  static const c10::DispatchKeySet kUsual({c10::DispatchKey::BackendSelect,
                                           c10::DispatchKey::ADInplaceOrView});
  return kUsual.isSupersetOf(c10::impl::tls_local_dispatch_key_set().included_);
}

// (C,) slopes shaped to broadcast over channel dim 1 of s (0-d if shared)
inline at::Tensor slope_view(const at::Tensor& w1, const at::Tensor& s) {
  if (w1.numel() == 1) return w1.reshape({});
  std::vector<int64_t> shape(std::max<int64_t>(s.dim(), 1), 1);
  shape[std::min<int64_t>(1, s.dim() - 1)] = w1.numel();
  return w1.reshape(shape);
}

// the dims a slope gradient sums over: all but channel dim 1 (all if shared)
inline std::vector<int64_t> reduce_dims(const at::Tensor& s, bool shared) {
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < s.dim(); ++d) {
    if (shared || s.dim() < 2 || d != 1) dims.push_back(d);
  }
  return dims;
}

// The backward with differentiable ATen ops (rectifiers.nn._prelu_math._backward_composite):
// used when the backward is itself differentiated (create_graph=True) or batched.
inline std::tuple<at::Tensor, at::Tensor> backward_composite(const at::Tensor& g,
                                                             const at::Tensor& s,
                                                             const at::Tensor& weight,
                                                             int64_t mode,
                                                             const at::Tensor& mask) {
  const bool shared = weight.numel() == 1;
  const at::Tensor w1 = weight.reshape({-1}).to(s.scalar_type()).contiguous();
  const auto acc = at::promote_types(weight.scalar_type(), at::kFloat);
  const at::Tensor pos = mask.defined() ? mask : s.gt(0);
  at::Tensor gi = at::where(pos, g, at::mul(g, slope_view(w1, s)));
  at::Tensor gw = at::where(pos, at::zeros({}, g.options()), at::mul(g, s))
                      .sum(reduce_dims(s, shared), false, acc);
  if (mode != kSaveInput) gw = at::div(gw, w1.to(acc).reshape(gw.sizes()));
  return {gi, gw};
}

}  // namespace rectifiers_prelu_ag
