// Order statistics of consecutive segments of float32 values, on the CPU: the exact percentiles of the surface
// metrics (fastgsl/metrics/selection.py) without a sort, one segment per task.  Used by nearest_host.cpp.
#pragma once

#include <algorithm>
#include <limits>
#include <vector>

#include "host_parallel.h"

namespace fastgsl_select {

// Segment s holds values[off[s] .. off[s + 1]); writes lo[s], its k[s]-th smallest (0-based), and hi[s], the
// (k[s] + 1)-th (+inf where there is none); an empty segment gets 0 and +inf.  Selection (nth_element) on a copy,
// then the minimum of what lies above position k[s]: both are order statistics, whatever the selection's order.
inline int select(const float* values, const long long* off, long long nseg, const long long* k, float* lo, float* hi,
                  int nthreads) {
    return fastgsl_host::parallel_ranges(nseg, nthreads, [&](long long a, long long b, long long) {
        std::vector<float> buf;
        for (long long s = a; s < b; ++s) {
            const long long n = off[s + 1] - off[s], ks = k[s];
            lo[s] = 0.0f;
            hi[s] = std::numeric_limits<float>::infinity();
            if (n <= 0 || ks < 0 || ks >= n) continue;
            buf.assign(values + off[s], values + off[s + 1]);
            std::nth_element(buf.begin(), buf.begin() + ks, buf.end());
            lo[s] = buf[(size_t)ks];
            if (ks + 1 < n) hi[s] = *std::min_element(buf.begin() + ks + 1, buf.end());
        }
    });
}

}  // namespace fastgsl_select
