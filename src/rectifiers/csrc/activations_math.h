// The rectifier zoo's elementwise math (included by activations_cpu.cpp, see there): bf16/fp16
// load and store, vectorisable fp32 exp/expm1/erfc, and one functor per activation giving
// f(x), f'(x) and where they exist f'(y) (d_out), df/dw (d_w), a mask bit and f' from it (mask,
// d_mask: relu, leaky_relu, helu). Everything is inline, branch-free where it matters, so g++ -O3
// -march=native vectorises the kernels' loops.
// (rectifiers._cpp hashes the headers of csrc/ into the build key: editing this file rebuilds.)

#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace rectifiers_act {

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
// Round to nearest through the FMA against 1.5 * 2^23: t = v + kRoundMagic rounds v to an
// integer n (|v| < 2^22) and leaves n in t's low mantissa bits, so 2^k for k = n + c is built
// from t's bits with one integer add and shift (no float -> int conversion)
constexpr float kRoundMagic = 12582912.0f;
constexpr uint32_t kRoundMagicBits = 0x4B400000u;
template <int kBias>  // 2^(n + kBias) from t = n + kRoundMagic; n + kBias + 127 in [0, 254]
inline float pow2_bits(float t) {
  return __builtin_bit_cast(float, (__builtin_bit_cast(uint32_t, t) +
                                    static_cast<uint32_t>(127 + kBias - kRoundMagicBits)) << 23);
}
// 2 e^r for |r| <= ln2/2: the polynomial 1 + r + r^2 P(r), P of degree 4 fitted (relative-error
// minimax by reweighted least squares: truncation 3.7e-9 relative), doubled (exactly) and
// evaluated by Horner in six FMAs. exp_core below: within 0.92 ulp of e^x over [-86.9, 88.7]
// (measured on 2^25 points against libm in double; the activations' own errors are tested:
// test_fp32_polynomial_math_max_error)
inline float exp2x_red(float r) {
  return 2.0f + r * (2.0f + r * (2.0f * 0.49999997f + r * (2.0f * 0.16666521f + r * (2.0f *
         0.041667227f + r * (2.0f * 0.0083686942f + r * (2.0f * 0.0013879685f))))));
}
constexpr float kLn2Hi = 0.693145751953125f, kLn2Lo = 1.428606765330187e-06f;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kExpLo = -87.0f, kExpHi = 88.72283f;

// e^x for x already in [kExpLo, kExpHi] (no checks: the callers below clamp, or know the range);
// n = round(x log2 e) in [-126, 128], the scale 2^(n-1) (2 e^r * 2^(n-1)): at n = -126, i.e.
// x within 0.01 of -87, the scale's exponent field is 0 and the result 0 (true value < 1.8e-38)
inline float exp_core(float xc) {
  const float t = xc * kLog2e + kRoundMagic;
  const float n = t - kRoundMagic;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  return exp2x_red(r) * pow2_bits<-1>(t);
}
// e^x for x <= 88.7 (or NaN; every caller's argument is bounded above: sigmoid, normal density,
// gates): below -87 the clamp lands where exp_core gives 0 (the true value is < 1.7e-38, at the
// edge of the denormal range)
inline float fexp_neg(float x) { return exp_core(std::max(x, kExpLo)); }
// e^x - 1, accurate near 0 (no cancellation): 2^n (e^r - 1) + (2^n - 1); x <= 88
inline float em1_poly(float r) {
  return r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
         r * (1.0f / 720 + r * (1.0f / 5040)))))));
}
inline float fexpm1(float x) {
  const float xc = std::min(std::max(x, -30.0f), 88.0f);
  const float t = xc * kLog2e + kRoundMagic;
  const float n = t - kRoundMagic;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  const float s = pow2_bits<0>(t);  // n in [-43, 127]
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
  static float exp_neg(float x) { return fexp_neg(x); }
  static float recip_s(double s) { return static_cast<float>(1.0 / s); }
  static float div_s(float x, float inv_s, double) { return x * inv_s; }
  static float expm1(float x) { return fexpm1(x); }
  static float erfc_pos(float z, float ez2) { return ferfc_pos(z, ez2); }
  static float sqrt(float x) { return std::sqrt(x); }
};
template <>
struct M<double> {
  static double exp_neg(double x) { return std::exp(x); }
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
  template <typename A>
  static bool mask(A x, const P&) { return x > A(0); }
  template <typename A>
  static A d_mask(A b, const P&) { return b; }  // b: the mask bit as 0 or 1
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
  template <typename A>
  static bool mask(A x, const P&) { return x > A(0); }
  template <typename A>
  static A d_mask(A b, const P& p) { return b + (A(1) - b) * A(p.p0); }  // exactly 1 or a
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
    const A e = M<A>::exp_neg(std::min(x, A(0)));
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
// 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = k0 (x + k1 x^3): with e = e^{-2u} and r = 1 / (1 + e),
// f = x r and f' = r + x e r^2 2 k0 (1 + 3 k1 x^2) (one exp, one division, no cancellation in
// the left tail). Evaluated on xc = clamp(x, -B, B), B = 9.8 (|2u| <= 82.8: e and r stay normal
// floats): f = xc r + max(x - xc, 0) is x itself above B and within 1.2e-35 of 0 below -B
// (true value: between that and 0), f' is exactly 1 above B (fp32 and fp64) and set to 0 below -B
struct GeluTanh {
  static constexpr double k0 = 0.79788456080286535588, k1 = 0.044715, kB = 9.8;
  template <typename A>
  static A e2u(A xc) {  // e^{-2u}
    return M<A>::exp_neg(xc * (A(-2 * k0) + A(-2 * k0 * k1) * (xc * xc)));
  }
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-kB)), A(kB));
    return xc / (A(1) + e2u(xc)) + std::max(x - xc, A(0));
  }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-kB)), A(kB));
    const A e = e2u(xc);
    const A r = A(1) / (A(1) + e);
    const A d = r + (xc * ((e * r) * r)) * (A(2 * k0) + A(6 * k0 * k1) * (xc * xc));
    return x < A(-kB) ? A(0) : d;
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
  // The backward from s = sigmoid(-|z|) = e / (1 + e), e = exp(-|z|): the one value a 16-bit
  // table holds for swish's learnable-beta backward (activations_lut.h), from which f' and
  // df/dbeta follow in a few operations, the same ones here and there (so the table path equals
  // this one bitwise). s <= 1/2: sigma(1 - sigma) = s (1 - s) without cancellation.
  template <typename A>
  static A small(A x, A w) {
    const A e = M<A>::exp_neg(-std::abs(w * x));
    return e / (A(1) + e);
  }
  template <typename A>
  static A d_in_s(A x, A w, A s) {
    const A z = w * x;
    const A sig = z >= A(0) ? A(1) - s : s;
    return sig + z * (s * (A(1) - s));
  }
  template <typename A>
  static A d_w_s(A x, A, A s) {
    return x * (x * (s * (A(1) - s)));  // x^2 sigma(1 - sigma); x * (...) first: no inf * 0
  }
  template <typename A>
  static A d_in(A x, const P&, A w, uint32_t) { return d_in_s(x, w, small(x, w)); }
  template <typename A>
  static A d_w(A x, const P&, A w, uint32_t) { return d_w_s(x, w, small(x, w)); }
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
// exp(-x) and x exp(-x) finite without changing a value (above 87 exp(-x) is 0 here: gate 1)
struct Golu {
  template <typename A>
  static A fwd(A x, const P&, A, uint32_t) {
    const A xm = std::max(x, A(-20));
    return xm * M<A>::exp_neg(-M<A>::exp_neg(-xm));
  }
  template <typename A>
  static A d_in(A x, const P&, A, uint32_t) {
    const A xc = std::min(std::max(x, A(-20)), A(100));  // (100: no inf * 0 at x = inf)
    const A e = M<A>::exp_neg(-xc);
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
// forward relu, backward 1[x > -alpha] from a saved 1-bit mask (p0 = alpha)
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
  template <typename A>
  static A d_mask(A b, const P&) { return b; }
};

enum Kind : int64_t {
  kRelu = 0, kLeaky = 1, kRRelu = 2, kElu = 3, kGelu = 4, kGeluTanh = 5, kSwish = 6, kMish = 7,
  kGolu = 8, kSmelu = 9, kSau = 10, kHelu = 11, kNumKinds = 12
};
enum Mode : int64_t { kFromInput = 0, kFromOutput = 1, kFromMask = 2 };

}  // namespace rectifiers_act
