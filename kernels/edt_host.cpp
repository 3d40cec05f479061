// Host build of kernels/edt_kernel.cu: the CUDA built-ins become a per-thread range of lines, and each "kernel" runs on
// std::threads (not OpenMP, which would clash with the OpenMP runtime torch ships).  Loaded with ctypes by
// fastgsl/edt.py, so it links against neither Python nor torch.  Built by setup.py (fastgsl._edt_host) or,
// in a source checkout, compiled on first use into a cache directory.
#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <thread>
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

#define EDT_HOST_FIRST(SUFFIX, T)                                                                              \
    extern "C" int fastgsl_edt_first_##SUFFIX(const T* labels, double* F, long long nlines, long long C,       \
                                              int nonzero, long long n0, long long n1, long long n2, double s,  \
                                              int mode, int nthreads) {                                        \
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

// interleave = 0: one private workspace per thread (step 1).  interleave = 1: one shared workspace in the GPU's
// slot-minor layout (entry k of thread t at k * nthreads + t), so the strided stack indexing that the CUDA
// launch uses is executed and tested on the host too.
extern "C" int fastgsl_edt_envelope(double* F, float* out, long long nlines, long long N, long long n,
                                    long long inner, double s, int mode, int final_, double fill, int nthreads,
                                    int interleave) {
    if (!interleave) {
        return edt_parallel(nlines, nthreads, [&]() {
            std::vector<double> g((size_t)(2 * n));
            std::vector<int> h((size_t)(2 * n));
            edt_envelope(F, out, nlines, N, n, inner, s, mode, final_, fill, g.data(), h.data(), 1);
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

extern "C" int fastgsl_edt_abi_version() { return 2; }

// sha256 prefix of the sources this library was built from (set by setup.py and by fastgsl.edt's on-demand
// build), so that a library left over from older sources is recognised as stale.
#ifndef FASTGSL_EDT_SOURCE_HASH
#define FASTGSL_EDT_SOURCE_HASH "unknown"
#endif
extern "C" const char* fastgsl_edt_source_hash() { return FASTGSL_EDT_SOURCE_HASH; }
