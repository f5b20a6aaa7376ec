#pragma once
// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
// The reader memory-maps the file (or copies a memory buffer) and validates the whole header
// before any tensor is handed out: a bad file fails at open with a gecko::Error naming the file
// and the problem, and no later access can read outside the data section. The writer writes a
// temporary file beside the target and renames it, so no partial file is ever visible and an
// existing target is replaced only by a complete file.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "gecko/core/tensor.hpp"

namespace gecko::io {

inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

inline std::optional<DType> parse_dtype(std::string_view s) {
  for (DType t : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32,
                  DType::U8, DType::BOOL})
    if (dtype_name(t) == s) return t;
  return std::nullopt;
}

struct TensorInfo {
  DType dtype;
  Shape shape;
  std::uint64_t begin = 0, end = 0;  // byte offsets relative to the data section
};

class SafetensorsFile {
 public:
  explicit SafetensorsFile(std::filesystem::path path) : path_(std::move(path)) {
    map_file();
    parse_header();
  }

  // The same reader over a copy of `bytes`; `name` stands for the file in error messages.
  static SafetensorsFile from_memory(std::span<const std::byte> bytes,
                                     std::filesystem::path name = "<memory>") {
    return SafetensorsFile(std::move(name), bytes);
  }

  const std::filesystem::path& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }

  std::optional<std::string> meta(const std::string& key) const {
    auto it = metadata_.find(key);
    if (it == metadata_.end()) return std::nullopt;
    return it->second;
  }

  const TensorInfo& info(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) fail(path_.string(), ": no tensor named '", name, "'");
    return it->second;
  }

  // Raw bytes of a tensor inside the file image (valid while this object or a copy lives).
  std::span<const std::byte> bytes(const std::string& name) const {
    const TensorInfo& t = info(name);
    return {data_ + t.begin, std::size_t(t.end - t.begin)};
  }

  // The tensor with exactly dtype T (and shape `expected`, when given).
  template <class T>
  Tensor<T> get(const std::string& name, std::optional<Shape> expected = std::nullopt) const {
    const TensorInfo& t = info(name);
    if (t.dtype != dtype_v<T>)
      fail(path_.string(), ": tensor '", name, "' has dtype ", dtype_name(t.dtype), ", expected ",
           dtype_name(dtype_v<T>));
    check_expected(name, t, expected);
    Tensor<T> out(t.shape);
    const std::byte* src = data_ + t.begin;
    if constexpr (std::is_same_v<T, bool>) {
      // Any byte but 0 or 1 would be an invalid bool object, so it is refused, not copied.
      for (std::int64_t i = 0; i < out.size(); ++i) {
        const auto b = std::to_integer<unsigned>(src[i]);
        if (b > 1) fail(path_.string(), ": tensor '", name, "' (BOOL) holds byte ", b, " at element ", i);
        out[i] = b == 1;
      }
    } else if (out.size()) {
      std::memcpy(out.data(), src, std::size_t(t.end - t.begin));
    }
    return out;
  }

  // A floating-point tensor converted to T (F64/F32/F16/BF16 -> float or double).
  template <class T>
  Tensor<T> get_as(const std::string& name, std::optional<Shape> expected = std::nullopt) const {
    const TensorInfo& t = info(name);
    if (t.dtype == dtype_v<T>) return get<T>(name, expected);
    if (!is_floating(t.dtype) || !is_floating(dtype_v<T>))
      fail(path_.string(), ": tensor '", name, "' has dtype ", dtype_name(t.dtype),
           ", which does not convert to ", dtype_name(dtype_v<T>));
    check_expected(name, t, expected);
    Tensor<T> out(t.shape);
    const std::byte* src = data_ + t.begin;
    for (std::int64_t i = 0; i < out.size(); ++i) out[i] = T(load_as_double(t.dtype, src, i));
    return out;
  }

 private:
  // A valid header nests no deeper than root -> entry -> shape -> extent.
  static constexpr int kMaxJsonDepth = 3;

  SafetensorsFile(std::filesystem::path name, std::span<const std::byte> bytes)
      : path_(std::move(name)), size_(bytes.size()) {
    // An exactly sized copy: the object owns its image, as with a mapping.
    auto* copy = new std::byte[bytes.size()];
    if (!bytes.empty()) std::memcpy(copy, bytes.data(), bytes.size());
    image_ = std::shared_ptr<const std::byte>(copy, std::default_delete<const std::byte[]>());
    parse_header();
  }

  static double load_as_double(DType d, const std::byte* p, std::int64_t i) {
    switch (d) {
      case DType::F64: { double v; std::memcpy(&v, p + 8 * i, 8); return v; }
      case DType::F32: { float v; std::memcpy(&v, p + 4 * i, 4); return v; }
      case DType::F16: { std::uint16_t b; std::memcpy(&b, p + 2 * i, 2); return float(float16::from_bits(b)); }
      case DType::BF16: { std::uint16_t b; std::memcpy(&b, p + 2 * i, 2); return float(bfloat16::from_bits(b)); }
      default: fail("safetensors: dtype ", dtype_name(d), " is not floating point");
    }
  }

  void check_expected(const std::string& name, const TensorInfo& t,
                      const std::optional<Shape>& expected) const {
    if (expected && !(t.shape == *expected))
      fail(path_.string(), ": tensor '", name, "' has shape ", t.shape.str(), ", expected ",
           expected->str());
  }

  void map_file() {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      fail(path_.string(), ": cannot open: ", std::strerror(err));
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(path_.string(), ": not a regular file");
    }
    size_ = std::size_t(st.st_size);
    if (size_ == 0) {  // mmap refuses length 0; parse_header reports the truncation
      ::close(fd);
      return;
    }
    void* base = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (base == MAP_FAILED) fail(path_.string(), ": mmap failed: ", std::strerror(err));
    const std::size_t n = size_;
    image_ = std::shared_ptr<const std::byte>(static_cast<const std::byte*>(base),
                                              [n](const std::byte* p) { ::munmap(const_cast<std::byte*>(p), n); });
  }

  // Parses the JSON, refusing duplicate keys (nlohmann would silently keep the last one) and
  // nesting deeper than the format allows (which bounds every later recursion).
  nlohmann::json parse_json(const char* first, const char* last) const {
    const std::string file = path_.string();
    std::vector<std::set<std::string>> open_keys;  // keys seen in each enclosing object
    auto check = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
      using E = nlohmann::json::parse_event_t;
      if (depth > kMaxJsonDepth) fail(file, ": header nests deeper than ", kMaxJsonDepth, " levels");
      if (event == E::object_start) open_keys.emplace_back();
      if (event == E::object_end) open_keys.pop_back();
      if (event == E::key && !open_keys.back().insert(parsed.get<std::string>()).second) {
        if (depth == 1) fail(file, ": duplicate tensor name '", parsed.get<std::string>(), "' in the header");
        fail(file, ": duplicate key '", parsed.get<std::string>(), "' in the header");
      }
      return true;
    };
    try {
      return nlohmann::json::parse(first, last, check);
    } catch (const nlohmann::json::exception& e) {
      fail(file, ": header is not valid JSON: ", e.what());
    }
  }

  void parse_header() {
    const std::string file = path_.string();
    if (size_ < 8) fail(file, ": truncated: ", size_, " bytes, shorter than the 8-byte header length");
    const std::byte* bytes = image_.get();
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    if (n > kMaxHeaderBytes) fail(file, ": header length ", n, " exceeds the 100 MB limit");
    if (n > size_ - 8) fail(file, ": header length ", n, " exceeds the file size ", size_);
    const char* h = reinterpret_cast<const char*>(bytes + 8);
    const nlohmann::json j = parse_json(h, h + n);
    if (!j.is_object()) fail(file, ": header is not a JSON object");
    data_ = bytes + 8 + n;
    const std::uint64_t data_size = size_ - 8 - n;

    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (const auto& [name, entry] : j.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) fail(file, ": __metadata__ is not an object");
        for (const auto& [k, v] : entry.items()) {
          if (!v.is_string()) fail(file, ": __metadata__ field '", k, "' is not a string");
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      const TensorInfo t = parse_entry(file, name, entry, data_size);
      tensors_.emplace(name, t);
      ranges.emplace_back(t.begin, t.end);
    }
    // Tensors must tile the data section exactly: no overlaps, no holes, nothing left over.
    std::sort(ranges.begin(), ranges.end());
    std::uint64_t cursor = 0;
    for (auto [b, e] : ranges) {
      if (b < cursor) fail(file, ": tensor data ranges overlap at byte ", b);
      if (b > cursor) fail(file, ": hole in the data section at bytes [", cursor, ", ", b, ")");
      cursor = e;
    }
    if (cursor != data_size)
      fail(file, ": data section has ", data_size, " bytes but tensors cover ", cursor);
  }

  static TensorInfo parse_entry(const std::string& file, const std::string& name,
                                const nlohmann::json& e, std::uint64_t data_size) {
    auto bad = [&](auto&&... why) { fail(file, ": tensor '", name, "': ", why...); };
    if (!e.is_object()) bad("entry is not an object");
    auto field = [&](const char* key) -> const nlohmann::json* {
      auto it = e.find(key);
      return it == e.end() ? nullptr : &*it;
    };
    const nlohmann::json* dtype = field("dtype");
    if (!dtype || !dtype->is_string()) bad("missing string field 'dtype'");
    const auto dt = parse_dtype(dtype->get<std::string>());
    if (!dt) bad("unknown dtype '", dtype->get<std::string>(), "'");
    const nlohmann::json* shape = field("shape");
    if (!shape || !shape->is_array()) bad("missing array field 'shape'");
    if (shape->size() > std::size_t(kMaxRank)) bad("rank ", shape->size(), " exceeds ", kMaxRank);
    TensorInfo t{*dt, {}, 0, 0};
    // Element counts stay below 2^60, so count * dtype size (at most 8) cannot overflow.
    constexpr std::uint64_t kMaxCount = std::uint64_t(1) << 60;
    std::uint64_t count = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned()) bad("shape entry ", d.dump(), " is not a non-negative integer");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v > kMaxCount || (v && count > kMaxCount / v)) bad("shape ", shape->dump(), " is too large");
      count *= v;
      t.shape.dims[t.shape.rank++] = std::int64_t(v);
    }
    const nlohmann::json* off = field("data_offsets");
    if (!off || !off->is_array() || off->size() != 2 || !(*off)[0].is_number_unsigned() ||
        !(*off)[1].is_number_unsigned())
      bad("'data_offsets' must be two non-negative integers");
    t.begin = (*off)[0].get<std::uint64_t>();
    t.end = (*off)[1].get<std::uint64_t>();
    if (t.begin > t.end) bad("data_offsets [", t.begin, ", ", t.end, "] are reversed");
    if (t.end > data_size)
      bad("data_offsets [", t.begin, ", ", t.end, "] run past the data section of ", data_size, " bytes");
    if (t.end - t.begin != count * dtype_size(*dt))
      bad("shape ", t.shape.str(), " of ", dtype_name(*dt), " needs ", count * dtype_size(*dt),
          " bytes but data_offsets span ", t.end - t.begin);
    return t;
  }

  std::filesystem::path path_;
  std::shared_ptr<const std::byte> image_;  // the whole file: a read-only mapping or a copy
  std::size_t size_ = 0;
  const std::byte* data_ = nullptr;         // start of the data section inside image_
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and metadata, then writes them in one go (temporary file + rename).
class SafetensorsWriter {
 public:
  template <class T>
  void add(const std::string& name, const Tensor<T>& t) {
    require(!t.empty(), "safetensors writer: tensor '", name, "' is empty (an absent tensor)");
    add_raw(name, dtype_v<T>, t.shape(), t.data(), std::size_t(t.size()) * sizeof(T));
  }
  void add_raw(const std::string& name, DType dtype, const Shape& shape, const void* data,
               std::size_t nbytes) {
    require(name != "__metadata__", "safetensors writer: '__metadata__' is not a tensor name");
    require(!entries_.count(name), "safetensors writer: duplicate tensor name '", name, "'");
    require_utf8("tensor name", name);
    require(nbytes == std::size_t(shape.numel()) * dtype_size(dtype), "safetensors writer: tensor '",
            name, "' of shape ", shape.str(), " and dtype ", dtype_name(dtype), " has ", nbytes, " bytes");
    const auto* p = static_cast<const std::byte*>(data);
    entries_[name] = {dtype, shape, std::vector<std::byte>(p, p + nbytes)};
  }
  void set_metadata(const std::string& key, const std::string& value) {
    require_utf8("metadata key", key);
    require_utf8("metadata value", value);
    metadata_[key] = value;
  }

  void write(const std::filesystem::path& path) const {
    nlohmann::json header = nlohmann::json::object();
    if (!metadata_.empty()) header["__metadata__"] = metadata_;
    std::uint64_t offset = 0;
    for (const auto& [name, e] : entries_) {
      header[name] = {{"dtype", std::string(dtype_name(e.dtype))},
                      {"shape", e.shape.to_vector()},
                      {"data_offsets", {offset, offset + e.bytes.size()}}};
      offset += e.bytes.size();
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
    require(text.size() <= kMaxHeaderBytes, path.string(), ": header of ", text.size(),
            " bytes exceeds the 100 MB limit");

    TempFile tmp(path);
    std::uint64_t n = text.size();
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
    tmp.write(len, 8);
    tmp.write(text.data(), text.size());
    for (const auto& [name, e] : entries_) tmp.write(e.bytes.data(), e.bytes.size());
    tmp.commit();
  }

 private:
  static void require_utf8(const char* what, const std::string& s) {
    try {
      (void)nlohmann::json(s).dump();
    } catch (const nlohmann::json::exception&) {
      fail("safetensors writer: ", what, " is not valid UTF-8");
    }
  }

  // A fresh file beside the target; removed unless commit() renames it over the target.
  class TempFile {
   public:
    explicit TempFile(const std::filesystem::path& target) : target_(target) {
      static std::atomic<unsigned> counter{0};
      for (int attempt = 0; fd_ < 0; ++attempt) {
        path_ = target.string() + ".tmp." + std::to_string(::getpid()) + "." +
                std::to_string(counter.fetch_add(1));
        fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        const int err = errno;
        if (fd_ < 0 && (err != EEXIST || attempt == 100))
          fail(target_.string(), ": cannot create temporary file ", path_.string(), ": ",
               std::strerror(err));
      }
    }
    TempFile(const TempFile&) = delete;
    TempFile& operator=(const TempFile&) = delete;
    ~TempFile() {
      if (fd_ >= 0) ::close(fd_);
      if (!committed_) ::unlink(path_.c_str());
    }

    void write(const void* data, std::size_t n) {
      const char* p = static_cast<const char*>(data);
      while (n > 0) {
        const ::ssize_t w = ::write(fd_, p, n);
        const int err = errno;
        if (w < 0 && err == EINTR) continue;
        if (w < 0) fail(target_.string(), ": write failed: ", std::strerror(err));
        p += w;
        n -= std::size_t(w);
      }
    }

    void commit() {
      auto check = [&](int rc, const char* what) {
        const int err = errno;
        if (rc != 0) fail(target_.string(), ": ", what, " failed: ", std::strerror(err));
      };
      check(::fsync(fd_), "fsync");
      const int rc = ::close(fd_);
      fd_ = -1;
      check(rc, "close");
      check(::rename(path_.c_str(), target_.c_str()), "renaming the temporary file into place");
      committed_ = true;
    }

   private:
    std::filesystem::path target_, path_;
    int fd_ = -1;
    bool committed_ = false;
  };

  struct Entry {
    DType dtype;
    Shape shape;
    std::vector<std::byte> bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace gecko::io
