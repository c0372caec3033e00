#include "comm/mpi_check.hpp"

#include <string>

namespace cohort::comm {
namespace {
std::string mpi_error_text(long code) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(static_cast<int>(code), text, &length) != MPI_SUCCESS)
    return "unknown MPI error code";
  return std::string(text, static_cast<size_t>(length));
}
}  // namespace

bool mpi_active() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  return initialized && !finalized;
}

void register_mpi_error_text() {
  set_error_text_provider(Library::mpi, &mpi_error_text);
}

}  // namespace cohort::comm
