// Shapes and entry points of the video-block kernel (video_block.cpp, compiled once per
// instruction set; custom_op.cpp picks one at registration).
#pragma once
#include <cstdint>

constexpr int D = 32, H = 4, DH = 8, F = 64, V1W = H * (DH + 1);  // 36
constexpr int V1P = 48;                                            // 36 padded to 3 x 16
constexpr int TMAX = 40, MMAX = 64;

// x (C, T, D) -> out (C, T, D). nkeys[c]: the candidate's valid video keys (a prefix of its T
// slots). uk (H, DH, M): user keys; uv1 (H, DH + 1, M): counted user values, transposed. w: the
// block's 14 weight arrays (export.kernel.KERNEL_LAYOUT).
using VideoBlockFn = void (*)(int C, int T, int M, const float* x, const int64_t* nkeys,
                              const float* uk, const float* uv1, const float* const* w,
                              float* out);

extern "C" {
void video_block_avx512(int C, int T, int M, const float* x, const int64_t* nkeys,
                        const float* uk, const float* uv1, const float* const* w, float* out);
void video_block_avx2(int C, int T, int M, const float* x, const int64_t* nkeys,
                      const float* uk, const float* uv1, const float* const* w, float* out);
}
