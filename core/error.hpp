#pragma once
// Error reporting for cohort. Two families:
//  - COHORT_CHECK(cond, message): a user's or caller's mistake (bad shape, bad
//    config). The message is a std::string expression evaluated only on failure.
//  - COHORT_<LIB>_CHECK(call): a library failure (CUDA, cuDNN, cuBLAS, NCCL, MPI,
//    HDF5). The exception carries the call's text, file:line, the library's own
//    message, and the rank and host of this process.
// This header includes no fmt and no CUDA headers so .cu files can use it.
#include <stdexcept>
#include <string>

namespace cohort {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown when memory cannot be had; says how much was asked and what the pool holds.
class OutOfMemoryError : public Error {
 public:
  explicit OutOfMemoryError(const std::string& what) : Error(what) {}
};

enum class Library { cuda, cudnn, cublas, nccl, mpi, hdf5 };

// Identity of this process, used in every error message. Defaults come from the
// launcher's environment (OMPI_COMM_WORLD_RANK, PMI_RANK, SLURM_PROCID) and
// gethostname(); comm's bootstrap sets the real rank.
void set_process_identity(int rank, const std::string& host);
std::string process_identity();  // "rank 3 on node17"

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
[[noreturn]] void throw_library_error(Library lib, long code, const char* call, const char* file,
                                      int line);
// No-throw variant for destructors and noexcept paths: prints to stderr.
void print_library_error(Library lib, long code, const char* call, const char* file,
                         int line) noexcept;
// The library's own text for an error code (implemented per backend).
std::string library_error_text(Library lib, long code);
// Lets a module that owns a library (comm owns MPI, core/hdf5 owns HDF5) supply its text.
void set_error_text_provider(Library lib, std::string (*provider)(long));

}  // namespace cohort

#define COHORT_CHECK(cond, message)                                    \
  do {                                                                 \
    if (!(cond)) ::cohort::throw_error(__FILE__, __LINE__, (message)); \
  } while (0)

#define COHORT_FAIL(message) ::cohort::throw_error(__FILE__, __LINE__, (message))
