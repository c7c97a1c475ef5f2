// The zoo's C++ autograd entry (included once, at the end of activations_cpu.cpp, after the
// kernels act_forward / act_backward): apply(x, kind, p, w, mode, inplace) is what
// rectifiers.nn.zoo_ops.activation calls first. For plain dense CPU tensors (contiguous or
// channels_last) with no forward-mode tangent, functorch transform or Python dispatch mode it
// runs the fused forward and records a hand-written autograd node whose backward is the fused
// backward kernel, so a zoo layer runs no Python in training (the Python autograd.Function cost
// ~60-85 us per forward+backward). When the backward is itself differentiated
// (create_graph=True) or batched, the node calls the registered Python op rectifiers::act_grad
// (the differentiable eager formulas of zoo_ops) through the dispatcher, so double backward
// stays exact. Anything else returns an undefined tensor (None) and Python takes its general
// path, which saves and computes the same (same kernels: bitwise the same results).

#pragma once

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/ones.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/functions/utils.h>

#include "autograd_node.h"

#include <mutex>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace rectifiers_act_ag {

using namespace rectifiers_ag;  // NOLINT: ag, NodePtr, make_node, self_ptr, plain, Layout

// g * f'(s) and, if need_w, dE/dw with differentiable ATen ops (zoo_ops._act_grad)
std::tuple<at::Tensor, at::Tensor> act_grad(const at::Tensor& g, const at::Tensor& s,
                                            const at::Tensor& w, int64_t kind,
                                            c10::ArrayRef<double> p, int64_t mode, bool need_w) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("rectifiers::act_grad", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, int64_t,
              c10::ArrayRef<double>, int64_t, bool)>();
  return op.call(g, s, w.defined() ? std::optional<at::Tensor>(w) : std::nullopt, kind, p, mode,
                 need_w);
}

struct ActBackward : public LayerNode {  // s_: the input, the output or the mask (by mode)
  at::Tensor wk_;  // w in the kernels' compute dtype, (C,), no autograd history
  std::vector<double> p_;
  int64_t kind_ = 0;
  std::vector<int64_t> sizes_, strides_;  // mode mask: the input's (the bits are in its order)

  std::string name() const override { return "ActivationBackward"; }

  ag::variable_list apply(ag::variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);
    const at::Tensor s = s_.unpack(self_ptr(this, 0));
    const at::Tensor w = w_.unpack();
    ag::variable_list out(num_outputs());  // x (, w)
    at::Tensor g = grads[0];
    if (!g.defined()) return out;
    const bool need_w = w.defined() && should_compute_output(1);
    at::Tensor gi, gw;
    if (at::GradMode::is_enabled() || !plain(g) || !g.device().is_cpu() || !plain_tls()) {
      const at::Tensor sb = mode_ == kFromMask ? unpack_mask(s, sizes_, strides_) : s;
      std::tie(gi, gw) = act_grad(g, sb, w, kind_, p_, mode_, need_w);
    } else {
      at::Tensor saved = s, mask;
      if (mode_ == kFromMask) {  // the kernel reads only the mask: g in the input's layout
        mask = s;
        if (g.strides() != c10::IntArrayRef(strides_)) {
          g = at::empty_strided(sizes_, strides_, g.options()).copy_(g);
        }
        saved = g;
      }
      if (g.strides() != saved.strides() || g.scalar_type() != saved.scalar_type()) {
        g = at::empty_like(saved).copy_(g);  // e.g. an expanded grad from .sum().backward()
      }
      std::tie(gi, gw) = act_backward(g, saved, kind_, mode_, p_, wk_, lay_.C, lay_.inner,
                                      mask.defined() ? std::optional<at::Tensor>(mask)
                                                     : std::nullopt,
                                      need_w);
      if (need_w) gw = gw.to(w.scalar_type()).reshape(w.sizes());
    }
    if (should_compute_output(0)) out[0] = gi;
    if (need_w) out[1] = gw;
    return out;
  }
};

at::Tensor act_apply(const at::Tensor& x, int64_t kind, c10::ArrayRef<double> p,
                     const std::optional<at::Tensor>& w_opt, int64_t mode, bool inplace) {
  const at::Tensor none;
  const at::Tensor w = w_opt.has_value() ? *w_opt : at::Tensor();
  if (!plain(x) || !x.device().is_cpu() || !plain_tls() || x.numel() == 0) return none;
  const auto dt = x.scalar_type();
  if (dt != at::kFloat && dt != at::kDouble && dt != at::kBFloat16 && dt != at::kHalf) return none;
  if (mode < kFromInput || mode > kFromMask || (inplace && mode == kFromInput)) return none;
  if (x._fw_grad(0).defined()) return none;
  if (w.defined()) {
    if (!plain(w) || !w.device().is_cpu() || !w.is_floating_point() || w.dim() > 1) return none;
    if (w.numel() != 1 && (x.dim() < 2 || x.size(1) != w.numel())) return none;
    if (w._fw_grad(0).defined()) return none;
  }
  const Layout lay = layout_of(x, !w.defined() || w.numel() == 1);
  if (!lay.ok) return none;
  if (mode == kFromMask && (lay.C != 1 || lay.inner != x.numel())) return none;  // bits: flat
  const auto wt = dt == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor wk;
  {
    at::NoGradGuard no_grad;
    // no learnable parameter: a constant (1,) one, allocated once per compute dtype
    static const at::Tensor one32 = at::ones({1}, at::kFloat), one64 = at::ones({1}, at::kDouble);
    wk = w.defined() ? w.detach().to(wt).reshape({-1}).contiguous()
                     : (wt == at::kDouble ? one64 : one32);
  }
  const bool grad =
      at::GradMode::is_enabled() && (x.requires_grad() || (w.defined() && w.requires_grad()));
  if (!grad) {
    at::Tensor out = inplace ? x : at::empty_like(x);
    act_forward(x, kind, p, wk, lay.C, lay.inner, out, std::nullopt);
    if (inplace && !x.is_inference()) ag::increment_version(x);
    return out;
  }
  if (inplace && x.requires_grad() &&
      (x.is_leaf() || (x.is_view() && x._base().is_leaf() && x._base().requires_grad()))) {
    return none;  // Python refuses before writing, with torch's wording
  }
  auto node = make_node<ActBackward>();
  auto* n = static_cast<ActBackward*>(node.get());
  n->set_next_edges(w.defined() ? ag::collect_next_edges(x, w) : ag::collect_next_edges(x));
  n->wk_ = wk;
  n->p_ = p.vec();
  n->lay_ = lay;
  n->kind_ = kind;
  n->mode_ = mode;
  if (w.defined()) n->w_ = ag::SavedVariable(w, false);
  at::Tensor mask;
  if (mode == kFromMask) {  // 1 bit per element (flat layout: relu, leaky_relu, helu)
    mask = at::empty({(x.numel() + 7) / 8}, x.options().dtype(at::kByte));
    n->sizes_ = x.sizes().vec();
    n->strides_ = x.strides().vec();
  }
  if (mode == kFromInput) n->s_ = ag::SavedVariable(x, false);
  at::Tensor out = inplace ? x : at::empty_like(x);
  act_forward(x, kind, p, wk, lay.C, lay.inner, out,
              mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt);
  if (inplace) {
    ag::increment_version(x);
    ag::rebase_history(x, node);
  } else {
    ag::set_history(out, node);
  }
  if (mode == kFromOutput) n->s_ = ag::SavedVariable(out, true, inplace && out.is_view());
  if (mode == kFromMask) n->s_ = ag::SavedVariable(mask, false);
  return out;
}

}  // namespace rectifiers_act_ag
