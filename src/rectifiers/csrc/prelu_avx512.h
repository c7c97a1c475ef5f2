// PReLU's fp32 and bf16 loop bodies written out for AVX-512 (included by prelu_cpu.cpp). Defines
// RECTIFIERS_AVX512 where the build CPU (-march=native) has AVX-512 F/BW/VL; elsewhere the
// generic loops of prelu_cpu.cpp run alone.
// (rectifiers._cpp hashes the headers of csrc/ into the build key: editing this file rebuilds.)

#pragma once

#include <c10/util/BFloat16.h>

#include <type_traits>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define RECTIFIERS_AVX512 1
#include <immintrin.h>

namespace rectifiers_prelu_avx512 {

// 16 elements (= kLanes) per step, and in the backward a run's last 1-15 elements under a lane
// mask (no scalar tail: on 14x14 planes it cost a sixth to a quarter of the kernel). g++'s own
// vectorisation of the bf16 backward moved its masks through general registers and the stack
// (~85 instructions per 16 elements). The same operations in the same order per lane as the
// scalar code of prelu_cpu.cpp (which runs fp64/fp16 and other CPUs), so values and grad_input
// are bitwise those of the generic loops, ATen's.
template <typename T>
constexpr bool kVec = std::is_same_v<T, float> || std::is_same_v<T, c10::BFloat16>;

inline __mmask16 first(int64_t k) {  // the first k (< 16) lanes
  return static_cast<__mmask16>((1u << k) - 1u);
}
constexpr __mmask16 kAll = 0xFFFF;

inline __m512 load16(const float* p, __mmask16 k) { return _mm512_maskz_loadu_ps(k, p); }
inline __m512 load16(const c10::BFloat16* p, __mmask16 k) {
  const __m256i h = _mm256_maskz_loadu_epi16(k, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
// st<BFloat16> on 16 lanes: round to nearest even, NaN -> 0x7fc0; bits in each lane's low half
inline __m512i bf16_round16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(
      _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),
                               _mm512_set1_epi32(0x7fc0));
}
inline void store16(float* p, __m512 v, __mmask16 k) { _mm512_mask_storeu_ps(p, k, v); }
inline void store16(c10::BFloat16* p, __m512 v, __mmask16 k) {
  _mm256_mask_storeu_epi16(p, k, _mm512_cvtepi32_epi16(bf16_round16(v)));
}
// a product rounded to the storage type, back in fp32 (what ATen's backward sums)
inline __m512 rounded(__m512 v, const float*) { return v; }
inline __m512 rounded(__m512 v, const c10::BFloat16*) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(bf16_round16(v), 16));
}

// y = x > 0 ? x : a * x on the lanes of k (x and y may be the same pointer)
template <typename T>
inline void fwd16(const T* x, T* y, __m512 a, __mmask16 k) {
  const __m512 v = load16(x, k);
  const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
  store16(y, _mm512_mask_mov_ps(_mm512_mul_ps(a, v), pos, v), k);
}

// gi = pos ? g : a * g, and acc += (g * s rounded) where !pos, on the lanes of k
template <typename T, bool kMask>
inline void bwd16(const T* g, const T* s, const bool* m, T* gi, __m512 a, __m512& acc,
                  __mmask16 k) {
  const __m512 gv = load16(g, k);
  const __m512 sv = load16(s, k);
  __mmask16 pos;
  if constexpr (kMask) {
    pos = _mm_cmpneq_epi8_mask(_mm_maskz_loadu_epi8(k, m), _mm_setzero_si128());
  } else {
    pos = _mm512_cmp_ps_mask(sv, _mm512_setzero_ps(), _CMP_GT_OQ);
  }
  store16(gi, _mm512_mask_mov_ps(_mm512_mul_ps(a, gv), pos, gv), k);
  const __m512 prod = rounded(_mm512_mul_ps(gv, sv), g);
  acc = _mm512_mask_add_ps(acc, static_cast<__mmask16>(~pos & k), acc, prod);
}
}  // namespace rectifiers_prelu_avx512
#endif
