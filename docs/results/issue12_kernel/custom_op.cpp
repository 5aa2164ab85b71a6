// Measurement prototype (issue 12, round 11): video_block.cpp as an ONNX Runtime custom
// operator, segint.VideoBlock, built against ONNX Runtime's C/C++ API headers of Debian's
// libonnxruntime-dev (API version 21; a newer runtime serves older API versions) and loaded with
// SessionOptions.register_custom_ops_library. Inputs: x (C, T, 32), nkeys (C,) int64, user keys
// (4, 8, M), user counted values transposed (4, 9, M), weights (flat, kernel_weights' 14 arrays
// in order); output (C, T, 32).
#define ORT_API_MANUAL_INIT
#include "onnxruntime_cxx_api.h"
#undef ORT_API_MANUAL_INIT
#include "onnxruntime_lite_custom_op.h"

#include <memory>

#include "video_block.cpp"

namespace {

// the 14 arrays' sizes, in kernel_weights' order
constexpr int64_t kSizes[14] = {32 * 96, 96, 32 * 48, 48, 32 * 32, 32, 32, 32,
                                32 * 64, 64, 64 * 32, 32, 32, 32};

void compute(const Ort::Custom::Tensor<float>& x, const Ort::Custom::Tensor<int64_t>& nkeys,
             const Ort::Custom::Tensor<float>& uk, const Ort::Custom::Tensor<float>& uv1t,
             const Ort::Custom::Tensor<float>& weights, Ort::Custom::Tensor<float>& out) {
  const auto shape = x.Shape();  // (C, T, 32)
  const auto ushape = uk.Shape();  // (4, 8, M)
  const float* w = weights.Data();
  const float* parts[14];
  for (int i = 0; i < 14; ++i) { parts[i] = w; w += kSizes[i]; }
  float* y = out.Allocate(shape);
  video_block((int)shape[0], (int)shape[1], (int)ushape[2], x.Data(), nkeys.Data(), uk.Data(),
              uv1t.Data(), parts, y);
}

}  // namespace

extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                     const OrtApiBase* api) {
  Ort::InitApi(api->GetApi(ORT_API_VERSION));
  static Ort::CustomOpDomain domain{"segint"};
  static std::unique_ptr<Ort::Custom::OrtLiteCustomOp> op{
      Ort::Custom::CreateLiteCustomOp("VideoBlock", "CPUExecutionProvider", compute)};
  domain.Add(op.get());
  Ort::UnownedSessionOptions(options).Add(domain);
  return nullptr;
}
