// One video block of the scorer (`export.fused.FusedVideoBlock`, deferred softmax) as a single
// pass per candidate: the kernel of the ONNX Runtime custom operator segint.VideoBlock
// (custom_op.cpp; export.kernel writes the scorer that uses it, service.kernels builds it).
//
// Dimensions fixed at compile time: D = 32, H = 4, DH = 8, F = 64 (the base model). Queries are
// vectorised 16 at a time (one zmm per head dimension), keys are exact (the candidate's valid
// video keys, then the user's), exp is inline (degree-6 polynomial), GELU's erf is glibc's
// vector erff (libmvec).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <immintrin.h>


// exp for |x| < 87: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], degree-6 Taylor (rel. error
// < 2e-7 there); inline, so no call spills the attention's accumulators.
static inline __m512 exp16(__m512 x) {
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return _mm512_scalef_ps(p, n);
}

constexpr int D = 32, H = 4, DH = 8, F = 64, V1W = H * (DH + 1);  // 36
constexpr int V1P = 48;                                            // 36 padded to 3 x 16
constexpr int TMAX = 40, MMAX = 64;

// out[t][0:O] = b + sum_k x[t][k] * wt[k][0:O]   (wt: K x O, row-major, O % 16 == 0)
template <int K, int O>
static inline void gemm_rows(const float* __restrict x, int rows, int ldx,
                             const float* __restrict wt, const float* __restrict b,
                             float* __restrict out, int ldo) {
  constexpr int V = O / 16;
  int t = 0;
  for (; t + 1 < rows; t += 2) {
    __m512 a0[V], a1[V];
    for (int o = 0; o < V; ++o) a0[o] = a1[o] = _mm512_loadu_ps(b + 16 * o);
    const float* x0 = x + t * ldx;
    const float* x1 = x0 + ldx;
    for (int k = 0; k < K; ++k) {
      const __m512 u0 = _mm512_set1_ps(x0[k]), u1 = _mm512_set1_ps(x1[k]);
      const float* w = wt + k * O;
      for (int o = 0; o < V; ++o) {
        const __m512 wv = _mm512_loadu_ps(w + 16 * o);
        a0[o] = _mm512_fmadd_ps(u0, wv, a0[o]);
        a1[o] = _mm512_fmadd_ps(u1, wv, a1[o]);
      }
    }
    for (int o = 0; o < V; ++o) {
      _mm512_storeu_ps(out + t * ldo + 16 * o, a0[o]);
      _mm512_storeu_ps(out + (t + 1) * ldo + 16 * o, a1[o]);
    }
  }
  for (; t < rows; ++t) {
    __m512 a0[V];
    for (int o = 0; o < V; ++o) a0[o] = _mm512_loadu_ps(b + 16 * o);
    const float* x0 = x + t * ldx;
    for (int k = 0; k < K; ++k) {
      const __m512 u0 = _mm512_set1_ps(x0[k]);
      for (int o = 0; o < V; ++o)
        a0[o] = _mm512_fmadd_ps(u0, _mm512_loadu_ps(wt + k * O + 16 * o), a0[o]);
    }
    for (int o = 0; o < V; ++o) _mm512_storeu_ps(out + t * ldo + 16 * o, a0[o]);
  }
}

static inline void layer_norm(float* __restrict x, const float* __restrict g,
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

extern "C" {
// x (C, T, D) -> out (C, T, D). nkeys[c]: the candidate's valid video keys (a prefix of its T
// slots). uk (H, DH, M): user keys; uv1 (H, DH + 1, M): counted user values, transposed.
void video_block(int C, int T, int M, const float* x, const int64_t* nkeys, const float* uk,
                 const float* uv1, const float* const* w, float* out) {
  const Weights W{w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8], w[9], w[10], w[11],
                  w[12], w[13]};  // kernel_weights' 14 arrays
  alignas(64) float qk[TMAX * 96];
  alignas(64) float v1[TMAX * V1P];
  alignas(64) float qt[2][H][DH][TMAX + 16];  // queries per source and head, transposed
  alignas(64) float ukt[H][MMAX][DH];          // user keys, row per key
  alignas(64) float uvr[H][MMAX][DH + 1];      // user counted values, row per key
  alignas(64) float y[(TMAX + 16) * D];
  alignas(64) float x1[TMAX * D];
  alignas(64) float f1[TMAX * F];
  alignas(64) float sc[TMAX + MMAX][16];       // one query block's logits, then exp
  for (int h = 0; h < H; ++h)
    for (int m = 0; m < M; ++m) {
      for (int k = 0; k < DH; ++k) ukt[h][m][k] = uk[(h * DH + k) * M + m];
      for (int k = 0; k <= DH; ++k) uvr[h][m][k] = uv1[(h * (DH + 1) + k) * M + m];
    }
  for (int c = 0; c < C; ++c) {
    const float* xc = x + (int64_t)c * T * D;
    float* oc = out + (int64_t)c * T * D;
    const int nk = (int)nkeys[c];
    const int tp = (T + 15) & ~15;
    gemm_rows<D, 96>(xc, T, D, W.wqk_t, W.bqk, qk, 96);
    gemm_rows<D, V1P>(xc, nk, D, W.wv1_t, W.bv1, v1, V1P);
    for (int h = 0; h < H; ++h)
      for (int k = 0; k < DH; ++k) {
        for (int t = 0; t < T; ++t) {
          qt[0][h][k][t] = qk[t * 96 + h * DH + k];
          qt[1][h][k][t] = qk[t * 96 + 32 + h * DH + k];
        }
        for (int t = T; t < tp; ++t) qt[0][h][k][t] = qt[1][h][k][t] = 0.f;
      }
    for (int h = 0; h < H; ++h)
      for (int t0 = 0; t0 < tp; t0 += 16) {
        {
          __m512 q[DH], qu[DH];
          for (int k = 0; k < DH; ++k) {
            q[k] = _mm512_load_ps(&qt[0][h][k][t0]);
            qu[k] = _mm512_load_ps(&qt[1][h][k][t0]);
          }
          for (int j = 0; j < nk; ++j) {  // the video's own keys
            const float* kj = qk + j * 96 + 64 + h * DH;
            __m512 acc = _mm512_mul_ps(_mm512_set1_ps(kj[0]), q[0]);
            for (int k = 1; k < DH; ++k) acc = _mm512_fmadd_ps(_mm512_set1_ps(kj[k]), q[k], acc);
            _mm512_store_ps(sc[j], acc);
          }
          for (int m = 0; m < M; ++m) {  // the user's keys
            const float* kj = ukt[h][m];
            __m512 acc = _mm512_mul_ps(_mm512_set1_ps(kj[0]), qu[0]);
            for (int k = 1; k < DH; ++k) acc = _mm512_fmadd_ps(_mm512_set1_ps(kj[k]), qu[k], acc);
            _mm512_store_ps(sc[nk + m], acc);
          }
        }
          for (int j = 0; j < nk + M; ++j) _mm512_store_ps(sc[j], exp16(_mm512_load_ps(sc[j])));
        __m512 nm[DH + 1];
        for (int k = 0; k <= DH; ++k) nm[k] = _mm512_setzero_ps();
        for (int j = 0; j < nk; ++j) {
          const float* vj = v1 + j * V1P + h * (DH + 1);
          const __m512 ej = _mm512_load_ps(sc[j]);
          for (int k = 0; k <= DH; ++k) nm[k] = _mm512_fmadd_ps(ej, _mm512_set1_ps(vj[k]), nm[k]);
        }
        for (int m = 0; m < M; ++m) {
          const float* vj = uvr[h][m];
          const __m512 ej = _mm512_load_ps(sc[nk + m]);
          for (int k = 0; k <= DH; ++k) nm[k] = _mm512_fmadd_ps(ej, _mm512_set1_ps(vj[k]), nm[k]);
        }
        alignas(64) float num[DH + 1][16];
        for (int k = 0; k <= DH; ++k) _mm512_store_ps(num[k], nm[k]);
        for (int i = 0; i < 16; ++i) {
          const float inv = 1.f / num[DH][i];
          for (int k = 0; k < DH; ++k) y[(t0 + i) * D + h * DH + k] = num[k][i] * inv;
        }
      }
    gemm_rows<D, D>(y, T, D, W.wo_t, W.bo, x1, D);
    for (int t = 0; t < T; ++t) {
      float* r = x1 + t * D;
      for (int i = 0; i < D; ++i) r[i] += xc[t * D + i];
      layer_norm(r, W.g1, W.be1);
    }
    gemm_rows<D, F>(x1, T, D, W.w1_t, W.b1, f1, F);
    for (int i = 0; i < T * F; ++i)
      f1[i] = 0.5f * f1[i] * (1.f + std::erf(f1[i] * 0.70710678118654752f));
    gemm_rows<F, D>(f1, T, F, W.w2_t, W.b2, oc, D);
    for (int t = 0; t < T; ++t) {
      float* r = oc + t * D;
      for (int i = 0; i < D; ++i) r[i] += x1[t * D + i];
      layer_norm(r, W.g2, W.be2);
    }
  }
}
}
