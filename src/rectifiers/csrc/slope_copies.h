// Host copies of in-place PReLU slopes that live on a GPU (any non-CPU device), taken after each
// optimizer step without stalling the device: the C++ counterpart of
// rectifiers.nn._prelu_slopes._SlopePrefetch, for the layer's C++ path (prelu_cpu.cpp).
//
// An in-place PReLU picks what to keep for backward from its slopes' values. On a GPU, reading
// them is a device-to-host copy that waits for every kernel queued so far, once per layer and
// step. Slopes change in optimizer steps, so after every optimizer.step() (rectifiers'
// global post-step hook calls prefetch()) the slopes seen here are gathered on their device and
// copied to pinned host memory without blocking, one copy per device and dtype behind one event.
// The next forward waits only for that copy, which was queued right after the step. A copy is
// used only while the slope's version counter and storage are the ones it was taken with;
// otherwise (first step, slopes set by hand) read() reads the slope directly.
//
// Slopes are held by weak reference (a dropped layer is forgotten at the next prefetch) and keyed
// by their TensorImpl, whose memory a weak reference keeps from being reused.

#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <c10/core/Event.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rectifiers_slopes {

using WeakImpl = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

struct Copy {
  WeakImpl weight;
  int64_t version = -1;  // -1: tracked, no current copy yet
  const void* ptr = nullptr;
  at::Tensor host;
  std::shared_ptr<c10::Event> event;  // the copy is complete once this has happened
};

class Registry {
 public:
  // weight's values on the host: the prefetched copy where it is current, else a synchronising
  // read (after which a leaf weight, i.e. a parameter, is tracked and prefetched).
  at::Tensor read(const at::Tensor& weight) {
    at::Tensor host;
    std::shared_ptr<c10::Event> event;
    const c10::TensorImpl* key = weight.unsafeGetTensorImpl();
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = copies_.find(key);
      if (it != copies_.end() && it->second.version == weight._version() &&
          it->second.ptr == weight.const_data_ptr()) {
        host = it->second.host;
        event = it->second.event;
      }
    }
    if (host.defined()) {
      if (event) event->synchronize();
      return host;
    }
    {
      at::NoGradGuard no_grad;
      host = weight.detach().to(at::kCPU);  // waits for the device
    }
    if (weight.is_leaf()) {
      std::lock_guard<std::mutex> lock(mu_);
      copies_.try_emplace(key, Copy{WeakImpl(weight.getIntrusivePtr())});
    }
    return host;
  }

  // After an optimizer step: a fresh host copy of every tracked slope still alive. Returns how
  // many slopes are tracked.
  int64_t prefetch() {
    std::lock_guard<std::mutex> lock(mu_);
    at::NoGradGuard no_grad;
    struct Group {
      c10::Device device;
      at::ScalarType dtype;
      std::vector<std::pair<Copy*, at::Tensor>> slopes;
    };
    std::vector<Group> groups;
    for (auto it = copies_.begin(); it != copies_.end();) {
      auto strong = it->second.weight.lock();
      if (!strong) {
        it = copies_.erase(it);
        continue;
      }
      at::Tensor w(std::move(strong));
      Group* g = nullptr;
      for (auto& cand : groups) {
        if (cand.device == w.device() && cand.dtype == w.scalar_type()) g = &cand;
      }
      if (g == nullptr) {
        groups.push_back(Group{w.device(), w.scalar_type(), {}});
        g = &groups.back();
      }
      g->slopes.emplace_back(&it->second, w);
      ++it;
    }
    for (auto& g : groups) {
      std::vector<at::Tensor> flat;
      for (auto& s : g.slopes) flat.push_back(s.second.detach().reshape({-1}));
      const at::Tensor all = at::cat(flat);
      const bool cuda = g.device.is_cuda();
      at::Tensor host = at::empty(all.sizes(), all.options().device(at::kCPU).pinned_memory(cuda));
      host.copy_(all, /*non_blocking=*/cuda);
      std::shared_ptr<c10::Event> event;
      if (cuda) {
        event = std::make_shared<c10::Event>(g.device.type());
        const c10::impl::VirtualGuardImpl impl(g.device.type());
        event->record(impl.getStream(g.device));
      }
      int64_t offset = 0;
      for (auto& s : g.slopes) {
        const at::Tensor& w = s.second;
        Copy& c = *s.first;
        c.host = host.narrow(0, offset, w.numel()).view(w.sizes());
        c.version = w._version();
        c.ptr = w.const_data_ptr();
        c.event = event;
        offset += w.numel();
      }
    }
    return static_cast<int64_t>(copies_.size());
  }

 private:
  std::mutex mu_;
  std::unordered_map<const c10::TensorImpl*, Copy> copies_;
};

// Never destroyed: at process exit its pinned buffers and events would be freed after the CUDA
// runtime has shut down (an abort in the destructor).
inline Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

}  // namespace rectifiers_slopes
