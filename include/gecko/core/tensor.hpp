#pragma once
// TensorView: a non-owning (pointer, shape, strides, memory space) window, valid on host and
// device. Tensor<T>: an owning, contiguous, row-major host tensor — the currency of the CPU path.
// Device-owning buffers live in cuda/device_buffer.cuh so this header never needs the CUDA runtime.

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <type_traits>

#include "gecko/core/dtype.hpp"
#include "gecko/core/shape.hpp"

namespace gecko {

enum class Space : std::uint8_t { Host, Device };

template <class T>
struct TensorView {
  T* data = nullptr;
  Shape shape;
  Shape strides;
  Space space = Space::Host;

  TensorView() = default;
  TensorView(T* d, const Shape& s, Space sp = Space::Host)
      : data(d), shape(s), strides(contiguous_strides(s)), space(sp) {}
  TensorView(T* d, const Shape& s, const Shape& st, Space sp)
      : data(d), shape(s), strides(st), space(sp) {}
  operator TensorView<const T>() const
    requires(!std::is_const_v<T>)
  {
    return {data, shape, strides, space};
  }

  GECKO_HOST_DEVICE std::int64_t numel() const { return shape.numel(); }
  GECKO_HOST_DEVICE int rank() const { return shape.rank; }
  bool is_contiguous() const { return strides == contiguous_strides(shape); }
};

template <class T>
class Tensor {
 public:
  Tensor() = default;
  // Zero-filled.
  explicit Tensor(const Shape& shape) : shape_(shape), data_(new T[std::size_t(shape.numel())]()) {}
  Tensor(const Shape& shape, T fill) : Tensor(shape, Uninitialized{}) {
    std::fill_n(data_.get(), size(), fill);
  }
  // Elements left unset, for an output the caller overwrites in full: the zero fill of the
  // ordinary constructor would be a wasted pass over memory.
  static Tensor uninitialized(const Shape& shape) { return Tensor(shape, Uninitialized{}); }
  Tensor(const Tensor& o) : shape_(o.shape_) {
    if (o.empty()) return;  // an absent tensor stays absent (a rank-0 shape would hold one element)
    data_ = std::make_unique_for_overwrite<T[]>(std::size_t(shape_.numel()));
    std::copy_n(o.data(), o.size(), data());
  }
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(const Tensor& o) {
    if (this != &o) *this = Tensor(o);
    return *this;
  }
  Tensor& operator=(Tensor&&) noexcept = default;

  const Shape& shape() const { return shape_; }
  std::int64_t dim(int i) const { return shape_[i]; }
  int rank() const { return shape_.rank; }
  std::int64_t size() const { return data_ ? shape_.numel() : 0; }
  // A default-constructed tensor stands for an absent optional input or state.
  bool empty() const { return !data_; }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  std::span<T> span() { return {data(), std::size_t(size())}; }
  std::span<const T> span() const { return {data(), std::size_t(size())}; }
  T& operator[](std::int64_t i) { return data_[i]; }
  const T& operator[](std::int64_t i) const { return data_[i]; }

  template <class... I>
  T& operator()(I... idx) { return data_[offset(idx...)]; }
  template <class... I>
  const T& operator()(I... idx) const { return data_[offset(idx...)]; }

  TensorView<T> view() { return {data(), shape_}; }
  TensorView<const T> view() const { return {data(), shape_}; }

  // Same elements, new shape of equal size.
  Tensor reshaped(const Shape& s) && {
    require(s.numel() == shape_.numel(), "reshape: cannot view ", shape_.str(), " as ", s.str());
    shape_ = s;
    return std::move(*this);
  }
  Tensor reshaped(const Shape& s) const& { return Tensor(*this).reshaped(s); }

 private:
  struct Uninitialized {};
  Tensor(const Shape& shape, Uninitialized)
      : shape_(shape), data_(std::make_unique_for_overwrite<T[]>(std::size_t(shape.numel()))) {}

  template <class... I>
  std::int64_t offset(I... idx) const {
    const std::int64_t ix[] = {std::int64_t(idx)...};
    std::int64_t off = 0;
    for (int i = 0; i < int(sizeof...(I)); ++i) off = off * shape_[i] + ix[i];
    return off;
  }

  Shape shape_;
  std::unique_ptr<T[]> data_;
};

}  // namespace gecko
