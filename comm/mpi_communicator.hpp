#pragma once
// The MPI backend: collectives on host tensors with non-blocking MPI
// (MPI_Iallreduce, MPI_Ireduce, MPI_Ireduce_scatter_block, MPI_Iallgather,
// MPI_Ibcast, MPI_Ibarrier) on a private duplicate of the parent communicator.
// bf16 and f16 travel as a 2-byte MPI datatype with user-defined sum ops that
// add in float; average is a sum followed by a scale on completion (reduce:
// on the root only).
#include <mpi.h>

#include "comm/communicator.hpp"

namespace cohort::comm {

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(MPI_Comm parent, const CommOptions& options);
  ~MpiCommunicator() override;

  const char* backend_name() const override { return "mpi"; }
  bool supports(core::DType dtype) const override;

 protected:
  std::unique_ptr<PendingCollective> start(const Call& call) override;

 private:
  MPI_Datatype datatype(core::DType dtype) const;
  MPI_Op sum_op(core::DType dtype) const;

  MPI_Comm m_comm = MPI_COMM_NULL;
  MPI_Datatype m_half_type = MPI_DATATYPE_NULL;  // 2 opaque bytes: bf16 and f16
  MPI_Op m_bf16_sum = MPI_OP_NULL;
  MPI_Op m_f16_sum = MPI_OP_NULL;
};

}  // namespace cohort::comm
