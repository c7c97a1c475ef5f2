// 16-bit lookup tables for the zoo's kernels. Not a self-contained header: activations_cpu.cpp
// includes it inside its anonymous namespace, after the kernels and functor traits it uses
// (fwd_run, deriv, for_item, Plan, HasOut, HasSmall). (rectifiers._cpp hashes csrc/'s headers
// into the build key: editing this file rebuilds.)

#pragma once

// ------------------------------------------------------------------- 16-bit lookup tables
// A bf16 or fp16 tensor holds at most 65536 distinct values. For the activations whose f and f'
// depend only on the value (not rrelu's per-element slopes, not a per-channel parameter), the
// kernels below read f (as output bits), f' or, for a learnable scalar parameter, the one value
// both f' and df/dw follow from (fp32; swish: sigmoid(-|beta x|)) from tables built by running
// the kernels' own loops over all 65536 bit patterns, at the cost of one lookup instead of a
// polynomial exp/erfc per element. Outputs equal the direct loops' bitwise (NaN payloads aside);
// f' too in bf16, while in fp16 g++ may contract a few operations differently in the
// table-building loop than in bwd_run (measured: mish, 14 of 65536 values 1 fp16 ulp apart).
// The tables serve every tensor size, so a 16-bit result depends only on the value, never on
// the tensor it is in. Cached per (activation, table, dtype, parameters): 256 KiB each, built
// once (~65536 evaluations, tens of microseconds; a learnable parameter that changes every step
// rebuilds its tables every step, still < 3 % of the work on a (16, 64, 56, 56) map).
std::atomic<bool> g_lut_enabled{true};

struct LutKey {
  int64_t kind, table, dtype;  // table: 0 f, 1 f' from the input, 2 f' from the output, 3 s
  double p0, p1, p2, w;
  bool operator<(const LutKey& o) const {
    return std::tie(kind, table, dtype, p0, p1, p2, w) <
           std::tie(o.kind, o.table, o.dtype, o.p0, o.p1, o.p2, o.w);
  }
};
// f' over a run, shaped like bwd_run's loop (so g++ makes the same contraction choices)
template <class F, typename T, int64_t kMode>
__attribute__((noinline))
void deriv_run(const T* __restrict s, float* __restrict d, const float* __restrict w,
               const P prm, const int64_t n) {
  const float w0 = w[0];
  for (int64_t i = 0; i < n; ++i) {
    d[i] = deriv<F, T, kMode>(s[i], prm, w0, static_cast<uint32_t>(i));
  }
}

// the learnable-parameter backward's shared value (F::small) over a run
template <class F, typename T>
__attribute__((noinline))
void small_run(const T* __restrict x, float* __restrict d, const float w0, const int64_t n) {
  for (int64_t i = 0; i < n; ++i) d[i] = F::small(ld(x[i]), w0);
}

struct Lut {
  std::vector<uint32_t> f;  // table 0: the output's bits (in the low half)
  std::vector<float> d;     // tables 1, 2: f'; table 3: F::small
};
std::mutex g_lut_mutex;
std::map<LutKey, std::shared_ptr<const Lut>> g_luts;

template <class F, typename T>
std::shared_ptr<const Lut> lut(int64_t kind, int64_t table, const P& prm, float w) {
  const LutKey key{kind, table, static_cast<int64_t>(std::is_same_v<T, c10::Half>), prm.p0,
                   prm.p1, prm.p2, static_cast<double>(w)};
  {
    std::lock_guard<std::mutex> lock(g_lut_mutex);
    auto it = g_luts.find(key);
    if (it != g_luts.end()) return it->second;
  }
  std::vector<uint16_t> all(65536);
  for (uint32_t b = 0; b < 65536; ++b) all[b] = static_cast<uint16_t>(b);
  const T* xs = reinterpret_cast<const T*>(all.data());
  auto t = std::make_shared<Lut>();
  const float wv[1] = {w};
  if (table == 0) {  // the forward loop itself, over every bit pattern
    std::vector<uint16_t> out(65536);
    fwd_run<F, T, false, false, false>(xs, reinterpret_cast<T*>(out.data()), nullptr, wv, prm,
                                       65536, 0);
    t->f.assign(out.begin(), out.end());
  } else {
    t->d.resize(65536);
    float* d = t->d.data();
    if (table == 3) {
      if constexpr (HasSmall<F, float>::value) small_run<F, T>(xs, d, w, 65536);
    } else if (table == 2) {
      if constexpr (HasOut<F, float>::value) deriv_run<F, T, kFromOutput>(xs, d, wv, prm, 65536);
    } else {
      deriv_run<F, T, kFromInput>(xs, d, wv, prm, 65536);
    }
  }
  std::lock_guard<std::mutex> lock(g_lut_mutex);
  if (g_luts.size() >= 64) g_luts.clear();  // parameters that keep changing: start over
  return g_luts.emplace(key, std::move(t)).first->second;
}

// The forward table holds each output's 16 bits in a 32-bit word: g++ vectorises a lookup by
// assembling vectors element by element, and with 32-bit elements that measured 1.7-2x faster
// than with 16-bit ones (or than plain scalar loads) on AMD EPYC
template <typename T, bool kInplace>
__attribute__((noinline)) void lut_fwd_run(const T* __restrict x, T* __restrict y,
                                           const uint32_t* __restrict f, const int64_t n) {
  const uint16_t* __restrict xb = reinterpret_cast<const uint16_t*>(x);
  uint16_t* yb = kInplace ? const_cast<uint16_t*>(xb) : reinterpret_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; ++i) yb[i] = static_cast<uint16_t>(f[xb[i]]);
}

template <typename T>
__attribute__((noinline)) void lut_bwd_run(const T* __restrict g, const T* __restrict s,
                                           T* __restrict gi, const float* __restrict d,
                                           const int64_t n) {
  const uint16_t* __restrict sb = reinterpret_cast<const uint16_t*>(s);
  for (int64_t i = 0; i < n; ++i) gi[i] = st<T>(ld(g[i]) * d[sb[i]]);
}

// bwd_run_learn with F::small looked up and f', df/dw computed from it as F::d_in and F::d_w do
// (the same operations, lanes and order: the same values and sums). One lookup and a few
// operations per element measured as fast as session 8's two lookups (f' and df/dw tables;
// bf16 backward alone, AMD EPYC), with one table less to build each time beta changes.
template <class F, typename T>
__attribute__((noinline))
double lut_bwd_run_learn(const T* __restrict g, const T* __restrict x, T* __restrict gi,
                         const float* __restrict sm, const float w0, const int64_t n) {
  const uint16_t* __restrict xb = reinterpret_cast<const uint16_t*>(x);
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float gv = ld(g[i + k]);
      const float xv = ld(x[i + k]);
      const float s = sm[xb[i + k]];
      gi[i + k] = st<T>(gv * F::d_in_s(xv, w0, s));
      lanes[k] += gv * F::d_w_s(xv, w0, s);
    }
  }
  float tail = 0;
  for (; i < n; ++i) {
    const float gv = ld(g[i]);
    const float xv = ld(x[i]);
    const float s = sm[xb[i]];
    gi[i] = st<T>(gv * F::d_in_s(xv, w0, s));
    tail += gv * F::d_w_s(xv, w0, s);
  }
  double sum = static_cast<double>(tail);
  for (int k = 0; k < kLanes; ++k) sum += static_cast<double>(lanes[k]);
  return sum;
}

// The activations a table can stand for: value-only f and f', and costly enough that a lookup
// beats computing them. Not elu/selu and smelu: their direct loops measured as fast (elu/selu:
// 1.57-1.67 vs 1.56-1.97 an in-place ReLU) or faster (smelu: 1.15-1.27 vs 1.49-1.66) than the
// tables (bf16 (16,64,56,56) forward+backward, AMD EPYC), where silu's direct loops cost 2.0-2.2.
bool lut_kind(int64_t kind) {
  return kind == kGelu || kind == kGeluTanh || kind == kSwish || kind == kMish ||
         kind == kGolu || kind == kSau;
}

// f over the whole tensor from a table; false where a table does not apply (caller goes direct)
template <class F, typename T>
bool lut_forward(int64_t kind, const T* x, T* y, const typename Compute<T>::type* w,
                 const P& prm, const Plan& p) {
  if constexpr (sizeof(T) != 2) {
    return false;
  } else {
    if (!g_lut_enabled.load() || !lut_kind(kind) || p.C != 1) return false;
    const auto tab = lut<F, T>(kind, 0, prm, w[0]);
    const uint32_t* fp = tab->f.data();
    at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
      for (int64_t it = b0; it < b1; ++it) {
        for_item(p, it, [&](int64_t o, int64_t n, int64_t) {
          if (x == y) {
            lut_fwd_run<T, true>(x + o, y + o, fp, n);
          } else {
            lut_fwd_run<T, false>(x + o, y + o, fp, n);
          }
        });
      }
    });
    return true;
  }
}

template <class F, typename T>
bool lut_backward(int64_t kind, int64_t mode, const T* g, const T* s, T* gi,
                  const typename Compute<T>::type* w, const P& prm, const Plan& p) {
  if constexpr (sizeof(T) != 2) {
    return false;
  } else {
    if (!g_lut_enabled.load() || !lut_kind(kind) || p.C != 1) return false;
    if (mode != kFromInput && mode != kFromOutput) return false;
    const auto tab = lut<F, T>(kind, mode == kFromInput ? 1 : 2, prm, w[0]);
    const float* d = tab->d.data();
    at::parallel_for(0, p.items, 1, [=](int64_t b0, int64_t b1) {
      for (int64_t it = b0; it < b1; ++it) {
        for_item(p, it, [&](int64_t o, int64_t n, int64_t) {
          lut_bwd_run<T>(g + o, s + o, gi + o, d, n);
        });
      }
    });
    return true;
  }
}

// the F::small table for a learnable scalar parameter (swish's beta shared by all channels), or
// null where it does not apply (caller goes direct, bwd_run_learn)
template <class F, typename T>
std::shared_ptr<const Lut> lut_learn(int64_t kind, const typename Compute<T>::type* w,
                                     const P& prm, const Plan& p) {
  if constexpr (sizeof(T) != 2 || !HasSmall<F, float>::value) {
    return {};
  } else {
    if (!g_lut_enabled.load() || !lut_kind(kind) || p.C != 1) return {};
    return lut<F, T>(kind, 3, prm, w[0]);
  }
}
