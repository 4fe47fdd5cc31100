/* Softmin and CIL sums of float32 probabilities: one loop over the pixels, built at run time
 * by lightning_segqa/functional/native.py (compile=True on CPU).
 *
 * For every image b and part of its pixels:
 *   num = sum w*s, den = sum w, tot = sum s   (w = exp(neg_inv_t * s), s = p[b, t, j])
 * over the valid pixels, and the smallest and largest class id read (out-of-range ids are
 * clamped into [0, K) before the load and reported through lo/hi).
 *
 * What makes it faster than the inductor kernel of fused.py:
 *  - each pixel's annotated-class probability sits in one of K planes that change from pixel
 *    to pixel; the cache lines of the pixels AHEAD further on are prefetched, so their loads
 *    overlap instead of waiting on memory one after the other (inductor cannot emit a prefetch).
 *    One prefetch per change of label among each LANES pixels: labels come in runs, so that
 *    is mostly one line, two at a border. Prefetching only the planes of the first and the
 *    last of them (-DPREFETCH_FIRST_LAST: fewer instructions, misses a lone noisy label) ran
 *    within 10 % of it either way, depending on the machine state (benchmarks/softmin_kernels.py);
 *  - a single loop with LANES independent float accumulators (no reassociation needed, so no
 *    -ffast-math) and an exp polynomial the compiler vectorizes; every CHUNK pixels the lanes
 *    are added into double accumulators, so long images and volumes lose no precision.
 * Needs only -fno-math-errno -fno-trapping-math to vectorize: NaN and inf keep IEEE semantics.
 */
#include <stddef.h>
#include <stdint.h>

#define LANES 16
#define CHUNK 1024  /* pixels per float partial sum */
#ifndef AHEAD
#define AHEAD 128 /* prefetch distance, pixels (-DAHEAD=0 turns the prefetch off) */
#endif

/* exp(x) over all floats: Cephes expf (about 1 ulp), the power of two applied in two steps so
 * results down to the subnormals are right; x < -104 gives 0 (or the smallest subnormal),
 * x > 88.7 and +inf give inf, NaN stays NaN. */
static inline float exp_f(float x) {
  x = x < -104.0f ? -104.0f : x;
  x = x > 89.0f ? 89.0f : x;
  float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f); /* in [-150, 128] */
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float q = 1.9875691500E-4f;
  q = q * r + 1.3981999507E-3f;
  q = q * r + 8.3334519073E-3f;
  q = q * r + 4.1665795894E-2f;
  q = q * r + 1.6666665459E-1f;
  q = q * r + 5.0000001201E-1f;
  q = q * r * r + r + 1.0f;
  float m = n == n ? n : 0.0f; /* NaN: any finite scale, q is NaN already */
  float m1 = __builtin_floorf(m * 0.5f), m2 = m - m1; /* both in [-75, 64] */
  int32_t bits1 = ((int32_t)m1 + 127) * (1 << 23), bits2 = ((int32_t)m2 + 127) * (1 << 23);
  float scale1, scale2;
  __builtin_memcpy(&scale1, &bits1, sizeof scale1);
  __builtin_memcpy(&scale2, &bits2, sizeof scale2);
  return q * scale1 * scale2;
}

static inline int64_t clamp_class(int64_t c, int64_t k) { return c < 0 ? 0 : (c > k - 1 ? k - 1 : c); }

/* pixels [j0, j1) of one image; pb: its K planes, tb: its labels, vb: its valid mask or NULL */
static inline __attribute__((always_inline)) void part(const int masked, const float *pb, const int64_t *tb,
                                                        const uint8_t *vb, int64_t k, int64_t npix, int64_t j0,
                                                        int64_t j1, float neg_inv_t, double *out, int64_t *range) {
  double num = 0, den = 0, tot = 0;
  int64_t lo = tb[j0], hi = tb[j0];
  int64_t full = j0 + (j1 - j0) / LANES * LANES;
  for (int64_t c0 = j0; c0 < full; c0 += CHUNK) {
    int64_t c1 = c0 + CHUNK < full ? c0 + CHUNK : full;
    float a[LANES] = {0}, w[LANES] = {0}, s_[LANES] = {0};
    int64_t lo_[LANES], hi_[LANES];
    for (int l = 0; l < LANES; l++) lo_[l] = hi_[l] = lo;
    for (int64_t i0 = c0; i0 < c1; i0 += LANES) {
      if (AHEAD > 0 && i0 + AHEAD + LANES <= npix) {
#ifdef PREFETCH_FIRST_LAST /* for benchmarks/softmin_kernels.py: the first and the last pixel only */
        int64_t ja = i0 + AHEAD, jb = ja + LANES - 1;
        int64_t ca = clamp_class(tb[ja], k), cb = clamp_class(tb[jb], k);
        __builtin_prefetch(pb + ca * npix + ja, 0, 3);
        if (cb != ca) __builtin_prefetch(pb + cb * npix + jb, 0, 3);
#else /* a prefetch per change of label */
        int64_t prev = -1;
        for (int64_t j = i0 + AHEAD; j < i0 + AHEAD + LANES; j++) {
          int64_t c = clamp_class(tb[j], k);
          if (c != prev) __builtin_prefetch(pb + c * npix + j, 0, 3);
          prev = c;
        }
#endif
      }
      int32_t vm[LANES]; /* the mask widened first: bytes inside the loop below stop gcc vectorizing it */
      for (int l = 0; l < LANES; l++) vm[l] = masked ? vb[i0 + l] : 1;
      for (int l = 0; l < LANES; l++) {
        int64_t i = i0 + l, t = tb[i];
        lo_[l] = t < lo_[l] ? t : lo_[l];
        hi_[l] = t > hi_[l] ? t : hi_[l];
        float s = pb[clamp_class(t, k) * npix + i];
        float e = exp_f(s * neg_inv_t);
        if (masked) {
          s = vm[l] ? s : 0.0f;
          e = vm[l] ? e : 0.0f;
        }
        a[l] += e * s;
        w[l] += e;
        s_[l] += s;
      }
    }
    for (int l = 0; l < LANES; l++) {
      num += a[l];
      den += w[l];
      tot += s_[l];
      lo = lo_[l] < lo ? lo_[l] : lo;
      hi = hi_[l] > hi ? hi_[l] : hi;
    }
  }
  for (int64_t i = full; i < j1; i++) { /* the last (j1 - j0) % LANES pixels */
    int64_t t = tb[i];
    lo = t < lo ? t : lo;
    hi = t > hi ? t : hi;
    float s = pb[clamp_class(t, k) * npix + i];
    float e = exp_f(s * neg_inv_t);
    if (masked && !vb[i]) continue;
    num += (double)(e * s);
    den += e;
    tot += s;
  }
  out[0] = num;
  out[1] = den;
  out[2] = tot;
  range[0] = lo;
  range[1] = hi;
}

/* p: (B, K, P) float32, t: (B, P) int64, valid: (B, P) uint8 or NULL, all contiguous.
 * Each image is split into `parts` ranges of pixels; out: (B * parts, 3) float64 sums,
 * range: (B * parts, 2) int64 smallest and largest label. */
void segqa_label_sums_f32(const float *p, const int64_t *t, const uint8_t *valid, int64_t b, int64_t k,
                          int64_t npix, int64_t parts, float neg_inv_t, double *out, int64_t *range,
                          int threads) {
  int64_t step = (npix + parts - 1) / parts;
  step = (step + LANES - 1) / LANES * LANES;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t job = 0; job < b * parts; job++) {
    int64_t img = job / parts, j0 = (job % parts) * step, j1 = j0 + step < npix ? j0 + step : npix;
    double *o = out + job * 3;
    int64_t *r = range + job * 2;
    if (j0 >= j1) { /* an empty part: sums 0, a label range that changes nothing */
      o[0] = o[1] = o[2] = 0;
      r[0] = r[1] = t[img * npix];
      continue;
    }
    const float *pb = p + img * k * npix;
    const int64_t *tb = t + img * npix;
    if (valid)
      part(1, pb, tb, valid + img * npix, k, npix, j0, j1, neg_inv_t, o, r);
    else
      part(0, pb, tb, NULL, k, npix, j0, j1, neg_inv_t, o, r);
  }
}
