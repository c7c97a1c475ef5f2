// Fused CPU kernels for the rectifier zoo (rectifiers/nn/_activations_cpu.py builds this on first
// use and registers torch.ops.rectifiers_act.{forward,backward}).
//
// ONE elementwise mechanism for every activation: a small functor per activation gives
//   f(x)        the forward value                      (Act::fwd)
//   f'(x)       the derivative from the input          (Act::d_in)
//   f'(y)       the derivative from the output, where the output determines it (Act::d_out:
//               relu, leaky_relu/rrelu with slope >= 0, elu/selu with alpha >= 0, smelu), so
//               those activations can run in place and keep only their output for backward
//   df/dw       the derivative by a learnable per-channel parameter w (swish's beta)
// and two templates run any functor over a tensor: fwd_kernel (y = f(x), in place or not,
// optionally writing a 1-byte mask) and bwd_kernel (grad_input = g * f'(s) in one pass, and
// with a learnable parameter dE/dw_c = sum g * df/dw in the same pass). The loops are written so
// that g++ -O3 -march=native vectorises them: no calls into libm in the fp32/bf16 paths
// (exp/expm1/erfc are branch-free polynomial versions below), selects instead of branches.
//
// Layout: the caller views the input as [outer][C][inner] (dense): NCHW-contiguous gives
// inner = prod(shape[2:]), channels_last gives inner = 1, and activations without a
// per-channel parameter use C = 1, inner = numel (any dense layout, memory order).
//
// Built with -fno-math-errno (rectifiers/nn/_activations_cpu.py): errno is never read, and without
// it std::sqrt cannot be vectorised.
//
// Precision: fp32/bf16/fp16 compute in fp32 (bf16/fp16 load/store only); fp64 computes in fp64
// with libm (exact reference path for tests). The fp32 exp is within 1.2 ulp, expm1 within 2
// ulp; sau divides by its constant s as a multiplication by 1/s (fp32 only); erfc is
// within 1.5e-7 absolute (Abramowitz-Stegun 7.1.26, the approximation of ATen's own vectorised
// erf).
//
// Determinism: the learnable-parameter sum is split into fixed work items (independent of the
// thread count); each item writes its own partial (fp32 lanes, fp64 across lanes) and the
// partials are added serially in item order: bitwise reproducible for any number of threads.
//
// rrelu: the per-element slope is regenerated from (seed, memory offset) by a counter-based
// hash, so backward needs only the seed and the output, never a stored noise tensor.

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

constexpr int64_t kBlock = 16384;  // elements per work item
constexpr int64_t kPlaneMin = 64;  // below: iterate rows of C*inner elements
constexpr int kLanes = 16;         // independent accumulators of the parameter sum

// ------------------------------------------------------------------ load / store (vectorisable)
template <typename T>
struct Compute {
  using type = float;
};
template <>
struct Compute<double> {
  using type = double;
};

inline float ld(float v) { return v; }
inline double ld(double v) { return v; }
inline float ld(c10::BFloat16 v) {
  return __builtin_bit_cast(float, static_cast<uint32_t>(v.x) << 16);
}
inline float ld(c10::Half v) { return static_cast<float>(v); }

template <typename T>
inline T st(typename Compute<T>::type v) {
  return static_cast<T>(v);
}
template <>
inline c10::BFloat16 st<c10::BFloat16>(float v) {
  // round to nearest even, NaN kept quiet (as c10's round_to_nearest_even)
  const uint32_t u = __builtin_bit_cast(uint32_t, v);
  const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint16_t b = (v != v) ? uint16_t(0x7fc0) : static_cast<uint16_t>(r);
  return c10::BFloat16(b, c10::BFloat16::from_bits());
}

// ------------------------------------------------------------------------------ math helpers
inline float pow2i(float n) {  // 2^n for integral n in [-126, 127]
  return __builtin_bit_cast(float, (static_cast<int32_t>(n) + 127) << 23);
}
inline float round_near(float v) {  // round to nearest (|v| < 2^22), vectorisable
  return (v + 12582912.0f) - 12582912.0f;
}
// e^r for |r| <= ln2/2 as 1 + r + r^2 P(r), P of degree 4 fitted (relative-error minimax by
// reweighted least squares, benchmarks/../tests: test_fp32_exp_max_error) on that interval:
// truncation 3.7e-9 relative, 1.2 ulp with the fp32 evaluation (was a degree-7 Taylor series:
// one FMA fewer)
inline float exp_red(float r) {
  const float p = 0.49999997f + r * (0.16666521f + r * (0.041667227f + r * (0.0083686942f +
                  r * 0.0013879685f)));
  return (r * r) * p + r + 1.0f;
}
constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kExpLo = -87.0f, kExpHi = 88.72283f;

// e^x for x already in [kExpLo, kExpHi] (no checks: the callers below clamp, or know the range)
inline float exp_core(float xc) {
  const float n = round_near(xc * kLog2e);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  return (2.0f * exp_red(r)) * pow2i(n - 1.0f);  // n <= 128
}
// e^x with one scale factor: below -87 flushed to 0 (the true value is < 1.7e-38, at the edge of
// the denormal range), above log(FLT_MAX) inf; NaN propagates
inline float fexp(float x) {
  const float y = exp_core(std::min(std::max(x, kExpLo), kExpHi));
  return x < kExpLo ? 0.0f : (x > kExpHi ? std::numeric_limits<float>::infinity() : y);
}
// e^x for x <= 88.7 (or NaN): fexp without the overflow check (sigmoid, normal density, gates)
inline float fexp_neg(float x) {
  const float y = exp_core(std::max(x, kExpLo));
  return x < kExpLo ? 0.0f : y;
}
// e^x - 1, accurate near 0 (no cancellation): 2^n (e^r - 1) + (2^n - 1); x <= 88
inline float em1_poly(float r) {
  return r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
         r * (1.0f / 720 + r * (1.0f / 5040)))))));
}
inline float fexpm1(float x) {
  const float xc = std::min(std::max(x, -30.0f), 88.0f);
  const float n = round_near(xc * kLog2e);
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  const float s = pow2i(n);
  return s * em1_poly(r) + (s - 1.0f);
}
// erfc(z) = t P(t) e^{-z^2} for z >= 0, t = 1 / (1 + p z): Abramowitz-Stegun 7.1.26, absolute
// error < 1.5e-7 (the approximation ATen's own vectorised erf uses); e^{-z^2} is passed in so that
// gelu and sau share it with the normal density
inline float ferfc_pos(float z, float ez2) {
  const float t = 1.0f / (1.0f + 0.3275911f * z);
  return t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
         t * 1.061405429f)))) * ez2;
}

template <typename A>
struct M;
template <>
struct M<float> {
  static float exp(float x) { return fexp(x); }
  static float exp_neg(float x) { return fexp_neg(x); }
  // e^x clamped to [e^-87, e^88.7]: for callers that need neither 0 nor inf
  static float exp_sat(float x) { return exp_core(std::min(std::max(x, kExpLo), kExpHi)); }
  static float recip_s(double s) { return static_cast<float>(1.0 / s); }
  static float div_s(float x, float inv_s, double) { return x * inv_s; }
  static float expm1(float x) { return fexpm1(x); }
  static float erfc_pos(float z, float ez2) { return ferfc_pos(z, ez2); }
  static float sqrt(float x) { return std::sqrt(x); }
};
template <>
struct M<double> {
  static double exp(double x) { return std::exp(x); }
  static double exp_neg(double x) { return std::exp(x); }
  static double exp_sat(double x) { return std::exp(x); }
  static double recip_s(double s) { return 1.0 / s; }
  static double div_s(double x, double, double s) { return x / s; }  // fp64: exact formula
  static double expm1(double x) { return std::expm1(x); }
  static double erfc_pos(double z, double) { return std::erfc(z); }
  static double sqrt(double x) { return std::sqrt(x); }
};

// standard normal cdf Phi(t) = erfc(-t / sqrt 2) / 2 (accurate in both tails) and pdf phi(t),
// sharing one exp(-t^2 / 2); for |t| > 1.3e19 t^2 is inf and both tails are exactly 0 (no clamp
// needed: erfc_pos(z) -> t P(t) * 0 with t = 1 / (1 + p z) finite)
template <typename A>
inline void nphi(A t, A& cdf, A& pdf) {
  const A e = M<A>::exp_neg(A(-0.5) * t * t);
  const A h = A(0.5) * M<A>::erfc_pos(std::abs(t) * A(0.70710678118654752440), e);
  cdf = t < A(0) ? h : A(1) - h;
  pdf = A(0.39894228040143267794) * e;
}
// e = exp(-|z|) in (0, 1]: sigmoid and sigmoid' without overflow
// (r = 1 / (1 + e): one division for both)
template <typename A>
inline void sigq(A z, A e, A& sig, A& q) {
  const A r = A(1) / (A(1) + e);
  sig = z >= A(0) ? r : e * r;
  q = e * r * r;  // sigma (1 - sigma)
}

// ------------------------------------------------------------------------------- functors
struct P {
  double p0, p1, p2;
};

// x > 0 ? x : 0
struct Relu {
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) { return x > A(0) ? x : A(0); }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) { return x > A(0) ? A(1) : A(0); }
  template <typename A>
  static A d_out(A y, const P&, A, uint32_t) { return y > A(0) ? A(1) : A(0); }
};
// x > 0 ? x : a x   (p0 = a)
struct Leaky {
  template <typename A>
  static A fwd(A x, const P& p, A, uint32_t) {
    const A a = A(p.p0);
    return x > A(0) ? x : a * x;
  }
  template <typename A>
  static A d_in(A x, const P& p, A, uint32_t) {
    const A a = A(p.p0);
    return x > A(0) ? A(1) : a;
  }
  template <typename A>
  static A d_out(A y, const P& p, A, uint32_t) {
    const A a = A(p.p0);
    return y > A(0) ? A(1) : a;
  }
};
// murmur3's 32-bit finaliser: the rrelu slope of one element is a hash of its memory offset and
// of a random seed drawn at each forward (one finaliser per element is enough for U(l, u))
inline uint32_t mix32(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  h ^= h >> 16;
  return h;
}
// x > 0 ? x : a_i x, a_i = lower + (upper - lower) U_i   (p0 lower, p1 upper, p2 seed)
struct RRelu {
  template <typename A>
  static A slope(const P& p, uint32_t i) {
    const uint32_t h = mix32((i * 0x9e3779b9u) ^ static_cast<uint32_t>(p.p2));
    // h >> 8 < 2^24: exact as a signed int, which converts in one vector instruction
    const float u = static_cast<float>(static_cast<int32_t>(h >> 8)) * (1.0f / 16777216.0f);
    return A(static_cast<float>(p.p0) + static_cast<float>(p.p1 - p.p0) * u);
  }
  // arithmetic instead of selects: g++ would sink the hash into a branch and not vectorise
  template <typename A>
  static A fwd(A x, const P& p, A, uint32_t i) {
    return std::max(x, A(0)) + slope<A>(p, i) * std::min(x, A(0));
  }
  template <typename A>
  static A d_in(A x, const P& p, A, uint32_t i) {
    const A pos = x > A(0) ? A(1) : A(0);
    return pos + (A(1) - pos) * slope<A>(p, i);
  }
  template <typename A>
  static A d_out(A y, const P& p, A, uint32_t i) { return d_in(y, p, A(0), i); }
};
// scale * (x > 0 ? x : alpha (e^x - 1))   (p0 alpha, p1 scale): elu and selu
struct Elu {
  template <typename A>
  static A fwd(A x, const P& p, A, uint32_t) {
    const A s = A(p.p1), sa = A(p.p1 * p.p0);
    const A e = M<A>::expm1(std::min(x, A(0)));
    return x > A(0) ? s * x : sa * e;
  }
  template <typename A>
  static A d_in(A x, const P& p, A, uint32_t) {
    const A s = A(p.p1), sa = A(p.p1 * p.p0);
    const A e = M<A>::exp(std::min(x, A(0)));
    return x > A(0) ? s : sa * e;
  }
  // y <= 0 side: y = s a (e^x - 1) so f' = s a e^x = y + s a   (alpha >= 0)
  template <typename A>
  static A d_out(A y, const P& p, A, uint32_t) {
    const A s = A(p.p1), sa = A(p.p1 * p.p0);
    return y > A(0) ? s : y + sa;
  }
};
// x Phi(x)
struct Gelu {
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) {
    A c, d;
    nphi(x, c, d);
    return x * c;
  }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) {
    A c, d;
    nphi(x, c, d);
    return c + x * d;
  }
};
// 0.5 x (1 + tanh(k0 (x + k1 x^3))), evaluated on clamp(x, -10, 10) (exactly relu outside)
struct GeluTanh {
  static constexpr double k0 = 0.79788456080286535588, k1 = 0.044715;
  // tanh(u) and 1 - tanh(u)^2 from e = exp(-2|u|) (no overflow)
  template <typename A>
  static void th(A xc, A& t, A& sech2) {
    const A u = A(k0) * (xc + A(k1) * xc * xc * xc);
    const A e = M<A>::exp_neg(A(-2) * std::abs(u));
    const A r = A(1) / (A(1) + e);
    const A mag = (A(1) - e) * r;
    t = u < A(0) ? -mag : mag;
    sech2 = A(4) * e * r * r;
  }
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-10)), A(10));
    A t, s2;
    th<A>(xc, t, s2);
    return A(0.5) * xc * (A(1) + t) + std::max(x - xc, A(0));
  }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-10)), A(10));
    A t, s2;
    th<A>(xc, t, s2);
    const A d = A(0.5) * (A(1) + t) + A(0.5) * xc * s2 * A(k0) * (A(1) + A(3 * k1) * xc * xc);
    return x >= A(10) ? A(1) : (x <= A(-10) ? A(0) : d);
  }
};
// x sigmoid(w x): silu (w = 1) and swish (learnable w)
struct Swish {
  template <typename A>
  static A fwd(A x, const P&, A w, uint32_t) {
    const A z = w * x;
    A sig, q;
    sigq(z, M<A>::exp_neg(-std::abs(z)), sig, q);
    return x * sig;
  }
  template <typename A>
  static A d_in(A x, const P&, A w, uint32_t) {
    const A z = w * x;
    A sig, q;
    sigq(z, M<A>::exp_neg(-std::abs(z)), sig, q);
    return sig + z * q;
  }
  template <typename A>
  static A d_w(A x, const P&, A w, uint32_t) {
    const A z = w * x;
    A sig, q;
    sigq(z, M<A>::exp_neg(-std::abs(z)), sig, q);
    return x * (x * q);  // x^2 sigma(1 - sigma); x * q first: no inf * 0
  }
};
// x tanh(softplus(x)); with e = e^x, n = e (e + 2): tanh(softplus) = n / (n + 2)
struct Mish {
  template <typename A>
  static A gate(A x, A& d) {
    const A e = M<A>::exp_neg(std::min(x, A(20)));  // tanh(softplus(20)) == 1 in fp32 and fp64
    const A n = e * (e + A(2));
    // one division for both quotients: (n + 2)(1 + e) <= 1.2e26 (e <= e^20), no overflow
    const A q = A(1) / ((n + A(2)) * (A(1) + e));
    const A r = q * (A(1) + e);  // 1 / (n + 2)
    const A g = n * r;
    // d gate/dx = (1 - g^2) sigmoid(x) = 4 (n + 1) / (n + 2)^2 * e / (1 + e)
    d = (A(4) * (n + A(1)) * r) * (e * q);
    return g;
  }
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) {
    A d;
    return x * gate<A>(x, d);
  }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) {
    A d;
    const A g = gate<A>(x, d);
    return g + std::min(x, A(20)) * d;
  }
};
// x exp(-exp(-x)); below -20 the gate is exactly 0 in every float dtype: clamping there keeps
// exp(-x) and x exp(-x) finite without changing a value
struct Golu {
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-20)), A(100));
    return std::max(x, A(-20)) * M<A>::exp_neg(-M<A>::exp_sat(-xc));
  }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-20)), A(100));
    const A e = M<A>::exp_sat(-xc);  // -xc in [-100, 20]: e^-87 for smaller is as good as 0
    return M<A>::exp_neg(-e) * (A(1) + xc * e);
  }
};
// 0 | (x + b)^2 / (4 b) | x   (p0 = b); from the output: f' = min(sqrt(y / b), 1)
struct Smelu {
  template <typename A>
  static A fwd(A x, const P& p, A, uint32_t) {
    const A b = A(p.p0);
    const A xc = std::min(std::max(x, -b), b);
    return x >= b ? x : (xc + b) * (xc + b) / (A(4) * b);
  }
  template <typename A>
  static A d_in(A x, const P& p, A, uint32_t) {
    const A b = A(p.p0);
    const A xc = std::min(std::max(x, -b), b);
    return x >= b ? A(1) : (xc + b) / (A(2) * b);
  }
  template <typename A>
  static A d_out(A y, const P& p, A, uint32_t) {
    const A b = A(p.p0);
    return y >= b ? A(1) : M<A>::sqrt(std::max(y, A(0)) / b);
  }
};
// x (a + (1 - a) Phi(x / s)) + (1 - a) s phi(x / s)   (p0 = a, p1 = s)
struct Sau {
  template <typename A>
  static A fwd(A x, const P& p, A, uint32_t) {
    const A a = A(p.p0), s = A(p.p1);
    A c, d;
    nphi(M<A>::div_s(x, M<A>::recip_s(p.p1), p.p1), c, d);
    return x * (a + (A(1) - a) * c) + ((A(1) - a) * s) * d;
  }
  template <typename A>
  static A d_in(A x, const P& p, A, uint32_t) {
    const A a = A(p.p0);
    A c, d;
    nphi(M<A>::div_s(x, M<A>::recip_s(p.p1), p.p1), c, d);
    return a + (A(1) - a) * c;
  }
};
// forward relu, backward 1[x > -alpha] from a saved 1-byte mask (p0 = alpha)
struct Helu {
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) { return x > A(0) ? x : A(0); }
  template <typename A>
  static bool mask(A x, const P& p) {
    const A t = A(-p.p0);
    return x > t;
  }
  template <typename A>
  static A d_in(A x, const P& p, A, uint32_t) {
    const A t = A(-p.p0);
    return x > t ? A(1) : A(0);
  }
};

enum Kind : int64_t {
  kRelu = 0, kLeaky = 1, kRRelu = 2, kElu = 3, kGelu = 4, kGeluTanh = 5, kSwish = 6, kMish = 7,
  kGolu = 8, kSmelu = 9, kSau = 10, kHelu = 11, kNumKinds = 12
};
enum Mode : int64_t { kFromInput = 0, kFromOutput = 1, kFromMask = 2 };

// ------------------------------------------------------------------------------ work plan
struct Plan {
  int64_t outer, C, inner, per_plane, rows, items;
  bool planes;
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

// Calls run(offset, n, channel) for the contiguous runs of one work item (a run has one channel
// when inner > 1; in channels_last rows, channel = -1 and element k has channel k % C).
template <typename Run>
inline void for_item(const Plan& p, int64_t it, Run&& run) {
  if (p.planes) {
    const int64_t plane = it / p.per_plane;
    const int64_t lo = plane * p.inner + (it % p.per_plane) * kBlock;
    const int64_t hi = std::min(lo + kBlock, (plane + 1) * p.inner);
    run(lo, hi - lo, plane % p.C);
  } else {
    const int64_t r1 = std::min(p.outer, (it + 1) * p.rows);
    for (int64_t r = it * p.rows; r < r1; ++r) {
      const int64_t base = r * p.C * p.inner;
      if (p.inner == 1) {
        run(base, p.C, int64_t(-1));
      } else {
        for (int64_t c = 0; c < p.C; ++c) run(base + c * p.inner, p.inner, c);
      }
    }
  }
}

// ------------------------------------------------------------------------------- kernels
// The inner loops take plain restrict pointers and their parameters by value, so nothing they
// store can alias what they read: g++ vectorises them without runtime alias checks. In place,
// x and y are the very same pointer (never a partial overlap). kRow: a channels_last row,
// element i has parameter w[i]; otherwise the whole run has parameter w[0].
template <class F, typename T, bool kInplace, bool kMask, bool kRow>
__attribute__((noinline))
void fwd_run(const T* __restrict x, T* __restrict y, bool* __restrict m,
             const typename Compute<T>::type* __restrict w, const P prm, const int64_t n,
             const uint32_t base) {
  using A = typename Compute<T>::type;
  const P q = prm;  // a local whose address never escapes: kept in registers
  T* yy = kInplace ? const_cast<T*>(x) : y;
  const A w0 = w[0];
  for (int64_t i = 0; i < n; ++i) {
    const A v = ld(kInplace ? yy[i] : x[i]);
    if constexpr (kMask) m[i] = F::mask(v, q);
    yy[i] = st<T>(F::fwd(v, q, kRow ? w[i] : w0, base + static_cast<uint32_t>(i)));
  }
}

template <class F, typename T, bool kInplace, bool kMask>
void fwd_kernel(const T* x, T* y, bool* m, const typename Compute<T>::type* w, const P prm,
                const Plan p) {
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    for (int64_t it = b0; it < b1; ++it) {
      for_item(p, it, [&](int64_t o, int64_t n, int64_t c) {
        bool* mo = kMask ? m + o : nullptr;
        const uint32_t base = static_cast<uint32_t>(o);
        if (c >= 0) {
          fwd_run<F, T, kInplace, kMask, false>(x + o, y + o, mo, w + c, prm, n, base);
        } else {
          fwd_run<F, T, kInplace, kMask, true>(x + o, y + o, mo, w, prm, n, base);
        }
      });
    }
  });
}

template <class F, typename T, int64_t kMode>
inline typename Compute<T>::type deriv(T s, bool mv, const P& prm,
                                       typename Compute<T>::type w, uint32_t i) {
  using A = typename Compute<T>::type;
  if constexpr (kMode == kFromMask) {
    return static_cast<A>(mv);  // (bwd_run reads the mask itself)
  } else if constexpr (kMode == kFromOutput) {
    return F::d_out(ld(s), prm, w, i);
  } else {
    return F::d_in(ld(s), prm, w, i);
  }
}

// grad_input = g * f'(s) over one run (no parameter gradient)
template <class F, typename T, int64_t kMode, bool kRow>
__attribute__((noinline))
void bwd_run(const T* __restrict g, const T* __restrict s, const bool* __restrict m,
             T* __restrict gi, const typename Compute<T>::type* __restrict w, const P prm,
             const int64_t n, const uint32_t base) {
  using A = typename Compute<T>::type;
  const A w0 = w[0];
  if constexpr (kMode == kFromMask) {
    // the mask read as bytes and converted arithmetically: a bool select makes g++ branch (fp32)
    // or give up vectorising (bf16)
    const uint8_t* __restrict mb = reinterpret_cast<const uint8_t*>(m);
    for (int64_t i = 0; i < n; ++i) {
      gi[i] = st<T>(ld(g[i]) * static_cast<A>(static_cast<int32_t>(mb[i])));
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const A d = deriv<F, T, kMode>(s[i], false, prm, kRow ? w[i] : w0,
                                   base + static_cast<uint32_t>(i));
    gi[i] = st<T>(ld(g[i]) * d);
  }
}

// the same plus the parameter-gradient sum of one run with one parameter (kLanes lanes)
template <class F, typename T>
__attribute__((noinline))
double bwd_run_learn(const T* __restrict g, const T* __restrict x, T* __restrict gi,
                     const typename Compute<T>::type wc, const P prm, const int64_t n,
                     const uint32_t base) {
  using A = typename Compute<T>::type;
  A lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const A gv = ld(g[i + k]);
      const A xv = ld(x[i + k]);
      const uint32_t idx = base + static_cast<uint32_t>(i + k);
      gi[i + k] = st<T>(gv * F::d_in(xv, prm, wc, idx));
      lanes[k] += gv * F::d_w(xv, prm, wc, idx);
    }
  }
  A tail = 0;
  for (; i < n; ++i) {
    const A gv = ld(g[i]);
    const A xv = ld(x[i]);
    const uint32_t idx = base + static_cast<uint32_t>(i);
    gi[i] = st<T>(gv * F::d_in(xv, prm, wc, idx));
    tail += gv * F::d_w(xv, prm, wc, idx);
  }
  double sum = static_cast<double>(tail);
  for (int k = 0; k < kLanes; ++k) sum += static_cast<double>(lanes[k]);
  return sum;
}

// one channels_last row: element c has parameter w[c] and accumulator acc[c]
template <class F, typename T>
__attribute__((noinline))
void bwd_row_learn(const T* __restrict g, const T* __restrict x, T* __restrict gi,
                   const typename Compute<T>::type* __restrict w,
                   typename Compute<T>::type* __restrict acc, const P prm, const int64_t C,
                   const uint32_t base) {
  using A = typename Compute<T>::type;
  for (int64_t c = 0; c < C; ++c) {
    const A gv = ld(g[c]);
    const A xv = ld(x[c]);
    const uint32_t idx = base + static_cast<uint32_t>(c);
    gi[c] = st<T>(gv * F::d_in(xv, prm, w[c], idx));
    acc[c] += gv * F::d_w(xv, prm, w[c], idx);
  }
}

// grad_input = g * f'(s); with kLearn also dE/dw_c = sum g * df/dw (s is then the input)
template <class F, typename T, int64_t kMode, bool kLearn>
void bwd_kernel(const T* g, const T* s, const bool* m, const typename Compute<T>::type* w,
                T* gi, double* gw, const P prm, const Plan p) {
  using A = typename Compute<T>::type;
  std::vector<double> partial(kLearn ? (p.planes ? p.items : p.items * p.C) : 0, 0.0);
  double* part = partial.data();
  at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
    std::vector<A> acc(kLearn && !p.planes ? p.C : 0);
    for (int64_t it = b0; it < b1; ++it) {
      if constexpr (kLearn) std::fill(acc.begin(), acc.end(), A(0));
      double item_sum = 0.0;
      for_item(p, it, [&](int64_t o, int64_t n, int64_t c) {
        const bool* mo = kMode == kFromMask ? m + o : nullptr;
        const uint32_t base = static_cast<uint32_t>(o);
        if constexpr (kLearn) {
          if (c >= 0) {
            const double r = bwd_run_learn<F, T>(g + o, s + o, gi + o, w[c], prm, n, base);
            if (p.planes) {
              item_sum += r;
            } else {
              acc[c] += static_cast<A>(r);
            }
          } else {
            bwd_row_learn<F, T>(g + o, s + o, gi + o, w, acc.data(), prm, n, base);
          }
        } else if (c >= 0) {
          bwd_run<F, T, kMode, false>(g + o, s + o, mo, gi + o, w + c, prm, n, base);
        } else {
          bwd_run<F, T, kMode, true>(g + o, s + o, mo, gi + o, w, prm, n, base);
        }
      });
      if constexpr (kLearn) {
        if (p.planes) {
          part[it] = item_sum;
        } else {
          for (int64_t c = 0; c < p.C; ++c) part[it * p.C + c] = static_cast<double>(acc[c]);
        }
      }
    }
  });
  if constexpr (kLearn) {
    std::fill(gw, gw + p.C, 0.0);
    for (int64_t it = 0; it < p.items; ++it) {
      if (p.planes) {
        gw[(it / p.per_plane) % p.C] += part[it];
      } else {
        for (int64_t c = 0; c < p.C; ++c) gw[c] += part[it * p.C + c];
      }
    }
  }
}

// --------------------------------------------------------------------------------- dispatch
template <typename Fn>
void with_functor(int64_t kind, Fn&& fn) {
  switch (kind) {
    case kRelu: return fn(Relu{});
    case kLeaky: return fn(Leaky{});
    case kRRelu: return fn(RRelu{});
    case kElu: return fn(Elu{});
    case kGelu: return fn(Gelu{});
    case kGeluTanh: return fn(GeluTanh{});
    case kSwish: return fn(Swish{});
    case kMish: return fn(Mish{});
    case kGolu: return fn(Golu{});
    case kSmelu: return fn(Smelu{});
    case kSau: return fn(Sau{});
    case kHelu: return fn(Helu{});
    default: TORCH_CHECK(false, "rectifiers_act: unknown activation kind ", kind);
  }
}

// which optional pieces a functor has (learnable parameter, derivative from the output, mask)
template <class F, typename A, typename = void>
struct HasDw : std::false_type {};
template <class F, typename A>
struct HasDw<F, A, std::void_t<decltype(F::d_w(A(0), P{}, A(0), 0u))>> : std::true_type {};
template <class F, typename A, typename = void>
struct HasOut : std::false_type {};
template <class F, typename A>
struct HasOut<F, A, std::void_t<decltype(F::d_out(A(0), P{}, A(0), 0u))>> : std::true_type {};
template <class F, typename A, typename = void>
struct HasMask : std::false_type {};
template <class F, typename A>
struct HasMask<F, A, std::void_t<decltype(F::mask(A(0), P{}))>> : std::true_type {};

P params(c10::ArrayRef<double> p) {
  P r{0.0, 0.0, 0.0};
  if (p.size() > 0) r.p0 = p[0];
  if (p.size() > 1) r.p1 = p[1];
  if (p.size() > 2) r.p2 = p[2];
  return r;
}

void check_common(const at::Tensor& s, const at::Tensor& w, int64_t C, int64_t inner) {
  TORCH_CHECK(s.device().is_cpu(), "rectifiers_act: CPU tensors only, got ", s.device());
  TORCH_CHECK(s.is_non_overlapping_and_dense(), "rectifiers_act: input must be dense");
  const auto wt = s.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(w.dim() == 1 && w.numel() == C && w.is_contiguous() && w.scalar_type() == wt,
              "rectifiers_act: w must be a contiguous (C,) tensor of the compute dtype");
  TORCH_CHECK(C >= 1 && inner >= 1 && s.numel() % (C * inner) == 0,
              "rectifiers_act: numel ", s.numel(), " is not a multiple of C*inner");
}

void act_forward(const at::Tensor& x, int64_t kind, c10::ArrayRef<double> p, const at::Tensor& w,
                 int64_t C, int64_t inner, const at::Tensor& out,
                 const std::optional<at::Tensor>& mask) {
  check_common(x, w, C, inner);
  TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.sizes() == x.sizes() &&
                  out.strides() == x.strides(),
              "rectifiers_act: out must have the input's dtype, shape and strides");
  const bool has_mask = mask.has_value() && mask->defined();
  if (has_mask) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->strides() == x.strides() &&
                    mask->sizes() == x.sizes(),
                "rectifiers_act: mask must be bool with the input's strides");
  }
  {
    const auto* xb = static_cast<const char*>(x.const_data_ptr());
    const auto* yb = static_cast<const char*>(out.const_data_ptr());
    const auto nb = static_cast<std::ptrdiff_t>(x.numel() * x.element_size());
    TORCH_CHECK(xb == yb || xb + nb <= yb || yb + nb <= xb,
                "rectifiers_act: out must be x itself or not overlap it");
  }
  const Plan pl = make_plan(x.numel(), C, inner);
  if (pl.items == 0) return;
  const P prm = params(p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "act_forward", [&] {
    using A = typename Compute<scalar_t>::type;
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* yp = out.data_ptr<scalar_t>();
    const A* wp = w.const_data_ptr<A>();
    bool* mp = has_mask ? mask->data_ptr<bool>() : nullptr;
    with_functor(kind, [&](auto f) {
      using F = decltype(f);
      if constexpr (HasMask<F, A>::value) {
        if (has_mask) {
          if (xp == yp) return fwd_kernel<F, scalar_t, true, true>(xp, yp, mp, wp, prm, pl);
          return fwd_kernel<F, scalar_t, false, true>(xp, yp, mp, wp, prm, pl);
        }
      } else {
        TORCH_CHECK(!has_mask, "rectifiers_act: this activation writes no mask");
      }
      if (xp == yp) return fwd_kernel<F, scalar_t, true, false>(xp, yp, mp, wp, prm, pl);
      return fwd_kernel<F, scalar_t, false, false>(xp, yp, mp, wp, prm, pl);
    });
  });
}

std::tuple<at::Tensor, at::Tensor> act_backward(const at::Tensor& g, const at::Tensor& s,
                                                int64_t kind, int64_t mode,
                                                c10::ArrayRef<double> p, const at::Tensor& w,
                                                int64_t C, int64_t inner,
                                                const std::optional<at::Tensor>& mask,
                                                bool need_w) {
  check_common(s, w, C, inner);
  TORCH_CHECK(g.scalar_type() == s.scalar_type() && g.sizes() == s.sizes() &&
                  g.strides() == s.strides(),
              "rectifiers_act: grad must have the saved tensor's dtype, shape and strides");
  TORCH_CHECK(mode >= kFromInput && mode <= kFromMask, "rectifiers_act: bad mode ", mode);
  TORCH_CHECK(!(need_w && mode != kFromInput),
              "rectifiers_act: the parameter gradient needs the saved input");
  const bool has_mask = mask.has_value() && mask->defined();
  TORCH_CHECK(has_mask == (mode == kFromMask), "rectifiers_act: mask iff mode is 'mask'");
  if (has_mask) {
    TORCH_CHECK(mask->scalar_type() == at::kBool && mask->strides() == s.strides() &&
                    mask->sizes() == s.sizes(),
                "rectifiers_act: mask must be bool with the saved tensor's strides");
  }
  at::Tensor gi = at::empty_like(s);
  at::Tensor gw = need_w ? at::empty({C}, s.options().dtype(at::kDouble))
                         : at::empty({0}, s.options().dtype(at::kDouble));
  const Plan pl = make_plan(s.numel(), C, inner);
  if (pl.items == 0) {
    gw.zero_();
    return {gi, gw};
  }
  const P prm = params(p);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, s.scalar_type(), "act_backward", [&] {
    using A = typename Compute<scalar_t>::type;
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const scalar_t* sp = s.const_data_ptr<scalar_t>();
    const bool* mp = has_mask ? mask->const_data_ptr<bool>() : nullptr;
    const A* wp = w.const_data_ptr<A>();
    scalar_t* gip = gi.data_ptr<scalar_t>();
    double* gwp = need_w ? gw.data_ptr<double>() : nullptr;
    with_functor(kind, [&](auto f) {
      using F = decltype(f);
      if (mode == kFromMask) {
        return bwd_kernel<F, scalar_t, kFromMask, false>(gp, sp, mp, wp, gip, gwp, prm, pl);
      }
      if (mode == kFromOutput) {
        if constexpr (HasOut<F, A>::value) {
          return bwd_kernel<F, scalar_t, kFromOutput, false>(gp, sp, mp, wp, gip, gwp, prm, pl);
        } else {
          TORCH_CHECK(false, "rectifiers_act: this activation needs its input for backward");
        }
      }
      if constexpr (HasDw<F, A>::value) {
        if (need_w) {
          return bwd_kernel<F, scalar_t, kFromInput, true>(gp, sp, mp, wp, gip, gwp, prm, pl);
        }
      } else {
        TORCH_CHECK(!need_w, "rectifiers_act: this activation has no learnable parameter");
      }
      return bwd_kernel<F, scalar_t, kFromInput, false>(gp, sp, mp, wp, gip, gwp, prm, pl);
    });
  });
  return {gi, gw};
}

}  // namespace

TORCH_LIBRARY(rectifiers_act, m) {
  m.def(
      "forward(Tensor x, int kind, float[] p, Tensor w, int C, int inner, Tensor(a!) out, "
      "Tensor(b!)? mask) -> ()");
  m.def(
      "backward(Tensor g, Tensor s, int kind, int mode, float[] p, Tensor w, int C, int inner, "
      "Tensor? mask, bool need_w) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(rectifiers_act, CPU, m) {
  m.impl("forward", &act_forward);
  m.impl("backward", &act_backward);
}
