// Host (CPU) kernels of the statistics pass and the gradient pass of fastgsl.ops.voxel_stats.
//
// The formulas and the (B, C, NK) layout are fastgsl/ops/voxel_stats/layout.py, from which voxel_stats_layout.h is
// generated; this file is the C++ twin of the chunked PyTorch passes in fastgsl/ops/voxel_stats/host.py and of the
// Triton kernels in fastgsl/ops/voxel_stats/triton_passes.py.  Each pass is one loop over voxels: a group of L voxels
// (one vector register: 16 with AVX-512, 8 otherwise) is loaded for all C classes, activated (softmax over the
// classes, or sigmoid) in registers, compared with its labels and accumulated or differentiated right away, so
// nothing of the logits' size is written except the gradient.
//
// Determinism: the N voxels of each batch item are cut into fixed blocks of kBlock voxels.  A block's sums are
// accumulated in kLanes = 16 fp32 lanes, lane l summing voxels l, l + 16, l + 32, ... in voxel order (an 8-lane
// build keeps two accumulator banks, one for the groups at even and one at odd positions, which is the same thing);
// the lanes are added in lane order into double, and the per-block partials are reduced in block order after every
// thread has finished.  Threads only decide who computes a block (chunks of blocks are taken from a shared counter),
// never the order of any addition, so the result is bit-identical for any thread count and any of the ISA builds.
// The gradient pass is element-wise and trivially so.
//
// Portability: GCC/Clang vector extensions (one AVX-512 register per group, or one AVX / two SSE registers),
// std::thread (not OpenMP, which would clash with the runtime torch ships).  Loaded with ctypes by
// fastgsl/ops/voxel_stats/host.py through fastgsl/_native.py: no Python or torch API.  Built by setup.py
// (fastgsl._stats_host) or compiled on first use into a cache directory.
#ifndef FASTGSL_STATS_ISA_BODY
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "host_memory.h"
#include "host_parallel.h"
#include "voxel_stats_layout.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // vectors passed between inline functions of this file only
#endif
// The vector helpers are always inlined: a vector wider than the build's registers, passed to an out-of-line call,
// goes through memory (an early version with 16 lanes in every build ran three times slower with AVX2 for it).
#define FASTGSL_VINLINE inline __attribute__((always_inline))

#ifndef FASTGSL_STATS_SOURCE_HASH
#define FASTGSL_STATS_SOURCE_HASH "unknown"
#endif

namespace {

constexpr int kAbiVersion = 4;
constexpr int kLanes = 16;           // accumulation lanes: lane l sums voxels l, l + 16, l + 32, ... of a block
constexpr long long kBlock = 4096;   // voxels per reduction block (a multiple of L)
inline float bits_to_float(uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline uint32_t float_to_bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// IEEE binary16 <-> binary32, round to nearest even (what torch's .half() does).
inline float half_to_float(uint16_t h) {
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0) {
        float f = (float)m * 5.9604644775390625e-8f;  // subnormal: m 2^-24 (exact)
        return s ? -f : f;
    }
    if (e == 31) return bits_to_float(s | 0x7f800000u | (m << 13));
    return bits_to_float(s | ((e + 112) << 23) | (m << 13));
}
inline uint16_t float_to_half(float f) {
    uint32_t x = float_to_bits(f);
    uint16_t s = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) return s | 0x7e00;             // NaN
    if (x >= 0x477ff000u) return s | 0x7c00;            // rounds to >= 65520: inf
    if (x < 0x38800000u)                                // below 2^-14: subnormal, units of 2^-24
        return s | (uint16_t)std::nearbyint(std::fabs(f) * 16777216.0f);  // exact scaling; RNE rounding mode
    return s | (uint16_t)((x + 0xc8000fffu + ((x >> 13) & 1)) >> 13);      // rebias by -112, round to even
}
inline uint16_t float_to_bf16(float f) {
    uint32_t x = float_to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40);  // quiet NaN
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

struct Args {
    const void* z;
    const void* t;
    const float* d;
    const float* dp;
    long long B, C, N, offset;
    int need;
};
constexpr long long kChunkBlocks = 16;  // blocks a thread takes at a time (64K voxels)
// Runs fn(blk0, blk1) over [0, nblocks) on up to nthreads threads, in chunks taken from a shared counter.  Each
// block's result lands in its own slot, so the order of the chunks does not matter.  0, or 1 on failure.
template <class Fn>
int parallel_blocks(long long nblocks, int nthreads, Fn fn) {
    return fastgsl_host::parallel_chunks(nblocks, nthreads, kChunkBlocks,
                                         [&](long long b0, long long b1, long long) { fn(b0, b1); });
}

// The vector code below is compiled three times from this same file: for AVX-512 and for AVX2 (chosen at run time
// when the CPU has them) and for the baseline ISA.  A group is one register: 16 lanes with AVX-512, 8 with AVX2 or
// SSE (two SSE registers), and the 8-lane builds add into two accumulator banks, so every build adds in the order
// of the same kLanes = 16 accumulation lanes.  No FMA in any (contraction is off and no build enables FMA), so all
// round every operation identically: the results do not depend on which one runs.
#define FASTGSL_STATS_ISA_BODY 1
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FASTGSL_STATS_HAVE_X86 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl")
#endif
#define FASTGSL_STATS_VLEN 16
#define FASTGSL_STATS_ISA_CODE 3  // pick_isa's codes
namespace isa_avx512 {
#include "voxel_stats_host.cpp"
}  // namespace isa_avx512
#undef FASTGSL_STATS_VLEN
#define FASTGSL_STATS_VLEN 8
#undef FASTGSL_STATS_ISA_CODE
#define FASTGSL_STATS_ISA_CODE 2
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2")
#endif
namespace isa_avx2 {
#include "voxel_stats_host.cpp"
}  // namespace isa_avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif
#undef FASTGSL_STATS_ISA_CODE
#define FASTGSL_STATS_ISA_CODE 1
#ifndef FASTGSL_STATS_VLEN
#define FASTGSL_STATS_VLEN 8
#endif
namespace isa_base {
#include "voxel_stats_host.cpp"
}  // namespace isa_base
#undef FASTGSL_STATS_VLEN
#undef FASTGSL_STATS_ISA_CODE
#undef FASTGSL_STATS_ISA_BODY

bool valid_codes(int zk, int tk, int act, long long B, long long C, long long N) {
    return zk >= Z_F32 && zk <= Z_BF16 && tk >= T_F32 && tk <= T_U8 && act >= ACT_SOFTMAX && act <= ACT_NONE &&
           B >= 0 && C >= 1 && N >= 0 && C < (1LL << 31);
}

// 1: baseline, 2: AVX2, 3: AVX-512 (F, BW, DQ, VL); `isa` 0 picks the best the CPU supports, an ISA it lacks is 0.
int pick_isa(int isa) {
#ifdef FASTGSL_STATS_HAVE_X86
    const bool avx2 = __builtin_cpu_supports("avx2");
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
    if (isa == 0) return avx512 ? 3 : avx2 ? 2 : 1;
    if ((isa == 2 && !avx2) || (isa == 3 && !avx512)) return 0;
    return isa >= 1 && isa <= 3 ? isa : 0;
#else
    return isa == 0 || isa == 1 ? 1 : 0;
#endif
}

}  // namespace

extern "C" {

int fastgsl_stats_abi_version() { return kAbiVersion; }
const char* fastgsl_stats_source_hash() { return FASTGSL_STATS_SOURCE_HASH; }
// The layout this build was compiled with; the loader refuses a library whose layout is not the Python one.
const char* fastgsl_stats_layout() { return FASTGSL_STATS_LAYOUT; }

// Statistics pass.  z: logits (B, C, N) of dtype zk; t: float32 target (B, C, N) or labels (B, N) of dtype tk;
// d, dp: float32 (B, C, N) DTM / predicted DTM (dp may be null; d may be null when no DTM stat is needed);
// out: float32 (B, C, NK), written entirely (stats outside `need` are 0).  isa: 0 (best available), 1 (baseline),
// 2 (AVX2) or 3 (AVX-512), for tests.  outside (may be null): with integer labels, set to 1 if some label matches no
// channel (lies outside [offset, offset + C)), else 0, so that the caller's range check needs no pass of its own.
// Returns 0, 1 (a thread failed or out of memory) or 2 (bad arguments).
int fastgsl_stats_forward(const void* z, int zk, const void* t, int tk, const float* d, const float* dp, float* out,
                          long long B, long long C, long long N, int act, int need, long long offset, int nthreads,
                          int isa, int* outside) {
    isa = pick_isa(isa);
    if (!valid_codes(zk, tk, act, B, C, N) || !isa) return 2;
    std::memset(out, 0, sizeof(float) * (size_t)(B * C * NK));
    if (N == 0 || B == 0) return 0;  // before the pointer checks: empty tensors may have null data
    if (!z || !t || (!d && (need & ((1 << S_SURF) | (1 << S_D2) | (1 << S_DP) | (1 << S_HAUS))))) return 2;
    Args a{z, t, d, dp, B, C, N, offset, need};
    if (outside) *outside = 0;
    if (tk == T_F32) outside = nullptr;
#ifdef FASTGSL_STATS_HAVE_X86
    if (isa == 3) return isa_avx512::forward(a, zk, tk, act, out, outside, nthreads);
    if (isa == 2) return isa_avx2::forward(a, zk, tk, act, out, outside, nthreads);
#endif
    return isa_base::forward(a, zk, tk, act, out, outside, nthreads);
}

// Gradient pass.  gs: float32 dL/dS (B, C, NK); grad: (B, C, N) in the logits' dtype, written entirely.
int fastgsl_stats_backward(const float* gs, const void* z, int zk, const void* t, int tk, const float* d,
                           const float* dp, void* grad, long long B, long long C, long long N, int act, int need,
                           long long offset, int nthreads, int isa) {
    isa = pick_isa(isa);
    if (!valid_codes(zk, tk, act, B, C, N) || !isa) return 2;
    if (N == 0 || B == 0) return 0;
    if (!gs || !z || !t || !grad || (!d && (need & ((1 << S_SURF) | (1 << S_DP) | (1 << S_HAUS))))) return 2;
    Args a{z, t, d, dp, B, C, N, offset, need};
    fastgsl_host::advise_huge(grad, B * C * N * (zk == Z_F32 ? 4 : 2));  // a fresh gradient: one fault per 2 MiB
#ifdef FASTGSL_STATS_HAVE_X86
    if (isa == 3) return isa_avx512::backward(a, zk, tk, act, gs, grad, nthreads);
    if (isa == 2) return isa_avx2::backward(a, zk, tk, act, gs, grad, nthreads);
#endif
    return isa_base::backward(a, zk, tk, act, gs, grad, nthreads);
}

}  // extern "C"

#else  // FASTGSL_STATS_ISA_BODY: the vector code, included once per ISA above
constexpr int L = FASTGSL_STATS_VLEN;  // voxels per group: one vector register of this ISA (8 or 16 lanes)
constexpr int kBanks = kLanes / L;     // accumulator banks: group g of a block adds into bank g % kBanks
typedef float vf __attribute__((vector_size(4 * L)));
typedef int32_t vi __attribute__((vector_size(4 * L)));
typedef uint16_t vu16 __attribute__((vector_size(2 * L)));
typedef uint8_t vu8 __attribute__((vector_size(L)));
typedef long long vl __attribute__((vector_size(8 * L)));
typedef unsigned long long vul __attribute__((vector_size(8 * L)));

FASTGSL_VINLINE vf splat(float x) { return vf{} + x; }
// A vector conditional rather than and/or masks: the compiler turns it into a blend or a masked move, and
// sel(a > b, a, b) into one max (which returns b when either is NaN, as the conditional does).
FASTGSL_VINLINE vf sel(vi m, vf a, vf b) { return m ? a : b; }
FASTGSL_VINLINE vf vmax(vf a, vf b) { return sel(a > b, a, b); }
FASTGSL_VINLINE vf vabs(vf a) { return (vf)((vi)a & 0x7fffffff); }

// exp(x) = 2^n e^r with n = round(x log2 e) and r = x - n ln 2 (the Cody-Waite split of ln 2 of Cephes' expf,
// S. Moshier, Cephes Math Library, expf.c), e^r = 1 + r + r^2 P(r) with P of degree 4: a minimax fit in relative
// error on [-ln 2 / 2, ln 2 / 2] made for this file (Lawson's iteration; 3.1e-9 before rounding, where the degree-7
// polynomial of Cephes is 5e-11).  With the rounding of every step the result is within 0.98 ulp of exp over 7
// million samples of [-87.3, 0], the same bound as Cephes' polynomial, for two operations fewer.  n is rounded by
// adding and subtracting 1.5 2^23 (the sum's low mantissa bits hold n, two adds instead of a conversion round trip).
// exp_reduced returns e^r and n (as a float and as an int); `xc` lies in [-104, 89] or is NaN, which every
// operation carries through.
constexpr float kShifter = 12582912.0f;  // 1.5 2^23, bits 0x4b400000
FASTGSL_VINLINE vf exp_reduced(vf xc, vf& fn, vi& n) {
    const vf t = xc * 1.44269504088896341f + kShifter;
    fn = t - kShifter;
    n = (vi)t - 0x4b400000;
    vf r = xc - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    const vf r2 = r * r;
    vf y = splat(1.381461276e-3f);
    y = y * r + 8.368710056e-3f;
    y = y * r + 4.166838899e-2f;
    y = y * r + 1.666652113e-1f;
    y = y * r + 4.999999404e-1f;
    return y * r2 + r + 1.0f;
}
// y 2^n for n in [-150, 128], rounded once: overflow gives +inf and underflow gradual denormals or 0.  AVX-512's
// vscalefps does it in one instruction.  The other builds multiply by 2^(n/2) and then 2^(n - n/2), both normal
// numbers, and y 2^(n/2) is exact, so the product rounds once as well and every build gives the same bits.
FASTGSL_VINLINE vf scale_pow2(vf y, vf fn, vi n) {
#if FASTGSL_STATS_ISA_CODE == 3
    (void)n;
    return (vf)_mm512_scalef_ps((__m512)y, (__m512)fn);
#else
    (void)fn;
    const vi n1 = n >> 1;
    const vi n2 = n - n1;
    return y * (vf)((n1 + 127) << 23) * (vf)((n2 + 127) << 23);
#endif
}
// Any x: +-inf give inf / 0 through the clamps, NaN is selected back unchanged.
FASTGSL_VINLINE vf vexp(vf x) {
    vf xc = sel(x < -104.0f, splat(-104.0f), x);
    xc = sel(xc > 89.0f, splat(89.0f), xc);
    vf fn;
    vi n;
    const vf y = exp_reduced(xc, fn, n);
    return sel(x != x, x, scale_pow2(y, fn, n));
}
// x <= 0 or NaN (a softmax's z - max z, or -|z|), the passes' hot case: only the lower clamp, and a NaN comes out
// as a NaN.
FASTGSL_VINLINE vf vexp_nonpos(vf x) {
    vf fn;
    vi n;
    const vf y = exp_reduced(sel(x < -104.0f, splat(-104.0f), x), fn, n);
    return scale_pow2(y, fn, n);
}

// log(x) for x > 0 (normal): x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(1 + (m - 1)) by the degree-9 minimax
// polynomial of Cephes' logf (S. Moshier, Cephes Math Library, logf.c) and e ln 2 added in two parts (Cody-Waite),
// about 1 ulp.  Element-wise arithmetic only, so every build and lane rounds alike.  NaN propagates.  The callers'
// arguments lie in [1, C] (a softmax denominator, whose largest term is 1) or (1, 2] (log1p below).
FASTGSL_VINLINE vf vlog(vf x) {
    vi bits = (vi)x;
    vi e = ((bits >> 23) & 0xff) - 126;
    vf m = (vf)((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
    const vi small = m < 0.707106781186547524f;
    e += small;                                       // a true compare is -1
    m = sel(small, m + m, m) - 1.0f;
    const vf fe = __builtin_convertvector(e, vf);
    const vf z = m * m;
    vf y = splat(7.0376836292e-2f);
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y = y + fe * -2.12194440e-4f;
    y = y - 0.5f * z;
    vf r = m + y;
    r = r + fe * 0.693359375f;
    return sel(x != x, x, r);
}

// Loads L logits (n < L: the first n, zeros after) as fp32.
template <int ZK>
FASTGSL_VINLINE vf load_z(const void* base, long long off, int n) {
    float tmp[L] = {};
    if (ZK == Z_F32) {
        const float* p = (const float*)base + off;
        if (n == L) {
            vf v;
            std::memcpy(&v, p, sizeof v);
            return v;
        }
        for (int l = 0; l < n; ++l) tmp[l] = p[l];
    } else {
        const uint16_t* p = (const uint16_t*)base + off;
        if (ZK == Z_BF16 && n == L) {
            vu16 h;
            std::memcpy(&h, p, sizeof h);
            return (vf)(__builtin_convertvector(h, vi) << 16);
        }
        for (int l = 0; l < n; ++l) tmp[l] = ZK == Z_F16 ? half_to_float(p[l]) : bits_to_float((uint32_t)p[l] << 16);
    }
    vf v;
    std::memcpy(&v, tmp, sizeof v);
    return v;
}

template <int ZK>
FASTGSL_VINLINE void store_z(void* base, long long off, int n, vf v) {
    float tmp[L];
    std::memcpy(tmp, &v, sizeof v);
    if (ZK == Z_F32) {
        float* p = (float*)base + off;
        if (n == L) {
            std::memcpy(p, &v, sizeof v);
            return;
        }
        for (int l = 0; l < n; ++l) p[l] = tmp[l];
    } else {
        uint16_t* p = (uint16_t*)base + off;
        for (int l = 0; l < n; ++l) p[l] = ZK == Z_F16 ? float_to_half(tmp[l]) : float_to_bf16(tmp[l]);
    }
}

// Stores L gradient values.  A full fp32 group at an aligned address goes straight to memory (a streaming store):
// the gradient is written once and not read back by this pass, and an ordinary store would first read each line
// for ownership, a third more traffic for the gradient pass.  The caller ends with stream_fence().
template <int ZK>
FASTGSL_VINLINE void store_grad(void* base, long long off, int n, vf v) {
#if defined(__x86_64__)
    float* p = (float*)base + off;
    if (ZK == Z_F32 && n == L && ((uintptr_t)p & (sizeof(vf) - 1)) == 0) {
#if FASTGSL_STATS_ISA_CODE == 3
        _mm512_stream_ps(p, (__m512)v);
#elif FASTGSL_STATS_ISA_CODE == 2
        _mm256_stream_ps(p, (__m256)v);
#else
        __m128 q[2];
        std::memcpy(q, &v, sizeof v);
        _mm_stream_ps(p, q[0]);
        _mm_stream_ps(p + 4, q[1]);
#endif
        return;
    }
#endif
    store_z<ZK>(base, off, n, v);
}
FASTGSL_VINLINE void stream_fence() {
#if defined(__x86_64__)
    _mm_sfence();  // streaming stores are weakly ordered: make them visible before the thread reports done
#endif
}

FASTGSL_VINLINE vf load_f(const float* p, int n) {
    vf v;
    if (n == L) {
        std::memcpy(&v, p, sizeof v);
        return v;
    }
    float tmp[L] = {};
    for (int l = 0; l < n; ++l) tmp[l] = p[l];
    std::memcpy(&v, tmp, sizeof v);
    return v;
}

// Class index (label - offset) of L voxels, -1 where the label matches no channel or the lane is padding.
// A full group is converted with vector operations (one compare for the range); a partial one lane by lane.
template <int TK>
FASTGSL_VINLINE vi load_cls(const void* base, long long off, int n, long long offset, long long C) {
    if (n == L) {
        vl v;
        if (TK == T_I64) {
            std::memcpy(&v, (const int64_t*)base + off, sizeof v);
        } else if (TK == T_I32) {
            vi w;
            std::memcpy(&w, (const int32_t*)base + off, sizeof w);
            v = __builtin_convertvector(w, vl);
        } else {
            vu8 w;
            std::memcpy(&w, (const uint8_t*)base + off, sizeof w);
            v = __builtin_convertvector(w, vl);
        }
        v -= offset;
        // unsigned compare: negative labels wrap to huge values, so one test covers both ends of [0, C)
        const vl ok = (vl)((vul)v < (vul){} + (unsigned long long)C);
        return __builtin_convertvector((v & ok) | ~ok, vi);  // -1 outside [0, C)
    }
    int32_t tmp[L];
    for (int l = 0; l < L; ++l) tmp[l] = -1;
    for (int l = 0; l < n; ++l) {
        long long v = TK == T_I64 ? ((const int64_t*)base)[off + l]
                      : TK == T_I32 ? (long long)((const int32_t*)base)[off + l]
                                    : (long long)((const uint8_t*)base)[off + l];
        v -= offset;
        tmp[l] = (v >= 0 && v < C) ? (int32_t)v : -1;
    }
    vi c;
    std::memcpy(&c, tmp, sizeof c);
    return c;
}

// T_c of one group: the float target's row, or 1 where the class index is c (labels).
template <int TK>
FASTGSL_VINLINE vf target_of(const Args& a, long long off, int n, vi cls, long long c) {
    return TK == T_F32 ? load_f((const float*)a.t + off, n) : sel(cls == (int32_t)c, splat(1.0f), vf{});
}

// Per-thread scratch: C activated / raw / gradient vectors of one group and the block accumulators.
// A float buffer aligned by hand: std::vector<vf> would share its allocator code between the two ISA builds,
// and the baseline one does not honour the alignment (one vector) that the AVX2 and AVX-512 loads expect.
struct Scratch {
    std::vector<float> mem;
    vf *z, *p, *g, *acc;
    explicit Scratch(long long C) : mem((size_t)((3 + kBanks * NK) * C + 1) * L) {
        vf* base = (vf*)(((uintptr_t)mem.data() + sizeof(vf) - 1) & ~(uintptr_t)(sizeof(vf) - 1));
        z = base, p = z + C, g = p + C, acc = g + C;
    }
};

// Prefetches the group kAhead voxels ahead on every stream a pass reads (C logit rows, the labels or C target
// rows, C DTM rows when the pass reads them): 2C + 1 streams at a stride of N are more than the hardware prefetcher
// follows, and without this the passes waited on memory for about a third of their time at 2x4x96^3.
constexpr long long kAhead = 1024;
template <int ZK, int TK, int CC>
FASTGSL_VINLINE void prefetch_ahead(const Args& a, long long b, long long i, bool with_d) {
    const long long j = i + kAhead, C = CC ? CC : a.C, N = a.N;
    if (j >= N) return;
    const int zs = ZK == Z_F32 ? 4 : 2;
    for (long long c = 0; c < C; ++c) __builtin_prefetch((const char*)a.z + ((b * C + c) * N + j) * zs);
    if (TK == T_F32) {
        for (long long c = 0; c < C; ++c) __builtin_prefetch((const float*)a.t + (b * C + c) * N + j);
    } else {
        const int ts = TK == T_I64 ? 8 : TK == T_I32 ? 4 : 1;
        for (int k = 0; k < L * ts; k += 64) __builtin_prefetch((const char*)a.t + (b * N + j) * ts + k);
    }
    if (with_d)
        for (long long c = 0; c < C; ++c) __builtin_prefetch(a.d + (b * C + c) * N + j);
}

// z[c] (raw logits; log p_c instead for softmax with want_logp) and p[c] (activated) of one group.
template <int ZK, int ACT, int CC>
FASTGSL_VINLINE void activate(const Args& a, long long b, long long i, int n, Scratch& s, bool want_logp) {
    const long long C = CC ? CC : a.C, N = a.N;
    for (long long c = 0; c < C; ++c) s.z[c] = load_z<ZK>(a.z, (b * C + c) * N + i, n);
    if (ACT == ACT_SOFTMAX) {
        vf m = s.z[0];
        for (long long c = 1; c < C; ++c) m = vmax(m, s.z[c]);
        vf sum = vf{};
        for (long long c = 0; c < C; ++c) {
            s.p[c] = vexp_nonpos(s.z[c] - m);
            sum += s.p[c];
        }
        const vf inv = 1.0f / sum;  // one division, not C: the divider is the slowest unit of the pass
        for (long long c = 0; c < C; ++c) s.p[c] = s.p[c] * inv;
        if (want_logp) {  // z[c] becomes log p_c, in the order of the torch path: (z - m) - log(sum)
            const vf logsum = vlog(sum);
            for (long long c = 0; c < C; ++c) s.z[c] = (s.z[c] - m) - logsum;
        }
    } else if (ACT == ACT_SIGMOID) {
        for (long long c = 0; c < C; ++c) s.p[c] = 1.0f / (1.0f + vexp(-s.z[c]));
    } else {
        for (long long c = 0; c < C; ++c) s.p[c] = s.z[c];
    }
}

// log1p(exp(-|z|)) of the stable BCE with logits.  log1p(e) = log(u) e / (u - 1) with u = 1 + e cancels the
// rounding of u (Goldberg, "What every computer scientist should know about floating-point arithmetic", thm. 4),
// as the Triton kernels do; e itself where u rounds to 1.
FASTGSL_VINLINE vf softplus_neg_abs(vf z) {
    const vf e = vexp_nonpos(-vabs(z));
    const vf u = 1.0f + e;
    const vi one = u == 1.0f;
    const vf den = sel(one, splat(1.0f), u - 1.0f);
    return sel(one, e, vlog(u) * (e / den));
}

// CC: the channel count when it is known at compile time (0: a.C at run time).  Knowing it lets the compiler unroll
// the class loops and keep a group's C activations in registers; the stats are added stat by stat, so each `need`
// test is taken once per group rather than once per class.  NEED: the stat mask when it is known at compile time
// (0: a.need), which removes those tests too.
template <int ZK, int TK, int ACT, int CC, int NEED>
void forward_blocks(const Args& a, long long blk0, long long blk1, long long nbpb, double* partials,
                    int* outside) {
    const long long C = CC ? CC : a.C, N = a.N;
    const int need = NEED ? NEED : a.need;
    const bool want_ce = need & (1 << S_CE);
    const bool want_d = need & ((1 << S_SURF) | (1 << S_D2) | (1 << S_DP) | (1 << S_HAUS));
    // with labels, sum T_c^2 is sum T_c, added in the same order: the same bits, copied rather than added again
    const bool st2_is_st = TK != T_F32 && (need & (1 << S_ST)) && (need & (1 << S_ST2));
    Scratch s(C);
    for (long long blk = blk0; blk < blk1; ++blk) {
        const long long b = blk / nbpb, i0 = (blk % nbpb) * kBlock, i1 = std::min(N, i0 + kBlock);
        for (long long j = 0; j < kBanks * C * NK; ++j) s.acc[j] = vf{};
        vi miss = vi{};  // the OR of the valid lanes' class indices: negative iff some label matched no channel
        for (long long i = i0; i < i1; i += L) {
            const int n = (int)std::min<long long>(L, i1 - i);
            vf valid = splat(1.0f);
            if (n < L) {
                float tmp[L];
                for (int l = 0; l < L; ++l) tmp[l] = l < n ? 1.0f : 0.0f;
                std::memcpy(&valid, tmp, sizeof valid);
            }
            prefetch_ahead<ZK, TK, CC>(a, b, i, want_d);
            activate<ZK, ACT, CC>(a, b, i, n, s, want_ce);
            vi cls = vi{};
            if (TK != T_F32) {
                cls = load_cls<TK>(a.t, b * N + i, n, a.offset, C);
                miss |= n == L ? cls : cls & (vi)(valid != 0.0f);  // padding lanes are -1 too
            }
            const long long row = b * C * N + i;  // voxel i of channel 0; channel c is c N further
            vf* acc = &s.acc[((i - i0) / L) % kBanks * C * NK];
            vf* p = s.p;
            vf* t = s.g;  // the gradient slots are free in this pass: T_c of the group
            for (long long c = 0; c < C; ++c) {
                if (n < L) p[c] = p[c] * valid;  // padding lanes carry no mass
                t[c] = target_of<TK>(a, row + c * N, n, cls, c);
            }
            if (need & (1 << S_I))
                for (long long c = 0; c < C; ++c) acc[c * NK + S_I] += p[c] * t[c];
            if (need & (1 << S_SP))
                for (long long c = 0; c < C; ++c) acc[c * NK + S_SP] += p[c];
            if (need & (1 << S_SP2))
                for (long long c = 0; c < C; ++c) acc[c * NK + S_SP2] += p[c] * p[c];
            if (need & (1 << S_ST))
                for (long long c = 0; c < C; ++c) acc[c * NK + S_ST] += t[c];
            if ((need & (1 << S_ST2)) && !st2_is_st)  // a label's T_c is 0 or 1, so T_c^2 is T_c itself
                for (long long c = 0; c < C; ++c) acc[c * NK + S_ST2] += TK == T_F32 ? t[c] * t[c] : t[c];
            if (want_ce) {
                if (ACT == ACT_SOFTMAX) {  // z is log p here; padding lanes have T_c = 0 and finite z
                    for (long long c = 0; c < C; ++c) acc[c * NK + S_CE] -= t[c] * s.z[c];
                } else {
                    for (long long c = 0; c < C; ++c) {
                        const vf z = s.z[c];
                        vf ce = sel(z > 0.0f, z, vf{}) - z * t[c] + softplus_neg_abs(z);
                        if (n < L) ce = ce * valid;
                        acc[c * NK + S_CE] += ce;
                    }
                }
            }
            if (want_d) {
                vf* d = s.z;  // the logits (or log p) have been used: the DTM rows take their slots
                for (long long c = 0; c < C; ++c) d[c] = load_f(a.d + row + c * N, n);
                if (need & (1 << S_SURF))
                    for (long long c = 0; c < C; ++c) {
                        const vf r = (1.0f - t[c] - p[c]) * d[c];
                        acc[c * NK + S_SURF] += r * r;
                    }
                if (need & (1 << S_D2))
                    for (long long c = 0; c < C; ++c) acc[c * NK + S_D2] += d[c] * d[c];
                if (need & (1 << S_DP))
                    for (long long c = 0; c < C; ++c) acc[c * NK + S_DP] += d[c] * p[c];
                if (need & (1 << S_HAUS))
                    for (long long c = 0; c < C; ++c) {
                        vf w = d[c] * d[c];
                        if (a.dp) {
                            const vf q = load_f(a.dp + row + c * N, n);
                            w = w + q * q;
                        }
                        const vf df = t[c] - p[c];
                        acc[c * NK + S_HAUS] += df * df * w;
                    }
            }
        }
        double* out = partials + blk * C * NK;
        for (long long j = 0; j < C * NK; ++j) {
            double v = 0.0;
            for (int k = 0; k < kBanks; ++k) {  // banks in order: the 16 lanes of every build in the same order
                float lanes[L];
                std::memcpy(lanes, &s.acc[k * C * NK + j], sizeof lanes);
                for (int l = 0; l < L; ++l) v += (double)lanes[l];
            }
            out[j] = v;
        }
        if (st2_is_st)
            for (long long c = 0; c < C; ++c) out[c * NK + S_ST2] = out[c * NK + S_ST];
        if (TK != T_F32) {
            int32_t lanes[L], any = 0;
            std::memcpy(lanes, &miss, sizeof miss);
            for (int l = 0; l < L; ++l) any |= lanes[l];
            outside[blk] = any < 0;
        }
    }
}

template <int ZK, int TK, int ACT, int CC, int NEED>
void backward_blocks(const Args& a, const float* gs, void* grad, long long blk0, long long blk1, long long nbpb) {
    const long long C = CC ? CC : a.C, N = a.N;
    const int need = NEED ? NEED : a.need;
    const bool want_ce = need & (1 << S_CE), want_d = need & ((1 << S_SURF) | (1 << S_DP) | (1 << S_HAUS));
    Scratch s(C);
    for (long long blk = blk0; blk < blk1; ++blk) {
        const long long b = blk / nbpb, i0 = (blk % nbpb) * kBlock, i1 = std::min(N, i0 + kBlock);
        const float* k = gs + b * C * NK;  // dL/dS of item b: k[c NK + stat]
        for (long long i = i0; i < i1; i += L) {
            const int n = (int)std::min<long long>(L, i1 - i);
            prefetch_ahead<ZK, TK, CC>(a, b, i, want_d);
            if (i + kAhead < N && ZK != Z_F32)  // half gradient rows, for writing (the fp32 ones are streamed)
                for (long long c = 0; c < C; ++c) __builtin_prefetch((char*)grad + ((b * C + c) * N + i + kAhead) * 2, 1);
            activate<ZK, ACT, CC>(a, b, i, n, s, false);
            vi cls = vi{};
            if (TK != T_F32) cls = load_cls<TK>(a.t, b * N + i, n, a.offset, C);
            const long long row = b * C * N + i;
            const vf* p = s.p;
            vf* g = s.g;  // dL/dP_c, its terms added in the order of the stats
            vf* t = s.z;  // the logits have been activated: T_c of the group takes their slots
            for (long long c = 0; c < C; ++c) {
                t[c] = target_of<TK>(a, row + c * N, n, cls, c);
                g[c] = vf{};
            }
            if (need & (1 << S_I))
                for (long long c = 0; c < C; ++c) g[c] += k[c * NK + S_I] * t[c];
            if (need & (1 << S_SP))
                for (long long c = 0; c < C; ++c) g[c] += k[c * NK + S_SP];
            if (need & (1 << S_SP2))
                for (long long c = 0; c < C; ++c) g[c] += (2.0f * k[c * NK + S_SP2]) * p[c];
            if (want_d) {
                for (long long c = 0; c < C; ++c) {
                    const vf d = load_f(a.d + row + c * N, n);
                    const vf dd = d * d;
                    if (need & (1 << S_SURF)) g[c] -= (2.0f * k[c * NK + S_SURF]) * dd * (1.0f - t[c] - p[c]);
                    if (need & (1 << S_DP)) g[c] += k[c * NK + S_DP] * d;
                    if (need & (1 << S_HAUS)) {
                        vf w = dd;
                        if (a.dp) {
                            const vf q = load_f(a.dp + row + c * N, n);
                            w = dd + q * q;
                        }
                        g[c] -= (2.0f * k[c * NK + S_HAUS]) * (t[c] - p[c]) * w;
                    }
                }
            }
            if (ACT == ACT_SOFTMAX) {
                vf pg = vf{}, wt = vf{};
                for (long long c = 0; c < C; ++c) pg += p[c] * g[c];
                if (want_ce)
                    for (long long c = 0; c < C; ++c) {
                        t[c] = k[c * NK + S_CE] * t[c];  // w_c T_c from here on
                        wt += t[c];
                    }
                for (long long c = 0; c < C; ++c) {
                    vf dz = p[c] * (g[c] - pg);
                    if (want_ce) dz += p[c] * wt - t[c];
                    store_grad<ZK>(grad, row + c * N, n, dz);
                }
            } else {
                for (long long c = 0; c < C; ++c) {
                    vf dz = ACT == ACT_SIGMOID ? g[c] * p[c] * (1.0f - p[c]) : g[c];
                    if (want_ce) dz += k[c * NK + S_CE] * (p[c] - t[c]);
                    store_grad<ZK>(grad, row + c * N, n, dz);
                }
            }
        }
    }
    stream_fence();
}

template <class Fwd>
int run_forward(const Args& a, float* out, int* outside, int nthreads, Fwd fwd) {
    const long long nbpb = (a.N + kBlock - 1) / kBlock, nblocks = a.B * nbpb, CK = a.C * NK;
    std::vector<double> partials;
    std::vector<int> block_outside;
    try {
        partials.assign((size_t)(nblocks * CK), 0.0);
        block_outside.assign((size_t)nblocks, 0);
    } catch (...) {
        return 1;
    }
    int rc = parallel_blocks(nblocks, nthreads, [&](long long b0, long long b1) {
        fwd(a, b0, b1, nbpb, partials.data(), block_outside.data());
    });
    if (rc) return rc;
    if (outside)
        for (long long k = 0; k < nblocks; ++k) *outside |= block_outside[(size_t)k];
    for (long long b = 0; b < a.B; ++b) {
        for (long long j = 0; j < CK; ++j) {
            double v = 0.0;
            for (long long k = 0; k < nbpb; ++k) v += partials[(size_t)((b * nbpb + k) * CK + j)];
            out[b * CK + j] = (float)v;
        }
    }
    return 0;
}

// The channel counts with builds of their own (FASTGSL_STATS_CC_LIST), for fp32 logits and a softmax over int64 or
// uint8 labels: the multi-class segmentation losses as they are usually trained.  Within those, with int64 labels
// and in the AVX2 and AVX-512 builds, the stat sets of FASTGSL_STATS_NEED_LIST (layout.py's COMPILED_NEEDS: the
// training objectives) have builds of their own too.  Every other case runs a build that reads C or the stat set at
// run time (CC = 0, NEED = 0), which adds in the same order and gives the same bits.  The lists are short because
// each entry is compiled several times over (ISAs, label dtypes, both passes).
#define FASTGSL_STATS_CC_LIST X(2) X(3) X(4) X(5)
template <int ZK, int TK>
constexpr bool kChannelBuilds = ZK == Z_F32 && (TK == T_I64 || TK == T_U8);
template <int ZK, int TK>
constexpr bool kNeedBuilds = kChannelBuilds<ZK, TK> && TK == T_I64 && FASTGSL_STATS_ISA_CODE >= 2;

template <int ZK, int TK, int CC>
int forward_softmax(const Args& a, float* out, int* outside, int nthreads) {
    if constexpr (kNeedBuilds<ZK, TK>) switch (a.need) {
#define X(m) \
    case m: return run_forward(a, out, outside, nthreads, forward_blocks<ZK, TK, ACT_SOFTMAX, CC, m>);
            FASTGSL_STATS_NEED_LIST
#undef X
        }
    return run_forward(a, out, outside, nthreads, forward_blocks<ZK, TK, ACT_SOFTMAX, CC, 0>);
}

template <int ZK, int TK>
int forward_act(const Args& a, int act, float* out, int* outside, int nthreads) {
    if (act == ACT_SOFTMAX) {
        if constexpr (kChannelBuilds<ZK, TK>) switch (a.C) {
#define X(cc) \
    case cc: return forward_softmax<ZK, TK, cc>(a, out, outside, nthreads);
                FASTGSL_STATS_CC_LIST
#undef X
            }
        return run_forward(a, out, outside, nthreads, forward_blocks<ZK, TK, ACT_SOFTMAX, 0, 0>);
    }
    if (act == ACT_SIGMOID) return run_forward(a, out, outside, nthreads, forward_blocks<ZK, TK, ACT_SIGMOID, 0, 0>);
    return run_forward(a, out, outside, nthreads, forward_blocks<ZK, TK, ACT_NONE, 0, 0>);
}

template <int ZK>
int forward_t(const Args& a, int tk, int act, float* out, int* outside, int nthreads) {
    switch (tk) {
        case T_F32: return forward_act<ZK, T_F32>(a, act, out, outside, nthreads);
        case T_I64: return forward_act<ZK, T_I64>(a, act, out, outside, nthreads);
        case T_I32: return forward_act<ZK, T_I32>(a, act, out, outside, nthreads);
        case T_U8: return forward_act<ZK, T_U8>(a, act, out, outside, nthreads);
    }
    return 2;
}

template <int ZK, int TK, int ACT, int CC, int NEED>
int run_backward(const Args& a, const float* gs, void* grad, int nthreads) {
    const long long nbpb = (a.N + kBlock - 1) / kBlock;
    return parallel_blocks(a.B * nbpb, nthreads, [&](long long b0, long long b1) {
        backward_blocks<ZK, TK, ACT, CC, NEED>(a, gs, grad, b0, b1, nbpb);
    });
}

template <int ZK, int TK, int CC>
int backward_softmax(const Args& a, const float* gs, void* grad, int nthreads) {
    if constexpr (kNeedBuilds<ZK, TK>) switch (a.need) {  // the P-dependent part of a compiled set
#define Y(m) \
    case m: return run_backward<ZK, TK, ACT_SOFTMAX, CC, m>(a, gs, grad, nthreads);
            FASTGSL_STATS_GRAD_NEED_LIST
#undef Y
        }
    return run_backward<ZK, TK, ACT_SOFTMAX, CC, 0>(a, gs, grad, nthreads);
}

template <int ZK, int TK>
int backward_act(const Args& a, int act, const float* gs, void* grad, int nthreads) {
    if (act == ACT_SOFTMAX) {
        if constexpr (kChannelBuilds<ZK, TK>) switch (a.C) {
#define X(cc) \
    case cc: return backward_softmax<ZK, TK, cc>(a, gs, grad, nthreads);
                FASTGSL_STATS_CC_LIST
#undef X
            }
        return run_backward<ZK, TK, ACT_SOFTMAX, 0, 0>(a, gs, grad, nthreads);
    }
    if (act == ACT_SIGMOID) return run_backward<ZK, TK, ACT_SIGMOID, 0, 0>(a, gs, grad, nthreads);
    return run_backward<ZK, TK, ACT_NONE, 0, 0>(a, gs, grad, nthreads);
}

template <int ZK>
int backward_t(const Args& a, int tk, int act, const float* gs, void* grad, int nthreads) {
    switch (tk) {
        case T_F32: return backward_act<ZK, T_F32>(a, act, gs, grad, nthreads);
        case T_I64: return backward_act<ZK, T_I64>(a, act, gs, grad, nthreads);
        case T_I32: return backward_act<ZK, T_I32>(a, act, gs, grad, nthreads);
        case T_U8: return backward_act<ZK, T_U8>(a, act, gs, grad, nthreads);
    }
    return 2;
}

int forward(const Args& a, int zk, int tk, int act, float* out, int* outside, int nthreads) {
    switch (zk) {
        case Z_F32: return forward_t<Z_F32>(a, tk, act, out, outside, nthreads);
        case Z_F16: return forward_t<Z_F16>(a, tk, act, out, outside, nthreads);
        case Z_BF16: return forward_t<Z_BF16>(a, tk, act, out, outside, nthreads);
    }
    return 2;
}

int backward(const Args& a, int zk, int tk, int act, const float* gs, void* grad, int nthreads) {
    switch (zk) {
        case Z_F32: return backward_t<Z_F32>(a, tk, act, gs, grad, nthreads);
        case Z_F16: return backward_t<Z_F16>(a, tk, act, gs, grad, nthreads);
        case Z_BF16: return backward_t<Z_BF16>(a, tk, act, gs, grad, nthreads);
    }
    return 2;
}

#endif  // FASTGSL_STATS_ISA_BODY
