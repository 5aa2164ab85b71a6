// One video block of the scorer (`export.fused.FusedVideoBlock`, deferred softmax) as a single
// pass per candidate: the kernel of the ONNX Runtime custom operator segint.VideoBlock
// (custom_op.cpp; export.kernel writes the scorer that uses it, service.kernels builds it).
//
// Compiled once per instruction set: SEGINT_WIDTH=16 (-mavx512f: video_block_avx512) and
// SEGINT_WIDTH=8 (-mavx2 -mfma: video_block_avx2); the same code on VL-float vectors `vf`.
// Dimensions fixed at compile time: D = 32, H = 4, DH = 8, F = 64 (the base model). Queries are
// vectorised VL at a time (one register per head dimension), keys are exact (the candidate's
// valid video keys, then the user's), exp is inline (degree-6 polynomial), GELU's erf is glibc's
// vector erff (libmvec). The attention's output is normalised VL queries at a time and kept
// transposed (`yt`, a row per feature), which the output projection reads by columns.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>

#include "video_block.h"

namespace {

// exp for |x| < 87: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], degree-6 Taylor (rel. error
// < 2e-7 there); inline, so no call spills the attention's accumulators.
#if SEGINT_WIDTH == 16
#define VIDEO_BLOCK video_block_avx512
using vf = __m512;
inline vf vload(const float* p) { return _mm512_loadu_ps(p); }
inline vf vloada(const float* p) { return _mm512_load_ps(p); }
inline void vstore(float* p, vf v) { _mm512_storeu_ps(p, v); }
inline void vstorea(float* p, vf v) { _mm512_store_ps(p, v); }
inline vf vset1(float a) { return _mm512_set1_ps(a); }
inline vf vzero() { return _mm512_setzero_ps(); }
inline vf vmul(vf a, vf b) { return _mm512_mul_ps(a, b); }
inline vf vdiv(vf a, vf b) { return _mm512_div_ps(a, b); }
inline vf vfmadd(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
inline vf vfnmadd(vf a, vf b, vf c) { return _mm512_fnmadd_ps(a, b, c); }
inline vf vround(vf a) {
  return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
inline vf vscale2(vf p, vf n) { return _mm512_scalef_ps(p, n); }  // p * 2^n
inline vf vclamp_exp(vf x) { return x; }  // scalef covers the whole range
#elif SEGINT_WIDTH == 8
#define VIDEO_BLOCK video_block_avx2
using vf = __m256;
inline vf vload(const float* p) { return _mm256_loadu_ps(p); }
inline vf vloada(const float* p) { return _mm256_load_ps(p); }
inline void vstore(float* p, vf v) { _mm256_storeu_ps(p, v); }
inline void vstorea(float* p, vf v) { _mm256_store_ps(p, v); }
inline vf vset1(float a) { return _mm256_set1_ps(a); }
inline vf vzero() { return _mm256_setzero_ps(); }
inline vf vmul(vf a, vf b) { return _mm256_mul_ps(a, b); }
inline vf vdiv(vf a, vf b) { return _mm256_div_ps(a, b); }
inline vf vfmadd(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
inline vf vfnmadd(vf a, vf b, vf c) { return _mm256_fnmadd_ps(a, b, c); }
inline vf vround(vf a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
// p * 2^n through the exponent bits: n in [-126, 127] (vclamp_exp keeps it there)
inline vf vscale2(vf p, vf n) {
  const __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
inline vf vclamp_exp(vf x) {
  return _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(87.f)), _mm256_set1_ps(-87.f));
}
#else
#error "SEGINT_WIDTH must be 16 (AVX-512F) or 8 (AVX2 + FMA)"
#endif

constexpr int VL = SEGINT_WIDTH;  // floats per vector
// slots rounded up to whole 16-float vectors: every row of qt starts 64-byte aligned
constexpr int TP = (TMAX + 15) / 16 * 16;

inline vf vexp(vf x) {
  x = vclamp_exp(x);
  const vf n = vround(vmul(x, vset1(1.44269504088896341f)));
  vf r = vfnmadd(n, vset1(0.693359375f), x);
  r = vfnmadd(n, vset1(-2.12194440e-4f), r);
  vf p = vset1(1.f / 720);
  p = vfmadd(p, r, vset1(1.f / 120));
  p = vfmadd(p, r, vset1(1.f / 24));
  p = vfmadd(p, r, vset1(1.f / 6));
  p = vfmadd(p, r, vset1(0.5f));
  p = vfmadd(p, r, vset1(1.f));
  p = vfmadd(p, r, vset1(1.f));
  return vscale2(p, n);
}

// out[t][0:O] = b + sum_k x[t * ldx + k * LDK] * wt[k][0:O]   (wt: K x O, row-major,
// O % VL == 0; LDK = 1: x row-major, LDK = TP: x transposed, a column per row t). Two rows per
// pass while their accumulators fit in 12 registers (all of AVX-512's shapes), else one.
template <int K, int O, int LDK = 1>
inline void gemm_rows(const float* __restrict x, int rows, int ldx, const float* __restrict wt,
                      const float* __restrict b, float* __restrict out, int ldo) {
  constexpr int V = O / VL;
  static_assert(O % VL == 0, "output width must be whole vectors");
  int t = 0;
  if constexpr (2 * V <= 12) {
    for (; t + 1 < rows; t += 2) {
      vf a0[V], a1[V];
      for (int o = 0; o < V; ++o) a0[o] = a1[o] = vload(b + VL * o);
      const float* x0 = x + t * ldx;
      const float* x1 = x0 + ldx;
      for (int k = 0; k < K; ++k) {
        const vf u0 = vset1(x0[k * LDK]), u1 = vset1(x1[k * LDK]);
        const float* w = wt + k * O;
        for (int o = 0; o < V; ++o) {
          const vf wv = vload(w + VL * o);
          a0[o] = vfmadd(u0, wv, a0[o]);
          a1[o] = vfmadd(u1, wv, a1[o]);
        }
      }
      for (int o = 0; o < V; ++o) {
        vstore(out + t * ldo + VL * o, a0[o]);
        vstore(out + (t + 1) * ldo + VL * o, a1[o]);
      }
    }
  }
  for (; t < rows; ++t) {
    vf a0[V];
    for (int o = 0; o < V; ++o) a0[o] = vload(b + VL * o);
    const float* x0 = x + t * ldx;
    for (int k = 0; k < K; ++k) {
      const vf u0 = vset1(x0[k * LDK]);
      for (int o = 0; o < V; ++o) a0[o] = vfmadd(u0, vload(wt + k * O + VL * o), a0[o]);
    }
    for (int o = 0; o < V; ++o) vstore(out + t * ldo + VL * o, a0[o]);
  }
}

inline void layer_norm(float* __restrict x, const float* __restrict g,
                              const float* __restrict b) {
  float mean = 0.f;
  for (int i = 0; i < D; ++i) mean += x[i];
  mean *= 1.f / D;
  float var = 0.f;
  for (int i = 0; i < D; ++i) { const float c = x[i] - mean; var += c * c; }
  const float inv = 1.f / std::sqrt(var * (1.f / D) + 1e-5f);
  for (int i = 0; i < D; ++i) x[i] = (x[i] - mean) * inv * g[i] + b[i];
}

struct Weights {
  const float *wqk_t, *bqk;  // (32, 96), (96): [q_video * scale, q_user * scale, k_video]
  const float *wv1_t, *bv1;  // (32, 48), (48): per head [v, 1], padded to 48
  const float *wo_t, *bo;    // (32, 32)
  const float *g1, *be1;
  const float *w1_t, *b1;    // (32, 64)
  const float *w2_t, *b2;    // (64, 32)
  const float *g2, *be2;
};

}  // namespace

// video_block_avx512 / video_block_avx2 (video_block.h)
extern "C" void VIDEO_BLOCK(int C, int T, int M, const float* x, const int64_t* nkeys, const float* uk,
                 const float* uv1, const float* const* w, float* out) {
  const Weights W{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11],
                  w[12], w[13]};  // kernel_weights' 14 arrays
  alignas(64) float qk[TMAX * 96];
  alignas(64) float v1[TMAX * V1P];
  alignas(64) float qt[2][H][DH][TP];  // queries per source and head, transposed
  alignas(64) float ukt[H][MMAX][DH];          // user keys, row per key
  alignas(64) float uvr[H][MMAX][DH + 1];      // user counted values, row per key
  alignas(64) float yt[D][TP];  // the attention's output, transposed: a row per feature
  alignas(64) float x1[TMAX * D];
  alignas(64) float f1[TMAX * F];
  alignas(64) float sc[TMAX + MMAX][VL];       // one query block's logits, then exp
  for (int h = 0; h < H; ++h)
    for (int m = 0; m < M; ++m) {
      for (int k = 0; k < DH; ++k) ukt[h][m][k] = uk[(h * DH + k) * M + m];
      for (int k = 0; k <= DH; ++k) uvr[h][m][k] = uv1[(h * (DH + 1) + k) * M + m];
    }
  for (int c = 0; c < C; ++c) {
    const float* xc = x + (int64_t)c * T * D;
    float* oc = out + (int64_t)c * T * D;
    const int nk = (int)nkeys[c];
    // Rows computed: the nk key slots and the completion slot nk. A later row is neither a key
    // nor an outcome (the decoder masks its logit), so it costs nothing and comes out zero.
    const int tr = nk + 1 < T ? nk + 1 : T;
    const int tp = (tr + VL - 1) / VL * VL;
    gemm_rows<D, 96>(xc, tr, D, W.wqk_t, W.bqk, qk, 96);
    gemm_rows<D, V1P>(xc, nk, D, W.wv1_t, W.bv1, v1, V1P);
    for (int h = 0; h < H; ++h)
      for (int k = 0; k < DH; ++k) {
        for (int t = 0; t < tr; ++t) {
          qt[0][h][k][t] = qk[t * 96 + h * DH + k];
          qt[1][h][k][t] = qk[t * 96 + 32 + h * DH + k];
        }
        for (int t = tr; t < tp; ++t) qt[0][h][k][t] = qt[1][h][k][t] = 0.f;
      }
    for (int h = 0; h < H; ++h)
      for (int t0 = 0; t0 < tp; t0 += VL) {
        {
          vf q[DH], qu[DH];
          for (int k = 0; k < DH; ++k) {
            q[k] = vloada(&qt[0][h][k][t0]);
            qu[k] = vloada(&qt[1][h][k][t0]);
          }
          for (int j = 0; j < nk; ++j) {  // the video's own keys
            const float* kj = qk + j * 96 + 64 + h * DH;
            vf acc = vmul(vset1(kj[0]), q[0]);
            for (int k = 1; k < DH; ++k) acc = vfmadd(vset1(kj[k]), q[k], acc);
            vstorea(sc[j], acc);
          }
          for (int m = 0; m < M; ++m) {  // the user's keys
            const float* kj = ukt[h][m];
            vf acc = vmul(vset1(kj[0]), qu[0]);
            for (int k = 1; k < DH; ++k) acc = vfmadd(vset1(kj[k]), qu[k], acc);
            vstorea(sc[nk + m], acc);
          }
        }
        for (int j = 0; j < nk + M; ++j) vstorea(sc[j], vexp(vloada(sc[j])));
        vf nm[DH + 1];
        for (int k = 0; k <= DH; ++k) nm[k] = vzero();
        for (int j = 0; j < nk; ++j) {
          const float* vj = v1 + j * V1P + h * (DH + 1);
          const vf ej = vloada(sc[j]);
          for (int k = 0; k <= DH; ++k) nm[k] = vfmadd(ej, vset1(vj[k]), nm[k]);
        }
        for (int m = 0; m < M; ++m) {
          const float* vj = uvr[h][m];
          const vf ej = vloada(sc[nk + m]);
          for (int k = 0; k <= DH; ++k) nm[k] = vfmadd(ej, vset1(vj[k]), nm[k]);
        }
        const vf inv = vdiv(vset1(1.f), nm[DH]);  // the softmax's sums, VL queries at once
        for (int k = 0; k < DH; ++k) vstorea(&yt[h * DH + k][t0], vmul(nm[k], inv));
      }
    gemm_rows<D, D, TP>(&yt[0][0], tr, 1, W.wo_t, W.bo, x1, D);
    for (int t = 0; t < tr; ++t) {
      float* r = x1 + t * D;
      for (int i = 0; i < D; ++i) r[i] += xc[t * D + i];
      layer_norm(r, W.g1, W.be1);
    }
    gemm_rows<D, F>(x1, tr, D, W.w1_t, W.b1, f1, F);
    for (int i = 0; i < tr * F; ++i)
      f1[i] = 0.5f * f1[i] * (1.f + std::erf(f1[i] * 0.70710678118654752f));
    gemm_rows<F, D>(f1, tr, F, W.w2_t, W.b2, oc, D);
    for (int t = 0; t < tr; ++t) {
      float* r = oc + t * D;
      for (int i = 0; i < D; ++i) r[i] += x1[t * D + i];
      layer_norm(r, W.g2, W.be2);
    }
    std::memset(oc + tr * D, 0, sizeof(float) * (size_t)(T - tr) * D);
  }
}
