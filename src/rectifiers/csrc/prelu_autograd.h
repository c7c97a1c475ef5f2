// The device-independent pieces of PReLU's C++ autograd entry (prelu_cpu.cpp: apply and its
// node): what an in-place layer keeps for backward and the backward with differentiable ATen
// ops (the shared node helpers are in autograd_node.h).

#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/div.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include "activations_math.h"  // Compute<T>: the arithmetic type of a storage type
#include "autograd_node.h"     // NodePtr, make_node, plain, Layout

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

namespace rectifiers_prelu_ag {

using namespace rectifiers_ag;  // NOLINT: ag, NodePtr, make_node, self_ptr, plain, Layout

enum SaveMode : int64_t { kSaveInput = 0, kSaveOutput = 1, kSaveMask = 2 };

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
