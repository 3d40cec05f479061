// The surface voxels of boolean masks, as sorted flat indices, in one pass over the rows of the masks.
//
// The surface metrics (fastgsl/metrics/distances.py) measure distances between a few voxels of each mask: MONAI's
// edge voxels, ITK's LabelContour voxels, the sites of ITK's signed Maurer map, or the voxels of one mask outside
// the other.  Built from whole-volume tensor operations, each of these costs a dozen full passes and as many
// fresh full-size temporaries (and their page faults), far more than the distances themselves on a CPU; here
// every row of a mask is read once per neighbouring row, only rows that hold a voxel of the mask are tested, and
// the result is the list of voxels, never a volume.  Used by nearest_host.cpp; no Python or torch API.
//
// The rules (m: the mask; a neighbour outside the image takes the mode's border value):
//   SV_EDGE      m and not all 2 nd face neighbours in m, border 0 (scipy binary_erosion's cross, border_value=0)
//   SV_CONTOUR   the same with border 1 (ITK LabelContourImageFilter, fullyConnected=false)
//   SV_MAURER    m and not all 3^nd - 1 neighbours in m, border 1 (the sites of SignedMaurerDistanceMap)
//   SV_OUTSIDE   m and not other (the other mask of the pair), counting m and other apart
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "host_parallel.h"

namespace fastgsl_surface {

enum Mode { SV_EDGE = 0, SV_CONTOUR = 1, SV_MAURER = 2, SV_OUTSIDE = 3 };
constexpr int kMaxModes = 3;

// A batch of masks: volume v < nvol starts at base[v / half] + off[v]; the other mask of v is volume
// (v + half) % (2 half) (pred against target).  Axis strides in elements; the last axis is contiguous.
struct Volumes {
    const unsigned char* base[2];
    const long long* off;
    long long nvol, half;
    int nd;
    long long n0, n1, n2;  // 2-D masks have n0 = 1
    long long s0, s1;

    const unsigned char* row(long long v, long long i0, long long i1) const {
        return base[v >= half] + off[v] + i0 * s0 + i1 * s1;  // v < 2 half: no division per row
    }
};

// The first and last x with r[x] != 0 (false for an empty row), reading 8 bytes at a time.
inline bool row_span(const unsigned char* r, long long n, long long& first, long long& last) {
    long long x = 0;
    while (x + 32 <= n) {  // most rows are empty: 32 bytes per test
        unsigned long long w[4];
        std::memcpy(w, r + x, 32);
        if (w[0] | w[1] | w[2] | w[3]) break;
        x += 32;
    }
    while (x + 8 <= n) {
        unsigned long long w;
        std::memcpy(&w, r + x, 8);
        if (w) break;
        x += 8;
    }
    while (x < n && !r[x]) ++x;
    if (x == n) return false;
    first = x;
    long long y = n;
    while (y - 8 >= x) {
        unsigned long long w;
        std::memcpy(&w, r + y - 8, 8);
        if (w) break;
        y -= 8;
    }
    while (!r[y - 1]) --y;
    last = y - 1;
    return true;
}

// Work rows of one thread: the neighbour ANDs of the current row, with one padding byte at each end.
struct RowWork {
    std::vector<unsigned char> a, bnd, contour, maurer;
    explicit RowWork(long long n) : a((size_t)n + 2), bnd((size_t)n), contour((size_t)n), maurer((size_t)n) {}
};

// dst[x] &= src[x] for x < len (a separate function, so that the loop vectorises whatever the caller's aliasing)
inline void and_into(unsigned char* __restrict dst, const unsigned char* __restrict src, long long len) {
    for (long long x = 0; x < len; ++x) dst[x] &= src[x];
}

// out[x] for x in [x0, x1]: cur[x] set and not all of its face neighbours (and_rows[x], the AND of the other rows'
// neighbours, and the row's own x - 1 and x + 1).  The interior reads x - 1 and x + 1 as plain offsets (a loop
// that vectorises); the image's first and last voxel take `border` outside.  Returns whether any out[x] is set.
inline bool face_boundary(const unsigned char* cur, const unsigned char* and_rows, long long x0, long long x1,
                          long long n, unsigned char border, unsigned char* out) {
    unsigned char acc = 0;
    const long long in0 = std::max(x0, 1LL), in1 = std::min(x1, n - 2);
    for (long long x = in0; x <= in1; ++x)
        acc |= (out[x] = (unsigned char)(cur[x] & ((and_rows[x] & cur[x - 1] & cur[x + 1]) ^ 1)));
    for (const long long x : {x0, x1}) {
        if (x >= in0 && x <= in1) continue;
        const unsigned char left = x > 0 ? cur[x - 1] : border, right = x + 1 < n ? cur[x + 1] : border;
        acc |= (out[x] = (unsigned char)(cur[x] & ((and_rows[x] & left & right) ^ 1)));
    }
    return acc != 0;
}

// bnd[x] for x in [x0, x1] of row (i0, i1) of volume v under `mode`, where [x0, x1] holds every voxel of the row
// (cur is 0 outside it, so bnd is too); returns false when the row has no such voxel.  The neighbour rows are
// read on [x0 - 1, x1 + 1] only (within the image).
inline bool boundary_row(const Volumes& V, long long v, long long i0, long long i1, int mode, long long x0,
                         long long x1, RowWork& w) {
    const long long n = V.n2;
    const unsigned char* cur = V.row(v, i0, i1);
    unsigned char* bnd = w.bnd.data();
    if (mode == SV_OUTSIDE) {
        const unsigned char* oth = V.row((v + V.half) % (2 * V.half), i0, i1);
        unsigned char acc = 0;
        for (long long x = x0; x <= x1; ++x) acc |= (bnd[x] = (unsigned char)(cur[x] & (oth[x] ^ 1)));
        return acc != 0;
    }
    const unsigned char border = mode == SV_EDGE ? 0 : 1;
    unsigned char* and_rows = w.a.data() + 1;  // and_rows[-1], and_rows[n]: outside the image
    and_rows[-1] = and_rows[n] = border;
    const long long a = std::max(x0 - 1, 0LL), b = std::min(x1 + 1, n - 1), len = b - a + 1;
    const long long lo0 = V.nd == 3 ? i0 - 1 : i0, hi0 = V.nd == 3 ? i0 + 1 : i0;
    if (mode == SV_MAURER) {
        // and over the 3^(nd-1) rows around (i0, i1), the current one included, then over x - 1, x, x + 1
        std::memset(and_rows + a, 1, (size_t)len);
        for (long long j0 = lo0; j0 <= hi0; ++j0) {
            for (long long j1 = i1 - 1; j1 <= i1 + 1; ++j1) {
                if (j0 < 0 || j0 >= V.n0 || j1 < 0 || j1 >= V.n1) continue;  // all border (1): nothing to AND
                and_into(and_rows + a, V.row(v, j0, j1) + a, len);
            }
        }
        unsigned char acc = 0;
        for (long long x = x0; x <= x1; ++x)
            acc |= (bnd[x] = (unsigned char)(cur[x] & ((and_rows[x - 1] & and_rows[x] & and_rows[x + 1]) ^ 1)));
        return acc != 0;
    }
    // the face neighbours: the rows (i0 +- 1, i1), (i0, i1 +- 1) at x, the current row at x +- 1
    std::memset(and_rows + a, 1, (size_t)len);
    const long long nb[4][2] = {{i0, i1 - 1}, {i0, i1 + 1}, {i0 - 1, i1}, {i0 + 1, i1}};
    const int nnb = V.nd == 3 ? 4 : 2;
    for (int k = 0; k < nnb; ++k) {
        const long long j0 = nb[k][0], j1 = nb[k][1];
        if (j0 < 0 || j0 >= V.n0 || j1 < 0 || j1 >= V.n1) {
            if (!border) std::memset(and_rows + a, 0, (size_t)len);
            continue;
        }
        and_into(and_rows + a, V.row(v, j0, j1) + a, len);
    }
    return face_boundary(cur, and_rows, x0, x1, n, border, bnd);
}

// SV_CONTOUR and SV_MAURER of one row together (the "paper" convention's queries and sites), into w.contour and
// w.maurer, as boundary_row computes each: the AND of the face neighbour rows is the contour's, and the same AND
// taken on over the diagonal rows and the row itself is the Maurer rule's 3^(nd-1) rows, so the face rows are
// read once for both.  Sets has_contour / has_maurer to whether the row has a voxel of each.
inline void contour_maurer_rows(const Volumes& V, long long v, long long i0, long long i1, long long x0, long long x1,
                                RowWork& w, bool& has_contour, bool& has_maurer) {
    const long long n = V.n2;
    const unsigned char* cur = V.row(v, i0, i1);
    unsigned char* and_rows = w.a.data() + 1;  // border 1 outside the image, for both rules
    and_rows[-1] = and_rows[n] = 1;
    const long long a = std::max(x0 - 1, 0LL), b = std::min(x1 + 1, n - 1), len = b - a + 1;
    std::memset(and_rows + a, 1, (size_t)len);
    auto and_row = [&V, v, a, len, and_rows](long long j0, long long j1) {
        if (j0 < 0 || j0 >= V.n0 || j1 < 0 || j1 >= V.n1) return;  // all border (1): nothing to AND
        and_into(and_rows + a, V.row(v, j0, j1) + a, len);
    };
    and_row(i0, i1 - 1);
    and_row(i0, i1 + 1);
    if (V.nd == 3) and_row(i0 - 1, i1), and_row(i0 + 1, i1);
    has_contour = face_boundary(cur, and_rows, x0, x1, n, 1, w.contour.data());
    if (V.nd == 3) and_row(i0 - 1, i1 - 1), and_row(i0 - 1, i1 + 1), and_row(i0 + 1, i1 - 1), and_row(i0 + 1, i1 + 1);
    and_into(and_rows + a, cur + a, len);
    unsigned char* mb = w.maurer.data();
    unsigned char acc = 0;
    for (long long x = x0; x <= x1; ++x)
        acc |= (mb[x] = (unsigned char)(cur[x] & ((and_rows[x - 1] & and_rows[x] & and_rows[x + 1]) ^ 1)));
    has_maurer = acc != 0;
}

// What one thread found, for its contiguous range of rows (so that the threads' lists, concatenated in thread
// order, are sorted).
struct Found {
    std::vector<long long> idx[kMaxModes];
    std::vector<long long> per_volume[kMaxModes];  // how many of idx[m] lie in each volume
    std::vector<long long> inside;  // per volume: voxels of m inside the other mask (SV_OUTSIDE)
    long long lo[3], hi[3];         // bounding box of every voxel found, any mode
};

// The surface voxels of every volume under each of `nmodes` modes, as flat indices into the (nvol, n0, n1, n2)
// grid: lists[m] holds the voxels of mode m, ascending.  inside[v]: voxels of volume v inside the other mask
// (only counted where a mode is SV_OUTSIDE).  lo / hi: the bounding box of everything found (lo > hi if nothing).
struct Result {
    std::vector<Found> parts;
    int nmodes;
    long long count(int m) const {
        long long c = 0;
        for (const Found& f : parts) c += (long long)f.idx[m].size();
        return c;
    }
};

inline int extract(const Volumes& V, const int* modes, int nmodes, int nthreads, Result& res) {
    const long long rows = V.nvol * V.n0 * V.n1;
    res.nmodes = nmodes;
    long long p = nthreads < 1 ? 1 : nthreads;
    if (p > rows) p = rows < 1 ? 1 : rows;
    res.parts.assign((size_t)p, Found{});
    bool count_inside = false;
    int contour = -1, maurer = -1;  // where both are asked for, they are computed together
    for (int m = 0; m < nmodes; ++m) {
        count_inside |= modes[m] == SV_OUTSIDE;
        if (modes[m] == SV_CONTOUR) contour = m;
        if (modes[m] == SV_MAURER) maurer = m;
    }
    const bool together = contour >= 0 && maurer >= 0;
    return fastgsl_host::parallel_ranges(rows, (int)p, [&](long long a, long long b, long long t) {
        Found& f = res.parts[(size_t)t];
        for (int k = 0; k < 3; ++k) f.lo[k] = 1LL << 62, f.hi[k] = -1;
        if (count_inside) f.inside.assign((size_t)V.nvol, 0);
        for (int m = 0; m < nmodes; ++m) f.per_volume[m].assign((size_t)V.nvol, 0);
        RowWork w(V.n2);
        const long long plane = V.n0 * V.n1;
        // the row's coordinates advance with r (no divisions per row: most rows are empty and cost little else)
        long long v = a / plane, i0 = (a % plane) / V.n1, i1 = a % V.n1 - 1;
        for (long long r = a; r < b; ++r) {
            if (++i1 == V.n1) {
                i1 = 0;
                if (++i0 == V.n0) i0 = 0, ++v;
            }
            const unsigned char* cur = V.row(v, i0, i1);
            long long x0, x1;
            if (!row_span(cur, V.n2, x0, x1)) continue;
            if (count_inside) {
                const unsigned char* oth = V.row((v + V.half) % (2 * V.half), i0, i1);
                long long c = 0;
                for (long long x = x0; x <= x1; ++x) c += cur[x] & oth[x];
                f.inside[(size_t)v] += c;
            }
            const long long base = r * V.n2;
            bool has_contour = false, has_maurer = false;
            if (together) contour_maurer_rows(V, v, i0, i1, x0, x1, w, has_contour, has_maurer);
            for (int m = 0; m < nmodes; ++m) {
                const unsigned char* bnd = w.bnd.data();
                if (together && m == contour) {
                    if (!has_contour) continue;
                    bnd = w.contour.data();
                } else if (together && m == maurer) {
                    if (!has_maurer) continue;
                    bnd = w.maurer.data();
                } else if (!boundary_row(V, v, i0, i1, modes[m], x0, x1, w)) {
                    continue;
                }
                std::vector<long long>& out = f.idx[m];
                const size_t before = out.size();
                long long first = -1, last = -1;
                for (long long x = x0; x <= x1;) {
                    // most of a row's span is not on the surface: eight voxels at a time skip it
                    if (x + 8 <= x1 + 1) {
                        unsigned long long word;
                        std::memcpy(&word, bnd + x, 8);
                        if (!word) {
                            x += 8;
                            continue;
                        }
                    }
                    for (const long long stop = std::min(x + 8, x1 + 1); x < stop; ++x) {
                        if (bnd[x]) {
                            out.push_back(base + x);
                            if (first < 0) first = x;
                            last = x;
                        }
                    }
                }
                f.per_volume[m][(size_t)v] += (long long)(out.size() - before);
                f.lo[0] = std::min(f.lo[0], i0), f.hi[0] = std::max(f.hi[0], i0);
                f.lo[1] = std::min(f.lo[1], i1), f.hi[1] = std::max(f.hi[1], i1);
                f.lo[2] = std::min(f.lo[2], first), f.hi[2] = std::max(f.hi[2], last);
            }
        }
    });
}

}  // namespace fastgsl_surface
