#pragma once
// Bitwise repeatable GPU results (config run.deterministic, or COHORT_DETERMINISTIC=1
// in the environment; off by default, as in PyTorch).
//
// The CPU ops and the own CUDA kernels are deterministic always (no atomics in
// their reductions). cuDNN's fastest convolution algorithms are not: some
// backward-data and backward-filter algorithms add partial sums with atomics, so
// two identical steps can differ in the last bits (bf16 ResNet-18 gradients by
// 7e-4 relative on an H200). With the switch on, the algorithm search considers
// only algorithms cuDNN reports as deterministic.
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
