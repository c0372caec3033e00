// The `cohort` executable. Subcommands:
//   cohort demo [--device auto|cpu|cuda:N] [--epochs N] [--batch N] [--lr X] [--zero 0-3]
//       trains the small CNN on Fashion-MNIST (Debian's dataset-fashion-mnist); under
//       mpirun/srun the ranks train it data-parallel (one GPU per local rank, or CPUs)
//   cohort train [--config configs/x.yaml] [--set section.key=value ...] [--print-config]
//       a training run from a YAML config (launch/train_config.hpp), alone or as the
//       ranks of mpirun/srun; checkpoints, resumes, stops cleanly on SIGTERM/SIGUSR1
//       (exit 75 = stopped early with a checkpoint: run the same command again)
//   cohort eval --checkpoint runs/x/checkpoint.h5 [--shards DIR] [--predictions DIR]
//       evaluates a checkpoint (its stored config rebuilds the model), alone or as ranks;
//       writes per-image prediction PNGs (Cityscapes label ids) for official evaluators
//   cohort bench train [--config configs/x.yaml] [--set section.key=value ...] [--iters 20]
//       whole training steps of a config's model on synthetic inputs (alone or as ranks);
//       the PyTorch counterpart is tools/bench_torch_train.py
//   cohort bench stack [--batch 256] [--dtype bf16] [--iters 20] [--device cuda:0]
//       forward+backward time of a ResNet-50-shaped conv/BN/ReLU stack
//   cohort convert <cityscapes|imagefolder|fashion-mnist|synthetic-scenes|verify> ...
//       writes (or verifies) an HDF5 shard set; `cohort convert <kind> --help` for options
//   cohort bench data [--dir D] [--max-threads 16] [--storage raw,png,jpeg]
//       loader throughput: 2048x1024 frames -> augmented 512x1024 crops
//   cohort bench zero [--world 8] [--rank 0] [--optimizer adamw]
//       per-rank memory of parameters, gradients and optimizer state, ZeRO stages 0-3
//   mpirun -np N cohort bench comm [--backend mpi|nccl] [--max-bytes 1073741824]
//       all-reduce / reduce-scatter / all-gather bandwidth, nccl-tests' table layout
//   cohort export --checkpoint runs/x/checkpoint.h5 --out model.safetensors [--prefix P]
//       the checkpoint's model as torchvision-named weights for torch's load_state_dict
//   cohort doctor [--device auto|cpu|cuda:N]   (alone, or under mpirun/srun)
//       library versions, GPUs, every rank's device, collectives with known sums
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "comm/abort.hpp"
#include "comm/bench_comm.hpp"
#include "comm/mpi_session.hpp"
#include "comm/zero_report.hpp"
#include "core/device.hpp"
#include "core/error.hpp"
#include "data/bench_data.hpp"
#include "data/convert.hpp"
#include "launch/bench_stack.hpp"
#include "launch/bench_train.hpp"
#include "launch/doctor.hpp"
#include "launch/eval_command.hpp"
#include "launch/export_command.hpp"
#include "launch/fashion_mnist_demo.hpp"
#include "launch/train_config.hpp"
#include "launch/trainer.hpp"

namespace {

cohort::core::Device resolve_device(const std::string& text) {
  if (text == "auto")
    return cohort::core::cuda_available() ? cohort::core::Device::cuda(0)
                                          : cohort::core::Device::cpu();
  return cohort::core::Device::parse(text);
}

// Started by a launcher as one of several ranks (Open MPI's mpirun, or a PMI/PMIx
// launcher such as srun --mpi=pmix)? Single runs stay free of MPI.
bool launched_as_ranks() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

// The demo as one rank of a data-parallel job: MPI session (device per local
// rank), a communicator over the world (NCCL on GPUs, MPI on CPUs), rank 0 talks.
// A failure on any rank ends every rank (run_rank_main).
int run_demo_ranks(int* argc, char*** argv, cohort::launch::FashionMnistOptions demo,
                   const std::string& device_text) {
  return cohort::comm::run_rank_main([&] {
    using namespace cohort;
    comm::SessionOptions so;
    // Under a launcher each rank takes the GPU of its local rank: "cuda:N" means "GPUs".
    so.device =
        comm::parse_device_policy(device_text.rfind("cuda:", 0) == 0 ? "cuda" : device_text);
    comm::MpiSession session(argc, argv, so);
    demo.device = session.device();
    const comm::Backend backend = demo.device.is_cuda() ? comm::Backend::nccl : comm::Backend::mpi;
    auto communicator = comm::make_communicator(backend, MPI_COMM_WORLD, demo.device);
    demo.comm = communicator.get();
    demo.verbose = demo.verbose && session.rank() == 0;
    if (session.rank() == 0)
      fmt::print(
          "cohort demo: Fashion-MNIST from {}, {} ranks ({} backend, rank 0 on {}), ZeRO stage "
          "{}, {} epoch(s), global batch {}\n",
          demo.data_dir, session.size(), comm::backend_name(backend), demo.device.str(),
          demo.zero_stage, demo.epochs, demo.batch_size);
    const launch::FashionMnistResult r = launch::train_fashion_mnist(demo);
    if (session.rank() == 0) {
      fmt::print("step time per rank (mean):\n{}", r.step_times.str());
      fmt::print("test accuracy {:.2f}% on 10000 images ({} steps, {:.1f} s)\n",
                 100.0 * r.test_accuracy, r.steps, r.seconds);
    }
    return 0;
  });
}

}  // namespace

// Exit status of a run that stopped early on request with its checkpoint written
// (EX_TEMPFAIL: "try again"), so that job scripts can requeue it.
constexpr int kStoppedExitCode = 75;

// `body(device, ranks)` alone, or as one of the ranks of a launcher: MPI session
// (a GPU per local rank), gradients over NCCL on GPUs (MPI on CPUs), host
// agreements over MPI; a failure on any rank ends every rank.
int with_train_ranks(
    int* argc, char*** argv, const std::string& device_text,
    const std::function<int(cohort::core::Device, cohort::launch::TrainRanks)>& body) {
  using namespace cohort;
  if (!launched_as_ranks()) return body(resolve_device(device_text), {});
  return comm::run_rank_main([&] {
    comm::SessionOptions so;
    so.device =
        comm::parse_device_policy(device_text.rfind("cuda:", 0) == 0 ? "cuda" : device_text);
    comm::MpiSession session(argc, argv, so);
    const core::Device device = session.device();
    auto grads = comm::make_communicator(
        device.is_cuda() ? comm::Backend::nccl : comm::Backend::mpi, MPI_COMM_WORLD, device);
    auto control = comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cpu());
    return body(device, {grads.get(), control.get()});
  });
}

int run_doctor(int* argc, char*** argv, const std::string& device_text) {
  using namespace cohort;
  if (!launched_as_ranks()) return launch::run_doctor(resolve_device(device_text));
  return comm::run_rank_main([&] {
    comm::SessionOptions so;
    so.device =
        comm::parse_device_policy(device_text.rfind("cuda:", 0) == 0 ? "cuda" : device_text);
    comm::MpiSession session(argc, argv, so);
    return launch::run_doctor(session);
  });
}

int run_train(int* argc, char*** argv, const std::string& config_path,
              const std::vector<std::string>& overrides) {
  using namespace cohort;
  const launch::TrainConfig config = launch::load_train_config(config_path, overrides);
  return with_train_ranks(
      argc, argv, config.device, [&](core::Device device, launch::TrainRanks ranks) {
        const launch::TrainResult r = launch::run_training(config, device, ranks);
        return r.stopped ? kStoppedExitCode : 0;
      });
}

int run_bench_train(int* argc, char*** argv, const std::string& config_path,
                    const std::vector<std::string>& overrides,
                    const cohort::launch::BenchTrainOptions& options) {
  using namespace cohort;
  // The benchmark reads no shards: data.train only has to be set for the check.
  std::vector<std::string> all = {"data.train=(synthetic inputs)"};
  all.insert(all.end(), overrides.begin(), overrides.end());
  const launch::TrainConfig config = launch::load_train_config(config_path, all);
  return with_train_ranks(argc, argv, config.device,
                          [&](core::Device device, launch::TrainRanks ranks) {
                            launch::run_bench_train(config, options, device, ranks);
                            return 0;
                          });
}

int run_eval(int* argc, char*** argv, const cohort::launch::EvalCommandOptions& options,
             const std::string& device_text) {
  using namespace cohort;
  if (!launched_as_ranks()) {
    launch::run_checkpoint_eval(options, resolve_device(device_text));
    return 0;
  }
  return comm::run_rank_main([&] {
    comm::SessionOptions so;
    so.device =
        comm::parse_device_policy(device_text.rfind("cuda:", 0) == 0 ? "cuda" : device_text);
    comm::MpiSession session(argc, argv, so);
    // Evaluation needs no gradient communicator: only the host sums of the metrics.
    auto control = comm::make_communicator(comm::Backend::mpi, MPI_COMM_WORLD, core::Device::cpu());
    launch::run_checkpoint_eval(options, session.device(), {nullptr, control.get()});
    return 0;
  });
}

int main(int argc, char** argv) {
  // Line-buffered stdout: progress lines reach a job's output file (sbatch,
  // mpirun redirection) as they are printed, and survive a killed run.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{"cohort: train convolutional networks on GPU clusters"};
  app.require_subcommand(1);

  std::string demo_device = "auto";
  cohort::launch::FashionMnistOptions demo;
  auto* demo_cmd =
      app.add_subcommand("demo", "Train a small CNN on Fashion-MNIST, print test accuracy");
  demo_cmd->add_option("--device", demo_device, "auto, cpu or cuda:N")->capture_default_str();
  demo_cmd->add_option("--epochs", demo.epochs)->capture_default_str();
  demo_cmd->add_option("--batch", demo.batch_size)->capture_default_str();
  demo_cmd->add_option("--lr", demo.lr)->capture_default_str();
  demo_cmd->add_option("--seed", demo.seed)->capture_default_str();
  demo_cmd->add_option("--zero", demo.zero_stage, "ZeRO stage under mpirun/srun (0: plain DP)")
      ->capture_default_str();
  demo_cmd->add_option("--data", demo.data_dir, "Directory of the IDX .gz files")
      ->capture_default_str();

  cohort::launch::ExportCommandOptions export_options;
  auto* export_cmd = app.add_subcommand(
      "export", "A checkpoint's model as torchvision-named safetensors (for PyTorch)");
  export_cmd->add_option("--checkpoint", export_options.checkpoint, "cohort train's checkpoint")
      ->required();
  export_cmd->add_option("--out", export_options.out, "The .safetensors file to write")->required();
  export_cmd->add_option("--prefix", export_options.prefix,
                         "Only entries under this prefix, without it (backbone. for DeepLab's "
                         "ResNet)");

  std::string doctor_device = "auto";
  auto* doctor_cmd = app.add_subcommand(
      "doctor",
      "Library versions, GPUs and (under mpirun/srun) whether every rank can talk to the others");
  doctor_cmd->add_option("--device", doctor_device, "auto, cpu or cuda:N (ranks: auto, cpu, cuda)")
      ->capture_default_str();

  std::string train_config;
  std::vector<std::string> train_overrides;
  auto* train_cmd = app.add_subcommand("train", "Train from a YAML config (see configs/)");
  train_cmd->add_option("--config", train_config, "YAML file (configs/*.yaml)");
  train_cmd->add_option("--set", train_overrides, "Override: section.key=value (repeatable)");
  bool print_config = false;
  train_cmd->add_flag("--print-config", print_config,
                      "Print the resolved configuration (every key, as checkpoints store it) "
                      "and exit without training");

  cohort::launch::EvalCommandOptions eval;
  std::string eval_device = "auto";
  auto* eval_cmd = app.add_subcommand(
      "eval", "Evaluate a training checkpoint on a shard set; optionally write predictions");
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "checkpoint.h5 written by cohort train")
      ->required();
  eval_cmd->add_option("--shards", eval.shards, "Shard set (default: the config's data.eval)");
  eval_cmd->add_option("--predictions", eval.predictions,
                       "Directory for one prediction PNG per image (segmentation)");
  eval_cmd
      ->add_option("--format", eval.format,
                   "Prediction values: auto (Cityscapes label ids for Cityscapes' classes, else "
                   "train ids), cityscapes-ids or train-ids")
      ->capture_default_str();
  eval_cmd->add_option("--json", eval.json, "File for the scores as JSON (rank 0)");
  eval_cmd->add_option("--device", eval_device, "auto, cpu or cuda:N")->capture_default_str();
  eval_cmd->add_option("--set", eval.overrides,
                       "Override: section.key=value, e.g. data.batch=4 (not model.*)");

  auto* convert_cmd =
      app.add_subcommand("convert", "Convert a dataset to HDF5 shards, or verify a shard set");
  convert_cmd->prefix_command();  // everything after `convert` goes to data::run_convert

  auto* bench_cmd = app.add_subcommand("bench", "Benchmarks");
  bench_cmd->require_subcommand(1);
  cohort::launch::BenchStackOptions stack;
  std::string stack_device = "auto";
  auto* stack_cmd =
      bench_cmd->add_subcommand("stack", "ResNet-50 conv/BN/ReLU stack, forward+backward");
  stack_cmd->add_option("--device", stack_device)->capture_default_str();
  stack_cmd->add_option("--batch", stack.batch)->capture_default_str();
  stack_cmd->add_option("--size", stack.image_size)->capture_default_str();
  stack_cmd->add_option("--dtype", stack.dtype, "f32, bf16 or f16")->capture_default_str();
  stack_cmd->add_option("--warmup", stack.warmup)->capture_default_str();
  stack_cmd->add_option("--iters", stack.iters)->capture_default_str();
  stack_cmd
      ->add_option("--profile", stack.profile_iters,
                   "Iterations of a synchronised per-layer profile (0: none)")
      ->capture_default_str();

  std::string bench_train_config;
  std::vector<std::string> bench_train_overrides;
  cohort::launch::BenchTrainOptions bench_train;
  auto* bench_train_cmd = bench_cmd->add_subcommand(
      "train", "Whole training steps of a train config's model on synthetic device inputs");
  bench_train_cmd->add_option("--config", bench_train_config, "YAML file (configs/*.yaml)");
  bench_train_cmd->add_option("--set", bench_train_overrides,
                              "Override: section.key=value (repeatable), e.g. run.dtype=bf16");
  bench_train_cmd->add_option("--warmup", bench_train.warmup)->capture_default_str();
  bench_train_cmd->add_option("--iters", bench_train.iters)->capture_default_str();
  bench_train_cmd
      ->add_option("--profile", bench_train.profile_iters,
                   "Iterations of a synchronised per-layer profile (0: none; one rank only)")
      ->capture_default_str();

  cohort::comm::CommBenchOptions comm_bench;
  std::string comm_dtype = "f32";
  auto* comm_cmd = bench_cmd->add_subcommand(
      "comm", "Collective bandwidth per backend (run under mpirun/srun, one rank per GPU)");
  comm_cmd->add_option("--backend", comm_bench.backend, "mpi (host tensors) or nccl (GPUs)")
      ->capture_default_str();
  comm_cmd->add_option("--min-bytes", comm_bench.min_bytes)->capture_default_str();
  comm_cmd->add_option("--max-bytes", comm_bench.max_bytes)->capture_default_str();
  comm_cmd->add_option("--warmup", comm_bench.warmup_iters)->capture_default_str();
  comm_cmd->add_option("--iters", comm_bench.iters)->capture_default_str();
  comm_cmd->add_option("--dtype", comm_dtype, "f32, bf16 or f16")->capture_default_str();

  cohort::comm::ZeroReportOptions zero;
  auto* zero_cmd = bench_cmd->add_subcommand(
      "zero", "Per-rank memory of a ResNet-50 under ZeRO stages 0-3 (measured allocations)");
  zero_cmd->add_option("--world", zero.world_size)->capture_default_str();
  zero_cmd->add_option("--rank", zero.rank)->capture_default_str();
  zero_cmd->add_option("--optimizer", zero.optimizer, "sgd or adamw")->capture_default_str();

  cohort::data::DataBenchOptions data_bench;
  std::vector<std::string> data_storage;
  std::string data_kind = "segmentation", data_dtype = "f32";
  auto* data_cmd = bench_cmd->add_subcommand(
      "data", "Loader samples/s: 2048x1024 frames -> augmented crops, per storage and threads");
  data_cmd->add_option("--dir", data_bench.dir, "Shard sets and frames (reused); empty: temporary");
  data_cmd->add_option("--frames", data_bench.frames)->capture_default_str();
  data_cmd->add_option("--width", data_bench.width)->capture_default_str();
  data_cmd->add_option("--height", data_bench.height)->capture_default_str();
  data_cmd->add_option("--crop-height", data_bench.crop_height)->capture_default_str();
  data_cmd->add_option("--crop-width", data_bench.crop_width)->capture_default_str();
  data_cmd->add_option("--batch", data_bench.batch)->capture_default_str();
  data_cmd->add_option("--threads", data_bench.threads, "Thread counts (default 1,2,4,.. max)")
      ->delimiter(',');
  data_cmd->add_option("--max-threads", data_bench.max_threads)->capture_default_str();
  data_cmd->add_option("--storage", data_storage, "raw, png, jpeg (default all)")->delimiter(',');
  data_cmd->add_option("--kind", data_kind, "segmentation or multitask")->capture_default_str();
  data_cmd->add_option("--dtype", data_dtype, "f32 or bf16 images")->capture_default_str();
  data_cmd->add_option("--seconds", data_bench.min_seconds)->capture_default_str();
  bool whole_decode = false;
  data_cmd->add_flag("--whole-decode", whole_decode,
                     "Decode whole PNG/JPEG images instead of each crop's source window");

  CLI11_PARSE(app, argc, argv);
  try {
    if (demo_cmd->parsed()) {
      if (launched_as_ranks()) return run_demo_ranks(&argc, &argv, demo, demo_device);
      demo.device = resolve_device(demo_device);
      fmt::print("cohort demo: Fashion-MNIST from {}, device {}, {} epoch(s), batch {}\n",
                 demo.data_dir, demo.device.str(), demo.epochs, demo.batch_size);
      const cohort::launch::FashionMnistResult r = cohort::launch::train_fashion_mnist(demo);
      fmt::print("test accuracy {:.2f}% on 10000 images ({} steps, {:.1f} s)\n",
                 100.0 * r.test_accuracy, r.steps, r.seconds);
      return 0;
    }
    if (doctor_cmd->parsed()) return run_doctor(&argc, &argv, doctor_device);
    if (export_cmd->parsed()) {
      cohort::launch::run_export(export_options);
      return 0;
    }
    if (train_cmd->parsed() && print_config) {
      fmt::print("{}", cohort::launch::to_yaml(
                           cohort::launch::load_train_config(train_config, train_overrides)));
      return 0;
    }
    if (train_cmd->parsed()) return run_train(&argc, &argv, train_config, train_overrides);
    if (eval_cmd->parsed()) return run_eval(&argc, &argv, eval, eval_device);
    if (convert_cmd->parsed()) return cohort::data::run_convert(convert_cmd->remaining());
    if (data_cmd->parsed()) {
      if (!data_storage.empty()) {
        data_bench.encodings.clear();
        for (const std::string& e : data_storage)
          data_bench.encodings.push_back(cohort::data::parse_image_encoding(e, "--storage"));
      }
      data_bench.kind = cohort::data::parse_task_kind(data_kind, "--kind");
      COHORT_CHECK(data_dtype == "f32" || data_dtype == "bf16",
                   "bench data: --dtype must be f32 or bf16, got " + data_dtype);
      data_bench.image_dtype =
          data_dtype == "bf16" ? cohort::core::DType::bf16 : cohort::core::DType::f32;
      data_bench.decode_window = !whole_decode;
      cohort::data::run_data_bench(data_bench);
      return 0;
    }
    if (zero_cmd->parsed()) {
      cohort::comm::run_zero_memory_report(zero);
      return 0;
    }
    if (comm_cmd->parsed()) {
      comm_bench.dtype = comm_dtype == "bf16"  ? cohort::core::DType::bf16
                         : comm_dtype == "f16" ? cohort::core::DType::f16
                                               : cohort::core::DType::f32;
      COHORT_CHECK(comm_dtype == "f32" || comm_dtype == "bf16" || comm_dtype == "f16",
                   "bench comm: --dtype must be f32, bf16 or f16, got " + comm_dtype);
      cohort::comm::run_comm_bench(comm_bench);
      return 0;
    }
    if (bench_train_cmd->parsed())
      return run_bench_train(&argc, &argv, bench_train_config, bench_train_overrides, bench_train);
    if (stack_cmd->parsed()) {
      stack.device = resolve_device(stack_device);
      cohort::launch::run_bench_stack(stack);
      return 0;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cohort: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
