// The ONNX Runtime custom operator segint.VideoBlock: one video block of the scorer
// (video_block.cpp, built for AVX-512F and for AVX2 + FMA) per node. Built by `python -m service.kernels build` against ONNX Runtime's
// C/C++ API headers (API version 21: a newer runtime serves older API versions) and loaded with
// SessionOptions.register_custom_ops_library; export.kernel writes the graphs that use it.
//
// Inputs: x (C, T, 32) float; nkeys (C,) int64, each candidate's valid video keys (a prefix of
// its T slots); user keys (4, 8, M); the user's counted values, transposed (4, 9, M); the block's
// weights, flat (export.kernel.KERNEL_LAYOUT). Output: (C, T, 32); a candidate's rows past its
// nkeys + 1 (neither keys nor outcomes) are not computed and come out zero.
//
// Instruction set: the widest this CPU has (AVX-512F, else AVX2 + FMA), chosen when a session
// registers the library; SEGINT_KERNEL_ISA=avx512|avx2 asks for one (registration fails, with
// the reason, where the CPU lacks it). This file is compiled for baseline x86-64.
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "video_block.h"

namespace {

// sizes of the weight arrays, in export.kernel.KERNEL_LAYOUT's order
constexpr int64_t kSizes[14] = {D * 96, 96, D * V1P, V1P, D * D, D, D, D, D * F, F, F * D, D, D, D};

void require(bool ok, const std::string& what) {
  if (!ok) ORT_CXX_API_THROW("segint.VideoBlock: " + what, ORT_INVALID_ARGUMENT);
}

template <VideoBlockFn block>
void compute(const Ort::Custom::Tensor<float>& x, const Ort::Custom::Tensor<int64_t>& nkeys,
             const Ort::Custom::Tensor<float>& uk, const Ort::Custom::Tensor<float>& uv1t,
             const Ort::Custom::Tensor<float>& weights, Ort::Custom::Tensor<float>& out) {
  const auto xs = x.Shape(), ks = uk.Shape(), vs = uv1t.Shape(), ns = nkeys.Shape();
  require(xs.size() == 3 && xs[2] == D, "x must be (C, T, 32)");
  require(xs[1] >= 1 && xs[1] <= TMAX, "at most 40 slots per candidate");
  require(ns.size() == 1 && ns[0] == xs[0], "nkeys must be (C,)");
  require(ks.size() == 3 && ks[0] == H && ks[1] == DH, "user keys must be (4, 8, M)");
  require(ks[2] >= 1 && ks[2] <= MMAX, "at most 64 user tokens");
  require(vs.size() == 3 && vs[0] == H && vs[1] == DH + 1 && vs[2] == ks[2],
          "user values must be (4, 9, M)");
  int64_t total = 0;
  for (int64_t s : kSizes) total += s;
  require(weights.NumberOfElement() == total, "weights of another layout");
  const int64_t* n = nkeys.Data();
  for (int64_t c = 0; c < xs[0]; ++c) require(n[c] >= 1 && n[c] <= xs[1], "nkeys out of range");
  const float* w = weights.Data();
  const float* parts[14];
  for (int i = 0; i < 14; ++i) {
    parts[i] = w;
    w += kSizes[i];
  }
  float* y = out.Allocate(xs);
  block(static_cast<int>(xs[0]), static_cast<int>(xs[1]), static_cast<int>(ks[2]), x.Data(),
              n, uk.Data(), uv1t.Data(), parts, y);
}

// The kernel for SEGINT_KERNEL_ISA (unset or "auto": the widest this CPU runs), or nullptr with
// the reason in ``why``.
VideoBlockFn choose(std::string& why) {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const char* env = std::getenv("SEGINT_KERNEL_ISA");
  const std::string want = env == nullptr || *env == '\0' ? "auto" : env;
  if ((want == "auto" || want == "avx512") && avx512) return video_block_avx512;
  if ((want == "auto" || want == "avx2") && avx2) return video_block_avx2;
  if (want == "auto" || want == "avx512" || want == "avx2")
    why = "this CPU has no " + (want == "auto" ? std::string("AVX2 + FMA") : want);
  else
    why = "SEGINT_KERNEL_ISA=" + want + ", not one of auto, avx512, avx2";
  return nullptr;
}

}  // namespace

// Every session that registers the library gets its own domain; all of them live as long as
// the library (ONNX Runtime needs them for its sessions' lifetime).
extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                     const OrtApiBase* api) {
  static std::mutex lock;
  static std::vector<std::unique_ptr<Ort::CustomOpDomain>> domains;
  static std::vector<std::unique_ptr<Ort::Custom::OrtLiteCustomOp>> ops;
  std::lock_guard<std::mutex> guard(lock);
  Ort::InitApi(api->GetApi(ORT_API_VERSION));
  std::string why;
  const VideoBlockFn block = choose(why);
  if (block == nullptr)
    return Ort::GetApi().CreateStatus(ORT_FAIL, ("segint.VideoBlock: " + why).c_str());
  ops.emplace_back(Ort::Custom::CreateLiteCustomOp(
      "VideoBlock", "CPUExecutionProvider",
      block == video_block_avx512 ? compute<video_block_avx512> : compute<video_block_avx2>));
  domains.emplace_back(std::make_unique<Ort::CustomOpDomain>("segint"));
  domains.back()->Add(ops.back().get());
  Ort::UnownedSessionOptions(options).Add(*domains.back());
  return nullptr;
}
