#pragma once
// DeviceBuffer<T>: an owning, contiguous, row-major tensor in device memory (RAII over
// cudaMalloc/cudaFree), the device counterpart of Tensor<T>. Uploads are stream-ordered;
// to_host() is where the stream is synchronised, as that is where results are needed.

#include <cuda_runtime.h>

#include <cstdint>
#include <utility>

#include "gecko/core/tensor.hpp"
#include "gecko/cuda/check.cuh"

namespace gecko::cuda {

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(const Shape& shape) : shape_(shape) {
    if (bytes() > 0)
      check(cudaMalloc(reinterpret_cast<void**>(&data_), bytes()),
            "DeviceBuffer: cudaMalloc of shape " + shape.str());
  }
  // A device copy of `host`.
  explicit DeviceBuffer(const Tensor<T>& host, cudaStream_t stream = nullptr)
      : DeviceBuffer(host.shape()) {
    copy_from(host, stream);
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept
      : shape_(o.shape_), data_(std::exchange(o.data_, nullptr)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(shape_, o.shape_);
    std::swap(data_, o.data_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (data_) cudaFree(data_);  // no throwing from a destructor; a failure here is a prior error
  }

  const Shape& shape() const { return shape_; }
  std::int64_t size() const { return data_ ? shape_.numel() : 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  TensorView<T> view() { return {data_, shape_, Space::Device}; }
  TensorView<const T> view() const { return {data_, shape_, Space::Device}; }

  // Host -> device on `stream`. The host tensor may be reused on return: a pageable source is
  // staged before cudaMemcpyAsync returns.
  void copy_from(const Tensor<T>& host, cudaStream_t stream = nullptr) {
    check_shape("DeviceBuffer::copy_from", "host tensor", host.shape(), shape_);
    if (bytes() > 0)
      check(cudaMemcpyAsync(data_, host.data(), bytes(), cudaMemcpyHostToDevice, stream),
            "DeviceBuffer::copy_from");
  }

  // Device -> host after the work queued on `stream`; synchronises the stream, so errors of
  // earlier kernels on it are reported here.
  Tensor<T> to_host(cudaStream_t stream = nullptr) const {
    Tensor<T> host(shape_);
    if (bytes() > 0)
      check(cudaMemcpyAsync(host.data(), data_, bytes(), cudaMemcpyDeviceToHost, stream),
            "DeviceBuffer::to_host");
    check(cudaStreamSynchronize(stream), "DeviceBuffer::to_host: synchronising the stream");
    return host;
  }

 private:
  std::size_t bytes() const { return std::size_t(shape_.numel()) * sizeof(T); }

  Shape shape_;
  T* data_ = nullptr;
};

}  // namespace gecko::cuda
