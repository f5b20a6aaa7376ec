// The GPU side of the gecko tool (cuda_backend.hpp): cuda::Model<Gecko, float> and its state.
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "cuda_backend.hpp"
#include "gecko/cuda.cuh"
#include "gecko/cuda/model.cuh"
#include "gecko/policy/presets.hpp"

namespace gecko::cli {

namespace {

using GpuModel = cuda::Model<policy::Gecko, float>;

// Throws unless a CUDA device is usable. Lets the stream-ordered allocator keep what it has
// reserved (the attention and memory kernels take scratch from it on every call): by default it
// hands memory back at every synchronisation and maps it again on the next call.
void prepare_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) fail("no CUDA device: ", cudaGetErrorString(status));
  if (count == 0) fail("no CUDA device: the CUDA runtime reports 0 devices");
  int device = 0;
  cuda::check(cudaGetDevice(&device), "cudaGetDevice");
  cudaMemPool_t pool = nullptr;
  cuda::check(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  std::uint64_t keep = std::numeric_limits<std::uint64_t>::max();
  cuda::check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep),
              "setting the memory pool's release threshold");
}

class Backend final : public CudaModel {
 public:
  explicit Backend(GpuModel&& model) : model_(std::move(model)) {}

  const model::Config& config() const override { return model_.config(); }
  std::int64_t bos_id() const override { return model_.bos_id(); }
  void set_bos_id(std::int64_t id) override { model_.set_bos_id(id); }

  void forward(const Tensor<std::int64_t>& tokens, bool multi_segments) override {
    require(!tokens.empty() && tokens.rank() == 2, "forward: tokens must have shape (B, L), got ",
            tokens.shape().str());
    const Shape shape{tokens.dim(0), tokens.dim(1), model_.config().output_dim()};
    // Growing the buffer drops the previous piece's logits, and a refused piece writes none.
    last_ = Shape{};
    const TensorView<float> logits = logits_.take(shape, false, model_.stream());
    model_.forward(tokens, state_, multi_segments, logits);
    last_ = shape;
  }

  Tensor<float> feed(const Tensor<std::int64_t>& tokens, bool multi_segments) override {
    return model_.feed(tokens, state_, multi_segments).to_host(model_.stream());
  }

  Tensor<float> logits() override {
    require(last_.rank == 3, "logits: no piece has run yet, or the last one was refused");
    const TensorView<float> view = logits_.take(last_, false, model_.stream());
    Tensor<float> host(last_);
    cuda::check(cudaMemcpyAsync(host.data(), view.data, std::size_t(host.size()) * sizeof(float),
                                cudaMemcpyDeviceToHost, model_.stream()),
                "copying the logits to the host");
    synchronize();
    return host;
  }

  void synchronize() override { cuda::check(cudaStreamSynchronize(model_.stream()), "synchronising the GPU"); }

  model::ModelState<float> state() override { return state_.to_host(model_.stream()); }
  std::int64_t state_bytes() const override { return state_.bytes(); }

  std::string device_name() const override {
    int device = 0;
    cuda::check(cudaGetDevice(&device), "cudaGetDevice");
    cudaDeviceProp props{};
    cuda::check(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
    return props.name;
  }

  std::int64_t device_memory_used() const override {
    std::size_t free = 0, total = 0;
    cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    return std::int64_t(total - free);
  }

 private:
  GpuModel model_;
  cuda::ModelState<float> state_;
  cuda::DeviceArray<float> logits_;  // the last piece's logits; grows to the largest piece
  Shape last_;
};

}  // namespace

std::unique_ptr<CudaModel> CudaModel::create(const model::Config& config, const model::ModelParams<float>& params,
                                             std::int64_t bos_id) {
  prepare_device();
  return std::make_unique<Backend>(GpuModel(config, params, bos_id));
}

std::unique_ptr<CudaModel> CudaModel::load(const std::filesystem::path& checkpoint) {
  prepare_device();
  return std::make_unique<Backend>(cuda::load_model<policy::Gecko, float>(checkpoint));
}

}  // namespace gecko::cli
