// Thread fan-out shared by the host builds of the kernels (edt_host.cpp, voxel_stats_host.cpp, nearest_host.cpp).
#pragma once

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

}  // namespace fastgsl_host
