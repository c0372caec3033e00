#pragma once
// Procedural street scenes for the demo and tests: an RGB image, a segmentation map
// in Cityscapes train ids and a metric depth map that agree with each other.
//
// A pinhole camera (focal length 0.9 x width, 1.5 m above a flat ground) looks
// along a straight road. Ground pixels get the depth of the ground plane at their
// row; buildings, cars, people, poles, signs and trees are upright planes standing
// on the ground, drawn far to near, each with the depth of its base. Sky is invalid
// depth (0), as in stereo ground truth. Everything is a function of (seed, index),
// so a scene can be regenerated anywhere.
#include <cstdint>
#include <vector>

#include "data/image_codec.hpp"

namespace cohort::data {

struct SyntheticScene {
  Image8 image;                // [H, W, 3]
  std::vector<uint8_t> label;  // [H, W] Cityscapes train ids (no 255: every pixel is a class)
  std::vector<float> depth;    // [H, W] metres, 0 for sky
};

// Any size down to 16 x 16; the default demo size is 512 x 256.
SyntheticScene generate_scene(int64_t width, int64_t height, uint64_t seed, int64_t index);

}  // namespace cohort::data
