// What the C++ autograd entries of csrc/ (PReLU's in prelu_cpu.cpp, the zoo's in
// activations_autograd.h) share: hand-written autograd nodes across torch versions, which
// tensors and thread states the C++ paths take, and the [outer][C][inner] layout.

#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/saved_variable.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <type_traits>

namespace rectifiers_ag {

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

// The state every layer node of csrc/ keeps: the saved tensor s (input, output or mask), the
// learnable parameter w, an optional sign mask, the layout, the save mode; a lock, as PyTorch's
// generated nodes hold one (retain_graph lets two backward passes run one node).
struct LayerNode : public ag::Node {
  ag::SavedVariable s_, w_, mask_;
  Layout lay_;
  int64_t mode_ = 0;
  std::mutex mutex_;

  void release_variables() override {
    std::lock_guard<std::mutex> lock(mutex_);
    s_.reset_data();
    w_.reset_data();
    mask_.reset_data();
  }
};

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

}  // namespace rectifiers_ag
