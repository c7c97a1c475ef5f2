// The deterministic work plan shared by the fused kernels of csrc/ (prelu_cpu.cpp,
// activations_cpu.cpp): a dense tensor viewed as [outer][C][inner] is cut into fixed work items
// that depend only on its shape, never on the thread count, so per-item partial sums reduced in
// item order are bitwise reproducible for any number of threads.
//   planes mode (inner >= kPlaneMin): an item is a block of <= kBlock elements of one
//     (outer, channel) plane;
//   rows mode: an item is a run of whole rows of C*inner elements, <= kBlock elements, and at
//     least kMinItems items where there are enough rows (a small tensor cut into 3-4 items
//     would leave one of two threads half idle).
// (rectifiers._cpp hashes the headers of csrc/ into the build key: editing this file rebuilds.)

#pragma once

#include <algorithm>
#include <cstdint>

namespace rectifiers_plan {

// Elements per work item: large enough to amortise scheduling, small enough that 2-64 threads
// get balanced work on activation-sized tensors.
constexpr int64_t kBlock = 16384;
// Below this many elements per (outer, channel) plane, iterate rows of C*inner elements.
constexpr int64_t kPlaneMin = 64;
// Rows mode: at least this many items where the tensor has enough rows.
constexpr int64_t kMinItems = 16;
// Independent accumulators of a partial sum: fixed order, vectorisable without -ffast-math.
constexpr int kLanes = 16;

struct Plan {
  int64_t outer = 0, C = 0, inner = 0;
  bool planes = false;    // true: items are blocks of one (outer, channel) plane
  int64_t per_plane = 0;  // planes: items per plane
  int64_t rows = 0;       // rows mode: rows (of C*inner elements) per item
  int64_t items = 0;
};

inline Plan make_plan(int64_t numel, int64_t C, int64_t inner) {
  Plan p;
  p.C = C;
  p.inner = inner;
  p.outer = (C * inner) > 0 ? numel / (C * inner) : 0;
  p.planes = inner >= kPlaneMin;
  if (p.planes) {
    p.per_plane = (inner + kBlock - 1) / kBlock;
    p.items = p.outer * C * p.per_plane;
  } else {
    const int64_t by_size = kBlock / std::max<int64_t>(1, C * inner);
    p.rows = std::max<int64_t>(1, std::min(by_size, (p.outer + kMinItems - 1) / kMinItems));
    p.items = (p.outer + p.rows - 1) / p.rows;
  }
  return p;
}

}  // namespace rectifiers_plan
