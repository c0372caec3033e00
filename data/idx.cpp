#include "data/idx.hpp"

#include <fmt/format.h>
#include <zlib.h>

#include <memory>

#include "core/error.hpp"

namespace cohort::data {
namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

void read_exact(gzFile f, void* dst, size_t bytes, const std::string& path, const char* what) {
  size_t done = 0;
  while (done < bytes) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(bytes - done, 1u << 30));
    const int got = gzread(f, static_cast<char*>(dst) + done, chunk);
    COHORT_CHECK(got > 0, fmt::format("IDX file {}: short read in {} ({} of {} bytes)", path, what,
                                      done, bytes));
    done += static_cast<size_t>(got);
  }
}

}  // namespace

IdxArray read_idx_u8(const std::string& path) {
  // gzopen reads plain files transparently too.
  GzFile f(gzopen(path.c_str(), "rb"));
  COHORT_CHECK(f != nullptr, fmt::format("IDX file {}: cannot open", path));
  unsigned char magic[4];
  read_exact(f.get(), magic, 4, path, "the magic number");
  COHORT_CHECK(magic[0] == 0 && magic[1] == 0,
               fmt::format("IDX file {}: bad magic number (not an IDX file)", path));
  COHORT_CHECK(
      magic[2] == 0x08,
      fmt::format("IDX file {}: element type 0x{:02x} is not unsigned byte", path, magic[2]));
  const int rank = magic[3];
  COHORT_CHECK(rank >= 1 && rank <= 4, fmt::format("IDX file {}: {} dimensions", path, rank));
  IdxArray out;
  size_t total = 1;
  for (int i = 0; i < rank; ++i) {
    unsigned char b[4];
    read_exact(f.get(), b, 4, path, "the dimensions");
    const int64_t d = (int64_t{b[0]} << 24) | (int64_t{b[1]} << 16) | (int64_t{b[2]} << 8) | b[3];
    out.dims.push_back(d);
    total *= static_cast<size_t>(d);
  }
  out.values.resize(total);
  read_exact(f.get(), out.values.data(), total, path, "the data");
  return out;
}

ImageClassificationSet load_fashion_mnist(const std::string& dir, const std::string& split) {
  const IdxArray images = read_idx_u8(fmt::format("{}/{}-images-idx3-ubyte.gz", dir, split));
  const IdxArray labels = read_idx_u8(fmt::format("{}/{}-labels-idx1-ubyte.gz", dir, split));
  COHORT_CHECK(
      images.dims.size() == 3 && labels.dims.size() == 1 && images.dims[0] == labels.dims[0],
      fmt::format("Fashion-MNIST in {} ({}): {} images but {} labels", dir, split,
                  images.dims.empty() ? 0 : images.dims[0],
                  labels.dims.empty() ? 0 : labels.dims[0]));
  for (size_t i = 0; i < labels.values.size(); ++i)
    COHORT_CHECK(labels.values[i] < 10,
                 fmt::format("Fashion-MNIST in {} ({}): label {} of sample {} is not in 0..9", dir,
                             split, labels.values[i], i));
  return ImageClassificationSet{images.dims[0], images.dims[1], images.dims[2], images.values,
                                labels.values};
}

}  // namespace cohort::data
