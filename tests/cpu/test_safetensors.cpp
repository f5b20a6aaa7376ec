// safetensors reader and writer: every malformed file fails with a gecko::Error naming the file
// and the problem; every dtype, scalars and metadata round-trip; writes are all-or-nothing.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "gecko/io/safetensors.hpp"

using namespace gecko;
namespace fs = std::filesystem;

namespace {

// A fresh directory, removed with everything in it at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("gecko_test_safetensors_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(path)) names.push_back(e.path().filename().string());
    return names;
  }
};

std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors image: length prefix (the header's size unless overridden), header, data.
std::string image(const std::string& header, const std::string& data = "",
                  std::optional<std::uint64_t> length = std::nullopt) {
  return le64(length ? *length : header.size()) + header + data;
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  REQUIRE(out.good());
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Runs f, which must throw gecko::Error whose message contains every one of `parts`.
template <class F>
void check_error(F&& f, std::initializer_list<std::string_view> parts) {
  try {
    f();
    FAIL("expected a gecko::Error mentioning: ", *parts.begin());
  } catch (const Error& e) {
    const std::string message = e.what();
    INFO("message: ", message);
    for (std::string_view p : parts) CHECK(message.find(p) != std::string::npos);
  }
}

// Writes `bytes` as a file in `dir` and checks that opening it, from disk and from memory (one
// validation path), fails naming the file and `problem`.
void check_bad_file(const TempDir& dir, const std::string& name, const std::string& bytes,
                    std::string_view problem) {
  const fs::path path = dir / name;
  write_bytes(path, bytes);
  check_error([&] { io::SafetensorsFile f(path); }, {path.string(), problem});
  const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
  check_error([&] { io::SafetensorsFile::from_memory({p, bytes.size()}, name); }, {name, problem});
}

// One F32 tensor "a" of shape [2, 3] (24 bytes), valid as written.
const std::string kGoodHeader = R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
const std::string kGoodData(24, '\0');

}  // namespace

TEST_CASE("a valid hand-built file reads back, independent of the writer") {
  TempDir dir;
  // Little-endian F32 {1, -2} in tensor "x", I64 scalar 7 in "n", BOOL {1,0,1} in "m".
  std::string data;
  const float xs[2] = {1.0f, -2.0f};
  data.append(reinterpret_cast<const char*>(xs), 8);
  data += le64(7);
  data += std::string("\1\0\1", 3);
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("n":{"dtype":"I64","shape":[],"data_offsets":[8,16]},)"
      R"("m":{"dtype":"BOOL","shape":[3],"data_offsets":[16,19]}}  )";  // trailing spaces are legal
  write_bytes(dir / "hand.safetensors", image(header, data));
  io::SafetensorsFile f(dir / "hand.safetensors");
  CHECK(f.tensors().size() == 3);
  CHECK(f.meta("format") == std::optional<std::string>("pt"));
  CHECK_FALSE(f.meta("absent"));
  const auto x = f.get<float>("x", Shape{2});
  CHECK(x[0] == 1.0f);
  CHECK(x[1] == -2.0f);
  const auto n = f.get<std::int64_t>("n", Shape{});
  CHECK(n.rank() == 0);
  CHECK(n.size() == 1);
  CHECK(n[0] == 7);
  const auto m = f.get<bool>("m");
  CHECK(m[0]);
  CHECK_FALSE(m[1]);
  CHECK(m[2]);
  CHECK(f.bytes("m").size() == 3);
  CHECK(f.get_as<double>("x")[1] == -2.0);
}

TEST_CASE("truncated file: shorter than the 8-byte length prefix") {
  TempDir dir;
  check_bad_file(dir, "empty.safetensors", "", "truncated: 0 bytes");
  check_bad_file(dir, "short.safetensors", std::string(5, '\0'), "truncated: 5 bytes");
}

TEST_CASE("truncated file: data shorter than the offsets") {
  TempDir dir;
  check_bad_file(dir, "cut.safetensors", image(kGoodHeader, kGoodData.substr(0, 20)),
                 "data_offsets [0, 24] run past the data section of 20 bytes");
}

TEST_CASE("header length larger than the file") {
  TempDir dir;
  check_bad_file(dir, "len.safetensors", image(kGoodHeader, kGoodData, 4096),
                 "header length 4096 exceeds the file size");
}

TEST_CASE("header length larger than 100 MB") {
  TempDir dir;
  check_bad_file(dir, "huge.safetensors", image(kGoodHeader, kGoodData, 100'000'001),
                 "header length 100000001 exceeds the 100 MB limit");
  check_bad_file(dir, "max.safetensors", image(kGoodHeader, kGoodData, ~std::uint64_t(0)),
                 "exceeds the 100 MB limit");
}

TEST_CASE("invalid JSON header") {
  TempDir dir;
  check_bad_file(dir, "json.safetensors", image(R"({"a":{"dtype":"F32",)"), "header is not valid JSON");
  check_bad_file(dir, "binary.safetensors", image(std::string("\xff\xfe\0{", 4)), "header is not valid JSON");
}

TEST_CASE("header that is not a JSON object") {
  TempDir dir;
  check_bad_file(dir, "array.safetensors", image("[1,2,3]"), "header is not a JSON object");
  check_bad_file(dir, "string.safetensors", image(R"("a")"), "header is not a JSON object");
}

TEST_CASE("header nesting deeper than the format allows") {
  TempDir dir;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  check_bad_file(dir, "deep.safetensors", image(deep), "header nests deeper than 3 levels");
  check_bad_file(dir, "deep_shape.safetensors",
                 image(R"({"a":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "header nests deeper than 3 levels");
}

TEST_CASE("unknown dtype") {
  TempDir dir;
  check_bad_file(dir, "dtype.safetensors",
                 image(R"({"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')),
                 "tensor 'a': unknown dtype 'F8_E4M3'");
  check_bad_file(dir, "dtype_num.safetensors",
                 image(R"({"a":{"dtype":4,"shape":[2],"data_offsets":[0,2]}})", std::string(2, '\0')),
                 "tensor 'a': missing string field 'dtype'");
}

TEST_CASE("malformed shape and data_offsets fields") {
  TempDir dir;
  check_bad_file(dir, "neg.safetensors", image(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})"),
                 "tensor 'a': shape entry -1 is not a non-negative integer");
  check_bad_file(dir, "float.safetensors", image(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})"),
                 "shape entry 1.5 is not a non-negative integer");
  check_bad_file(dir, "rank.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[1,1,1,1,1,1,1],"data_offsets":[0,1]}})", std::string(1, '\0')),
                 "tensor 'a': rank 7 exceeds 6");
  check_bad_file(dir, "big.safetensors",
                 image(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                       std::string(8, '\0')),
                 "is too large");
  check_bad_file(dir, "noshape.safetensors", image(R"({"a":{"dtype":"U8","data_offsets":[0,0]}})"),
                 "tensor 'a': missing array field 'shape'");
  check_bad_file(dir, "nooff.safetensors", image(R"({"a":{"dtype":"U8","shape":[0]}})"),
                 "'data_offsets' must be two non-negative integers");
  check_bad_file(dir, "off3.safetensors", image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0,0]}})"),
                 "'data_offsets' must be two non-negative integers");
  check_bad_file(dir, "entry.safetensors", image(R"({"a":[1]})"), "tensor 'a': entry is not an object");
}

TEST_CASE("shape and data_offsets sizes disagree") {
  TempDir dir;
  check_bad_file(dir, "size.safetensors",
                 image(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", std::string(20, '\0')),
                 "tensor 'a': shape [2, 3] of F32 needs 24 bytes but data_offsets span 20");
}

TEST_CASE("overlapping data offsets") {
  TempDir dir;
  check_bad_file(dir, "overlap.safetensors",
                 image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       std::string(12, '\0')),
                 "tensor data ranges overlap at byte 4");
  check_bad_file(dir, "same.safetensors",
                 image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                       std::string(8, '\0')),
                 "tensor data ranges overlap at byte 0");
}

TEST_CASE("out-of-range and reversed data offsets") {
  TempDir dir;
  check_bad_file(dir, "range.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[18446744073709551612,18446744073709551615]}})",
                       std::string(4, '\0')),
                 "tensor 'a': data_offsets [18446744073709551612, 18446744073709551615] run past the data section of 4 bytes");
  check_bad_file(dir, "reversed.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}})", std::string(4, '\0')),
                 "tensor 'a': data_offsets [4, 0] are reversed");
  check_bad_file(dir, "negative.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}})", std::string(4, '\0')),
                 "'data_offsets' must be two non-negative integers");
}

TEST_CASE("holes and leftover bytes in the data section") {
  TempDir dir;
  check_bad_file(dir, "hole.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
                       std::string(12, '\0')),
                 "hole in the data section at bytes [4, 8)");
  check_bad_file(dir, "lead.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", std::string(8, '\0')),
                 "hole in the data section at bytes [0, 4)");
  check_bad_file(dir, "tail.safetensors", image(kGoodHeader, kGoodData + "xx"),
                 "data section has 26 bytes but tensors cover 24");
}

TEST_CASE("duplicate tensor names in the header") {
  TempDir dir;
  check_bad_file(dir, "dup.safetensors",
                 image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                       R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                       std::string(8, '\0')),
                 "duplicate tensor name 'a'");
  check_bad_file(dir, "dup_field.safetensors",
                 image(R"({"a":{"dtype":"U8","dtype":"F32","shape":[4],"data_offsets":[0,4]}})", std::string(4, '\0')),
                 "duplicate key 'dtype'");
  check_bad_file(dir, "dup_meta.safetensors",
                 image(R"({"__metadata__":{"k":"1","k":"2"}})"), "duplicate key 'k'");
}

TEST_CASE("malformed metadata") {
  TempDir dir;
  check_bad_file(dir, "meta.safetensors", image(R"({"__metadata__":{"k":1}})"),
                 "__metadata__ field 'k' is not a string");
  check_bad_file(dir, "meta_arr.safetensors", image(R"({"__metadata__":["k"]})"),
                 "__metadata__ is not an object");
}

TEST_CASE("a file that is missing or not a regular file") {
  TempDir dir;
  check_error([&] { io::SafetensorsFile f(dir / "absent.safetensors"); },
              {(dir / "absent.safetensors").string(), "cannot open: No such file or directory"});
  check_error([&] { io::SafetensorsFile f(dir.path); }, {dir.path.string(), "not a regular file"});
}

TEST_CASE("a tensor requested under a missing name") {
  TempDir dir;
  write_bytes(dir / "good.safetensors", image(kGoodHeader, kGoodData));
  io::SafetensorsFile f(dir / "good.safetensors");
  const std::string file = (dir / "good.safetensors").string();
  CHECK_FALSE(f.contains("b"));
  CHECK_THROWS_WITH_AS(f.get<float>("b"), doctest::Contains("no tensor named 'b'"), Error);
  check_error([&] { f.get<float>("b"); }, {file, "no tensor named 'b'"});
  check_error([&] { f.get_as<double>("b"); }, {file, "no tensor named 'b'"});
  check_error([&] { f.bytes("b"); }, {file, "no tensor named 'b'"});
}

TEST_CASE("a tensor requested with the wrong dtype") {
  TempDir dir;
  write_bytes(dir / "good.safetensors", image(kGoodHeader, kGoodData));
  io::SafetensorsFile f(dir / "good.safetensors");
  const std::string file = (dir / "good.safetensors").string();
  CHECK_THROWS_WITH_AS(f.get<double>("a"), doctest::Contains("tensor 'a' has dtype F32, expected F64"), Error);
  check_error([&] { f.get<double>("a"); }, {file, "tensor 'a' has dtype F32, expected F64"});
  check_error([&] { f.get<std::int32_t>("a"); }, {file, "has dtype F32, expected I32"});
  CHECK(f.get_as<double>("a").size() == 6);  // the converting accessor accepts it
}

TEST_CASE("get_as refuses non-floating dtypes") {
  TempDir dir;
  write_bytes(dir / "int.safetensors", image(R"({"i":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                                             std::string(4, '\0')));
  io::SafetensorsFile f(dir / "int.safetensors");
  check_error([&] { f.get_as<float>("i"); },
              {(dir / "int.safetensors").string(), "tensor 'i' has dtype I32, which does not convert to F32"});
}

TEST_CASE("a tensor requested with the wrong expected shape") {
  TempDir dir;
  write_bytes(dir / "good.safetensors", image(kGoodHeader, kGoodData));
  io::SafetensorsFile f(dir / "good.safetensors");
  const std::string file = (dir / "good.safetensors").string();
  check_error([&] { f.get<float>("a", Shape{3, 2}); }, {file, "tensor 'a' has shape [2, 3], expected [3, 2]"});
  check_error([&] { f.get_as<double>("a", Shape{6}); }, {file, "tensor 'a' has shape [2, 3], expected [6]"});
  CHECK(f.get<float>("a", Shape{2, 3}).shape() == Shape{2, 3});
}

TEST_CASE("a BOOL tensor holding a byte other than 0 or 1") {
  TempDir dir;
  write_bytes(dir / "bool.safetensors",
              image(R"({"m":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\1\0\2", 3)));
  io::SafetensorsFile f(dir / "bool.safetensors");
  check_error([&] { f.get<bool>("m"); },
              {(dir / "bool.safetensors").string(), "tensor 'm' (BOOL) holds byte 2 at element 2"});
}

namespace {

template <class T>
Tensor<T> ramp(const Shape& shape, double scale) {
  Tensor<T> t(shape);
  for (std::int64_t i = 0; i < t.size(); ++i) {
    if constexpr (std::is_same_v<T, bool>) t[i] = (i % 3) == 1;
    else if constexpr (std::is_same_v<T, bfloat16> || std::is_same_v<T, float16>) t[i] = T(float((i - 3) * scale));
    else t[i] = T((i - 3) * scale);
  }
  return t;
}

template <class T>
bool same_bits(const Tensor<T>& a, const Tensor<T>& b) {
  return a.shape() == b.shape() && a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), std::size_t(a.size()) * sizeof(T)) == 0;
}

}  // namespace

TEST_CASE("writer round-trips every dtype, scalars, empty tensors and metadata") {
  TempDir dir;
  const Shape s{2, 3, 4};
  const auto f64 = ramp<double>(s, 0.1);
  const auto f32 = ramp<float>(s, -0.25);
  const auto f16 = ramp<float16>(s, 1.5);
  const auto bf16 = ramp<bfloat16>(s, 3.0);
  const auto i64 = ramp<std::int64_t>(s, 1e12);
  const auto i32 = ramp<std::int32_t>(s, -7);
  const auto u8 = ramp<std::uint8_t>(Shape{5}, 1);  // wraps below 0: still exact bytes
  const auto b = ramp<bool>(Shape{7}, 1);
  const Tensor<double> scalar(Shape{}, -2.5);
  const Tensor<std::int64_t> count(Shape{}, 42);
  const Tensor<float> none(Shape{0, 3});

  io::SafetensorsWriter w;
  w.add("f64", f64);
  w.add("f32", f32);
  w.add("f16", f16);
  w.add("bf16", bf16);
  w.add("i64", i64);
  w.add("i32", i32);
  w.add("u8", u8);
  w.add("bool", b);
  w.add("scalar", scalar);
  w.add("count", count);
  w.add("none", none);
  w.set_metadata("case", "round trip");
  w.set_metadata("config", R"({"model_dim": 64, "quote": "\"", "unicode": "λ"})");
  const fs::path path = dir / "all.safetensors";
  w.write(path);

  const std::string raw = read_bytes(path);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::uint8_t(raw[i]);
  CHECK(n % 8 == 0);  // data section 8-byte aligned

  io::SafetensorsFile f(path);
  CHECK(f.tensors().size() == 11);
  CHECK(same_bits(f.get<double>("f64", s), f64));
  CHECK(same_bits(f.get<float>("f32", s), f32));
  CHECK(same_bits(f.get<float16>("f16", s), f16));
  CHECK(same_bits(f.get<bfloat16>("bf16", s), bf16));
  CHECK(same_bits(f.get<std::int64_t>("i64", s), i64));
  CHECK(same_bits(f.get<std::int32_t>("i32", s), i32));
  CHECK(same_bits(f.get<std::uint8_t>("u8", Shape{5}), u8));
  CHECK(same_bits(f.get<bool>("bool", Shape{7}), b));
  CHECK(f.info("f16").dtype == DType::F16);
  CHECK(f.info("bf16").dtype == DType::BF16);
  CHECK(f.info("bool").dtype == DType::BOOL);

  const auto sc = f.get<double>("scalar", Shape{});
  CHECK(sc.rank() == 0);
  CHECK(sc[0] == -2.5);
  CHECK(f.get<std::int64_t>("count", Shape{})[0] == 42);
  const auto empty = f.get<float>("none", Shape{0, 3});
  CHECK(empty.size() == 0);
  CHECK(f.bytes("none").empty());

  CHECK(f.meta("case") == std::optional<std::string>("round trip"));
  CHECK(f.meta("config") == std::optional<std::string>(R"({"model_dim": 64, "quote": "\"", "unicode": "λ"})"));
  CHECK(f.metadata().size() == 2);

  // The 16-bit formats widen exactly through get_as.
  const auto f16d = f.get_as<double>("f16");
  const auto bf16f = f.get_as<float>("bf16");
  for (std::int64_t i = 0; i < f16.size(); ++i) {
    CHECK(f16d[i] == double(float(f16[i])));
    CHECK(bf16f[i] == float(bf16[i]));
  }
  CHECK(f.get_as<float>("f64")[5] == float(f64[5]));

  // from_memory reads the same image identically.
  const auto mem = io::SafetensorsFile::from_memory(
      {reinterpret_cast<const std::byte*>(raw.data()), raw.size()}, "image");
  CHECK(mem.path() == fs::path("image"));
  CHECK(same_bits(mem.get<float16>("f16"), f16));
  CHECK(mem.meta("case") == f.meta("case"));

  // A copy shares the image and outlives the original.
  std::optional<io::SafetensorsFile> original(std::in_place, path);
  const io::SafetensorsFile copy = *original;
  original.reset();
  CHECK(same_bits(copy.get<double>("f64"), f64));
}

TEST_CASE("writer refuses bad tensors and names") {
  io::SafetensorsWriter w;
  w.add("a", Tensor<float>(Shape{2}, 1.0f));
  check_error([&] { w.add("a", Tensor<float>(Shape{3}, 2.0f)); }, {"duplicate tensor name 'a'"});
  check_error([&] { w.add("__metadata__", Tensor<float>(Shape{1})); }, {"'__metadata__' is not a tensor name"});
  check_error([&] { w.add("absent", Tensor<float>()); }, {"tensor 'absent' is empty"});
  const float v[3] = {};
  check_error([&] { w.add_raw("raw", DType::F32, Shape{2}, v, 12); },
              {"tensor 'raw' of shape [2] and dtype F32 has 12 bytes"});
  check_error([&] { w.add("bad\xff", Tensor<float>(Shape{1})); }, {"tensor name is not valid UTF-8"});
  check_error([&] { w.set_metadata("k", "\xc3"); }, {"metadata value is not valid UTF-8"});
}

TEST_CASE("a failed write leaves no file at the target") {
  TempDir dir;
  io::SafetensorsWriter w;
  w.add("a", Tensor<float>(Shape{2}, 1.0f));

  SUBCASE("missing directory") {
    const fs::path target = dir / "missing" / "out.safetensors";
    check_error([&] { w.write(target); }, {target.string(), "cannot create temporary file", "No such file"});
    CHECK_FALSE(fs::exists(target));
  }
  SUBCASE("parent is a regular file") {
    write_bytes(dir / "plain", "x");
    const fs::path target = dir / "plain" / "out.safetensors";
    check_error([&] { w.write(target); }, {target.string(), "cannot create temporary file", "Not a directory"});
    CHECK_FALSE(fs::exists(target));
  }
  SUBCASE("duplicate tensor name") {
    const fs::path target = dir / "dup.safetensors";
    check_error([&] { w.add("a", Tensor<float>(Shape{1})); }, {"duplicate tensor name 'a'"});
    // The refused tensor left the writer as it was: it writes only the first "a".
    CHECK_FALSE(fs::exists(target));
    w.write(target);
    io::SafetensorsFile f(target);
    CHECK(f.get<float>("a", Shape{2})[1] == 1.0f);
  }
  SUBCASE("target is a directory") {
    fs::create_directories(dir / "taken.safetensors" / "inside");
    check_error([&] { w.write(dir / "taken.safetensors"); },
                {(dir / "taken.safetensors").string(), "renaming the temporary file into place failed"});
    CHECK(fs::is_directory(dir / "taken.safetensors" / "inside"));
    CHECK(dir.entries() == std::vector<std::string>{"taken.safetensors"});  // no temporary left
  }
}

TEST_CASE("an existing target is replaced on success only") {
  TempDir dir;
  const fs::path target = dir / "model.safetensors";
  io::SafetensorsWriter first;
  first.add("v", Tensor<std::int32_t>(Shape{1}, 1));
  first.write(target);
  const std::string before = read_bytes(target);

  // A write that fails midway (the file size limit stops it after 4 KiB).
  io::SafetensorsWriter big;
  big.add("v", Tensor<double>(Shape{4096}, 2.0));
  struct rlimit old {};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    big.write(target);
  } catch (const Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  INFO("message: ", message);
  CHECK(message.find(target.string() + ": write failed: File too large") != std::string::npos);
  CHECK(read_bytes(target) == before);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});

  // The same write succeeds without the limit and replaces the target.
  big.write(target);
  io::SafetensorsFile f(target);
  CHECK(f.get<double>("v", Shape{4096})[4095] == 2.0);
  CHECK(dir.entries() == std::vector<std::string>{"model.safetensors"});
}
