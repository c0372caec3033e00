#pragma once
// The Cityscapes label table: label ids (as drawn in *_labelIds.png) and the 19
// train ids used for training and evaluation (everything else is 255, ignored).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard_format.hpp"

namespace cohort::data {

struct CityscapesLabel {
  const char* name;
  int id;
  int train_id;  // 255 = ignored
};

// Ids 0..33 in id order (license plate, id -1, is never drawn in labelIds images).
const std::vector<CityscapesLabel>& cityscapes_labels();

// The 19 training classes, train ids 0..18, in order.
std::vector<ClassEntry> cityscapes_train_classes();

// label id byte -> train id; ids outside the table map to 255.
std::array<uint8_t, 256> cityscapes_id_to_train_id();

}  // namespace cohort::data
