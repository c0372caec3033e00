#pragma once
// COHORT_MPI_CHECK(call): MPI failures as cohort::Error with the call's text,
// file:line, MPI's own message and this process's identity. It relies on the
// communicator's error handler being MPI_ERRORS_RETURN (MpiSession sets it on
// MPI_COMM_WORLD; comm's communicators set it on their duplicates); under the
// default MPI_ERRORS_ARE_FATAL, MPI would abort before a code came back.
#include <mpi.h>

#include "core/error.hpp"

#define COHORT_MPI_CHECK(call)                                                                   \
  do {                                                                                           \
    const int cohort_mpi_status_ = (call);                                                       \
    if (cohort_mpi_status_ != MPI_SUCCESS)                                                       \
      ::cohort::throw_library_error(::cohort::Library::mpi, cohort_mpi_status_, #call, __FILE__, \
                                    __LINE__);                                                   \
  } while (0)

// For destructors and noexcept paths: prints instead of throwing.
#define COHORT_MPI_CHECK_PRINT(call)                                                             \
  do {                                                                                           \
    const int cohort_mpi_status_ = (call);                                                       \
    if (cohort_mpi_status_ != MPI_SUCCESS)                                                       \
      ::cohort::print_library_error(::cohort::Library::mpi, cohort_mpi_status_, #call, __FILE__, \
                                    __LINE__);                                                   \
  } while (0)

namespace cohort::comm {

// True between MPI_Init and MPI_Finalize (whoever called them).
bool mpi_active();
// Registers MPI_Error_string as the text of Library::mpi errors (idempotent).
void register_mpi_error_text();

}  // namespace cohort::comm
