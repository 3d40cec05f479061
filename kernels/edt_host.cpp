// Host build of kernels/edt_kernel.cu: the CUDA built-ins become a per-thread range of lines, and each "kernel" runs on
// std::threads (not OpenMP, which would clash with the OpenMP runtime torch ships).  Loaded with ctypes by
// fastgsl/ops/edt.py, so it links against neither Python nor torch.  Built by setup.py (fastgsl._edt_host) or,
// in a source checkout, compiled on first use into a cache directory.
#include <algorithm>
#include <atomic>
#include <cmath>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <cstring>
#include <limits>
#include <new>
#include <thread>
#include <type_traits>
#include <vector>

#define EDT_HOST 1

namespace {
struct EdtHostRange {
    long long begin, end, thread;
};
thread_local EdtHostRange edt_range = {0, 0, 0};
}  // namespace

#define EDT_KERNEL static
#define EDT_DEV static inline
#define EDT_LINE_BEGIN (edt_range.begin)
#define EDT_LINE_END(n) (edt_range.end < (n) ? edt_range.end : (n))
#define EDT_LINE_STEP 1
#define EDT_SLOT 0
#define EDT_RESTRICT __restrict__
static inline double edt_inf() { return std::numeric_limits<double>::infinity(); }
static inline bool edt_negative(double x) { return std::signbit(x); }
static inline double edt_sqrt(double x) { return std::sqrt(x); }

#include "edt_kernel.cu"
#include "host_memory.h"
#include "host_parallel.h"

namespace {
// Runs fn() on up to nthreads threads, each over a contiguous block of lines (neighbouring lines share cache
// lines along strided axes).  Returns 0, or 1 if a thread ran out of memory.
template <class Fn>
int edt_parallel(long long nlines, int nthreads, Fn fn) {
    return fastgsl_host::parallel_ranges(nlines, nthreads, [&](long long begin, long long end, long long t) {
        edt_range.begin = begin;
        edt_range.end = end;
        edt_range.thread = t;
        fn();
    });
}
}  // namespace

namespace {
// Host lower-envelope pass over tiles of up to EDT_TILE neighbouring lines (same outer index, consecutive inner
// index), which are adjacent in memory: entry i of the tile's lines is one contiguous run of doubles.  The tile is
// copied into a small buffer (whole cache lines, instead of one page per entry along a long stride), and its
// lines are advanced in lockstep, i outer and line inner, so that the dependent load-compare chains of the stack
// updates of different lines overlap in the core.  Each line runs exactly the pushes, removal tests and queries
// of edt_envelope_line, in the same order, so the results are bit-identical to it (and to the CUDA build).
constexpr int EDT_TILE = 8;

struct EdtTileWork {
    std::vector<double> buf, g;
    std::vector<int> h;
    explicit EdtTileWork(long long n)
        : buf((size_t)(n * EDT_TILE)), g((size_t)(2 * n * EDT_TILE)), h((size_t)(2 * n * EDT_TILE)) {}
};

// Lines first .. first + w - 1 (w <= EDT_TILE) of the (item, outer, inner) grid, all with the same outer index.
void edt_envelope_tile(double* F, float* out, long long first, int w, long long N, long long n, long long inner,
                       double s, int mode, int final_, double fill, EdtTileWork& ws) {
    const long long per = N / n;
    const long long item = first / per, r = first % per;
    const long long base = item * N + (r / inner) * (n * inner) + r % inner;
    const double inf = edt_inf();
    const int nn = (int)n;
    const long long W = EDT_TILE;
    double* buf = ws.buf.data();
    double* f = F + base;
    for (long long i = 0; i < n; ++i)
        for (int j = 0; j < w; ++j) buf[i * W + j] = f[i * inner + j];
    // line j: object (or single) envelope at g + 2nj, background envelope at g + 2nj + n
    double* gs[EDT_TILE];
    int* hs[EDT_TILE];
    int lo[EDT_TILE], lb[EDT_TILE], ko[EDT_TILE], kb[EDT_TILE];
    for (int j = 0; j < w; ++j) {
        gs[j] = ws.g.data() + 2 * n * j;
        hs[j] = ws.h.data() + 2 * n * j;
        lo[j] = lb[j] = ko[j] = kb[j] = 0;
    }
    if (mode == EDT_SITES || mode == EDT_ITK) {
        for (int i = 0; i < nn; ++i) {
            const double* row = buf + i * W;
            for (int j = 0; j < w; ++j) {
                const double t = row[j];
                const double d = edt_negative(t) ? -t : t;
                if (d != inf) edt_push(gs[j], hs[j], 1, lo[j], d, i, s);
            }
        }
    } else {
        for (int i = 0; i < nn; ++i) {
            const double* row = buf + i * W;
            for (int j = 0; j < w; ++j) {
                const double t = row[j];
                const bool in_cur = edt_negative(t);
                const bool edge = (i > 0 && edt_negative(row[j - W]) != in_cur) ||
                                  (i + 1 < nn && edt_negative(row[j + W]) != in_cur);
                if (in_cur) {
                    if (-t != inf) edt_push(gs[j] + n, hs[j] + n, 1, lb[j], -t, i, s);
                    if (edge) edt_push(gs[j], hs[j], 1, lo[j], 0.0, i, s);
                } else {
                    if (t != inf) edt_push(gs[j], hs[j], 1, lo[j], t, i, s);
                    if (edge) edt_push(gs[j] + n, hs[j] + n, 1, lb[j], 0.0, i, s);
                }
            }
        }
    }
    for (int i = 0; i < nn; ++i) {
        double* row = buf + i * W;
        float* o = out + base + i * inner;
        for (int j = 0; j < w; ++j) {
            const bool in = edt_negative(row[j]);
            double v;
            if (mode == EDT_SITES || mode == EDT_ITK) v = edt_query(gs[j], hs[j], 1, lo[j], ko[j], i, s);
            else if (in) v = edt_query(gs[j] + n, hs[j] + n, 1, lb[j], kb[j], i, s);
            else v = edt_query(gs[j], hs[j], 1, lo[j], ko[j], i, s);
            if (!final_) row[j] = in ? -v : v;
            else o[j] = edt_final_value(v, in, mode, fill);
        }
    }
    if (!final_)
        for (long long i = 0; i < n; ++i)
            for (int j = 0; j < w; ++j) f[i * inner + j] = buf[i * W + j];
}

#if defined(__x86_64__) && defined(__GNUC__)
#define EDT_AVX512 1
// The single-envelope modes (EDT_SITES, EDT_ITK) with the 8 lines of a tile as the 8 lanes of AVX-512 registers,
// chosen at run time where the CPU has AVX-512F: the removal loop of a push runs while any lane still removes, the
// query cursor moves on while any lane still advances, so a mispredicted branch costs 8 lines one step instead of
// one line.  Each lane's stack holds the entries of its scalar run, and every lane evaluates edt_remove and
// edt_query's sums in the same order with the same IEEE operations (no FMA), so the results are bit-identical;
// positions are doubles, exact below 2^53, so (hd - (double)i) == (double)(h - i) and hd * s == (double)h * s.
// Stacks: entry k of lane j at sg[k * 8 + j] (height), sh[k * 8 + j] (position).
__attribute__((target("avx512f"))) static inline __mmask8 edt_remove8(__m512d gu, __m512d gv, __m512d gw,
                                                                       __m512d xu, __m512d xv, __m512d xw) {
    const __m512d a = _mm512_sub_pd(xv, xu), b = _mm512_sub_pd(xw, xv), c = _mm512_sub_pd(xw, xu);
    const __m512d t = _mm512_sub_pd(_mm512_sub_pd(_mm512_sub_pd(_mm512_mul_pd(c, gv), _mm512_mul_pd(b, gu)),
                                                  _mm512_mul_pd(a, gw)),
                                    _mm512_mul_pd(_mm512_mul_pd(a, b), c));
    return _mm512_cmp_pd_mask(t, _mm512_setzero_pd(), _CMP_GT_OQ);
}

__attribute__((target("avx512f"))) void edt_envelope_tile_avx512(double* F, float* out, long long first, int w,
                                                                 long long N, long long n, long long inner,
                                                                 double s, int mode, int final_, double fill,
                                                                 EdtTileWork& ws) {
    const long long per = N / n;
    const long long item = first / per, r = first % per;
    const long long base = item * N + (r / inner) * (n * inner) + r % inner;
    const double inf = edt_inf();
    constexpr long long W = EDT_TILE;
    double* buf = ws.buf.data();
    double* sg = ws.g.data();
    double* sh = sg + n * W;  // ws.g holds 2n entries per lane
    double* f = F + base;
    for (long long i = 0; i < n; ++i) {
        for (int j = 0; j < w; ++j) buf[i * W + j] = f[i * inner + j];
        for (int j = w; j < W; ++j) buf[i * W + j] = inf;  // idle lanes: no site, never pushed
    }
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i zero = _mm512_setzero_si512(), one = _mm512_set1_epi64(1), two = _mm512_set1_epi64(2);
    const __m512d vinf = _mm512_set1_pd(inf), vs = _mm512_set1_pd(s);
    const __m512i sign = _mm512_set1_epi64((long long)0x8000000000000000ULL);
    __m512i len = zero;
    __m512d g1 = _mm512_setzero_pd(), x1 = g1, g2 = g1, x2 = g1;  // top, second entry (len >= 1, >= 2)
    for (long long i = 0; i < n; ++i) {
        const __m512d t = _mm512_loadu_pd(buf + i * W);
        const __m512d d = _mm512_castsi512_pd(_mm512_andnot_si512(sign, _mm512_castpd_si512(t)));
        const __mmask8 act = _mm512_cmp_pd_mask(d, vinf, _CMP_NEQ_OQ);
        if (!act) continue;
        const __m512d di = _mm512_set1_pd((double)i), xi = _mm512_set1_pd((double)i * s);
        __mmask8 m = act & _mm512_cmpge_epi64_mask(len, two) & edt_remove8(g2, g1, d, x2, x1, xi);
        while (m) {
            len = _mm512_mask_sub_epi64(len, m, len, one);
            g1 = _mm512_mask_blend_pd(m, g1, g2);
            x1 = _mm512_mask_blend_pd(m, x1, x2);
            const __m512i k2 = _mm512_max_epi64(_mm512_sub_epi64(len, two), zero);
            const __m512i idx = _mm512_add_epi64(_mm512_slli_epi64(k2, 3), lane);
            g2 = _mm512_mask_i64gather_pd(g2, m, idx, sg, 8);
            x2 = _mm512_mask_blend_pd(m, x2, _mm512_mul_pd(_mm512_mask_i64gather_pd(x2, m, idx, sh, 8), vs));
            m = m & _mm512_cmpge_epi64_mask(len, two) & edt_remove8(g2, g1, d, x2, x1, xi);
        }
        const __m512i idx = _mm512_add_epi64(_mm512_slli_epi64(len, 3), lane);
        _mm512_mask_i64scatter_pd(sg, act, idx, d, 8);
        _mm512_mask_i64scatter_pd(sh, act, idx, di, 8);
        g2 = _mm512_mask_blend_pd(act, g2, g1);
        x2 = _mm512_mask_blend_pd(act, x2, x1);
        g1 = _mm512_mask_blend_pd(act, g1, d);
        x1 = _mm512_mask_blend_pd(act, x1, xi);
        len = _mm512_mask_add_epi64(len, act, len, one);
    }
    const __mmask8 nonempty = _mm512_cmpgt_epi64_mask(len, zero);
    const __m512i last = _mm512_sub_epi64(len, one);
    // cursor entry k and the entry after it (k + 1, where k < last) held in registers: the advance test needs no
    // gather, only an advance does
    __m512i k = zero;
    __mmask8 more = nonempty & _mm512_cmplt_epi64_mask(k, last);
    const __m512i lane1 = _mm512_add_epi64(lane, _mm512_set1_epi64(8));
    __m512d hk = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), nonempty, lane, sh, 8);
    __m512d gk = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), nonempty, lane, sg, 8);
    __m512d hn = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), more, lane1, sh, 8);
    __m512d gn = _mm512_mask_i64gather_pd(_mm512_setzero_pd(), more, lane1, sg, 8);
    const __m512d vfill = _mm512_set1_pd(fill);
    alignas(64) float o8[8];
    for (long long i = 0; i < n; ++i) {
        const __m512d di = _mm512_set1_pd((double)i);
        const __m512d dx = _mm512_mul_pd(_mm512_sub_pd(hk, di), vs);
        __m512d v = _mm512_add_pd(gk, _mm512_mul_pd(dx, dx));
        __mmask8 adv = more;
        while (adv) {
            const __m512d dx2 = _mm512_mul_pd(_mm512_sub_pd(hn, di), vs);
            const __m512d v2 = _mm512_add_pd(gn, _mm512_mul_pd(dx2, dx2));
            adv = adv & _mm512_cmp_pd_mask(v2, v, _CMP_NGT_UQ);  // !(v2 > v): the scalar loop's test
            if (!adv) break;
            k = _mm512_mask_add_epi64(k, adv, k, one);
            hk = _mm512_mask_blend_pd(adv, hk, hn);
            gk = _mm512_mask_blend_pd(adv, gk, gn);
            v = _mm512_mask_blend_pd(adv, v, v2);
            const __mmask8 has_next = _mm512_cmplt_epi64_mask(k, last);
            more = (more & ~adv) | (adv & has_next);
            adv = adv & has_next;
            const __m512i idx = _mm512_add_epi64(_mm512_slli_epi64(_mm512_add_epi64(k, one), 3), lane);
            hn = _mm512_mask_i64gather_pd(hn, adv, idx, sh, 8);
            gn = _mm512_mask_i64gather_pd(gn, adv, idx, sg, 8);
        }
        v = _mm512_mask_blend_pd(nonempty, vinf, v);
        const __m512d t = _mm512_loadu_pd(buf + i * W);
        const __mmask8 in = _mm512_cmplt_epi64_mask(_mm512_castpd_si512(t), zero);  // sign bit
        if (!final_) {
            const __m512d neg = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(v), sign));
            _mm512_storeu_pd(buf + i * W, _mm512_mask_blend_pd(in, v, neg));
        } else {
            const __m512d rt = _mm512_sqrt_pd(v);
            const __m512d nrt = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(rt), sign));
            const __m512d nfill = _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(vfill), sign));
            const __m512d filled = mode == EDT_SITES ? vinf : _mm512_mask_blend_pd(in, vfill, nfill);
            const __mmask8 isinf = _mm512_cmp_pd_mask(v, vinf, _CMP_EQ_OQ);
            const __m512d res = _mm512_mask_blend_pd(isinf, _mm512_mask_blend_pd(in, rt, nrt), filled);
            _mm256_store_ps(o8, _mm512_cvtpd_ps(res));
            float* o = out + base + i * inner;
            for (int j = 0; j < w; ++j) o[j] = o8[j];
        }
    }
    if (!final_)
        for (long long i = 0; i < n; ++i)
            for (int j = 0; j < w; ++j) f[i * inner + j] = buf[i * W + j];
}

// 0: scalar tiles; 1: AVX-512 tiles for the single-envelope modes (the default where the CPU has AVX-512F)
std::atomic<int> edt_simd_state{-1};
bool edt_avx512_supported() { return __builtin_cpu_supports("avx512f"); }
bool edt_use_avx512() {
    if (edt_simd_state.load() < 0) edt_simd_state.store(edt_avx512_supported() ? 1 : 0);
    return edt_simd_state.load() == 1;
}
#endif

// Lines [begin, end) cut into tiles that never cross an outer index.
void edt_envelope_tiles(double* F, float* out, long long begin, long long end, long long N, long long n,
                        long long inner, double s, int mode, int final_, double fill) {
    EdtTileWork ws(n);
    for (long long line = begin; line < end;) {
        const long long left_in_row = inner - (line % (N / n)) % inner;
        long long w = std::min<long long>({(long long)EDT_TILE, left_in_row, end - line});
#ifdef EDT_AVX512
        if ((mode == EDT_SITES || mode == EDT_ITK) && edt_use_avx512())
            edt_envelope_tile_avx512(F, out, line, (int)w, N, n, inner, s, mode, final_, fill, ws);
        else
#endif
            edt_envelope_tile(F, out, line, (int)w, N, n, inner, s, mode, final_, fill, ws);
        line += w;
    }
}
}  // namespace

namespace {
// First pass of EDT_ITK on the host, for the lines [begin, end): the contour test of edt_first_line (an object
// voxel with background among its full neighbourhood) made of whole-row loops without branches, which the compiler
// vectorises - bg[y] = "column y of the up to 9 neighbouring rows holds background", then
// site[y] = inside[y] & (bg[y - 1] | bg[y] | bg[y + 1]) - instead of a sliding window of per-voxel tests.  The
// scans that follow are those of edt_first_line, on the same sites: bit-identical.
template <typename T>
void edt_first_itk_lines(const T* labels, double* F, long long begin, long long end, long long C, int nonzero,
                         long long n0, long long n1, long long n2, double s) {
    const long long rows = n0 * n1, n = n2;
    const double inf = edt_inf();
    std::vector<unsigned char> bg((size_t)n + 2), site((size_t)n), in((size_t)n);
    for (long long line = begin; line < end; ++line) {
        const EdtRow<T> r = edt_first_row(labels, F, line, C, nonzero, rows, n2);
        const long long row = r.row, cls = r.cls;
        const T* lab = r.lab;
        const T* cur = r.cur;
        double* f = r.f;
        const long long i0 = row / n1, i1 = row % n1;
        // byte labels compared as bytes (same test: cls fits); the compiler then runs 16 columns per instruction
        const bool narrow = std::is_same<T, unsigned char>::value && cls >= 0 && cls <= 255;
        unsigned char* bgc = bg.data() + 1;  // bgc[-1] and bgc[n]: no column there, no background
        std::memset(bg.data(), 0, (size_t)n + 2);
        for (long long j0 = i0 - 1; j0 <= i0 + 1; ++j0) {
            if (j0 < 0 || j0 >= n0) continue;
            for (long long j1 = i1 - 1; j1 <= i1 + 1; ++j1) {
                if (j1 < 0 || j1 >= n1) continue;
                const T* nb = lab + (j0 * n1 + j1) * n2;
                if (nonzero)
                    for (long long y = 0; y < n; ++y) bgc[y] |= (unsigned char)(nb[y] == (T)0);
                else if (narrow)
                    for (long long y = 0; y < n; ++y) bgc[y] |= (unsigned char)(nb[y] != (T)cls);
                else
                    for (long long y = 0; y < n; ++y) bgc[y] |= (unsigned char)((long long)nb[y] != cls);
            }
        }
        if (nonzero)
            for (long long y = 0; y < n; ++y) in[y] = (unsigned char)(cur[y] != (T)0);
        else if (narrow)
            for (long long y = 0; y < n; ++y) in[y] = (unsigned char)(cur[y] == (T)cls);
        else
            for (long long y = 0; y < n; ++y) in[y] = (unsigned char)((long long)cur[y] == cls);
        for (long long y = 0; y < n; ++y) site[y] = in[y] & (bgc[y - 1] | bgc[y] | bgc[y + 1]);
        long long last = -1;
        for (long long x = 0; x < n; ++x) {
            if (site[x]) last = x;
            const double d = last >= 0 ? (double)(x - last) : inf;
            f[x] = in[x] ? -d : d;
        }
        // backward scan of edt_first_line (modes 0, 1): 0 marks a site
        long long next_a = -1;
        for (long long x = n - 1; x >= 0; --x) {
            const double t = f[x];
            const bool neg = edt_negative(t);
            double d = neg ? -t : t;
            if (d == 0.0) next_a = x;
            if (next_a >= 0 && (double)(next_a - x) < d) d = (double)(next_a - x);
            const double p = d * s;
            const double q = p * p;
            f[x] = neg ? -q : q;
        }
    }
}

// Lines per chunk of the host passes: 8 chunks per thread, taken from a shared counter, so that a thread slowed by
// another process does not hold up the others; whole tiles of neighbouring lines.  Every line is computed alone,
// so how the lines are cut into chunks never changes a result.
long long edt_chunk(long long nlines, int nthreads) {
    const long long want = nlines / (8LL * std::max(1, nthreads));
    return std::max<long long>(4 * EDT_TILE, (want + EDT_TILE - 1) / EDT_TILE * EDT_TILE);
}

// Integer label maps for EDT_ITK: the contour test reads every label up to 9 times per class, so the labels are
// first narrowed, once per call, to byte codes (the label where it is in [0, C), C <= 255; 255 elsewhere, which
// matches no class), on which the row loops run 8 times as wide.  code == cls iff label == cls, for every cls < C.
template <typename T>
int edt_first_itk(const T* labels, double* F, long long nlines, long long C, int nonzero, long long n0, long long n1,
                  long long n2, double s, int nthreads) {
    auto run = [&](const auto* src, int nz) {
        using S = std::remove_cv_t<std::remove_pointer_t<decltype(src)>>;
        return fastgsl_host::parallel_chunks(nlines, nthreads, edt_chunk(nlines, nthreads),
                                             [&](long long b, long long e, long long) {
                                                 edt_first_itk_lines<S>(src, F, b, e, C, nz, n0, n1, n2, s);
                                             });
    };
    if (nonzero || sizeof(T) == 1 || !std::is_integral<T>::value || C > 255) return run(labels, nonzero);
    const long long N = n0 * n1 * n2, total = nlines / (n0 * n1) / C * N;
    std::vector<unsigned char> code;
    try {
        code.resize((size_t)total);
    } catch (...) {
        return 1;
    }
    const int rc = fastgsl_host::parallel_ranges(total, nthreads, [&](long long b, long long e, long long) {
        for (long long v = b; v < e; ++v) {
            const long long x = (long long)labels[v];
            code[(size_t)v] = (unsigned char)(x >= 0 && x < C ? x : 255);
        }
    });
    return rc ? rc : run(code.data(), 0);
}
}  // namespace

// The first pass writes the float64 workspace first: where it is a fresh allocation of hundreds of MB, 4 KiB page
// faults cost about a sixth of a 2x4x128^3 transform, hence the huge-page advice.  Each thread writes its own
// contiguous rows, so no two threads wait on one huge page.  Not for the result: the last pass writes every plane
// from both threads, and there huge pages made them wait on each other (measured slower).
#define EDT_HOST_FIRST(SUFFIX, T)                                                                              \
    extern "C" int fastgsl_edt_first_##SUFFIX(const T* labels, double* F, long long nlines, long long C,       \
                                              int nonzero, long long n0, long long n1, long long n2, double s,  \
                                              int mode, int nthreads, int generic) {                           \
        fastgsl_host::advise_huge(F, nlines * n2 * (long long)sizeof(double));                                 \
        if (mode == EDT_ITK && !generic)                                                                       \
            return edt_first_itk<T>(labels, F, nlines, C, nonzero, n0, n1, n2, s, nthreads);                   \
        return edt_parallel(nlines, nthreads,                                                                  \
                            [&]() { edt_first_##SUFFIX(labels, F, nlines, C, nonzero, n0, n1, n2, s, mode); }); \
    }

EDT_HOST_FIRST(u8, unsigned char)
EDT_HOST_FIRST(i8, signed char)
EDT_HOST_FIRST(i16, short)
EDT_HOST_FIRST(i32, int)
EDT_HOST_FIRST(i64, long long)
EDT_HOST_FIRST(f32, float)
EDT_HOST_FIRST(f64, double)

// interleave = 0: the host's own passes (tiles of neighbouring lines, private workspaces).  interleave = 1: the
// line routine of edt_kernel.cu as the CUDA build runs it, one shared workspace in the GPU's slot-minor layout
// (entry k of thread t at k * nthreads + t), so that the CUDA code path and its strided stack indexing are
// executed and tested on the host too.  `generic` of the first pass is the same switch.
extern "C" int fastgsl_edt_envelope(double* F, float* out, long long nlines, long long N, long long n,
                                    long long inner, double s, int mode, int final_, double fill, int nthreads,
                                    int interleave) {
    if (!interleave) {
        return fastgsl_host::parallel_chunks(nlines, nthreads, edt_chunk(nlines, nthreads),
                                             [&](long long begin, long long end, long long) {
                                                 edt_envelope_tiles(F, out, begin, end, N, n, inner, s, mode, final_,
                                                                    fill);
                                             });
    }
    long long p = nthreads < 1 ? 1 : nthreads;
    if (p > nlines) p = nlines < 1 ? 1 : nlines;
    std::vector<double> g;
    std::vector<int> h;
    try {
        g.resize((size_t)(2 * n * p));
        h.resize((size_t)(2 * n * p));
    } catch (...) {
        return 1;
    }
    return edt_parallel(nlines, (int)p, [&]() {
        const long long t = edt_range.thread;
        edt_envelope(F, out, nlines, N, n, inner, s, mode, final_, fill, g.data() + t, h.data() + t, p);
    });
}

// Which host envelope runs the single-envelope modes: set = 1 asks for the AVX-512 tiles (granted only where the
// CPU has AVX-512F), 0 for the scalar tiles, -1 leaves it; returns 1 if the AVX-512 tiles are in use (tests run both).
extern "C" int fastgsl_edt_simd(int set) {
#ifdef EDT_AVX512
    if (set >= 0) edt_simd_state.store(set && edt_avx512_supported() ? 1 : 0);
    return edt_use_avx512() ? 1 : 0;
#else
    (void)set;
    return 0;
#endif
}

extern "C" int fastgsl_edt_abi_version() { return 3; }

// sha256 prefix of the sources this library was built from (set by setup.py and by fastgsl.ops.edt's on-demand
// build), so that a library left over from older sources is recognised as stale.
#ifndef FASTGSL_EDT_SOURCE_HASH
#define FASTGSL_EDT_SOURCE_HASH "unknown"
#endif
extern "C" const char* fastgsl_edt_source_hash() { return FASTGSL_EDT_SOURCE_HASH; }
