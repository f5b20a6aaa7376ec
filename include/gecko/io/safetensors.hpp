#pragma once
// safetensors: an 8-byte little-endian header length N, N bytes of JSON
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the data.
// The reader memory-maps the file and validates the whole header before any tensor is handed
// out, so a bad file fails at open() with a message naming the file and the field. The writer
// writes a temporary file beside the target and renames it, so no partial file is ever visible.

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
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
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile() {
    if (base_ && base_ != MAP_FAILED) ::munmap(base_, file_size_);
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

  // Raw bytes of a tensor inside the mapping (valid while this object lives).
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
    if (out.size()) std::memcpy(out.data(), data_ + t.begin, std::size_t(t.end - t.begin));
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
    const int fd = ::open(path_.c_str(), O_RDONLY);
    if (fd < 0) fail(path_.string(), ": cannot open: ", std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail(path_.string(), ": not a regular file");
    }
    file_size_ = std::size_t(st.st_size);
    if (file_size_ > 0) base_ = ::mmap(nullptr, file_size_, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (base_ == MAP_FAILED) fail(path_.string(), ": mmap failed: ", std::strerror(errno));
  }

  void parse_header() {
    const std::string file = path_.string();
    if (file_size_ < 8) fail(file, ": truncated: ", file_size_, " bytes, shorter than the 8-byte header length");
    const auto* bytes = static_cast<const std::byte*>(base_);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint64_t(bytes[i]);
    if (n > kMaxHeaderBytes) fail(file, ": header length ", n, " exceeds the 100 MB limit");
    if (n > file_size_ - 8) fail(file, ": header length ", n, " exceeds the file size ", file_size_);
    const char* h = reinterpret_cast<const char*>(bytes + 8);
    nlohmann::json j = nlohmann::json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) fail(file, ": header is not valid JSON");
    if (!j.is_object()) fail(file, ": header is not a JSON object");
    data_ = bytes + 8 + n;
    const std::uint64_t data_size = file_size_ - 8 - n;

    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (auto& [name, entry] : j.items()) {
      if (name == "__metadata__") {
        if (!entry.is_object()) fail(file, ": __metadata__ is not an object");
        for (auto& [k, v] : entry.items()) {
          if (!v.is_string()) fail(file, ": __metadata__ field '", k, "' is not a string");
          metadata_[k] = v.get<std::string>();
        }
        continue;
      }
      tensors_.emplace(name, parse_entry(file, name, entry, data_size));
      ranges.emplace_back(tensors_.at(name).begin, tensors_.at(name).end);
    }
    // Tensors must tile the data section exactly: no overlaps, no holes.
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
    if (!e.contains("dtype") || !e["dtype"].is_string()) bad("missing string field 'dtype'");
    const auto dt = parse_dtype(e["dtype"].get<std::string>());
    if (!dt) bad("unknown dtype '", e["dtype"].get<std::string>(), "'");
    if (!e.contains("shape") || !e["shape"].is_array()) bad("missing array field 'shape'");
    if (e["shape"].size() > std::size_t(kMaxRank)) bad("rank ", e["shape"].size(), " exceeds ", kMaxRank);
    TensorInfo t{*dt, {}, 0, 0};
    std::uint64_t count = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) bad("shape entry ", d.dump(), " is not a non-negative integer");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v > (std::uint64_t(1) << 48) || (v && count > (std::uint64_t(1) << 62) / v))
        bad("shape ", e["shape"].dump(), " is too large");
      count *= v;
      t.shape.dims[t.shape.rank++] = std::int64_t(v);
    }
    const auto& off = e.contains("data_offsets") ? e["data_offsets"] : nlohmann::json();
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      bad("'data_offsets' must be two non-negative integers");
    t.begin = off[0].get<std::uint64_t>();
    t.end = off[1].get<std::uint64_t>();
    if (t.begin > t.end) bad("data_offsets [", t.begin, ", ", t.end, "] are reversed");
    if (t.end > data_size)
      bad("data_offsets [", t.begin, ", ", t.end, "] run past the data section of ", data_size, " bytes");
    if (t.end - t.begin != count * dtype_size(*dt))
      bad("shape ", t.shape.str(), " of ", dtype_name(*dt), " needs ", count * dtype_size(*dt),
          " bytes but data_offsets span ", t.end - t.begin);
    return t;
  }

  std::filesystem::path path_;
  void* base_ = nullptr;
  std::size_t file_size_ = 0;
  const std::byte* data_ = nullptr;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Collects tensors and metadata, then writes them in one go (tmp file + rename).
class SafetensorsWriter {
 public:
  template <class T>
  void add(const std::string& name, const Tensor<T>& t) {
    add_raw(name, dtype_v<T>, t.shape(), t.data(), std::size_t(t.size()) * sizeof(T));
  }
  void add_raw(const std::string& name, DType dtype, const Shape& shape, const void* data,
               std::size_t nbytes) {
    require(name != "__metadata__", "safetensors writer: '__metadata__' is not a tensor name");
    require(!entries_.count(name), "safetensors writer: duplicate tensor name '", name, "'");
    require(nbytes == std::size_t(shape.numel()) * dtype_size(dtype), "safetensors writer: tensor '",
            name, "' of shape ", shape.str(), " has ", nbytes, " bytes");
    const auto* p = static_cast<const std::byte*>(data);
    entries_[name] = {dtype, shape, std::vector<std::byte>(p, p + nbytes)};
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

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
    const std::filesystem::path tmp = path.string() + ".tmp" + std::to_string(::getpid());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) fail(path.string(), ": cannot open for writing");
      std::uint64_t n = text.size();
      unsigned char len[8];
      for (int i = 0; i < 8; ++i) len[i] = (unsigned char)(n >> (8 * i));
      out.write(reinterpret_cast<const char*>(len), 8);
      out.write(text.data(), std::streamsize(text.size()));
      for (const auto& [name, e] : entries_)
        out.write(reinterpret_cast<const char*>(e.bytes.data()), std::streamsize(e.bytes.size()));
      out.flush();
      if (!out) {
        out.close();
        std::filesystem::remove(tmp);
        fail(path.string(), ": write failed");
      }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
      std::filesystem::remove(tmp);
      fail(path.string(), ": cannot rename temporary file: ", ec.message());
    }
  }

 private:
  struct Entry {
    DType dtype;
    Shape shape;
    std::vector<std::byte> bytes;
  };
  std::map<std::string, Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace gecko::io
