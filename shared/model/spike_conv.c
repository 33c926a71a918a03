/* Event-driven convolution of spike maps: float32, channels-last, built and loaded by
   shared/model/native.py (compiled for the CPU it runs on).

   A convolution whose input is spikes in {0, 1} needs no multiplication: each output is
   the bias plus the sum of the weights of the inputs that fired. spike_index lists, at
   every input position, the channels that fired; spike_conv then sums weight rows over
   these lists, so the work is proportional to the number of spikes, not to the dense
   size of the input. It has two orders of summation (spike_order picks one):
   - gather: for every output position, add the rows of the inputs that fired in its
     receptive field into registers holding a chunk of up to 8 vectors of channels;
   - scatter (3x3, stride 1, at most 2 vectors of output channels): for every input
     position, sum the rows of its channels that fired for all 9 taps at once in
     registers, then add each tap's sum into its output position. For few output
     channels this avoids gather's short, unpredictable loop per tap.

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

/* Floats per accumulator vector. */
int spike_lanes(void) { return LANES; }

/* For images b0 <= b < b1 of x[B][H * W][C]: the channels that fired at each position q
   of image b, as idx[first[b][q] .. first[b][q + 1]). first is [B][H * W + 1]; image b's
   lists start at idx[b * H * W * C]; idx holds B * H * W * C + 16 entries (the last
   image's stores may run 16 past its end). Returns how many values were neither 0 nor 1 (then
   the lists are not a spike map's, and the caller must not use them). */
int64_t spike_index(const float *x, int64_t b0, int64_t b1, int64_t hw, int64_t c,
                    int32_t *idx, int64_t *first) {
    int64_t not_spikes = 0;
#if defined(__AVX512F__)
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
#endif
    for (int64_t b = b0; b < b1; b++) {
        int64_t n = b * hw * c, *at = first + b * (hw + 1);
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

/* out = bias + the weight rows of the inputs that fired, for images b0 <= b < b1, of a
   k x k convolution (stride, zero padding pad) from h x w inputs to ho x wo outputs.
   wt is [co_all / CHUNK][k][k][ci][CHUNK] with CHUNK = NACC * LANES output channels.
   Output channel o = (i * r + j) * co + c goes to out[b][oy * r + i][ox * r + j][c], with
   co = co_all / r^2: a pixel shuffle by r fused in (r = 1: none). For one i, the r * co
   channels of j = 0 .. r - 1 lie side by side in out, so a chunk may span several j. */
/* GATHER. */
#define DEFINE_CONV(NACC)                                                               \
    static void conv_##NACC(const int32_t *idx, const int64_t *first, int64_t b0,       \
                            int64_t b1, int64_t h, int64_t w, const float *wt,          \
                            const float *bias, int64_t k, int64_t ci, int64_t co_all,   \
                            int64_t stride, int64_t pad, int64_t r, float *out,         \
                            int64_t ho, int64_t wo) {                                   \
        const int64_t chunk = NACC * LANES, run = co_all / r;                          \
        for (int64_t c0 = 0; c0 < co_all; c0 += chunk) {                                \
            const float *w_chunk = wt + c0 * k * k * ci;                                \
            const int64_t i = c0 / run, offset = c0 % run;                              \
            for (int64_t b = b0; b < b1; b++)                                           \
                for (int64_t oy = 0; oy < ho; oy++)                                     \
                    for (int64_t ox = 0; ox < wo; ox++) {                               \
                        vec acc[NACC];                                                  \
                        for (int a = 0; a < NACC; a++)                                  \
                            memcpy(&acc[a], bias + c0 + a * LANES, VECTOR_BYTES);       \
                        for (int64_t ky = 0; ky < k; ky++) {                            \
                            const int64_t iy = oy * stride + ky - pad;                  \
                            if (iy < 0 || iy >= h) continue;                            \
                            for (int64_t kx = 0; kx < k; kx++) {                        \
                                const int64_t ix = ox * stride + kx - pad;              \
                                if (ix < 0 || ix >= w) continue;                        \
                                const int64_t *at = first + b * (h * w + 1) + iy * w + ix; \
                                const float *w_tap = w_chunk + (ky * k + kx) * ci * chunk; \
                                for (int64_t n = at[0]; n < at[1]; n++) {               \
                                    const float *row = w_tap + (int64_t)idx[n] * chunk; \
                                    for (int a = 0; a < NACC; a++) {                    \
                                        vec v;                                          \
                                        memcpy(&v, row + a * LANES, VECTOR_BYTES);      \
                                        acc[a] += v;                                    \
                                    }                                                   \
                                }                                                       \
                            }                                                           \
                        }                                                               \
                        float *o = out + ((b * ho * r + oy * r + i) * wo + ox) * run     \
                                             + offset;                                  \
                        for (int a = 0; a < NACC; a++)                                  \
                            memcpy(o + a * LANES, &acc[a], VECTOR_BYTES);               \
                    }                                                                   \
        }                                                                               \
    }
DEFINE_CONV(1)
DEFINE_CONV(2)
DEFINE_CONV(3)
DEFINE_CONV(4)
DEFINE_CONV(6)
DEFINE_CONV(8)

/* Accumulator vectors per GATHER chunk for runs of co contiguous output channels (r * co
   for a shuffle by r): the largest of 8, 6, 4, 3, 2, 1 whose chunk divides co; 0 when
   LANES does not divide co. */
int spike_chunk_vectors(int64_t co) {
    static const int options[] = {8, 6, 4, 3, 2, 1};
    if (co <= 0 || co % LANES) return 0;
    for (int n = 0; n < 6; n++)
        if ((co / LANES) % options[n] == 0) return options[n];
    return 0;
}

/* Summation orders, and the weight layout each reads. */
enum { NO_ORDER = 0, GATHER = 1, SCATTER = 2 };
#define SCATTER_TAPS 9

/* The order for a k x k convolution at stride with co_all output channels and a fused
   pixel shuffle by r. */
int spike_order(int64_t k, int64_t stride, int64_t co_all, int64_t r) {
    if (k == 3 && stride == 1 && r == 1 && co_all == 2 * LANES) return SCATTER;
    return spike_chunk_vectors(co_all / r) ? GATHER : NO_ORDER;
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

/* The convolution in the order of spike_order; returns that order, NO_ORDER (nothing
   computed) when the shape does not suit either. */
int spike_conv(const int32_t *idx, const int64_t *first, int64_t b0, int64_t b1,
               int64_t h, int64_t w, const float *wt, const float *bias, int64_t k,
               int64_t ci, int64_t co_all, int64_t stride, int64_t pad, int64_t r,
               float *out, int64_t ho, int64_t wo) {
    const int order = spike_order(k, stride, co_all, r);
    if (order == SCATTER) {
        scatter(idx, first, b0, b1, h, w, wt, bias, out);
        return order;
    }
#define CASE(N)                                                                         \
    case N:                                                                             \
        conv_##N(idx, first, b0, b1, h, w, wt, bias, k, ci, co_all, stride, pad, r, out, \
                 ho, wo);                                                               \
        return order;
    switch (spike_chunk_vectors(co_all / r)) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(6) CASE(8)
    }
    return NO_ORDER;
}

/* The multi-step LIF of inference (shared/model/neurons.py) over `steps` steps of `count`
   neurons each: step t of the input at x + t * step_stride (0: the same input at every
   step), spikes written to spikes[t][count], the membrane v[count] updated in place. The
   rounding is the training kernel's, h = (x - v) * decay + v, with no fused multiply-add
   (the build passes -ffp-contract=off); a hard reset is to 0, a soft one subtracts the
   threshold. Returns the number of spikes. */
#define LIF_TILE 512
int64_t lif_steps(const float *restrict x, int64_t step_stride, int64_t steps,
                  int64_t count, float *restrict v, float decay, float threshold, int soft,
                  float *restrict spikes) {
    int64_t fired = 0;
    for (int64_t i0 = 0; i0 < count; i0 += LIF_TILE) {
        const int64_t n = count - i0 < LIF_TILE ? count - i0 : LIF_TILE;
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
