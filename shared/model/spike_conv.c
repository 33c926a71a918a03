/* Event-driven convolution of spike maps: float32, channels-last, built and loaded by
   shared/model/native.py (compiled for the CPU it runs on).

   A convolution whose input is spikes in {0, 1} needs no multiplication: each output is
   the bias plus the sum of the weights of the inputs that fired. spike_index lists, at
   every input position, the channels that fired; spike_conv then adds, for every output
   position, the weight rows of the listed inputs in its receptive field. The work is
   proportional to the number of spikes, not to the dense size of the input.

   Accumulators are GCC/Clang vector types (LANES floats, 512-bit with AVX-512, 256-bit
   otherwise) held in registers for a chunk of NACC vectors of output channels. */
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
   co = co_all / r^2: a pixel shuffle by r fused in (r = 1: none). */
#define DEFINE_CONV(NACC)                                                               \
    static void conv_##NACC(const int32_t *idx, const int64_t *first, int64_t b0,       \
                            int64_t b1, int64_t h, int64_t w, const float *wt,          \
                            const float *bias, int64_t k, int64_t ci, int64_t co_all,   \
                            int64_t stride, int64_t pad, int64_t r, float *out,         \
                            int64_t ho, int64_t wo) {                                   \
        const int64_t chunk = NACC * LANES, co = co_all / (r * r);                      \
        for (int64_t c0 = 0; c0 < co_all; c0 += chunk) {                                \
            const float *w_chunk = wt + c0 * k * k * ci;                                \
            const int64_t sub = c0 / co, i = sub / r, j = sub % r, c = c0 % co;         \
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
                        float *o = out + ((b * ho * r + oy * r + i) * wo * r + ox * r + j) \
                                             * co + c;                                  \
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

/* Accumulator vectors per chunk for co output channels per shuffled pixel: the largest
   of 8, 6, 4, 3, 2, 1 whose chunk divides co; 0 when LANES does not divide co. */
int spike_chunk_vectors(int64_t co) {
    static const int options[] = {8, 6, 4, 3, 2, 1};
    if (co <= 0 || co % LANES) return 0;
    for (int n = 0; n < 6; n++)
        if ((co / LANES) % options[n] == 0) return options[n];
    return 0;
}

/* The convolution of DEFINE_CONV with the chunk of spike_chunk_vectors; returns its
   vectors per chunk, 0 (nothing computed) when co_all / r^2 does not suit. */
int spike_conv(const int32_t *idx, const int64_t *first, int64_t b0, int64_t b1,
               int64_t h, int64_t w, const float *wt, const float *bias, int64_t k,
               int64_t ci, int64_t co_all, int64_t stride, int64_t pad, int64_t r,
               float *out, int64_t ho, int64_t wo) {
#define CASE(N)                                                                         \
    case N:                                                                             \
        conv_##N(idx, first, b0, b1, h, w, wt, bias, k, ci, co_all, stride, pad, r, out, \
                 ho, wo);                                                               \
        return N;
    switch (spike_chunk_vectors(co_all / (r * r))) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(6) CASE(8)
    }
    return 0;
}
