#pragma once
// TensorView: a non-owning (pointer, shape, strides, memory space) window, valid on host and
// device. Tensor<T>: an owning, contiguous, row-major host tensor — the currency of the CPU path;
// its large blocks are recycled through a cache (detail::TensorStorage).
// Device-owning buffers live in cuda/device_buffer.cuh so this header never needs the CUDA runtime.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstring>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

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
  // A view of mutable elements converts to a view of const ones.
  template <class U>
    requires(std::is_same_v<const U, T> && !std::is_same_v<U, T>)
  TensorView(const TensorView<U>& o) : data(o.data), shape(o.shape), strides(o.strides), space(o.space) {}

  GECKO_HOST_DEVICE std::int64_t numel() const { return shape.numel(); }
  GECKO_HOST_DEVICE int rank() const { return shape.rank; }
  bool is_contiguous() const { return strides == contiguous_strides(shape); }
};

namespace detail {

// Host storage of Tensor, 64-byte aligned. A model calls the same ops on the same shapes again and
// again; with plain new/delete the allocator hands the pages of large freed blocks back to the
// system, and every call faults them in and clears them again (a third of a small Gecko block's
// forward). So blocks of kMinCached bytes or more go, when freed, to a process-wide cache (at
// most kMaxCached bytes) and serve the next request of their size class; smaller ones use
// new/delete directly.
class TensorStorage {
 public:
  static constexpr std::size_t kAlignment = 64;
  static constexpr std::size_t kMinCached = std::size_t(64) << 10;   // 64 KiB
  static constexpr std::size_t kMaxCached = std::size_t(256) << 20;  // 256 MiB
  static constexpr std::size_t kPage = 4096;

  // A block's size class and the offset of its data within its allocation.
  struct Extent {
    std::size_t capacity = 0, offset = 0;
  };

  // A block of at least `bytes`; `extent` receives what release() needs.
  static void* acquire(std::size_t bytes, Extent& extent) {
    extent = {size_class(bytes), 0};
    if (extent.capacity >= kMinCached) {
      TensorStorage& s = instance();
      const std::lock_guard lock(s.mutex_);
      // The most recently freed block of the class first: its lines are the likeliest in cache.
      for (auto it = s.free_.rbegin(); it != s.free_.rend(); ++it)
        if (it->extent.capacity == extent.capacity) {
          void* p = it->data;
          extent = it->extent;
          s.cached_ -= extent.capacity;
          s.free_.erase(std::next(it).base());
          return p;
        }
      // Large allocations all start at the same offset within a page, and a loop that reads some
      // tensors while writing others then keeps hitting false store-to-load aliasing (accesses
      // at equal page offsets): apply_rope ran 40% slower. New blocks are therefore staggered by
      // one cache line each, cycling through a page.
      extent.offset = kAlignment * (s.blocks_made_++ % (kPage / kAlignment));
    }
    return static_cast<char*>(::operator new(extent.capacity + extent.offset, std::align_val_t(kAlignment))) +
           extent.offset;
  }

  static void release(void* p, Extent extent) noexcept {
    if (extent.capacity >= kMinCached) {
      TensorStorage& s = instance();
      const std::lock_guard lock(s.mutex_);
      if (s.cached_ + extent.capacity <= kMaxCached && s.free_.size() < s.free_.capacity()) {
        s.free_.push_back({extent, p});
        s.cached_ += extent.capacity;
        return;
      }
    }
    ::operator delete(static_cast<char*>(p) - extent.offset, std::align_val_t(kAlignment));
  }

  // Bytes held by the cache.
  static std::size_t cached_bytes() {
    TensorStorage& s = instance();
    const std::lock_guard lock(s.mutex_);
    return s.cached_;
  }

 private:
  struct Cached {
    Extent extent;
    void* data;
  };

  TensorStorage() { free_.reserve(1024); }

  // Cached sizes are rounded up to 1/8 of the power of two below them (at most 12.5% unused),
  // so that slightly different shapes share blocks.
  static std::size_t size_class(std::size_t bytes) {
    if (bytes < kMinCached) return std::max<std::size_t>(bytes, 1);
    const std::size_t step = std::bit_floor(bytes) / 8;
    return (bytes + step - 1) / step * step;
  }

  // Never destroyed: a tensor with static storage duration may be freed after any destructor.
  static TensorStorage& instance() {
    static TensorStorage* storage = new TensorStorage;
    return *storage;
  }

  std::mutex mutex_;
  std::vector<Cached> free_;
  std::size_t cached_ = 0;
  std::size_t blocks_made_ = 0;
};

template <class T>
struct StorageRelease {
  TensorStorage::Extent extent;
  void operator()(T* p) const noexcept { TensorStorage::release(p, extent); }
};

}  // namespace detail

template <class T>
class Tensor {
  static_assert(std::is_trivially_destructible_v<T>, "Tensor holds trivially destructible values");

 public:
  Tensor() = default;
  // Zero-filled (value-initialised).
  explicit Tensor(const Shape& shape) : Tensor(shape, T{}) {}
  Tensor(const Shape& shape, T fill) : Tensor(shape, Uninitialized{}) {
    std::fill_n(data_.get(), size(), fill);
  }
  // Elements left unset, for an output the caller overwrites in full: the zero fill of the
  // ordinary constructor would be a wasted pass over memory.
  static Tensor uninitialized(const Shape& shape) { return Tensor(shape, Uninitialized{}); }
  Tensor(const Tensor& o) : shape_(o.shape_) {
    if (o.empty()) return;  // an absent tensor stays absent (a rank-0 shape would hold one element)
    *this = Tensor(shape_, Uninitialized{});
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
  Tensor(const Shape& shape, Uninitialized) : shape_(shape) {
    const std::size_t n = std::size_t(shape.numel());
    detail::TensorStorage::Extent extent;
    T* p = static_cast<T*>(detail::TensorStorage::acquire(n * sizeof(T), extent));
    std::uninitialized_default_construct_n(p, n);  // no-op for arithmetic types
    data_ = Storage(p, detail::StorageRelease<T>{extent});
  }

  using Storage = std::unique_ptr<T[], detail::StorageRelease<T>>;

  template <class... I>
  std::int64_t offset(I... idx) const {
    const std::int64_t ix[] = {std::int64_t(idx)...};
    std::int64_t off = 0;
    for (int i = 0; i < int(sizeof...(I)); ++i) off = off * shape_[i] + ix[i];
    return off;
  }

  Shape shape_;
  Storage data_;
};

}  // namespace gecko
