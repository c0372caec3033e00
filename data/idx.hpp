#pragma once
// Reader for the IDX format of (Fashion-)MNIST, gzip-compressed or plain, as
// shipped by Debian's dataset-fashion-mnist package under
// /usr/share/datasets/fashion-mnist.
#include <cstdint>
#include <string>
#include <vector>

namespace cohort::data {

struct IdxArray {
  std::vector<int64_t> dims;  // e.g. {60000, 28, 28}
  std::vector<uint8_t> values;
};

// Reads an unsigned-byte IDX file; throws cohort::Error naming the file on a bad
// magic number, an unsupported element type or a short file.
IdxArray read_idx_u8(const std::string& path);

struct ImageClassificationSet {
  int64_t count = 0, height = 0, width = 0;
  std::vector<uint8_t> images;  // count x height x width, row-major
  std::vector<uint8_t> labels;  // count
};

// Loads "<dir>/<split>-images-idx3-ubyte.gz" and "<dir>/<split>-labels-idx1-ubyte.gz"
// (split = "train" or "t10k") and checks that the counts agree.
ImageClassificationSet load_fashion_mnist(const std::string& dir, const std::string& split);

inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

}  // namespace cohort::data
