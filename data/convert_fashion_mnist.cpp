// Fashion-MNIST IDX files -> classification shards (see convert.hpp).
#include <fmt/format.h>

#include <cmath>

#include "core/error.hpp"
#include "data/convert.hpp"
#include "data/convert_common.hpp"

namespace cohort::data {

const std::vector<std::string>& fashion_mnist_class_names() {
  static const std::vector<std::string> names = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                                 "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                                 "Bag",         "Ankle boot"};
  return names;
}

Manifest convert_fashion_mnist(const FashionMnistOptions& o) {
  COHORT_CHECK(o.split == "train" || o.split == "test",
               fmt::format("Fashion-MNIST: split '{}' is not train or test", o.split));
  const ImageClassificationSet train = load_fashion_mnist(o.dir, "train");
  const ImageClassificationSet test =
      o.split == "test" ? load_fashion_mnist(o.dir, "t10k") : ImageClassificationSet{};
  const ImageClassificationSet& data = o.split == "train" ? train : test;
  COHORT_CHECK(data.count > 0,
               fmt::format("Fashion-MNIST in {}: the {} split is empty", o.dir, o.split));

  // Normalisation from the training images, whichever split is converted.
  double sum = 0, sum_sq = 0;
  for (uint8_t v : train.images) {
    const double x = v / 255.0;
    sum += x;
    sum_sq += x * x;
  }
  const double count = static_cast<double>(train.images.size());
  const double mean = sum / count, var = sum_sq / count - mean * mean;

  DatasetSpec spec;
  spec.kind = TaskKind::classification;
  spec.split = o.split;
  spec.image_encoding = o.encoding;
  spec.channels = 1;
  spec.height = data.height;
  spec.width = data.width;
  const auto& names = fashion_mnist_class_names();
  for (size_t c = 0; c < names.size(); ++c)
    spec.classes.push_back(ClassEntry{static_cast<int32_t>(c), names[c]});
  spec.mean = {static_cast<float>(mean)};
  spec.std = {static_cast<float>(std::sqrt(var))};
  spec.source = fmt::format("fashion-mnist dir={} split={}", o.dir, o.split);
  ShardSetWriter writer(o.out_dir, spec, o.writer);
  const size_t image_bytes = static_cast<size_t>(data.height * data.width);
  detail::write_in_order(
      writer, data.count, o.threads,
      [&](int64_t i) {
        SampleRecord r;
        r.name = fmt::format("{}-{:05d}", o.split, i);
        const auto first = data.images.begin() + static_cast<std::ptrdiff_t>(i * image_bytes);
        r.image =
            Image8{data.height, data.width, 1, std::vector<uint8_t>(first, first + image_bytes)};
        r.class_id = data.labels[i];
        return r;
      },
      o.log);
  return detail::finish_set(writer, o);
}

}  // namespace cohort::data
