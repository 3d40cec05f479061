// Memory advice shared by the host builds of the kernels (edt_host.cpp, voxel_stats_host.cpp).
#pragma once

#ifdef __linux__
#include <sys/mman.h>
#endif

namespace fastgsl_host {

// Asks for transparent huge pages on the whole 2 MiB pages inside [p, p + bytes).  A large buffer that torch or
// the pass has just allocated is fresh from mmap, and its first write faults once per 4 KiB page: about 8,000
// faults for a 32 MB gradient, which took as long as the pass itself.  Where the kernel's THP mode is "madvise"
// (the common default), this turns them into one fault per 2 MiB; elsewhere it changes nothing.
inline void advise_huge(void* p, long long bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const unsigned long long huge = 1ULL << 21;
    const unsigned long long a = ((unsigned long long)p + huge - 1) & ~(huge - 1);
    const unsigned long long e = ((unsigned long long)p + (unsigned long long)bytes) & ~(huge - 1);
    if (bytes > 0 && e > a) madvise((void*)a, (size_t)(e - a), MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

}  // namespace fastgsl_host
