/* Event-driven convolution of spike maps: float32, channels-last, built and loaded by
   shared/model/native.py (compiled for the CPU it runs on), and the LIF of inference.

   A convolution whose input is spikes in {0, 1} needs no multiplication: each output is
   the bias plus the sum of the weights of the inputs that fired. spike_index lists, at
   every input position, the channels that fired; the convolutions sum weight rows over
   these lists, so the work is proportional to the number of spikes, not to the dense
   size of the input. There are two orders of summation (spike_order picks):
   - GATHER: for every output position, add the rows of the inputs that fired in its
     receptive field into registers holding a chunk of up to MAX_CHUNK_VECTORS vectors
     of channels. It runs on groups of G = 2 or 4 images, consecutive time steps of one
     view, whose spikes overlap (a neuron that fires at one step often fires at the
     next). A group's images are the leaves of a binary tree; at every position each
     node of the tree lists the channels that fired in all of its images but not in all
     of its parent's, and has its own accumulators. A row is loaded once per node and
     added once, and an image's output is the sum of the accumulators on its path from
     the root: a spike shared by all four steps costs one load and one add instead of
     four. (An image may be paired with itself.)
   - SCATTER (3x3, stride 1, two vectors of output channels; single images): for every
     input position, sum the rows of its channels that fired for all 9 taps at once in
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
/* Spare entries after each group's spike lists. */
#define SLACK 16
/* The most accumulator vectors per GATHER chunk and node: a group of four holds seven
   nodes' in registers (28 of AVX-512's 32, 14 of AVX2's 16). */
#define MAX_CHUNK_VECTORS (LANES == 16 ? 4 : 2)
/* The largest group, and the nodes of its tree. */
#define MAX_GROUP 4
#define MAX_NODES (2 * MAX_GROUP - 1)
/* Channels per block of the spike lists (one mask). */
#define BLOCK 16

/* Summation orders, and the weight layout each reads. */
enum { NO_ORDER = 0, GATHER = 1, SCATTER = 2 };
#define SCATTER_TAPS 9

/* Spare list entries per group. */
int spike_slack(void) { return SLACK; }

/* Floats per accumulator vector. */
int spike_lanes(void) { return LANES; }

/* Accumulator vectors per GATHER chunk for runs of co contiguous output channels (r * co
   for a shuffle by r): the largest of 4, 3, 2, 1 (up to MAX_CHUNK_VECTORS) whose chunk
   divides co; 0 when LANES does not divide co. */
int spike_chunk_vectors(int64_t co) {
    if (co <= 0 || co % LANES) return 0;
    for (int n = MAX_CHUNK_VECTORS; n > 1; n--)
        if ((co / LANES) % n == 0) return n;
    return 1;
}

/* The order for a k x k convolution at stride with co_all output channels and a fused
   pixel shuffle by r. */
int spike_order(int64_t k, int64_t stride, int64_t co_all, int64_t r) {
    if (k == 3 && stride == 1 && r == 1 && co_all == 2 * LANES) return SCATTER;
    return spike_chunk_vectors(co_all / r) ? GATHER : NO_ORDER;
}

/* ------------------------------------------------------------------ spike lists */

/* Bit i: channel k0 + i (i < n <= BLOCK) of row fired (is not 0); *odd counts the
   values that are neither 0 nor 1. */
static inline uint32_t fired_bits(const float *row, int64_t k0, int n, int64_t *odd) {
#if defined(__AVX512F__)
    const __mmask16 in = (__mmask16)((1u << n) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(in, row + k0);
    const __mmask16 fired = _mm512_mask_cmp_ps_mask(in, v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    *odd += __builtin_popcount(fired & _mm512_cmp_ps_mask(v, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ));
    return fired;
#else
    uint32_t fired = 0;
    for (int i = 0; i < n; i++) {
        const float value = row[k0 + i];
        fired |= (uint32_t)(value != 0.0f) << i;
        *odd += value != 0.0f && value != 1.0f;
    }
    return fired;
#endif
}

/* Appends the channels k0 + i of the set bits i of `bits` to idx from idx[n]; returns
   the new end (the AVX-512 version stores a whole vector: SLACK covers the overrun). */
static inline int64_t append_channels(uint32_t bits, int64_t k0, int32_t *idx, int64_t n) {
#if defined(__AVX512F__)
    /* A compressing store to memory is microcoded on some CPUs (Zen 4): compress in a
       register and store all lanes; those past the last channel are overwritten next. */
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i channels = _mm512_add_epi32(lane, _mm512_set1_epi32((int)k0));
    _mm512_storeu_si512(idx + n, _mm512_maskz_compress_epi32((__mmask16)bits, channels));
    return n + __builtin_popcount(bits);
#else
    for (; bits; bits &= bits - 1) idx[n++] = (int32_t)(k0 + __builtin_ctz(bits));
    return n;
#endif
}

/* The tree of a group of g images (1, 2 or 4), nodes in heap order (node k's children
   2k + 1 and 2k + 2; image j is leaf g - 1 + j): from fired[j], the channels that fired
   in image j, each node's list, the channels that fired in all of its images but not in
   all of its parent's. Every channel an image fired lands in exactly one node on its
   path. */
static inline void node_lists(int64_t g, const uint32_t *fired, uint32_t *lists) {
    uint32_t all[MAX_NODES];
    for (int64_t j = 0; j < g; j++) all[g - 1 + j] = fired[j];
    for (int64_t k = g - 2; k >= 0; k--) all[k] = all[2 * k + 1] & all[2 * k + 2];
    lists[0] = all[0];
    for (int64_t k = 1; k < 2 * g - 1; k++) lists[k] = all[k] & ~all[(k - 1) / 2];
}

/* spike_index for a group size g known at compile time (inlined into one copy each). */
static inline __attribute__((always_inline)) int64_t
index_groups(const float *x, const int64_t *groups, const int64_t g, int64_t p0, int64_t p1,
             int64_t hw, int64_t c, int32_t *idx, int64_t *first, int64_t *spikes) {
    const int64_t nodes = 2 * g - 1, blocks = (c + BLOCK - 1) / BLOCK;
    uint32_t lists[nodes][blocks];
    int64_t odd = 0;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t *images = groups + p * g;
        int distinct[MAX_GROUP];
        for (int64_t j = 0; j < g; j++) {
            distinct[j] = 1;
            for (int64_t i = 0; i < j; i++) distinct[j] &= images[i] != images[j];
        }
        int64_t n = p * (g * hw * c + SLACK), *f = first + p * (nodes * hw + 1), count = 0;
        for (int64_t q = 0; q < hw; q++) {
            for (int64_t b = 0; b < blocks; b++) {
                const int64_t k0 = b * BLOCK;
                const int width = c - k0 < BLOCK ? (int)(c - k0) : BLOCK;
                uint32_t fired[MAX_GROUP], node[MAX_NODES];
                for (int64_t j = 0; j < g; j++) {
                    fired[j] = fired_bits(x + (images[j] * hw + q) * c, k0, width, &odd);
                    count += distinct[j] * __builtin_popcount(fired[j]);
                }
                node_lists(g, fired, node);
                for (int64_t k = 0; k < nodes; k++) lists[k][b] = node[k];
            }
            for (int64_t k = 0; k < nodes; k++) {
                f[nodes * q + k] = n;
                for (int64_t b = 0; b < blocks; b++)
                    n = append_channels(lists[k][b], b * BLOCK, idx, n);
            }
        }
        f[nodes * hw] = n;
        spikes[p] = count;
    }
    return odd;
}

/* For groups p0 <= p < p1 of g images (1, 2 or 4: groups[p][0 .. g), distinct except
   that a pair may repeat one image) of x[B][H * W][C]: node k's list at position q of
   group p is idx[f[N q + k] .. f[N q + k + 1]) with N = 2g - 1 nodes and
   f = first + p (N H W + 1); group p's lists start at idx[p (g H W C + SLACK)], so that a
   store past a group's end stays in its own region (groups may be indexed by different
   threads). spikes[p] gets the number of spikes in group p's distinct images. Returns
   how many values were neither 0 nor 1 (then the lists are not a spike map's, and the
   caller must not use them), -1 for another g. */
int64_t spike_index(const float *x, const int64_t *groups, int64_t g, int64_t p0,
                    int64_t p1, int64_t hw, int64_t c, int32_t *idx, int64_t *first,
                    int64_t *spikes) {
    switch (g) {
    case 1: return index_groups(x, groups, 1, p0, p1, hw, c, idx, first, spikes);
    case 2: return index_groups(x, groups, 2, p0, p1, hw, c, idx, first, spikes);
    case 4: return index_groups(x, groups, 4, p0, p1, hw, c, idx, first, spikes);
    }
    return -1;
}

/* ------------------------------------------------------------------ SCATTER */

/* out = shortcut + out for images b0 <= b < b1 of n floats each, image b's shortcut at
   shortcut + shortcut_at[b] (a residual path: the sum in the order the model adds it). */
static void add_shortcut(float *out, const float *shortcut, const int64_t *shortcut_at,
                         int64_t b0, int64_t b1, int64_t n) {
    for (int64_t b = b0; b < b1; b++) {
        float *o = out + b * n;
        const float *s = shortcut + shortcut_at[b];
        for (int64_t i = 0; i < n; i++) o[i] = s[i] + o[i];
    }
}

/* SCATTER for images b0 <= b < b1, listed by spike_index as groups of one image (groups
   b = image b): wt is [ci][9][2 * LANES], out[b][h][w][2 * LANES]. */
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

/* SCATTER for images b0 <= b < b1 (as spike_index lists them in groups of one) of an
   h x w map, with wt [ci][9][2 * LANES], plus image b's shortcut (laid out like its
   output) at shortcut + shortcut_at[b] where shortcut is not NULL; returns SCATTER,
   NO_ORDER (nothing computed) when spike_order does not choose it. */
int spike_scatter(const int32_t *idx, const int64_t *first, int64_t b0, int64_t b1,
                  int64_t h, int64_t w, const float *wt, const float *bias, int64_t k,
                  int64_t stride, int64_t co_all, int64_t r, float *out,
                  const float *shortcut, const int64_t *shortcut_at) {
    if (spike_order(k, stride, co_all, r) != SCATTER) return NO_ORDER;
    scatter(idx, first, b0, b1, h, w, wt, bias, out);
    if (shortcut) add_shortcut(out, shortcut, shortcut_at, b0, b1, h * w * co_all);
    return SCATTER;
}

/* ------------------------------------------------------------------ GATHER */

/* The nodes of a group's tree and the images of a group, for the unrolled loops. */
#define FOR_NODES_2(X) X(0) X(1) X(2)
#define FOR_NODES_4(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6)
#define FOR_IMAGES_2(X) X(0) X(1)
#define FOR_IMAGES_4(X) X(0) X(1) X(2) X(3)
/* Image j's sum over the nodes on its path from the root, vector a. */
#define PATH_SUM_2(J, A) (acc[0][A] + acc[1 + (J)][A])
#define PATH_SUM_4(J, A) ((acc[0][A] + acc[1 + (J) / 2][A]) + acc[3 + (J)][A])

/* out = bias + the weight rows of the inputs that fired, for groups p0 <= p < p1 of G
   images, of a k x k convolution (stride, zero padding pad) from h x w inputs to
   ho x wo outputs. wt is [co_all / CHUNK][k][k][ci][CHUNK] with CHUNK = NACC * LANES
   output channels. Output channel o = (i * r + j) * co + c goes to
   out[b][oy * r + i][ox * r + j][c], with co = co_all / r^2: a pixel shuffle by r fused
   in (r = 1: none). For one i, the r * co channels of j = 0 .. r - 1 lie side by side in
   out, so a chunk may span several j. Where shortcut is not NULL, image b's output is
   shortcut[shortcut_at[b] + i] + the sum, for a shortcut laid out like the output. */
#define DEFINE_GATHER(G, NACC)                                                          \
    static void gather_##G##_##NACC(                                                    \
        const int32_t *idx, const int64_t *first, const int64_t *groups, int64_t p0,    \
        int64_t p1, int64_t h, int64_t w, const float *wt, const float *bias, int64_t k, \
        int64_t ci, int64_t co_all, int64_t stride, int64_t pad, int64_t r, float *out, \
        int64_t ho, int64_t wo, const float *shortcut, const int64_t *shortcut_at) {   \
        enum { NODES = 2 * G - 1, VECTORS = NACC };                                     \
        const int64_t chunk = NACC * LANES, run = co_all / r;                          \
        for (int64_t c0 = 0; c0 < co_all; c0 += chunk) {                                \
            const float *w_chunk = wt + c0 * k * k * ci;                                \
            const int64_t i = c0 / run, offset = c0 % run;                              \
            for (int64_t p = p0; p < p1; p++) {                                         \
                const int64_t *images = groups + p * G;                                 \
                const int64_t *f = first + p * (NODES * h * w + 1);                     \
                for (int64_t oy = 0; oy < ho; oy++)                                     \
                    for (int64_t ox = 0; ox < wo; ox++) {                               \
                        vec acc[NODES][NACC];                                           \
                        for (int a = 0; a < NACC; a++) {                                \
                            memcpy(&acc[0][a], bias + c0 + a * LANES, VECTOR_BYTES);    \
                            for (int node = 1; node < NODES; node++)                    \
                                acc[node][a] = (vec){0};                                \
                        }                                                               \
                        for (int64_t ky = 0; ky < k; ky++) {                            \
                            const int64_t iy = oy * stride + ky - pad;                  \
                            if (iy < 0 || iy >= h) continue;                            \
                            for (int64_t kx = 0; kx < k; kx++) {                        \
                                const int64_t ix = ox * stride + kx - pad;              \
                                if (ix < 0 || ix >= w) continue;                        \
                                const int64_t *at = f + NODES * (iy * w + ix);          \
                                const float *w_tap = w_chunk + (ky * k + kx) * ci * chunk; \
                                FOR_NODES_##G(ADD_NODE_ROWS)                            \
                            }                                                           \
                        }                                                               \
                        const int64_t at_out = ((oy * r + i) * wo + ox) * run + offset; \
                        FOR_IMAGES_##G(STORE_IMAGE_##G)                                 \
                    }                                                                   \
            }                                                                           \
        }                                                                               \
    }

/* Adds the rows of node NODE's list at this tap to its VECTORS accumulators. */
#define ADD_NODE_ROWS(NODE)                                                             \
    for (int64_t n = at[NODE]; n < at[NODE + 1]; n++) {                                 \
        const float *row = w_tap + (int64_t)idx[n] * chunk;                             \
        for (int a = 0; a < VECTORS; a++) {                                             \
            vec v;                                                                      \
            memcpy(&v, row + a * LANES, VECTOR_BYTES);                                  \
            acc[NODE][a] += v;                                                          \
        }                                                                               \
    }

/* Stores image J's VECTORS output vectors, its path's sum in a group of G (after its
   shortcut). */
#define STORE_IMAGE(G, J)                                                               \
    {                                                                                   \
        float *o = out + images[J] * ho * r * wo * run + at_out;                        \
        const float *s = shortcut ? shortcut + shortcut_at[images[J]] + at_out : NULL;  \
        for (int a = 0; a < VECTORS; a++) {                                             \
            vec sum = PATH_SUM_##G(J, a);                                               \
            if (s) {                                                                    \
                vec add;                                                                \
                memcpy(&add, s + a * LANES, VECTOR_BYTES);                              \
                sum = add + sum;                                                        \
            }                                                                           \
            memcpy(o + a * LANES, &sum, VECTOR_BYTES);                                  \
        }                                                                               \
    }
#define STORE_IMAGE_2(J) STORE_IMAGE(2, J)
#define STORE_IMAGE_4(J) STORE_IMAGE(4, J)

DEFINE_GATHER(2, 1)
DEFINE_GATHER(2, 2)
DEFINE_GATHER(2, 3)
DEFINE_GATHER(2, 4)
DEFINE_GATHER(4, 1)
DEFINE_GATHER(4, 2)
DEFINE_GATHER(4, 3)
DEFINE_GATHER(4, 4)

/* GATHER for groups p0 <= p < p1 of g = 2 or 4 images (as spike_index lists them),
   plus the shortcut where it is not NULL; returns its vectors per chunk, 0 (nothing
   computed) when the shape or g does not suit. */
int spike_gather(const int32_t *idx, const int64_t *first, const int64_t *groups,
                 int64_t g, int64_t p0, int64_t p1, int64_t h, int64_t w, const float *wt,
                 const float *bias, int64_t k, int64_t ci, int64_t co_all, int64_t stride,
                 int64_t pad, int64_t r, float *out, int64_t ho, int64_t wo,
                 const float *shortcut, const int64_t *shortcut_at) {
#define CASE(G, N)                                                                      \
    case 10 * G + N:                                                                    \
        gather_##G##_##N(idx, first, groups, p0, p1, h, w, wt, bias, k, ci, co_all,     \
                         stride, pad, r, out, ho, wo, shortcut, shortcut_at);           \
        return N;
    switch (10 * g + spike_chunk_vectors(co_all / r)) {
        CASE(2, 1) CASE(2, 2) CASE(2, 3) CASE(2, 4)
        CASE(4, 1) CASE(4, 2) CASE(4, 3) CASE(4, 4)
    }
    return 0;
}

/* The multi-step LIF of inference (shared/model/neurons.py) over `steps` steps of `count`
   neurons each, for the neurons begin..end-1: step t of the input at x + t * step_stride
   (0: the same input at every step), spikes written to spikes[t][count], the membrane
   v[count] updated in place; with `fresh` the membrane starts at v_start instead of v's
   contents. The rounding is the training kernel's, h = (x - v) * decay + v, with no
   fused multiply-add (the build passes -ffp-contract=off); a hard reset is to 0, a soft
   one subtracts the threshold. Returns the number of spikes. */
#define LIF_TILE 512
int64_t lif_steps(const float *restrict x, int64_t step_stride, int64_t steps,
                  int64_t count, int64_t begin, int64_t end, float *restrict v,
                  int fresh, float v_start, float decay, float threshold, int soft,
                  float *restrict spikes) {
    int64_t fired = 0;
    for (int64_t i0 = begin; i0 < end; i0 += LIF_TILE) {
        const int64_t n = end - i0 < LIF_TILE ? end - i0 : LIF_TILE;
        float *restrict vt = v + i0;
        if (fresh)
            for (int64_t i = 0; i < n; i++) vt[i] = v_start;
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
