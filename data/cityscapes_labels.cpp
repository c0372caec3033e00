#include "data/cityscapes_labels.hpp"

namespace cohort::data {

const std::vector<CityscapesLabel>& cityscapes_labels() {
  static const std::vector<CityscapesLabel> labels = {
      {"unlabeled", 0, 255},  {"ego vehicle", 1, 255},  {"rectification border", 2, 255},
      {"out of roi", 3, 255}, {"static", 4, 255},       {"dynamic", 5, 255},
      {"ground", 6, 255},     {"road", 7, 0},           {"sidewalk", 8, 1},
      {"parking", 9, 255},    {"rail track", 10, 255},  {"building", 11, 2},
      {"wall", 12, 3},        {"fence", 13, 4},         {"guard rail", 14, 255},
      {"bridge", 15, 255},    {"tunnel", 16, 255},      {"pole", 17, 5},
      {"polegroup", 18, 255}, {"traffic light", 19, 6}, {"traffic sign", 20, 7},
      {"vegetation", 21, 8},  {"terrain", 22, 9},       {"sky", 23, 10},
      {"person", 24, 11},     {"rider", 25, 12},        {"car", 26, 13},
      {"truck", 27, 14},      {"bus", 28, 15},          {"caravan", 29, 255},
      {"trailer", 30, 255},   {"train", 31, 16},        {"motorcycle", 32, 17},
      {"bicycle", 33, 18},
  };
  return labels;
}

std::vector<ClassEntry> cityscapes_train_classes() {
  std::vector<ClassEntry> classes;
  for (int t = 0; t < 19; ++t)
    for (const CityscapesLabel& l : cityscapes_labels())
      if (l.train_id == t) classes.push_back(ClassEntry{t, l.name});
  return classes;
}

std::array<uint8_t, 256> cityscapes_id_to_train_id() {
  std::array<uint8_t, 256> lut;
  lut.fill(kIgnoreLabel);
  for (const CityscapesLabel& l : cityscapes_labels())
    lut[static_cast<size_t>(l.id)] = static_cast<uint8_t>(l.train_id);
  return lut;
}

}  // namespace cohort::data
