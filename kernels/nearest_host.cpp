// Exact distances from sparse query voxels to the nearest of a sparse set of site voxels, on the CPU.
//
// Surface metrics (fastgsl/metrics/distances.py) need the distance from every edge voxel of one mask to the
// nearest edge voxel of the other: a few percent of the voxels on both sides.  On a GPU the dense EDT over the
// whole box (kernels/edt_kernel.cu) is the fast way; on a CPU its cost grows with the box volume while the edges
// grow with its surface, so there a k-d tree over the sites answers the queries instead (MONAI 1.6 made the same
// choice with scipy's cKDTree).  The surface voxels themselves come from surface_voxels.h, the percentiles'
// order statistics from segment_select.h.  Loaded with ctypes by fastgsl/ops/nearest.py; no Python or torch API.
//
// Exactness.  Coordinates are integers (voxel indices); a squared distance is accumulated in float64 in the
// same order and with the same operations as the dense EDT's passes (last axis first, each term
// ((double)(q_k - s_k) * spacing_k)^2), so with unit or dyadic spacing the result is bit-identical to the dense
// EDT and otherwise equal up to the EDT's own rounding.  Pruning never discards a site that could be strictly
// nearer: the lower bound of a node is built from the per-axis integer offsets of the query to the node's
// bounding box with the same operations, and floating-point rounding is monotone, so no site of a pruned node
// evaluates below the bound.
//
// Determinism.  Every query's answer is the minimum over its site set, independent of the search order and of
// the thread that ran it.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(__SSE2__) && !defined(FASTGSL_NEAREST_SCALAR)
#define FASTGSL_NEAREST_SSE2 1
#include <emmintrin.h>
#endif

#include "host_parallel.h"
#include "segment_select.h"
#include "surface_voxels.h"

namespace {

// points per leaf: the leaf scan takes two points per step without a branch, so a few dozen cost less than the
// extra tree levels (and their bounds) that smaller leaves need; measured on the blob workloads' surfaces
constexpr int kLeaf = 48;
constexpr long long kStretch = 8;  // voxels of a row that share a remembered nearest site (the search's start)

struct Point {
    int c[3];
};

struct Node {
    int lo[3], hi[3];  // bounding box of the node's points (tighter than the split planes: sites lie on surfaces)
    int begin, end;    // the node's points
    int right;         // index of the right child (the left child is the next node), or -1 for a leaf
};

// Two doubles, processed together: a node's two children, or two points of a leaf.  SSE2 (every x86-64) where
// the compiler has it, else the same operations one lane at a time; each lane is the scalar IEEE operation, so
// both give the same bits (-DFASTGSL_NEAREST_SCALAR builds the lane-by-lane code anywhere, to check that).
#ifdef FASTGSL_NEAREST_SSE2
struct Pair {
    __m128d v;
};
inline Pair pair_load(const double* p) { return {_mm_loadu_pd(p)}; }
inline Pair pair_set(double a, double b) { return {_mm_set_pd(b, a)}; }
inline Pair pair_splat(double a) { return {_mm_set1_pd(a)}; }
inline Pair operator+(Pair a, Pair b) { return {_mm_add_pd(a.v, b.v)}; }
inline Pair operator-(Pair a, Pair b) { return {_mm_sub_pd(a.v, b.v)}; }
inline Pair operator*(Pair a, Pair b) { return {_mm_mul_pd(a.v, b.v)}; }
inline Pair pair_max(Pair a, Pair b) { return {_mm_max_pd(a.v, b.v)}; }
inline Pair pair_min(Pair a, Pair b) { return {_mm_min_pd(a.v, b.v)}; }
inline double lane0(Pair a) { return _mm_cvtsd_f64(a.v); }
inline double lane1(Pair a) { return _mm_cvtsd_f64(_mm_unpackhi_pd(a.v, a.v)); }
#else
struct Pair {
    double v[2];
};
inline Pair pair_load(const double* p) { return {{p[0], p[1]}}; }
inline Pair pair_set(double a, double b) { return {{a, b}}; }
inline Pair pair_splat(double a) { return {{a, a}}; }
inline Pair operator+(Pair a, Pair b) { return {{a.v[0] + b.v[0], a.v[1] + b.v[1]}}; }
inline Pair operator-(Pair a, Pair b) { return {{a.v[0] - b.v[0], a.v[1] - b.v[1]}}; }
inline Pair operator*(Pair a, Pair b) { return {{a.v[0] * b.v[0], a.v[1] * b.v[1]}}; }
inline Pair pair_max(Pair a, Pair b) { return {{std::max(a.v[0], b.v[0]), std::max(a.v[1], b.v[1])}}; }
inline Pair pair_min(Pair a, Pair b) { return {{std::min(a.v[0], b.v[0]), std::min(a.v[1], b.v[1])}}; }
inline double lane0(Pair a) { return a.v[0]; }
inline double lane1(Pair a) { return a.v[1]; }
#endif

// The boxes of an internal node's two children by axis, lane 0 the left child's: both lower bounds at once.
// Integer coordinates are exact as doubles, and so are their differences, so the bounds are bound2's bits.
struct Children {
    Pair lo[3], hi[3];
};

struct Tree {
    std::vector<Point> pts;
    std::vector<Node> nodes;
    std::vector<int> hist;  // build's scratch
    std::vector<Point> scratch;
    std::vector<Children> kids;  // per node (internal nodes only)
    std::vector<double> axis[3];  // pts' coordinates by axis, as doubles (for the leaf scans, two points at once)
};

// After build: the children's boxes of every internal node and the points by axis, in the layouts of the search.
void finish(Tree& t, int nd) {
    t.kids.resize(t.nodes.size());
    for (size_t id = 0; id < t.nodes.size(); ++id) {
        const Node& n = t.nodes[id];
        if (n.right < 0) continue;
        const Node &a = t.nodes[id + 1], &b = t.nodes[(size_t)n.right];
        for (int k = 0; k < 3; ++k) {
            t.kids[id].lo[k] = pair_set(k < nd ? a.lo[k] : 0, k < nd ? b.lo[k] : 0);
            t.kids[id].hi[k] = pair_set(k < nd ? a.hi[k] : 0, k < nd ? b.hi[k] : 0);
        }
    }
    for (int k = 0; k < 3; ++k) {
        t.axis[k].resize(t.pts.size() + 1);  // one spare, so that a pair load at a leaf's last point stays inside
        for (size_t i = 0; i < t.pts.size(); ++i) t.axis[k][i] = t.pts[i].c[k];
        t.axis[k][t.pts.size()] = 0.0;
    }
}

struct Geometry {
    int nd;
    long long shape[3];
    double sp[3];
};

inline void decode(long long local, const Geometry& g, int* c) {
    for (int k = g.nd - 1; k >= 0; --k) {
        c[k] = (int)(local % g.shape[k]);
        local /= g.shape[k];
    }
}

// decode() of ascending local indices: indices of one row differ only in the last coordinate, so the row's
// start is kept and only a new row divides.
struct SortedDecoder {
    long long row = -1;  // local index of the current row's first voxel
    int c[3] = {0, 0, 0};

    const int* next(long long local, const Geometry& g) {
        const long long len = g.shape[g.nd - 1];
        if (row >= 0 && local >= row && local - row < len) {
            c[g.nd - 1] = (int)(local - row);
        } else {
            decode(local, g, c);
            row = local - c[g.nd - 1];
        }
        return c;
    }
};

// decode() of n ascending indices idx[i] - base into pts, and their bounding box lo / hi (n > 0).
inline void decode_sorted(const long long* idx, long long n, long long base, const Geometry& g, Point* pts, int* lo,
                          int* hi) {
    SortedDecoder dec;
    for (long long i = 0; i < n; ++i) {
        const int* c = dec.next(idx[i] - base, g);
        for (int k = 0; k < 3; ++k) pts[i].c[k] = c[k];
        for (int k = 0; k < g.nd; ++k) {
            lo[k] = i ? std::min(lo[k], c[k]) : c[k];
            hi[k] = i ? std::max(hi[k], c[k]) : c[k];
        }
    }
}

// Squared physical distance, summed from the last axis down like the dense EDT's passes.
// ND (the number of axes) is a template argument so that the loops unroll.
template <int ND>
inline double dist2(const int* q, const int* s, const Geometry& g) {
    double acc = 0.0;
    for (int k = ND - 1; k >= 0; --k) {
        const double x = (double)(q[k] - s[k]) * g.sp[k];
        acc = (k == ND - 1) ? x * x : acc + x * x;
    }
    return acc;
}

// Lower bound of dist2 over a cell, from the per-axis integer offsets of the query to the cell.
template <int ND>
inline double bound2(const int* off, const Geometry& g) {
    double acc = 0.0;
    for (int k = ND - 1; k >= 0; --k) {
        const double x = (double)off[k] * g.sp[k];
        acc = (k == ND - 1) ? x * x : acc + x * x;
    }
    return acc;
}

// Builds the subtree of points [begin, end): the split axis (the physically widest of `box`, a box that holds
// every point of the subtree), the median coordinate along it and the partition around that median; then the
// node's own bounding box, the union of its children's (each point's coordinates are read once per level, by the
// median's histogram and the partition, instead of a third time for a box of every node).
int build(Tree& t, int begin, int end, const Geometry& g, const int* box_lo, const int* box_hi) {
    const int id = (int)t.nodes.size();
    t.nodes.push_back(Node{{0, 0, 0}, {0, 0, 0}, begin, end, -1});
    if (end - begin <= kLeaf) {
        Node& n = t.nodes[id];
        for (int k = 0; k < g.nd; ++k) n.lo[k] = n.hi[k] = t.pts[begin].c[k];
        for (int i = begin + 1; i < end; ++i) {
            for (int k = 0; k < g.nd; ++k) {
                n.lo[k] = std::min(n.lo[k], t.pts[i].c[k]);
                n.hi[k] = std::max(n.hi[k], t.pts[i].c[k]);
            }
        }
        return id;
    }
    int dim = 0;
    double widest = -1.0;
    for (int k = 0; k < g.nd; ++k) {
        const double w = (double)(box_hi[k] - box_lo[k]) * g.sp[k];
        if (w > widest) widest = w, dim = k;
    }
    const int mid = begin + (end - begin) / 2;
    const long long bins = (long long)box_hi[dim] - box_lo[dim] + 1;
    if (bins <= 4096) {
        // the median coordinate from a histogram (coordinates are small integers, with many ties on a surface),
        // then a three-way partition around it: the postcondition of nth_element at mid, at a fraction of its cost
        std::vector<int>& h = t.hist;
        h.assign((size_t)bins, 0);
        for (int i = begin; i < end; ++i) ++h[(size_t)(t.pts[i].c[dim] - box_lo[dim])];
        long long seen = 0, b = 0;
        while (seen + h[(size_t)b] <= mid - begin) seen += h[(size_t)b++];
        const int plane = box_lo[dim] + (int)b;
        // the three-way partition out of place, each point sent to its part by an index rather than a branch
        // (which way a point goes is a coin toss, so a branching partition mispredicts half the time)
        std::vector<Point>& tmp = t.scratch;
        tmp.resize((size_t)(end - begin));
        int at[3] = {0, (int)seen, (int)(seen + h[(size_t)b])};
        for (int i = begin; i < end; ++i) {
            const int c = t.pts[(size_t)i].c[dim];
            const int part = (c >= plane) + (c > plane);
            tmp[(size_t)at[part]++] = t.pts[(size_t)i];
        }
        std::copy(tmp.begin(), tmp.end(), t.pts.begin() + begin);
    } else {
        std::nth_element(t.pts.begin() + begin, t.pts.begin() + mid, t.pts.begin() + end,
                         [dim](const Point& a, const Point& b) { return a.c[dim] < b.c[dim]; });
    }
    // the children's points lie at or below / at or above the median along dim
    const int plane = t.pts[(size_t)mid].c[dim];
    int below[3] = {box_hi[0], box_hi[1], box_hi[2]}, above[3] = {box_lo[0], box_lo[1], box_lo[2]};
    below[dim] = plane, above[dim] = plane;
    const int left = build(t, begin, mid, g, box_lo, below);
    const int right = build(t, mid, end, g, above, box_hi);
    Node& n = t.nodes[id];
    n.right = right;
    for (int k = 0; k < g.nd; ++k) {
        n.lo[k] = std::min(t.nodes[left].lo[k], t.nodes[right].lo[k]);
        n.hi[k] = std::max(t.nodes[left].hi[k], t.nodes[right].hi[k]);
    }
    return id;
}

template <int ND>
struct Search {
    const Tree& t;
    const Geometry& g;
    const int* q;
    double best;
    int best_i;
    double stop;  // the search may end once best <= stop (-1: never)
    Pair qv[3], spv[3];  // q's coordinates and the spacing, in both lanes

    void prepare() {
        for (int k = 0; k < ND; ++k) qv[k] = pair_splat((double)q[k]), spv[k] = pair_splat(g.sp[k]);
    }

    // the squared distances of points i and i + 1, with dist2's operations in each lane
    Pair dist2_pair(int i) const {
        Pair acc = pair_splat(0.0);
        for (int k = ND - 1; k >= 0; --k) {
            const Pair x = (qv[k] - pair_load(t.axis[k].data() + i)) * spv[k];
            acc = (k == ND - 1) ? x * x : acc + x * x;
        }
        return acc;
    }

    // The nearest point of a leaf: the squared distances two at a time (no branch per point), their minimum, and
    // only where that improves on best, which point it was.
    void scan(const Node& n) {
        double d[kLeaf + 1];
        Pair lo = pair_splat(std::numeric_limits<double>::infinity());
        const int m = n.end - n.begin;
        for (int j = 0; j < m; j += 2) {  // an odd count reads one point past the leaf; its lane is not used
            const Pair x = dist2_pair(n.begin + j);
            d[j] = lane0(x), d[j + 1] = lane1(x);
            lo = pair_min(lo, j + 1 < m ? x : pair_set(lane0(x), lane0(x)));
        }
        const double m2 = std::min(lane0(lo), lane1(lo));
        if (!(m2 < best)) return;
        int j = 0;
        while (d[j] != m2) ++j;
        best = m2, best_i = n.begin + j;
    }

    void visit(int node) {
        if (best <= stop) return;
        const Node& n = t.nodes[node];
        if (n.right < 0) {
            scan(n);
            return;
        }
        // both children's bounds: the per-axis offsets of q to each box, as bound2 sums them
        const Children& c = t.kids[(size_t)node];
        Pair acc = pair_splat(0.0);
        for (int k = ND - 1; k >= 0; --k) {
            const Pair off = pair_max(pair_max(c.lo[k] - qv[k], qv[k] - c.hi[k]), pair_splat(0.0));
            const Pair x = off * spv[k];
            acc = (k == ND - 1) ? x * x : acc + x * x;
        }
        int a = node + 1, b = n.right;
        double da = lane0(acc), db = lane1(acc);
        if (db < da) std::swap(a, b), std::swap(da, db);
        if (da < best) visit(a);
        if (db < best) visit(b);
    }
};

// The largest squared distance d2 (a double) with (float)sqrt(d2) <= tau: a site is within tau iff its d2 is at
// most this (sqrt and the float conversion are monotone, so the test on d2 is exact).  Bisection on the bits of
// non-negative doubles, which order like the values.
double within_limit(float tau) {
    if (!(tau >= 0.0f)) return -1.0;  // a negative tolerance: no site is within
    auto ok = [tau](double d2) { return (float)std::sqrt(d2) <= tau; };
    const double above = (double)std::nextafter(tau, std::numeric_limits<float>::infinity());
    unsigned long long lo, hi;
    double a = (double)tau * (double)tau, b = above * above;
    if (!ok(a)) a = 0.0;  // defensive: (double)tau squared rounds to a value whose root is tau
    std::memcpy(&lo, &a, 8);
    std::memcpy(&hi, &b, 8);
    while (hi - lo > 1) {  // ok(lo), !ok(hi)
        const unsigned long long mid = lo + (hi - lo) / 2;
        double m;
        std::memcpy(&m, &mid, 8);
        (ok(m) ? lo : hi) = mid;
    }
    double r;
    std::memcpy(&r, &lo, 8);
    return r;
}

// A surface Dice query with a small tolerance needs no tree: the sites within tau of query q lie on the few rows
// (the voxel rows along the last axis) at offsets (d0, d1) from q's row, each within `reach` voxels of q along
// the row.  The sites are sorted flat indices, so the sites of one such row near q form one index range, and as
// the queries ascend so does that range: one forward-moving cursor per stencil row answers every query.
constexpr int kMaxStencilRows = 48;

struct StencilRow {
    int d[2];        // offsets along the row axes (nd - 1 of them)
    int reach;       // sites at most this many voxels away along the row are within tau
    long long flat;  // the flat index offset of the row
    double d2;       // squared distance of the row's nearest offset (for the visiting order)
};

// The rows of the offsets within `limit` (squared, within_limit's), nearest first, computed with dist2's operations
// so that the test is the k-d tree's; false (rows cleared) when there are more than kMaxStencilRows.
template <int ND>
bool within_stencil(const Geometry& g, double limit, std::vector<StencilRow>& rows) {
    rows.clear();
    if (!(limit >= 0.0)) return true;  // no site is within
    const double r = std::sqrt(limit);
    int span[3] = {0, 0, 0};
    for (int k = 0; k < ND; ++k) {
        const double n = std::floor(r / g.sp[k]) + 1.0;
        const double cap = (double)(g.shape[k] - 1);
        if (!(n <= 1e6)) return false;  // a tiny spacing: far too many rows
        span[k] = (int)std::min(n, cap);
    }
    long long candidates = 1;
    for (int k = 0; k < ND - 1; ++k) candidates *= 2 * span[k] + 1;
    if (candidates > 8 * kMaxStencilRows) return false;
    const int zero[3] = {0, 0, 0};
    const int s0 = ND == 3 ? span[0] : 0, s1 = ND >= 2 ? span[ND - 2] : 0;
    for (int a = -s0; a <= s0; ++a) {
        for (int b = -s1; b <= s1; ++b) {
            int off[3] = {0, 0, 0};
            if (ND == 3) off[0] = a, off[1] = b;
            if (ND == 2) off[0] = b;
            const double d2 = dist2<ND>(zero, off, g);
            if (!(d2 <= limit)) continue;
            int reach = 0;
            while (reach < span[ND - 1]) {  // the distance grows with |offset| along the row (rounding is monotone)
                off[ND - 1] = reach + 1;
                if (!(dist2<ND>(zero, off, g) <= limit)) break;
                ++reach;
            }
            if ((int)rows.size() == kMaxStencilRows) {
                rows.clear();
                return false;
            }
            long long flat = 0, stride = g.shape[ND - 1];
            for (int k = ND - 2; k >= 0; --k) {
                flat += (long long)(ND == 3 && k == 0 ? a : b) * stride;
                stride *= g.shape[k];
            }
            rows.push_back(StencilRow{{ND == 3 ? a : b, b}, reach, flat, d2});
        }
    }
    std::stable_sort(rows.begin(), rows.end(), [](const StencilRow& x, const StencilRow& y) { return x.d2 < y.d2; });
    return true;
}

bool stencil_for(int nd, const Geometry& g, double limit, std::vector<StencilRow>& rows) {
    if (nd == 3) return within_stencil<3>(g, limit, rows);
    if (nd == 2) return within_stencil<2>(g, limit, rows);
    return within_stencil<1>(g, limit, rows);
}

// goal 3 (a percentile): the squared distance up to which segment s's values need not be exact, or -1 where all
// must be.  The exact distances of every kSampleStep-th query (n queries from q, local indices q - base) stand for
// the segment's; their order statistic a safe margin below the fraction rank / n of them (rank: the 0-based rank
// among the n stored values of the lower order statistic the percentile reads) is very likely below the segment's
// rank-th value.  Only likely: the caller checks that at most rank values came out at or below the returned
// limit (then the rank-th and every later order statistic are exact) and recomputes exactly where not.
constexpr long long kSampleStep = 16;

template <int ND>
double sample_limit(const Tree& t, const Geometry& g, const long long* q, long long n, long long base,
                    long long rank) {
    const long long m = n / kSampleStep;
    if (rank < 0 || m < 64 || t.pts.empty()) return -1.0;
    std::vector<double> d((size_t)m);
    int prev = -1;
    SortedDecoder dec;
    for (long long j = 0; j < m; ++j) {
        const int* c = dec.next(q[j * kSampleStep + kSampleStep / 2] - base, g);
        Search<ND> sr{t, g, c, std::numeric_limits<double>::infinity(), -1, -1.0, {}, {}};
        sr.prepare();
        if (prev >= 0) sr.best = dist2<ND>(c, t.pts[(size_t)prev].c, g), sr.best_i = prev;
        sr.visit(0);
        prev = sr.best_i;
        d[(size_t)j] = sr.best;
    }
    const double f = (double)rank / (double)n;
    // three standard errors of the sample's quantile and a few ranks: a misjudged segment costs a recomputation
    const double margin = 3.0 * std::sqrt(f * (1.0 - f) / (double)m) + 4.0 / (double)m;
    const long long p = (long long)std::floor((f - margin) * (double)m);
    if (p < 1) return -1.0;
    std::nth_element(d.begin(), d.begin() + p, d.end());
    // the largest sample value strictly below the p-th, so that the distances tied with it (they repeat) stay exact
    double limit = -1.0;
    for (long long j = 0; j < p; ++j)
        if (d[(size_t)j] < d[(size_t)p]) limit = std::max(limit, d[(size_t)j]);
    return limit;
}

}  // namespace

// Query segment s holds the voxels q_idx[q_off[s] .. q_off[s + 1]) (flat indices into a (nseg, *shape) grid,
// so the local index is q_idx - s * V); its sites are those of site segment site_of[s], s_idx[s_off[k] ..
// s_off[k + 1]) with local index s_idx - k * V.  spacing holds nd values per query segment.  Writes
// out[i] = (float)sqrt(min squared distance), +inf for a segment without sites.  Returns 0, or 1 if a worker
// ran out of memory.
//
// goal 0: the exact distance of every query.  goal 1 (a Hausdorff distance: only the maximum per segment is read):
// a query's search ends once it has found a site no farther than the largest exact distance of its segment so
// far (on its thread), since it cannot raise the maximum; out[i] is then that site's distance, at most the
// maximum, so every segment's maximum of out is exact.  goal 2 (surface Dice: only d <= tau[s] is read): the
// search only looks within tau[s] and ends at the first site there; out[i] is that site's distance, or +inf if
// there is none, so (out[i] <= tau) is exact.  Where tau[s] spans at most kMaxStencilRows voxel rows, goal 2
// scans those rows' sites with forward-moving cursors instead of building a tree (within_stencil).  goal 3 (a
// percentile: only the order statistics from rank[s] on, among segment s's values, are read; rank[s] < 0: all):
// a query's search ends once it has found a site within the limit of sample_limit, and tau[s] receives that limit
// as a float distance T (-1 where there is none); out[i] is then at most T, while every value above T is exact.
// So where at most rank[s] values of out come out <= T, the order statistics from rank[s] on are exact (the
// values above T are the same set as the exact ones above T); the caller checks that.
extern "C" int fastgsl_nearest_distances(const long long* q_idx, const long long* q_off, const long long* s_idx,
                                         const long long* s_off, const long long* site_of, long long nseg, int nd,
                                         const long long* shape, const double* spacing, float* out, int nthreads,
                                         int goal, float* tau, const long long* rank) {
    if (nd < 1 || nd > 3) return 2;
    long long V = 1;
    for (int k = 0; k < nd; ++k) V *= shape[k];
    std::vector<Tree> trees((size_t)nseg);
    std::vector<Geometry> geo((size_t)nseg);
    std::vector<double> limits((size_t)nseg, -1.0);  // goals 2 and 3: per segment, squared
    std::vector<std::vector<StencilRow>> stencils((size_t)nseg);
    std::vector<char> by_rows((size_t)nseg, 0);  // goal 2 answered by the stencil's cursors, without a tree
    int rc = fastgsl_host::parallel_ranges(nseg, nthreads, [&](long long a, long long b, long long) {
        for (long long s = a; s < b; ++s) {
            Geometry& g = geo[(size_t)s];
            g.nd = nd;
            for (int k = 0; k < nd; ++k) g.shape[k] = shape[k], g.sp[k] = spacing[s * nd + k];
            if (q_off[s + 1] == q_off[s]) continue;  // no query: no tree needed
            if (goal == 2) {
                limits[(size_t)s] = within_limit(tau[s]);
                if (stencil_for(nd, g, limits[(size_t)s], stencils[(size_t)s])) {
                    by_rows[(size_t)s] = 1;
                    continue;
                }
            }
            const long long k = site_of[s];
            Tree& t = trees[(size_t)s];
            t.pts.resize((size_t)(s_off[k + 1] - s_off[k]));
            int lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
            decode_sorted(s_idx + s_off[k], s_off[k + 1] - s_off[k], k * V, g, t.pts.data(), lo, hi);
            if (!t.pts.empty()) {
                t.nodes.reserve(4 * t.pts.size() / kLeaf + 1);
                build(t, 0, (int)t.pts.size(), g, lo, hi);
                finish(t, nd);
            }
            if (goal == 3) {
                const long long* q = q_idx + q_off[s];
                const long long n = q_off[s + 1] - q_off[s];
                double& lim = limits[(size_t)s];
                if (nd == 3) lim = sample_limit<3>(t, g, q, n, s * V, rank[s]);
                else if (nd == 2) lim = sample_limit<2>(t, g, q, n, s * V, rank[s]);
                else lim = sample_limit<1>(t, g, q, n, s * V, rank[s]);
            }
        }
    });
    if (goal == 3)
        for (long long s = 0; s < nseg; ++s)
            tau[s] = limits[(size_t)s] >= 0.0 ? (float)std::sqrt(limits[(size_t)s]) : -1.0f;
    if (rc) return rc;
    const long long nq = q_off[nseg];
    const float inf = std::numeric_limits<float>::infinity();
    return fastgsl_host::parallel_ranges(nq, nthreads, [&](long long a, long long b, long long) {
      auto run = [&](auto nd_tag) {
        constexpr int ND = decltype(nd_tag)::value;
        long long s = std::upper_bound(q_off, q_off + nseg + 1, a) - q_off - 1;
        int prev = -1;  // the previous query's nearest site: queries come in raster order, so it is near
        // ... unless the previous query lies across the object (a row crosses its surface twice); the nearest site
        // of the latest query in the same stretch of the row (an earlier row, a voxel or so away) is near then
        std::vector<int> recent;
        double seg_max = -1.0, limit = 0.0;
        bool fresh = true;
        std::vector<long long> cursor;
        long long at = -1;  // the first site not below the query (goals 0 and 1)
        SortedDecoder dec;  // the queries' coordinates (ascending within a segment)
        for (long long i = a; i < b; ++i) {
            while (i >= q_off[s + 1]) ++s, prev = -1, fresh = true, dec = SortedDecoder(), recent.clear();
            if (by_rows[(size_t)s]) {
                const std::vector<StencilRow>& rows = stencils[(size_t)s];
                const long long k = site_of[s], first = s_off[k], last = s_off[k + 1];
                if (fresh) cursor.assign(rows.size(), -1), fresh = false;
                const Geometry& g = geo[(size_t)s];
                const long long local = q_idx[i] - s * V;
                int q[3];
                decode(local, g, q);
                const long long n_last = g.shape[ND - 1], base = k * V + local - q[ND - 1];
                out[i] = inf;
                for (size_t j = 0; j < rows.size(); ++j) {
                    const StencilRow& r = rows[j];
                    bool inside = true;
                    for (int m = 0; m < ND - 1; ++m) {
                        const long long c = (long long)q[m] + r.d[m];
                        inside = inside && c >= 0 && c < g.shape[m];
                    }
                    if (!inside) continue;
                    const long long lo = base + r.flat + std::max<long long>(q[ND - 1] - r.reach, 0);
                    const long long hi = base + r.flat + std::min<long long>(q[ND - 1] + r.reach, n_last - 1);
                    long long& c = cursor[j];
                    // the ranges ascend with the queries, so the cursor only moves forward (first use: a search)
                    if (c < 0)
                        c = std::lower_bound(s_idx + first, s_idx + last, lo) - s_idx;
                    else
                        while (c < last && s_idx[c] < lo) ++c;
                    if (c < last && s_idx[c] <= hi) {
                        int sc[3];
                        decode(s_idx[c] - k * V, g, sc);
                        out[i] = (float)std::sqrt(dist2<ND>(q, sc, g));
                        break;
                    }
                }
                continue;
            }
            const Tree& t = trees[(size_t)s];
            if (t.pts.empty()) {
                out[i] = inf;
                continue;
            }
            const long long k = site_of[s];
            if (fresh) {
                seg_max = -1.0;
                if (goal >= 2) limit = limits[(size_t)s];
                fresh = false;
                at = -1;
            }
            if (goal != 2) {
                // a query that is itself a site is at 0 (MONAI's edges where the two surfaces meet): the sorted
                // sites are walked by a cursor as the queries ascend, instead of a search
                const long long self = k * V + (q_idx[i] - s * V);
                if (at < 0)
                    at = std::lower_bound(s_idx + s_off[k], s_idx + s_off[k + 1], self) - s_idx;
                else
                    while (at < s_off[k + 1] && s_idx[at] < self) ++at;
                if (at < s_off[k + 1] && s_idx[at] == self) {
                    out[i] = 0.0f;
                    continue;
                }
            }
            const Geometry& g = geo[(size_t)s];
            const int* q = dec.next(q_idx[i] - s * V, g);
            const double start = goal == 2 ? std::nextafter(limit, std::numeric_limits<double>::infinity())
                                           : std::numeric_limits<double>::infinity();
            Search<ND> sr{t, g, q, start, -1, goal == 1 ? seg_max : goal >= 2 ? limit : -1.0, {}, {}};
            sr.prepare();
            if (recent.empty()) recent.assign((size_t)(g.shape[ND - 1] / kStretch + 1), -1);
            int& near = recent[(size_t)(q[ND - 1] / kStretch)];
            for (const int c : {prev, near}) {
                if (c < 0) continue;
                const double d = dist2<ND>(q, t.pts[(size_t)c].c, g);
                if (d < sr.best) sr.best = d, sr.best_i = c;
            }
            sr.visit(0);
            if (sr.best_i >= 0) prev = near = sr.best_i;
            if (goal == 1 && sr.best > seg_max) seg_max = sr.best;  // the search ran to the end: exact
            out[i] = goal == 2 && sr.best > limit ? inf : (float)std::sqrt(sr.best);
        }
      };
        if (nd == 3)
            run(std::integral_constant<int, 3>{});
        else if (nd == 2)
            run(std::integral_constant<int, 2>{});
        else
            run(std::integral_constant<int, 1>{});
    });
}

// The surface voxels of nvol masks (surface_voxels.h): volume v starts at base[v / half] + off[v] (base[0]: pred,
// base[1]: target, half = nvol / 2), with axis strides strides[0], strides[1] and a contiguous last axis; shape
// holds (n0, n1, n2), n0 = 1 for 2-D.  For each of the nmodes modes, counts[m] receives the number of voxels
// found; box the bounding box (lo0, lo1, lo2, hi0, hi1, hi2) of all of them.  Returns a handle for
// fastgsl_surface_collect (which frees it), or null if out of memory.
extern "C" void* fastgsl_surface_extract(const unsigned char* pred, const unsigned char* target, const long long* off,
                                         long long nvol, int nd, const long long* shape, const long long* strides,
                                         const int* modes, int nmodes, long long* counts, long long* box,
                                         int nthreads) {
    using namespace fastgsl_surface;
    if (nmodes < 1 || nmodes > kMaxModes || nvol < 2 || nvol % 2) return nullptr;
    Volumes V{{pred, target}, off, nvol, nvol / 2, nd, shape[0], shape[1], shape[2], strides[0], strides[1]};
    Result* res = nullptr;
    try {
        res = new Result();
    } catch (...) {
        return nullptr;
    }
    if (extract(V, modes, nmodes, nthreads, *res)) {
        delete res;
        return nullptr;
    }
    for (int m = 0; m < nmodes; ++m) counts[m] = res->count(m);
    for (int k = 0; k < 3; ++k) {
        box[k] = 1LL << 62, box[3 + k] = -1;
        for (const Found& f : res->parts)
            box[k] = std::min(box[k], f.lo[k]), box[3 + k] = std::max(box[3 + k], f.hi[k]);
    }
    return res;
}

// Copies the lists of a fastgsl_surface_extract handle into lists[m] (counts[m] entries each, ascending), how
// many of them lie in each volume into per_volume[m * nvol + v] and, where inside is not null, the per-volume
// counts of voxels inside the other mask (SV_OUTSIDE); frees the handle.
extern "C" void fastgsl_surface_collect(void* handle, long long** lists, long long* per_volume, long long* inside,
                                        long long nvol) {
    using namespace fastgsl_surface;
    Result* res = static_cast<Result*>(handle);
    for (int m = 0; m < res->nmodes; ++m) {
        long long* o = lists[m];
        long long* pv = per_volume + m * nvol;
        for (long long v = 0; v < nvol; ++v) pv[v] = 0;
        for (const Found& f : res->parts) {
            std::memcpy(o, f.idx[m].data(), f.idx[m].size() * sizeof(long long));
            o += f.idx[m].size();
            for (long long v = 0; v < nvol; ++v) pv[v] += f.per_volume[m][(size_t)v];
        }
    }
    if (inside) {
        for (long long v = 0; v < nvol; ++v) inside[v] = 0;
        for (const Found& f : res->parts)
            for (size_t v = 0; v < f.inside.size(); ++v) inside[v] += f.inside[v];
    }
    delete res;
}

// Flat indices g into a (nvol, shape[0], shape[1], shape[2]) grid, re-expressed in the (nvol, ext[0], ext[1],
// ext[2]) grid of the box that starts at lo (every voxel lies in the box); with swap, moved by half_vols volumes
// to the other half of the grid (the other direction's map).
extern "C" void fastgsl_surface_to_box(const long long* g, long long n, const long long* shape, const long long* lo,
                                       const long long* ext, long long half_vols, int swap, long long* out,
                                       int nthreads) {
    const long long V = shape[0] * shape[1] * shape[2];
    fastgsl_host::parallel_ranges(n, nthreads, [&](long long a, long long b, long long) {
        for (long long i = a; i < b; ++i) {
            long long v = g[i] / V, loc = g[i] - v * V;
            const long long c2 = loc % shape[2];
            loc /= shape[2];
            const long long c1 = loc % shape[1], c0 = loc / shape[1];
            if (swap) v = v < half_vols ? v + half_vols : v - half_vols;
            out[i] = ((v * ext[0] + (c0 - lo[0])) * ext[1] + (c1 - lo[1])) * ext[2] + (c2 - lo[2]);
        }
    });
}

// The k[s]-th and (k[s] + 1)-th smallest values of each segment (segment_select.h); returns 0, 1 if out of memory.
extern "C" int fastgsl_segment_select(const float* values, const long long* off, long long nseg, const long long* k,
                                      float* lo, float* hi, int nthreads) {
    return fastgsl_select::select(values, off, nseg, k, lo, hi, nthreads);
}

// The number of stencil rows with which goal 2 answers a segment of spacing `spacing` (nd values), image shape
// `shape` and tolerance tau without a tree, or -1 when it uses the k-d tree (a cost for the caller's choice).
extern "C" int fastgsl_within_rows(int nd, const long long* shape, const double* spacing, float tau) {
    if (nd < 1 || nd > 3) return -1;
    Geometry g;
    g.nd = nd;
    for (int k = 0; k < nd; ++k) g.shape[k] = shape[k], g.sp[k] = spacing[k];
    std::vector<StencilRow> rows;
    return stencil_for(nd, g, within_limit(tau), rows) ? (int)rows.size() : -1;
}

extern "C" int fastgsl_nearest_abi_version() { return 6; }

#ifndef FASTGSL_NEAREST_SOURCE_HASH
#define FASTGSL_NEAREST_SOURCE_HASH "unknown"
#endif
extern "C" const char* fastgsl_nearest_source_hash() { return FASTGSL_NEAREST_SOURCE_HASH; }
