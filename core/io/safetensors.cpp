#include "core/io/safetensors.hpp"

#include <fmt/format.h>

#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

namespace cohort::core::io {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

// Headers of real models are a few hundred KiB; anything far larger is damage.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

std::optional<DType> dtype_from_safetensors(const std::string& name) {
  if (name == "F32") return DType::f32;
  if (name == "F16") return DType::f16;
  if (name == "BF16") return DType::bf16;
  if (name == "F64") return DType::f64;
  if (name == "I64") return DType::i64;
  if (name == "I32") return DType::i32;
  if (name == "U8") return DType::u8;
  return std::nullopt;
}

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "F32";
    case DType::f16:
      return "F16";
    case DType::bf16:
      return "BF16";
    case DType::f64:
      return "F64";
    case DType::i64:
      return "I64";
    case DType::i32:
      return "I32";
    case DType::u8:
      return "U8";
  }
  return "?";
}

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin;
  uint64_t end;
};

// Validates one header entry against the data section's size.
Entry parse_entry(const std::string& file, const std::string& name, const nlohmann::json& info,
                  uint64_t data_bytes) {
  auto fail = [&](const std::string& why) {
    COHORT_FAIL(fmt::format("safetensors file '{}': tensor '{}': {}", file, name, why));
  };
  if (!info.is_object()) fail("header entry is not a JSON object");
  if (!info.contains("dtype") || !info["dtype"].is_string()) fail("no string 'dtype'");
  const std::string dtype_text = info["dtype"].get<std::string>();
  const std::optional<DType> dtype = dtype_from_safetensors(dtype_text);
  if (!dtype)
    fail(fmt::format("dtype '{}' is not supported (F32, F16, BF16, F64, I64, I32, U8 are)",
                     dtype_text));

  if (!info.contains("shape") || !info["shape"].is_array()) fail("no 'shape' array");
  const nlohmann::json& shape_json = info["shape"];
  if (shape_json.size() > static_cast<size_t>(Shape::max_rank))
    fail(fmt::format("rank {} exceeds the supported {}", shape_json.size(), Shape::max_rank));
  std::vector<int64_t> dims;
  uint64_t numel = 1;
  for (const nlohmann::json& d : shape_json) {
    if (!d.is_number_unsigned())
      fail(
          fmt::format("shape {} has a non-integer or negative "
                      "dimension",
                      shape_json.dump()));
    const uint64_t v = d.get<uint64_t>();
    if (v > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
      fail(fmt::format("shape {} is too large", shape_json.dump()));
    dims.push_back(static_cast<int64_t>(v));
  }
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dtype_size(*dtype)), &nbytes))
    fail(fmt::format("shape {} is too large", shape_json.dump()));

  if (!info.contains("data_offsets") || !info["data_offsets"].is_array() ||
      info["data_offsets"].size() != 2 || !info["data_offsets"][0].is_number_unsigned() ||
      !info["data_offsets"][1].is_number_unsigned())
    fail("'data_offsets' is not a pair of non-negative integers");
  const uint64_t begin = info["data_offsets"][0].get<uint64_t>();
  const uint64_t end = info["data_offsets"][1].get<uint64_t>();
  if (begin > end) fail(fmt::format("data_offsets [{}, {}] run backwards", begin, end));
  if (end > data_bytes)
    fail(
        fmt::format("data_offsets [{}, {}] reach past the data section, which holds {} bytes "
                    "(file truncated or header damaged)",
                    begin, end, data_bytes));
  if (end - begin != nbytes)
    fail(fmt::format("data_offsets [{}, {}] span {} bytes but {} {} needs {}", begin, end,
                     end - begin, dtype_text, shape_json.dump(), nbytes));
  return Entry{name, *dtype, Shape(std::span<const int64_t>(dims)), begin, end};
}

}  // namespace

std::map<std::string, Tensor> read_safetensors(const std::string& path) {
  std::error_code ec;
  const uint64_t file_bytes = std::filesystem::file_size(path, ec);
  COHORT_CHECK(!ec, fmt::format("safetensors file '{}': cannot stat: {}", path, ec.message()));
  std::ifstream in(path, std::ios::binary);
  COHORT_CHECK(in.good(), fmt::format("safetensors file '{}': cannot open", path));
  COHORT_CHECK(file_bytes >= 8, fmt::format("safetensors file '{}' is {} bytes: too short to "
                                            "hold the 8-byte header length",
                                            path, file_bytes));
  unsigned char length_bytes[8];
  in.read(reinterpret_cast<char*>(length_bytes), 8);
  COHORT_CHECK(in.good(),
               fmt::format("safetensors file '{}': cannot read the header length", path));
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i)
    header_bytes = (header_bytes << 8) | length_bytes[i];
  COHORT_CHECK(header_bytes <= kMaxHeaderBytes && header_bytes <= file_bytes - 8,
               fmt::format("safetensors file '{}': header length {} does not fit the file's {} "
                           "bytes (not a safetensors file, or truncated)",
                           path, header_bytes, file_bytes));
  std::string header(static_cast<size_t>(header_bytes), '\0');
  in.read(header.data(), static_cast<std::streamsize>(header_bytes));
  COHORT_CHECK(in.good(), fmt::format("safetensors file '{}': cannot read the header", path));

  nlohmann::json json;
  try {
    json = nlohmann::json::parse(header);
  } catch (const nlohmann::json::exception& e) {
    COHORT_FAIL(fmt::format("safetensors file '{}': header is not valid JSON: {}", path, e.what()));
  }
  COHORT_CHECK(json.is_object(),
               fmt::format("safetensors file '{}': header is not a JSON object", path));

  const uint64_t data_start = 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - data_start;
  std::vector<Entry> entries;
  for (const auto& [name, info] : json.items()) {
    if (name == "__metadata__") continue;
    entries.push_back(parse_entry(path, name, info, data_bytes));
  }

  std::map<std::string, Tensor> tensors;
  for (const Entry& e : entries) {
    Tensor t = Tensor::empty(e.shape, e.dtype);
    if (t.nbytes() > 0) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      in.read(static_cast<char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
      COHORT_CHECK(in.good(), fmt::format("safetensors file '{}': tensor '{}': reading {} bytes "
                                          "at offset {} failed",
                                          path, e.name, t.nbytes(), data_start + e.begin));
    }
    tensors.emplace(e.name, std::move(t));
  }
  return tensors;
}

void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    COHORT_CHECK(name != "__metadata__",
                 fmt::format("write_safetensors: '__metadata__' is reserved ({})", path));
    COHORT_CHECK(t.defined() && t.device().is_cpu(),
                 fmt::format("write_safetensors: tensor '{}' must be a defined CPU tensor ({})",
                             name, path));
    std::vector<int64_t> dims(t.shape().dims().begin(), t.shape().dims().end());
    header[name] = {{"dtype", safetensors_dtype(t.dtype())},
                    {"shape", dims},
                    {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string text = header.dump();
  // The format allows trailing spaces; padding keeps the data section 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  COHORT_CHECK(out.good(), fmt::format("write_safetensors: cannot create '{}'", path));
  unsigned char length_bytes[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i, n >>= 8)
    length_bytes[i] = static_cast<unsigned char>(n & 0xff);
  out.write(reinterpret_cast<const char*>(length_bytes), 8);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  for (const auto& [name, t] : tensors)
    out.write(static_cast<const char*>(t.raw()), static_cast<std::streamsize>(t.nbytes()));
  out.close();
  COHORT_CHECK(!out.fail(), fmt::format("write_safetensors: writing '{}' failed", path));
}

}  // namespace cohort::core::io
