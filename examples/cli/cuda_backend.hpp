#pragma once
// The GPU model behind `gecko stream --device cuda` and `gecko logits --device cuda`, behind an
// interface without CUDA types, so that the rest of the tool compiles with the host compiler.
// Defined in cuda_backend.cu, which is built only when the project finds CUDA; the tool then
// defines GECKO_CLI_CUDA.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "gecko/core/tensor.hpp"
#include "gecko/model/config.hpp"
#include "gecko/model/model.hpp"
#include "gecko/model/state.hpp"

namespace gecko::cli {

// A Gecko model computing in float32 on the current CUDA device, with one streaming state.
class CudaModel {
 public:
  // Throw gecko::Error ("no CUDA device: ...") when no CUDA device is usable.
  static std::unique_ptr<CudaModel> create(const model::Config& config, const model::ModelParams<float>& params,
                                           std::int64_t bos_id);
  static std::unique_ptr<CudaModel> load(const std::filesystem::path& checkpoint);
  virtual ~CudaModel() = default;

  virtual const model::Config& config() const = 0;
  virtual std::int64_t bos_id() const = 0;
  virtual void set_bos_id(std::int64_t id) = 0;

  // One piece of the stream (the rules of model::Model::forward); its logits stay on the device.
  virtual void forward(const Tensor<std::int64_t>& tokens, bool multi_segments) = 0;
  // Any number of tokens from the current position (as model::Model::feed); their logits.
  virtual Tensor<float> feed(const Tensor<std::int64_t>& tokens, bool multi_segments) = 0;
  // The last forward's logits (B, L, V), copied to the host.
  virtual Tensor<float> logits() = 0;
  // Waits for the work queued so far.
  virtual void synchronize() = 0;

  // The streaming state, copied to the host in the CPU model's form.
  virtual model::ModelState<float> state() = 0;
  // Device bytes the streaming state holds.
  virtual std::int64_t state_bytes() const = 0;
  // The device's name, and the bytes in use on it (cudaMemGetInfo: total − free).
  virtual std::string device_name() const = 0;
  virtual std::int64_t device_memory_used() const = 0;
};

}  // namespace gecko::cli
