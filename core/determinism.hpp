#pragma once
// Bitwise repeatable GPU results (config run.deterministic, or COHORT_DETERMINISTIC=1
// in the environment; off by default, as in PyTorch).
//
// The CPU ops are deterministic always, and so are the own CUDA kernels of a
// training step but one: the bilinear resize's backward scatters with atomics.
// cuDNN's fastest convolution algorithms add partial sums with atomics too, so
// two identical steps can differ in the last bits (two bf16 ResNet-18 backwards
// by 3.7e-4 relative on an H200). With the switch on, the convolution search
// considers only algorithms cuDNN reports deterministic and the resize backward
// gathers in a fixed order (core/ops/resize_taps.hpp). Evaluation's depth-error
// sums still add with float atomics (scores may differ in the last bits).
namespace cohort::core {

bool deterministic_algorithms();
// Process-wide; choices already cached under the other setting are not reused.
void set_deterministic_algorithms(bool enabled);

// Sets the switch for a scope and restores the previous value (tests).
class DeterministicAlgorithms {
 public:
  explicit DeterministicAlgorithms(bool enabled) : m_previous(deterministic_algorithms()) {
    set_deterministic_algorithms(enabled);
  }
  ~DeterministicAlgorithms() { set_deterministic_algorithms(m_previous); }
  DeterministicAlgorithms(const DeterministicAlgorithms&) = delete;
  DeterministicAlgorithms& operator=(const DeterministicAlgorithms&) = delete;

 private:
  bool m_previous;
};

}  // namespace cohort::core
