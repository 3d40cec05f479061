// Thread fan-out shared by the host builds of the kernels (edt_host.cpp, voxel_stats_host.cpp, nearest_host.cpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace fastgsl_host {

// GOMP_parallel(fn, data, num_threads, flags) of libgomp's ABI (which LLVM's and Intel's OpenMP runtimes export as
// well): runs fn(data) on a team of num_threads threads, the caller among them, and returns when all are done.
using TeamLauncher = void (*)(void (*)(void*), void*, unsigned, unsigned);
// The OpenMP runtime that torch already runs its own parallel work on, set by the loader (fastgsl/_native.py) when
// the process has one; null: plain std::threads.  Torch's idle workers spin for a while after each parallel region,
// so threads of our own started right after a torch operation (the network's forward before the loss) share the
// cores with them; on the same team, those workers take our work instead.
inline std::atomic<TeamLauncher>& team_launcher() {
    static std::atomic<TeamLauncher> launcher{nullptr};
    return launcher;
}
// How many times work went to the team (tests: the path ran).
inline std::atomic<long long>& team_runs() {
    static std::atomic<long long> runs{0};
    return runs;
}

// Runs fn(begin, end, t) for t < p = min(nthreads, n), range t being the contiguous [n t / p, n (t + 1) / p) of
// [0, n): contiguous ranges keep neighbouring lines or blocks on one core.  The ranges run on the OpenMP team when
// one is set (each team thread takes ranges from a counter, so a smaller team still does them all), else on
// std::threads, where a thread that cannot be started runs its range on the calling thread instead.  Either way the
// work is always done.  Returns 0, or 1 if a range threw (out of memory).
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
    const TeamLauncher launch = team_launcher().load(std::memory_order_acquire);
    if (p > 1 && launch) {
        using Body = decltype(body);
        struct Team {
            Body* run;
            long long p;
            std::atomic<long long> next;
        } team{&body, p, {0}};
        launch(
            [](void* data) {
                Team& tm = *static_cast<Team*>(data);
                for (long long t; (t = tm.next.fetch_add(1, std::memory_order_relaxed)) < tm.p;) (*tm.run)(t);
            },
            &team, (unsigned)p, 0);
        team_runs().fetch_add(1, std::memory_order_relaxed);
        int rc = 0;
        for (int s : status) rc |= s;
        return rc;
    }
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

// Each library is one translation unit, so each defines this once: the loader passes the launcher (or null).
extern "C" int fastgsl_host_set_team(void* launcher) {
    fastgsl_host::team_launcher().store(reinterpret_cast<fastgsl_host::TeamLauncher>(launcher),
                                        std::memory_order_release);
    return 0;
}
extern "C" long long fastgsl_host_team_runs() { return fastgsl_host::team_runs().load(); }
