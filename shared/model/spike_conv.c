/* Event-driven convolution of spike maps: float32, channels-last, built and loaded by
   shared/model/native.py (compiled for the CPU it runs on), and the LIF of inference.

   A convolution whose input is spikes in {0, 1} needs no multiplication: each output is
   the bias plus the sum of the weights of the inputs that fired. The index functions
   list, at every input position, the channels that fired; the convolutions sum weight
   rows over these lists, so the work is proportional to the number of spikes, not to
   the dense size of the input. There are two orders of summation (spike_order picks):
   - GATHER: for every output position, add the rows of the inputs that fired in its
     receptive field into registers holding a chunk of up to MAX_CHUNK_VECTORS vectors
     of channels. It runs on pairs of images, steps t and t + 1 of one view, whose
     spikes overlap (a neuron that fires at one step often fires at the next): a pair's
     lists hold, at every position, the channels that fired in both images, then those
     of the first only, then of the second only, and a row of the first list is loaded
     once and added to both images' accumulators (an image may pair with itself);
   - SCATTER (3x3, stride 1, two vectors of output channels): for every input position,
     sum the rows of its channels that fired for all 9 taps at once in registers, then
     add each tap's sum into its output position. For few output channels this avoids
     gather's short, unpredictable loop per tap.

   Accumulators are GCC/Clang vector types (LANES floats, 512-bit with AVX-512, 256-bit
   otherwise). */
#include <stdint.h>
#include <string.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define VECTOR_BYTES 64
#else
#define VECTOR_BYTES 32
#endif
typedef float vec __attribute__((vector_size(VECTOR_BYTES)));
#define LANES (VECTOR_BYTES / 4)
/* Spare entries after each image's (or pair's) spike lists. */
#define SLACK 16
/* The most accumulator vectors per GATHER chunk (it holds two images' in registers). */
#define MAX_CHUNK_VECTORS (LANES == 16 ? 8 : 4)

/* Summation orders, and the weight layout each reads. */
enum { NO_ORDER = 0, GATHER = 1, SCATTER = 2 };
#define SCATTER_TAPS 9

/* Spare list entries per image. */
int spike_slack(void) { return SLACK; }

/* Floats per accumulator vector. */
int spike_lanes(void) { return LANES; }

/* Accumulator vectors per GATHER chunk for runs of co contiguous output channels (r * co
   for a shuffle by r): the largest of 8, 6, 4, 3, 2, 1 (up to MAX_CHUNK_VECTORS) whose
   chunk divides co; 0 when LANES does not divide co. */
int spike_chunk_vectors(int64_t co) {
    static const int options[] = {8, 6, 4, 3, 2, 1};
    if (co <= 0 || co % LANES) return 0;
    for (int n = 0; n < 6; n++)
        if (options[n] <= MAX_CHUNK_VECTORS && (co / LANES) % options[n] == 0)
            return options[n];
    return 0;
}

/* The order for a k x k convolution at stride with co_all output channels and a fused
   pixel shuffle by r. */
int spike_order(int64_t k, int64_t stride, int64_t co_all, int64_t r) {
    if (k == 3 && stride == 1 && r == 1 && co_all == 2 * LANES) return SCATTER;
    return spike_chunk_vectors(co_all / r) ? GATHER : NO_ORDER;
}

/* ------------------------------------------------------------------ SCATTER */

/* For images b0 <= b < b1 of x[B][H * W][C]: the channels that fired at each position q
   of image b, as idx[first[b][q] .. first[b][q + 1]). first is [B][H * W + 1]; image b's
   lists start at idx[b * (H * W * C + SLACK)], so that a store of 16 lanes past an
   image's end stays in its own region (images may be indexed by different threads);
   idx holds B * (H * W * C + SLACK) entries. Returns how many values were neither 0 nor
   1 (then the lists are not a spike map's, and the caller must not use them). */
int64_t spike_index(const float *x, int64_t b0, int64_t b1, int64_t hw, int64_t c,
                    int32_t *idx, int64_t *first) {
    int64_t not_spikes = 0;
#if defined(__AVX512F__)
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
#endif
    for (int64_t b = b0; b < b1; b++) {
        int64_t n = b * (hw * c + SLACK), *at = first + b * (hw + 1);
        const float *row = x + b * hw * c;
        for (int64_t q = 0; q < hw; q++, row += c) {
            at[q] = n;
            int64_t k = 0;
#if defined(__AVX512F__)
            /* 16 channels at a time: compare, pack the indices that fired in a register and
               store all 16 lanes (a compressing store is microcoded on some CPUs); the
               lanes past the last one that fired are overwritten next. */
            for (; k + 16 <= c; k += 16) {
                const __m512 v = _mm512_loadu_ps(row + k);
                const __mmask16 fired = _mm512_cmp_ps_mask(v, zero, _CMP_NEQ_UQ);
                const __mmask16 odd = fired & _mm512_cmp_ps_mask(v, one, _CMP_NEQ_UQ);
                const __m512i channels = _mm512_add_epi32(lane, _mm512_set1_epi32((int)k));
                _mm512_storeu_si512(idx + n, _mm512_maskz_compress_epi32(fired, channels));
                n += __builtin_popcount(fired);
                not_spikes += __builtin_popcount(odd);
            }
#endif
            for (; k < c; k++) {
                idx[n] = (int32_t)k;
                n += row[k] != 0.0f;
                not_spikes += row[k] != 0.0f && row[k] != 1.0f;
            }
        }
        at[hw] = n;
    }
    return not_spikes;
}

/* SCATTER for images b0 <= b < b1: wt is [ci][9][2 * LANES], out[b][h][w][2 * LANES]. */
static void scatter(const int32_t *idx, const int64_t *first, int64_t b0, int64_t b1,
                    int64_t h, int64_t w, const float *wt, const float *bias, float *out) {
    const int64_t co = 2 * LANES;
    for (int64_t p = b0 * h * w; p < b1 * h * w; p++) memcpy(out + p * co, bias, co * 4);
    for (int64_t b = b0; b < b1; b++) {
        const int64_t *at = first + b * (h * w + 1);
        for (int64_t iy = 0; iy < h; iy++)
            for (int64_t ix = 0; ix < w; ix++, at++) {
                if (at[0] == at[1]) continue;
                vec acc[SCATTER_TAPS][2];
                memset(acc, 0, sizeof acc);
                for (int64_t n = at[0]; n < at[1]; n++) {
                    const float *row = wt + (int64_t)idx[n] * SCATTER_TAPS * co;
                    for (int t = 0; t < SCATTER_TAPS; t++)
                        for (int a = 0; a < 2; a++) {
                            vec v;
                            memcpy(&v, row + (2 * t + a) * LANES, VECTOR_BYTES);
                            acc[t][a] += v;
                        }
                }
                /* Tap (ky, kx) of input (iy, ix) lands on output (iy + 1 - ky, ix + 1 - kx). */
                for (int t = 0; t < SCATTER_TAPS; t++) {
                    const int64_t oy = iy + 1 - t / 3, ox = ix + 1 - t % 3;
                    if (oy < 0 || ox < 0 || oy >= h || ox >= w) continue;
                    float *o = out + ((b * h + oy) * w + ox) * co;
                    for (int a = 0; a < 2; a++) {
                        vec v;
                        memcpy(&v, o + a * LANES, VECTOR_BYTES);
                        v += acc[t][a];
                        memcpy(o + a * LANES, &v, VECTOR_BYTES);
                    }
                }
            }
    }
}

/* SCATTER for images b0 <= b < b1 (as spike_index lists them) of an h x w map, with
   wt [ci][9][2 * LANES]; returns SCATTER, NO_ORDER (nothing computed) when spike_order
   does not choose it. */
int spike_scatter(const int32_t *idx, const int64_t *first, int64_t b0, int64_t b1,
                  int64_t h, int64_t w, const float *wt, const float *bias, int64_t k,
                  int64_t stride, int64_t co_all, int64_t r, float *out) {
    if (spike_order(k, stride, co_all, r) != SCATTER) return NO_ORDER;
    scatter(idx, first, b0, b1, h, w, wt, bias, out);
    return SCATTER;
}

/* Whether a channel that fired (in_a, in_b) in the two images goes to list `part`. */
static inline int in_list(int part, int in_a, int in_b) {
    return part == 0 ? in_a && in_b : part == 1 ? in_a && !in_b : !in_a && in_b;
}

/* The three lists of one position of a pair (a and b its c channels in the two images),
   written from idx[n] with their starts in f[0 .. 2]; returns the end of the last. */
static int64_t pair_lists(const float *a, const float *b, int64_t c, int32_t *idx,
                          int64_t n, int64_t *f) {
    for (int part = 0; part < 3; part++) {
        f[part] = n;
        int64_t k = 0;
#if defined(__AVX512F__)
        const __m512i lane =
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        const __m512 zero = _mm512_setzero_ps();
        for (; k + 16 <= c; k += 16) {
            const __mmask16 in_a = _mm512_cmp_ps_mask(_mm512_loadu_ps(a + k), zero, _CMP_NEQ_UQ);
            const __mmask16 in_b = _mm512_cmp_ps_mask(_mm512_loadu_ps(b + k), zero, _CMP_NEQ_UQ);
            const __mmask16 take = part == 0   ? (__mmask16)(in_a & in_b)
                                   : part == 1 ? (__mmask16)(in_a & ~in_b)
                                               : (__mmask16)(~in_a & in_b);
            const __m512i channels = _mm512_add_epi32(lane, _mm512_set1_epi32((int)k));
            _mm512_storeu_si512(idx + n, _mm512_maskz_compress_epi32(take, channels));
            n += __builtin_popcount(take);
        }
#endif
        for (; k < c; k++) {
            idx[n] = (int32_t)k;
            n += in_list(part, a[k] != 0.0f, b[k] != 0.0f);
        }
    }
    return n;
}

/* ------------------------------------------------------------------ GATHER */

/* For pairs p0 <= p < p1 of images (pairs[p][0], pairs[p][1]) of x[B][H * W][C]: the
   three lists of position q of pair p are idx[f[3 q] .. f[3 q + 1]) (fired in both),
   [f[3 q + 1] .. f[3 q + 2]) (first only) and [f[3 q + 2] .. f[3 q + 3]) (second only),
   with f = first + p (3 H W + 1); pair p's lists start at idx[p (2 H W C + SLACK)].
   Returns how many values were neither 0 nor 1. */
int64_t spike_index_pairs(const float *x, const int64_t *pairs, int64_t p0, int64_t p1,
                          int64_t hw, int64_t c, int32_t *idx, int64_t *first) {
    int64_t not_spikes = 0;
    for (int64_t p = p0; p < p1; p++) {
        const float *a = x + pairs[2 * p] * hw * c, *b = x + pairs[2 * p + 1] * hw * c;
        int64_t n = p * (2 * hw * c + SLACK), *f = first + p * (3 * hw + 1);
        for (int64_t q = 0; q < hw; q++, a += c, b += c) {
            for (int64_t j = 0; j < c; j++)
                not_spikes += (a[j] != 0.0f && a[j] != 1.0f) + (b[j] != 0.0f && b[j] != 1.0f);
            n = pair_lists(a, b, c, idx, n, f + 3 * q);
        }
        f[3 * hw] = n;
    }
    return not_spikes;
}

/* Adds the weight rows of list idx[n0 .. n1) to the NACC accumulators of one image. */
#define ADD_ROWS(NACC, ACC, N0, N1)                                                     \
    for (int64_t n = (N0); n < (N1); n++) {                                             \
        const float *row = w_tap + (int64_t)idx[n] * chunk;                             \
        for (int a = 0; a < NACC; a++) {                                                \
            vec v;                                                                      \
            memcpy(&v, row + a * LANES, VECTOR_BYTES);                                  \
            ACC[a] += v;                                                                \
        }                                                                               \
    }

/* out = bias + the weight rows of the inputs that fired, for pairs p0 <= p < p1, of a
   k x k convolution (stride, zero padding pad) from h x w inputs to ho x wo outputs.
   wt is [co_all / CHUNK][k][k][ci][CHUNK] with CHUNK = NACC * LANES output channels.
   Output channel o = (i * r + j) * co + c goes to out[b][oy * r + i][ox * r + j][c], with
   co = co_all / r^2: a pixel shuffle by r fused in (r = 1: none). For one i, the r * co
   channels of j = 0 .. r - 1 lie side by side in out, so a chunk may span several j. */
#define DEFINE_GATHER(NACC)                                                              \
    static void gather_##NACC(const int32_t *idx, const int64_t *first,                 \
                              const int64_t *pairs, int64_t p0, int64_t p1, int64_t h,   \
                              int64_t w,                                                \
                             const float *wt, const float *bias, int64_t k, int64_t ci, \
                             int64_t co_all, int64_t stride, int64_t pad, int64_t r,    \
                             float *out, int64_t ho, int64_t wo) {                      \
        const int64_t chunk = NACC * LANES, run = co_all / r;                          \
        for (int64_t c0 = 0; c0 < co_all; c0 += chunk) {                                \
            const float *w_chunk = wt + c0 * k * k * ci;                                \
            const int64_t i = c0 / run, offset = c0 % run;                              \
            for (int64_t p = p0; p < p1; p++) {                                         \
                const int64_t ba = pairs[2 * p], bb = pairs[2 * p + 1];                 \
                const int64_t *f = first + p * (3 * h * w + 1);                         \
                for (int64_t oy = 0; oy < ho; oy++)                                     \
                    for (int64_t ox = 0; ox < wo; ox++) {                               \
                        vec acc_a[NACC], acc_b[NACC];                                   \
                        for (int a = 0; a < NACC; a++) {                                \
                            memcpy(&acc_a[a], bias + c0 + a * LANES, VECTOR_BYTES);     \
                            acc_b[a] = acc_a[a];                                        \
                        }                                                               \
                        for (int64_t ky = 0; ky < k; ky++) {                            \
                            const int64_t iy = oy * stride + ky - pad;                  \
                            if (iy < 0 || iy >= h) continue;                            \
                            for (int64_t kx = 0; kx < k; kx++) {                        \
                                const int64_t ix = ox * stride + kx - pad;              \
                                if (ix < 0 || ix >= w) continue;                        \
                                const int64_t *at = f + 3 * (iy * w + ix);              \
                                const float *w_tap = w_chunk + (ky * k + kx) * ci * chunk; \
                                for (int64_t n = at[0]; n < at[1]; n++) {               \
                                    const float *row = w_tap + (int64_t)idx[n] * chunk; \
                                    for (int a = 0; a < NACC; a++) {                    \
                                        vec v;                                          \
                                        memcpy(&v, row + a * LANES, VECTOR_BYTES);      \
                                        acc_a[a] += v;                                  \
                                        acc_b[a] += v;                                  \
                                    }                                                   \
                                }                                                       \
                                ADD_ROWS(NACC, acc_a, at[1], at[2])                         \
                                ADD_ROWS(NACC, acc_b, at[2], at[3])                         \
                            }                                                           \
                        }                                                               \
                        const int64_t at_out = ((oy * r + i) * wo + ox) * run + offset; \
                        float *o_a = out + ba * ho * r * wo * run + at_out;             \
                        float *o_b = out + bb * ho * r * wo * run + at_out;             \
                        for (int a = 0; a < NACC; a++) {                                \
                            memcpy(o_a + a * LANES, &acc_a[a], VECTOR_BYTES);           \
                            memcpy(o_b + a * LANES, &acc_b[a], VECTOR_BYTES);           \
                        }                                                               \
                    }                                                                   \
            }                                                                           \
        }                                                                               \
    }
DEFINE_GATHER(1)
DEFINE_GATHER(2)
DEFINE_GATHER(3)
DEFINE_GATHER(4)
DEFINE_GATHER(6)
DEFINE_GATHER(8)

/* GATHER for pairs p0 <= p < p1 (as spike_index_pairs lists them); returns its vectors
   per chunk, 0 (nothing computed) when the shape does not suit. */
int spike_gather(const int32_t *idx, const int64_t *first, const int64_t *pairs,
                 int64_t p0, int64_t p1, int64_t h, int64_t w, const float *wt,
                 const float *bias, int64_t k, int64_t ci, int64_t co_all, int64_t stride,
                 int64_t pad, int64_t r, float *out, int64_t ho, int64_t wo) {
#define CASE(N)                                                                         \
    case N:                                                                             \
        gather_##N(idx, first, pairs, p0, p1, h, w, wt, bias, k, ci, co_all, stride, pad, \
                   r, out, ho, wo);                                                     \
        return N;
    switch (spike_chunk_vectors(co_all / r)) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(6) CASE(8)
    }
    return 0;
}

/* The multi-step LIF of inference (shared/model/neurons.py) over `steps` steps of `count`
   neurons each, for the neurons begin..end-1: step t of the input at x + t * step_stride
   (0: the same input at every step), spikes written to spikes[t][count], the membrane
   v[count] updated in place. The rounding is the training kernel's,
   h = (x - v) * decay + v, with no fused multiply-add (the build passes
   -ffp-contract=off); a hard reset is to 0, a soft one subtracts the threshold. Returns
   the number of spikes. */
#define LIF_TILE 512
int64_t lif_steps(const float *restrict x, int64_t step_stride, int64_t steps,
                  int64_t count, int64_t begin, int64_t end, float *restrict v,
                  float decay, float threshold, int soft, float *restrict spikes) {
    int64_t fired = 0;
    for (int64_t i0 = begin; i0 < end; i0 += LIF_TILE) {
        const int64_t n = end - i0 < LIF_TILE ? end - i0 : LIF_TILE;
        float *restrict vt = v + i0;
        for (int64_t t = 0; t < steps; t++) {
            const float *restrict xt = x + t * step_stride + i0;
            float *restrict st = spikes + t * count + i0;
            int32_t total = 0;
            for (int64_t i = 0; i < n; i++) {
                const float h = (xt[i] - vt[i]) * decay + vt[i];
                const int32_t fire = h >= threshold;
                st[i] = (float)fire;
                total += fire;
                vt[i] = soft ? h - threshold * (float)fire : (fire ? 0.0f : h);
            }
            fired += total;
        }
    }
    return fired;
}
