// Thread fan-out shared by the host builds of the kernels (edt_host.cpp, voxel_stats_host.cpp, nearest_host.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace fastgsl_host {

// Runs fn(begin, end, t) for t < p = min(nthreads, n) on std::threads, thread t over the contiguous range
// [n t / p, n (t + 1) / p) of [0, n): contiguous ranges keep neighbouring lines or blocks on one core.
// A thread that cannot be started runs its range on the calling thread instead, so the work is always done.
// Returns 0, or 1 if a range threw (out of memory).
template <class Fn>
int parallel_ranges(long long n, int nthreads, Fn fn) {
    if (n <= 0) return 0;
    long long p = nthreads < 1 ? 1 : nthreads;
    if (p > n) p = n;
    std::vector<int> status((size_t)p, 0);
    auto body = [&](long long t) {
        try {
            fn(n * t / p, n * (t + 1) / p, t);
        } catch (...) {
            status[(size_t)t] = 1;
        }
    };
    std::vector<std::thread> pool;
    for (long long t = 1; t < p; ++t) {
        try {
            pool.emplace_back(body, t);
        } catch (...) {
            body(t);
        }
    }
    body(0);
    for (auto& th : pool) th.join();
    int rc = 0;
    for (int s : status) rc |= s;
    return rc;
}

// Runs fn(begin, end, t) over [0, n) in chunks of `chunk` items, handed out in order from a shared counter to up to
// nthreads threads: a thread slowed down by another process takes fewer chunks instead of holding up the others,
// which the fixed ranges of parallel_ranges cannot avoid.  Which thread computes a chunk varies between runs, so a
// caller whose result must not depend on it writes one result per item and reduces them in item order afterwards.
template <class Fn>
int parallel_chunks(long long n, int nthreads, long long chunk, Fn fn) {
    if (n <= 0) return 0;
    chunk = std::max(1LL, chunk);
    const long long nchunks = (n + chunk - 1) / chunk;
    std::atomic<long long> next{0};
    return parallel_ranges(std::min<long long>(std::max(1, nthreads), nchunks), nthreads,
                           [&](long long, long long, long long t) {
                               for (long long k; (k = next.fetch_add(1, std::memory_order_relaxed)) < nchunks;)
                                   fn(k * chunk, std::min(n, (k + 1) * chunk), t);
                           });
}

}  // namespace fastgsl_host
