// Exact Euclidean distance transforms, signed, batched, straight from label maps.
//
// One source, two builds:
//   * CUDA: compiled at run time by CuPy (NVRTC) and launched from fastgsl/ops/edt.py; one thread per 1-D line.
//   * host: kernels/edt_host.cpp defines EDT_HOST and the few macros below, then #includes this file, so the
//     very same line routines run on CPU threads (that is how CI without a GPU executes this logic).
//
// Algorithm: separable squared-distance passes (Saito-Toriwaki), the first along the contiguous axis by two
// linear scans, the others by the lower envelope of parabolas with Maurer's removal test
// (Maurer, Qi, Raghavan, IEEE TPAMI 25(2), 2003, function RemoveEDT).  All squared distances are carried in
// float64: with unit (or any dyadic) spacing they are integers and every operation is exact, so
// sqrt(double) -> float equals scipy's float64 distance rounded to float32.  Offsets are 64-bit throughout.
//
// Signed in one go: after the first pass a voxel holds ONE value, the squared distance to the nearest voxel
// of the other kind (object voxels: to background; background voxels: to object), with the sign bit set on
// object voxels.  The distance of a voxel to sites of its own kind is 0 by construction, and stays 0 through
// the later passes, so the second field never needs storing.  The "itk" and "sites" modes carry the distance
// to the site set (contour or given sites) instead, still with the object's sign bit.
//
// Modes (the `mode` argument):
//   0 EDT_SITES     distance to the nonzero voxels, unsigned, +inf if there are none (fastgsl.ops.edt contract)
//   1 EDT_ITK       distance to the 8/26-connected contour (object voxels with a background voxel among their
//                   full neighbourhood; outside the image is not background), -inside/+outside
//                   == SimpleITK SignedMaurerDistanceMap(insideIsPositive=False, squaredDistance=False,
//                      useImageSpacing=True)
//   2 EDT_SIGNED    EDT(~m) - EDT(m) (scipy convention)
//   3 EDT_KERVADEC  EDT(~m) * ~m - (EDT(m) - 1) * m (boundary-loss repository; the 1 is not scaled)
// A mask without object or without background has no site at all: the final pass writes +fill for
// background voxels and -fill for object voxels there (modes 1-3), +inf in mode 0.

#define EDT_SITES 0
#define EDT_ITK 1
#define EDT_SIGNED 2
#define EDT_KERVADEC 3

#ifndef EDT_HOST
#define EDT_KERNEL extern "C" __global__
#define EDT_DEV __device__ __forceinline__
// grid-stride loop over lines; the workspace slot of a thread is its global index
#define EDT_LINE_BEGIN ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define EDT_LINE_END(n) (n)
#define EDT_LINE_STEP ((long long)gridDim.x * blockDim.x)
#define EDT_SLOT ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define EDT_RESTRICT __restrict__
EDT_DEV double edt_inf() { return __longlong_as_double(0x7ff0000000000000LL); }
// intrinsics, not <math.h>: NVRTC compiles this file without any header
EDT_DEV bool edt_negative(double x) { return __double_as_longlong(x) < 0; }  // sign bit, -0.0 included
EDT_DEV double edt_sqrt(double x) { return __dsqrt_rn(x); }                  // IEEE round-to-nearest
#endif

// Is voxel value v inside the object?  cls < 0: nonzero test (masks); else the label test v == cls.
template <typename T>
EDT_DEV bool edt_inside(T v, long long cls) {
    return cls < 0 ? (v != (T)0) : ((long long)v == cls);
}

// Line `line` of the first pass, on the (item, i0, i1) grid of rows: the item's label volume, the row it reads, the
// row of F it writes, its index among the item's rows, and the class it tests (-1: the nonzero test of a mask).
template <typename T>
struct EdtRow {
    const T* lab;
    const T* cur;
    double* f;
    long long row, cls;
};

template <typename T>
EDT_DEV EdtRow<T> edt_first_row(const T* labels, double* F, long long line, long long C, int nonzero,
                                long long rows, long long n2) {
    const long long N = rows * n2, item = line / rows;
    const long long b = nonzero ? item : item / C;
    EdtRow<T> r;
    r.row = line % rows;
    r.cls = nonzero ? -1LL : item % C;
    r.lab = labels + b * N;
    r.cur = r.lab + r.row * n2;
    r.f = F + item * N + r.row * n2;
    return r;
}

// First pass, along the contiguous axis, for the line `line` of the (item, i0, i1) grid.
// Reads the label (or mask) rows it needs; writes F[item, i0, i1, :] = +-(squared 1-D distance), sign bit set
// on object voxels, +-inf where the line has no site of the wanted kind.
template <typename T>
EDT_DEV void edt_first_line(const T* EDT_RESTRICT labels, double* EDT_RESTRICT F, long long line, long long C,
                            int nonzero, long long n0, long long n1, long long n2, double s, int mode) {
    const EdtRow<T> r = edt_first_row(labels, F, line, C, nonzero, n0 * n1, n2);
    const long long row = r.row, cls = r.cls;
    const T* lab = r.lab;
    const T* cur = r.cur;
    double* f = r.f;
    const long long n = n2;
    const double inf = edt_inf();

    // forward scan: distance (in voxels) to the nearest wanted site at or before x
    if (mode == EDT_ITK) {
        // contour test: x is a site if it is inside and some voxel of its 3x3(x3) block is background.
        // bg(y) = "column y of the (up to) 9 neighbouring rows holds background"; a sliding window over y.
        const long long i0 = row / n1, i1 = row % n1;
        const T* nb[9];
        int nn = 0;
        for (long long j0 = i0 - 1; j0 <= i0 + 1; ++j0) {
            if (j0 < 0 || j0 >= n0) continue;
            for (long long j1 = i1 - 1; j1 <= i1 + 1; ++j1) {
                if (j1 < 0 || j1 >= n1) continue;
                nb[nn++] = lab + (j0 * n1 + j1) * n2;
            }
        }
        bool bg_prev = false, bg_cur = false, bg_next = false;
        for (int k = 0; k < nn; ++k) bg_cur = bg_cur || !edt_inside(nb[k][0], cls);
        long long last = -1;
        for (long long x = 0; x < n; ++x) {
            bg_next = false;
            if (x + 1 < n)
                for (int k = 0; k < nn; ++k) bg_next = bg_next || !edt_inside(nb[k][x + 1], cls);
            const bool in = edt_inside(cur[x], cls);
            if (in && (bg_prev || bg_cur || bg_next)) last = x;
            const double d = last >= 0 ? (double)(x - last) : inf;
            f[x] = in ? -d : d;  // -0.0 on contour voxels keeps the sign bit
            bg_prev = bg_cur;
            bg_cur = bg_next;
        }
    } else {
        long long last_in = -1, last_out = -1;
        for (long long x = 0; x < n; ++x) {
            const bool in = edt_inside(cur[x], cls);
            if (in) last_in = x; else last_out = x;
            if (mode == EDT_SITES) {
                f[x] = last_in >= 0 ? (double)(x - last_in) : inf;
            } else {
                const long long t = in ? last_out : last_in;
                const double d = t >= 0 ? (double)(x - t) : inf;
                f[x] = in ? -d : d;
            }
        }
    }
    // backward scan: min with the nearest wanted site after x, then square in physical units.
    // Sites are recognised from the forward values: 0 marks a site (modes 0, 1); modes 2, 3 use the sign.
    long long next_a = -1, next_b = -1;  // next site (modes 0,1) / next object, next background (modes 2,3)
    for (long long x = n - 1; x >= 0; --x) {
        const double t = f[x];
        const bool in = edt_negative(t);
        double d = in ? -t : t;
        long long tgt;
        if (mode == EDT_SITES || mode == EDT_ITK) {
            if (d == 0.0) next_a = x;
            tgt = next_a;
        } else {
            if (in) next_a = x; else next_b = x;
            tgt = in ? next_b : next_a;
        }
        if (tgt >= 0 && (double)(tgt - x) < d) d = (double)(tgt - x);
        const double p = d * s;
        const double q = p * p;
        f[x] = in ? -q : q;
    }
}

// Maurer's RemoveEDT: with parabolas u < v < w (apexes xu < xv < xw, heights gu, gv, gw), v is hidden by u and
// w on the whole line iff c*gv - b*gu - a*gw - a*b*c > 0.  Exact for integer data below 2^53.
EDT_DEV bool edt_remove(double gu, double gv, double gw, double xu, double xv, double xw) {
    const double a = xv - xu, b = xw - xv, c = xw - xu;
    return c * gv - b * gu - a * gw - a * b * c > 0.0;
}

// Stack entry k lives at g[k * step], h[k * step]: step is the number of slots on the GPU (coalesced), 1 on the host.
EDT_DEV void edt_push(double* g, int* h, long long step, int& len, double gi, int i, double s) {
    const double xi = (double)i * s;
    while (len >= 2 &&
           edt_remove(g[(len - 2) * step], g[(len - 1) * step], gi, (double)h[(len - 2) * step] * s,
                      (double)h[(len - 1) * step] * s, xi))
        --len;
    g[len * step] = gi;
    h[len * step] = i;
    ++len;
}

// Lower envelope at i for increasing i; k is the cursor into the stack.
EDT_DEV double edt_query(const double* g, const int* h, long long step, int len, int& k, int i, double s) {
    if (len == 0) return edt_inf();
    double dx = (double)(h[k * step] - i) * s;
    double v = g[k * step] + dx * dx;
    while (k + 1 < len) {
        const double dx2 = (double)(h[(k + 1) * step] - i) * s;
        const double v2 = g[(k + 1) * step] + dx2 * dx2;
        if (v2 > v) break;
        v = v2;
        ++k;
    }
    return v;
}

// The float32 result of a voxel from its squared distance v (+inf: no site in its item) and its side: the
// distance with the convention's sign (kervadec: 1 - d inside), or the fill value where there is no site.
EDT_DEV float edt_final_value(double v, bool in, int mode, double fill) {
    if (v == edt_inf()) return (float)(mode == EDT_SITES ? v : (in ? -fill : fill));
    const double rt = edt_sqrt(v);
    return (float)(!in ? rt : (mode == EDT_KERVADEC ? 1.0 - rt : -rt));
}

// One lower-envelope pass along an axis of length n and stride `inner` (elements), for line `line` of the
// (item, outer, inner) grid.  Not final: F is updated in place.  Final: the float32 result goes to out.
// Workspace: g, h hold 2n entries at stride `step` (the object envelope at 0, the background one at n).
EDT_DEV void edt_envelope_line(double* EDT_RESTRICT F, float* EDT_RESTRICT out, long long line, long long N,
                               long long n, long long inner, double s, int mode, int final_, double fill,
                               double* g, int* h, long long step) {
    const long long per = N / n;
    const long long item = line / per, r = line % per;
    const long long base = item * N + (r / inner) * (n * inner) + r % inner;
    double* f = F + base;
    const double inf = edt_inf();
    const int nn = (int)n;
    int lo = 0, lb = 0;  // stack sizes: object (or single) envelope, background envelope
    double* gb = g + n * step;
    int* hb = h + n * step;
    if (mode == EDT_SITES || mode == EDT_ITK) {
        for (int i = 0; i < nn; ++i) {
            const double t = f[i * inner];
            const double d = edt_negative(t) ? -t : t;
            if (d != inf) edt_push(g, h, step, lo, d, i, s);
        }
    } else {
        // object voxels are sites (height 0) of the object envelope, background voxels of the background one;
        // inside a run only the two ends can be nearest to a voxel of the other kind, so only they are pushed.
        bool in_prev = false;
        bool in_cur = edt_negative(f[0]);
        for (int i = 0; i < nn; ++i) {
            const double t = f[i * inner];
            const bool in_next = i + 1 < nn ? edt_negative(f[(i + 1) * inner]) : in_cur;
            const bool edge = (i > 0 && in_prev != in_cur) || (i + 1 < nn && in_next != in_cur);
            if (in_cur) {
                if (-t != inf) edt_push(gb, hb, step, lb, -t, i, s);
                if (edge) edt_push(g, h, step, lo, 0.0, i, s);
            } else {
                if (t != inf) edt_push(g, h, step, lo, t, i, s);
                if (edge) edt_push(gb, hb, step, lb, 0.0, i, s);
            }
            in_prev = in_cur;
            in_cur = in_next;
        }
    }
    int ko = 0, kb = 0;
    for (int i = 0; i < nn; ++i) {
        const double t = f[i * inner];
        const bool in = edt_negative(t);
        double v;
        if (mode == EDT_SITES || mode == EDT_ITK) v = edt_query(g, h, step, lo, ko, i, s);
        else if (in) v = edt_query(gb, hb, step, lb, kb, i, s);
        else v = edt_query(g, h, step, lo, ko, i, s);
        if (!final_) f[i * inner] = in ? -v : v;
        else out[base + i * inner] = edt_final_value(v, in, mode, fill);
    }
}

#define EDT_DEFINE_FIRST(SUFFIX, T)                                                                            \
    EDT_KERNEL void edt_first_##SUFFIX(const T* labels, double* F, long long nlines, long long C, int nonzero,  \
                                       long long n0, long long n1, long long n2, double s, int mode) {          \
        for (long long line = EDT_LINE_BEGIN; line < EDT_LINE_END(nlines); line += EDT_LINE_STEP)               \
            edt_first_line<T>(labels, F, line, C, nonzero, n0, n1, n2, s, mode);                                \
    }

EDT_DEFINE_FIRST(u8, unsigned char)
EDT_DEFINE_FIRST(i8, signed char)
EDT_DEFINE_FIRST(i16, short)
EDT_DEFINE_FIRST(i32, int)
EDT_DEFINE_FIRST(i64, long long)
EDT_DEFINE_FIRST(f32, float)
EDT_DEFINE_FIRST(f64, double)

// wg, wh: workspace of `wslots` slots x 2n entries, slot-minor (entry k of slot q at k * wslots + q).
EDT_KERNEL void edt_envelope(double* F, float* out, long long nlines, long long N, long long n, long long inner,
                             double s, int mode, int final_, double fill, double* wg, int* wh, long long wslots) {
    for (long long line = EDT_LINE_BEGIN; line < EDT_LINE_END(nlines); line += EDT_LINE_STEP)
        edt_envelope_line(F, out, line, N, n, inner, s, mode, final_, fill, wg + EDT_SLOT, wh + EDT_SLOT, wslots);
}
