#include "core/error.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace cohort {
namespace {

struct Identity {
  int rank = -1;
  std::string host;
};

std::mutex g_identity_mutex;

Identity& identity() {
  static Identity id = [] {
    Identity result;
    for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID"}) {
      if (const char* v = std::getenv(var)) {
        result.rank = std::atoi(v);
        break;
      }
    }
    char name[256] = {0};
    if (gethostname(name, sizeof(name) - 1) == 0) result.host = name;
    return result;
  }();
  return id;
}

const char* library_name(Library lib) {
  switch (lib) {
    case Library::cuda:
      return "CUDA";
    case Library::cudnn:
      return "cuDNN";
    case Library::cublas:
      return "cuBLAS";
    case Library::nccl:
      return "NCCL";
    case Library::mpi:
      return "MPI";
    case Library::hdf5:
      return "HDF5";
  }
  return "?";
}

std::string library_message(Library lib, long code, const char* call, const char* file, int line) {
  return fmt::format("{} error {} ({}) in `{}` at {}:{} [{}]", library_name(lib), code,
                     library_error_text(lib, code), call, file, line, process_identity());
}

}  // namespace

void set_process_identity(int rank, const std::string& host) {
  std::lock_guard lock(g_identity_mutex);
  identity().rank = rank;
  if (!host.empty()) identity().host = host;
}

std::string process_identity() {
  std::lock_guard lock(g_identity_mutex);
  const Identity& id = identity();
  if (id.rank < 0) return fmt::format("on {}", id.host);
  return fmt::format("rank {} on {}", id.rank, id.host);
}

void throw_error(const char* file, int line, const std::string& message) {
  throw Error(fmt::format("{} [{}:{}, {}]", message, file, line, process_identity()));
}

void throw_library_error(Library lib, long code, const char* call, const char* file, int line) {
  throw Error(library_message(lib, code, call, file, line));
}

void print_library_error(Library lib, long code, const char* call, const char* file,
                         int line) noexcept {
  try {
    std::fprintf(stderr, "cohort: %s (not thrown: noexcept path)\n",
                 library_message(lib, code, call, file, line).c_str());
  } catch (...) {
    std::fprintf(stderr, "cohort: library error %ld in %s at %s:%d\n", code, call, file, line);
  }
}

}  // namespace cohort
