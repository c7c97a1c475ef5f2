// Few-Bit Backward codes (rectifiers/nn/fewbit.py builds this on first use through
// rectifiers._cpp and registers torch.ops.rectifiers_fewbit.{encode,decode}).
//
// An opt-in activation wrapper keeps, instead of the activation's input, the code of its
// derivative: code = #{k : bounds[k] < d} (NaN: 0), packed per = 8 / slot codes to a byte,
// code j of a byte in bits [j*slot, (j+1)*slot). encode and decode are one pass each; the
// Python module computes the same with ATen ops when this library is unavailable.

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace {
constexpr int64_t kMaxBounds = 15;
constexpr int64_t kChunk = 4096;  // elements coded per step (a multiple of every per)

// codes of n derivatives (n <= kChunk), one byte each: a loop over the elements with a fixed
// inner count, which g++ vectorises
__attribute__((noinline)) void codes(const float* __restrict d, uint8_t* __restrict c,
                                     const float* __restrict b, int64_t n) {
  for (int64_t e = 0; e < n; ++e) {
    const float v = d[e];
    uint32_t k = 0;
    for (int64_t j = 0; j < kMaxBounds; ++j) k += v > b[j] ? 1u : 0u;  // NaN: 0
    c[e] = static_cast<uint8_t>(k);
  }
}

template <int kSlot>
void encode_impl(const float* dp, uint8_t* op, const float* b, int64_t n) {
  constexpr int64_t per = 8 / kSlot;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  at::parallel_for(0, chunks, 1, [=](int64_t c0, int64_t c1) {
    uint8_t c[kChunk];
    for (int64_t ch = c0; ch < c1; ++ch) {
      const int64_t e0 = ch * kChunk, m = std::min(kChunk, n - e0);
      codes(dp + e0, c, b, m);
      for (int64_t e = m; e < (m + per - 1) / per * per; ++e) c[e] = 0;  // pad slots: 0
      uint8_t* o = op + e0 / per;
      for (int64_t i = 0; i < (m + per - 1) / per; ++i) {
        uint32_t byte = 0;
        for (int64_t j = 0; j < per; ++j) {
          byte |= static_cast<uint32_t>(c[i * per + j]) << (j * kSlot);
        }
        o[i] = static_cast<uint8_t>(byte);
      }
    }
  });
}

template <int kSlot>
void decode_impl(const uint8_t* pp, const float* lv, uint32_t nl, float* o, int64_t n) {
  constexpr int64_t per = 8 / kSlot;
  constexpr uint32_t mask = (1u << kSlot) - 1u;
  float table[16];
  for (uint32_t c = 0; c < 16; ++c) table[c] = lv[c < nl ? c : nl - 1];  // a bad code stays in
  at::parallel_for(0, (n + per - 1) / per, 8192, [=, &table](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const uint32_t byte = pp[i];
      for (int64_t j = 0; j < per; ++j) {
        const int64_t e = i * per + j;
        if (e < n) o[e] = table[(byte >> (j * kSlot)) & mask];
      }
    }
  });
}

at::Tensor fewbit_encode(const at::Tensor& d, const at::Tensor& bounds, int64_t slot) {
  TORCH_CHECK(d.scalar_type() == at::kFloat && d.is_contiguous() && d.dim() == 1,
              "rectifiers_fewbit: encode wants a contiguous 1-D fp32 derivative");
  TORCH_CHECK(bounds.scalar_type() == at::kFloat && bounds.is_contiguous() &&
                  bounds.numel() <= kMaxBounds && (slot == 1 || slot == 2 || slot == 4) &&
                  bounds.numel() < (int64_t(1) << slot),
              "rectifiers_fewbit: encode: bad bounds or slot");
  const int64_t per = 8 / slot, n = d.numel();
  at::Tensor out = at::empty({(n + per - 1) / per}, d.options().dtype(at::kByte));
  float b[kMaxBounds];
  for (int64_t k = 0; k < kMaxBounds; ++k) {
    b[k] = k < bounds.numel() ? bounds.const_data_ptr<float>()[k]
                              : std::numeric_limits<float>::infinity();
  }
  const float* dp = d.const_data_ptr<float>();
  uint8_t* op = out.data_ptr<uint8_t>();
  if (slot == 1) encode_impl<1>(dp, op, b, n);
  if (slot == 2) encode_impl<2>(dp, op, b, n);
  if (slot == 4) encode_impl<4>(dp, op, b, n);
  return out;
}

at::Tensor fewbit_decode(const at::Tensor& packed, const at::Tensor& levels, int64_t slot,
                         int64_t n) {
  TORCH_CHECK(packed.scalar_type() == at::kByte && packed.is_contiguous() &&
                  levels.scalar_type() == at::kFloat && levels.is_contiguous() &&
                  (slot == 1 || slot == 2 || slot == 4) && levels.numel() >= 1 &&
                  levels.numel() <= (int64_t(1) << slot),
              "rectifiers_fewbit: decode: bad codes, levels or slot");
  TORCH_CHECK(n >= 0 && packed.numel() * (8 / slot) >= n, "rectifiers_fewbit: decode: bad n");
  at::Tensor out = at::empty({n}, levels.options());
  const uint8_t* pp = packed.const_data_ptr<uint8_t>();
  const float* lv = levels.const_data_ptr<float>();
  const auto nl = static_cast<uint32_t>(levels.numel());
  float* o = out.data_ptr<float>();
  if (slot == 1) decode_impl<1>(pp, lv, nl, o, n);
  if (slot == 2) decode_impl<2>(pp, lv, nl, o, n);
  if (slot == 4) decode_impl<4>(pp, lv, nl, o, n);
  return out;
}

}  // namespace

TORCH_LIBRARY(rectifiers_fewbit, m) {
  m.def("encode(Tensor d, Tensor bounds, int slot) -> Tensor");
  m.def("decode(Tensor packed, Tensor levels, int slot, int n) -> Tensor");
}

TORCH_LIBRARY_IMPL(rectifiers_fewbit, CPU, m) {
  m.impl("encode", &fewbit_encode);
  m.impl("decode", &fewbit_decode);
}
