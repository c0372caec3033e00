// Error messages: user mistakes name file:line and the process; library failures
// carry the call, the library's own text and the process identity.
#include <gtest/gtest.h>

#include "core/error.hpp"

namespace cohort {
namespace {

TEST(Errors, CheckCarriesMessageLocationAndProcess) {
  set_process_identity(3, "node17");
  try {
    COHORT_CHECK(1 + 1 == 3, std::string("arithmetic is broken"));
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("arithmetic is broken"), std::string::npos) << m;
    EXPECT_NE(m.find("test_errors.cpp:"), std::string::npos) << m;
    EXPECT_NE(m.find("rank 3 on node17"), std::string::npos) << m;
  }
}

TEST(Errors, LibraryFailureNamesCallLibraryTextAndLocation) {
  set_error_text_provider(Library::mpi, [](long code) {
    return std::string("MPI_ERR_TRUNCATE: message truncated (code ") + std::to_string(code) + ")";
  });
  try {
    throw_library_error(Library::mpi, 15, "MPI_Recv(buf, 4, MPI_FLOAT, 0, 0, comm, &st)",
                        "comm/mpi_backend.cpp", 88);
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("MPI"), std::string::npos) << m;
    EXPECT_NE(m.find("MPI_Recv(buf"), std::string::npos) << m;
    EXPECT_NE(m.find("message truncated"), std::string::npos) << m;
    EXPECT_NE(m.find("comm/mpi_backend.cpp:88"), std::string::npos) << m;
  }
}

TEST(Errors, OutOfMemoryIsAnError) {
  try {
    throw OutOfMemoryError("asked for 1024.0 MiB; pool holds 0.0 MiB");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MiB"), std::string::npos);
  }
}

}  // namespace
}  // namespace cohort
