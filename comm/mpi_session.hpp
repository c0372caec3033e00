#pragma once
// MpiSession: MPI for the lifetime of one object (RAII), plus what every rank
// needs to know about itself. Construction initialises MPI with
// MPI_THREAD_MULTIPLE requested (the collective watchdog runs on its own thread
// and must be able to call MPI_Abort while the main thread is inside MPI_Wait),
// refuses anything below MPI_THREAD_SERIALIZED, sets MPI_ERRORS_RETURN on
// MPI_COMM_WORLD, finds the local rank by a shared-memory split, assigns the
// device and records "rank R on host" for every error message. It uses MPI
// calls only, so it behaves the same under mpirun and srun --mpi=pmix.
//
// The destructor calls MPI_Finalize, except while an exception unwinds through
// it: finalize is collective and would wait for ranks that will never arrive;
// run_rank_main (comm/abort.hpp) then ends the job with MPI_Abort.
// If MPI is already initialised (a test harness, a host program) the session
// adopts it and leaves initialisation and finalisation to its owner.
#include <mpi.h>

#include <string>

#include "comm/device_assignment.hpp"
#include "core/device.hpp"

namespace cohort::comm {

struct SessionOptions {
  DevicePolicy device = DevicePolicy::automatic;
};

// "MPI_THREAD_MULTIPLE" for MPI_THREAD_MULTIPLE, and so on.
const char* thread_level_name(int level);

class MpiSession {
 public:
  // argc/argv may be null (MPI-2 allows it).
  MpiSession(int* argc, char*** argv, SessionOptions options = {});
  explicit MpiSession(SessionOptions options = {}) : MpiSession(nullptr, nullptr, options) {}
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return m_rank; }
  int size() const { return m_size; }
  int local_rank() const { return m_local_rank; }
  int local_size() const { return m_local_size; }
  const std::string& host() const { return m_host; }
  core::Device device() const { return m_device; }
  // MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE.
  int thread_level() const { return m_thread_level; }
  bool owns_mpi() const { return m_owns_mpi; }

  MPI_Comm world() const { return MPI_COMM_WORLD; }
  MPI_Comm node() const { return m_node_comm; }  // ranks sharing this node's memory

  // The live session of this process, or nullptr (for code that needs the
  // device or the node layout without being handed the session).
  static MpiSession* current();

 private:
  bool m_owns_mpi = false;
  int m_thread_level = MPI_THREAD_SINGLE;
  int m_rank = 0, m_size = 1, m_local_rank = 0, m_local_size = 1;
  std::string m_host;
  core::Device m_device;
  MPI_Comm m_node_comm = MPI_COMM_NULL;
  int m_exceptions_at_construction = 0;
};

}  // namespace cohort::comm
