// PReLU's bf16 loop bodies written out for AVX-512 (included by prelu_cpu.cpp). Defines
// RECTIFIERS_BF16_AVX512 where the build CPU (-march=native) has AVX-512 F/BW/VL; elsewhere the
// generic loops of prelu_cpu.cpp run alone.
// (rectifiers._cpp hashes the headers of csrc/ into the build key: editing this file rebuilds.)

#pragma once

#include <c10/util/BFloat16.h>

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define RECTIFIERS_BF16_AVX512 1
#include <immintrin.h>

namespace rectifiers_prelu_avx512 {

// The bf16 loop bodies written out for AVX-512, 16 elements (= kLanes) per step: g++'s
// vectorisation of bwd_elem<BFloat16> moved its masks through general registers and the stack
// (~85 instructions per 16 elements, 1.6-2.2x threshold_backward). The same operations in the
// same order per lane as the scalar code (which still runs the tails and other CPUs), so values,
// grad_input and the lane sums are bitwise those of the generic loops.
inline __m512 bf16_load16(const c10::BFloat16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
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
inline void fwd_bf16_16(const c10::BFloat16* x, c10::BFloat16* y, __m512 a) {
  const __m512 v = bf16_load16(x);
  const __mmask16 pos = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ);
  const __m512 r = _mm512_mask_mov_ps(_mm512_mul_ps(a, v), pos, v);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm512_cvtepi32_epi16(bf16_round16(r)));
}
template <bool kMask>
inline void bwd_bf16_16(const c10::BFloat16* g, const c10::BFloat16* s, const bool* m,
                        c10::BFloat16* gi, __m512 a, __m512& acc) {
  const __m512 gv = bf16_load16(g);
  const __m512 sv = bf16_load16(s);
  __mmask16 pos;
  if constexpr (kMask) {
    pos = _mm_cmpneq_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i*>(m)),
                               _mm_setzero_si128());
  } else {
    pos = _mm512_cmp_ps_mask(sv, _mm512_setzero_ps(), _CMP_GT_OQ);
  }
  const __m512 gsel = _mm512_mask_mov_ps(_mm512_mul_ps(a, gv), pos, gv);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(gi), _mm512_cvtepi32_epi16(bf16_round16(gsel)));
  const __m512 prod =
      _mm512_castsi512_ps(_mm512_slli_epi32(bf16_round16(_mm512_mul_ps(gv, sv)), 16));
  acc = _mm512_mask_add_ps(acc, static_cast<__mmask16>(~pos), acc, prod);
}
}  // namespace rectifiers_prelu_avx512
#endif
