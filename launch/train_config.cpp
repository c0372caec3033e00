#include "launch/train_config.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <functional>
#include <set>

#include "core/error.hpp"

namespace cohort::launch {
namespace {

// One configurable field: where it lives in the YAML and how to read/write it.
// File values and --set overrides go through the same text parser.
struct Field {
  const char* section;
  const char* key;
  std::function<void(TrainConfig&, const std::string& text, const std::string& where)> set;
  std::function<std::string(const TrainConfig&)> get;
  // A list: YAML sequences are accepted (joined with commas) and to_yaml writes
  // one; `get` gives the elements as comma-separated text.
  bool list = false;
};

std::string name_of(const Field& f) {
  return std::string(f.section) + "." + f.key;
}

template <typename T>
T parse_number(const std::string& text, const std::string& where) {
  T value{};
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  COHORT_CHECK(ec == std::errc() && ptr == end,
               fmt::format("{}: '{}' is not a valid number", where, text));
  return value;
}

bool parse_bool(const std::string& text, const std::string& where) {
  if (text == "true" || text == "yes" || text == "1") return true;
  if (text == "false" || text == "no" || text == "0") return false;
  COHORT_FAIL(fmt::format("{}: '{}' is not true or false", where, text));
}

template <typename T>
Field number(const char* section, const char* key, T TrainConfig::*member) {
  return {section, key,
          [member](TrainConfig& c, const std::string& text, const std::string& where) {
            c.*member = parse_number<T>(text, where);
          },
          [member](const TrainConfig& c) { return fmt::format("{}", c.*member); }};
}

Field text(const char* section, const char* key, std::string TrainConfig::*member) {
  return {
      section, key,
      [member](TrainConfig& c, const std::string& value, const std::string&) { c.*member = value; },
      [member](const TrainConfig& c) { return c.*member; }};
}

Field flag(const char* section, const char* key, bool TrainConfig::*member) {
  return {section, key,
          [member](TrainConfig& c, const std::string& value, const std::string& where) {
            c.*member = parse_bool(value, where);
          },
          [member](const TrainConfig& c) { return std::string(c.*member ? "true" : "false"); }};
}

std::string trimmed(const std::string& text) {
  const size_t first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return {};
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// "1, 0.5", "[1,0.5]" or "" (no values).
std::vector<double> parse_numbers(const std::string& text, const std::string& where) {
  std::string body = trimmed(text);
  if (body.size() >= 2 && body.front() == '[' && body.back() == ']')
    body = trimmed(body.substr(1, body.size() - 2));
  std::vector<double> values;
  if (body.empty()) return values;
  size_t start = 0;
  while (true) {
    const size_t comma = body.find(',', start);
    const std::string item = trimmed(body.substr(start, comma - start));
    COHORT_CHECK(!item.empty(),
                 fmt::format("{}: '{}' has an empty element (expected numbers separated by commas)",
                             where, text));
    values.push_back(parse_number<double>(item, where));
    if (comma == std::string::npos) return values;
    start = comma + 1;
  }
}

Field numbers(const char* section, const char* key, std::vector<double> TrainConfig::*member) {
  return {section, key,
          [member](TrainConfig& c, const std::string& text, const std::string& where) {
            c.*member = parse_numbers(text, where);
          },
          [member](const TrainConfig& c) { return fmt::format("{}", fmt::join(c.*member, ", ")); },
          true};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> all = {
      text("run", "out_dir", &TrainConfig::out_dir),
      number("run", "seed", &TrainConfig::seed),
      text("run", "device", &TrainConfig::device),
      text("run", "dtype", &TrainConfig::dtype),
      number("run", "stop_after_steps", &TrainConfig::stop_after_steps),
      flag("run", "deterministic", &TrainConfig::deterministic),
      text("model", "kind", &TrainConfig::model),
      number("model", "num_classes", &TrainConfig::num_classes),
      number("model", "depth", &TrainConfig::depth),
      number("model", "output_stride", &TrainConfig::output_stride),
      number("model", "freeze_backbone_steps", &TrainConfig::freeze_backbone_steps),
      flag("model", "depth_head", &TrainConfig::depth_head),
      number("model", "depth_scale", &TrainConfig::depth_scale),
      text("model", "pretrained", &TrainConfig::pretrained),
      text("loss", "normalize", &TrainConfig::loss_normalize),
      numbers("loss", "class_weights", &TrainConfig::class_weights),
      text("loss", "balancing", &TrainConfig::loss_balancing),
      numbers("loss", "weights", &TrainConfig::loss_weights),
      number("loss", "dwa_temperature", &TrainConfig::dwa_temperature),
      number("loss", "gradnorm_alpha", &TrainConfig::gradnorm_alpha),
      number("loss", "gradnorm_lr", &TrainConfig::gradnorm_lr),
      text("loss", "gradnorm_layer", &TrainConfig::gradnorm_layer),
      text("data", "train", &TrainConfig::train_shards),
      text("data", "eval", &TrainConfig::eval_shards),
      number("data", "batch", &TrainConfig::batch),
      number("data", "threads", &TrainConfig::threads),
      number("data", "prefetch", &TrainConfig::prefetch),
      number("data", "micro_batches", &TrainConfig::micro_batches),
      text("data", "augment", &TrainConfig::augment),
      number("data", "image_size", &TrainConfig::image_size),
      number("data", "crop_height", &TrainConfig::crop_height),
      number("data", "crop_width", &TrainConfig::crop_width),
      number("data", "min_scale", &TrainConfig::min_scale),
      number("data", "max_scale", &TrainConfig::max_scale),
      text("data", "eval_crop", &TrainConfig::eval_crop),
      text("optimizer", "kind", &TrainConfig::optimizer),
      number("optimizer", "lr", &TrainConfig::lr),
      number("optimizer", "momentum", &TrainConfig::momentum),
      flag("optimizer", "nesterov", &TrainConfig::nesterov),
      number("optimizer", "weight_decay", &TrainConfig::weight_decay),
      number("optimizer", "grad_clip_norm", &TrainConfig::grad_clip_norm),
      text("schedule", "kind", &TrainConfig::schedule),
      number("schedule", "warmup_steps", &TrainConfig::warmup_steps),
      number("schedule", "epochs", &TrainConfig::epochs),
      number("schedule", "max_steps", &TrainConfig::max_steps),
      number("parallel", "zero_stage", &TrainConfig::zero_stage),
      number("parallel", "bucket_mib", &TrainConfig::bucket_mib),
      flag("parallel", "bf16_gradients", &TrainConfig::bf16_gradients),
      flag("parallel", "sync_batch_norm", &TrainConfig::sync_batch_norm),
      number("parallel", "prefetch_mib", &TrainConfig::prefetch_mib),
      number("checkpoint", "every_steps", &TrainConfig::checkpoint_every),
      flag("checkpoint", "resume", &TrainConfig::resume),
      number("checkpoint", "keep_last", &TrainConfig::keep_last),
      text("checkpoint", "keep_best", &TrainConfig::keep_best),
      number("log", "every_steps", &TrainConfig::log_every),
      number("log", "eval_every_steps", &TrainConfig::eval_every),
      flag("log", "tensorboard", &TrainConfig::tensorboard),
  };
  return all;
}

const Field* find_field(const std::string& section, const std::string& key) {
  for (const Field& f : fields())
    if (section == f.section && key == f.key) return &f;
  return nullptr;
}

std::string known_keys(const std::string& section) {
  std::string out;
  for (const Field& f : fields())
    if (section.empty() || section == f.section)
      out += (out.empty() ? "" : ", ") + (section.empty() ? name_of(f) : std::string(f.key));
  return out;
}

void set_field(TrainConfig& c, const std::string& section, const std::string& key,
               const std::string& value, const std::string& where) {
  const Field* f = find_field(section, key);
  if (f == nullptr) {
    std::set<std::string> sections;
    for (const Field& g : fields())
      sections.insert(g.section);
    if (sections.count(section) == 0)
      COHORT_FAIL(
          fmt::format("{}: unknown section '{}' (known: run, model, loss, data, optimizer, "
                      "schedule, parallel, checkpoint, log)",
                      where, section));
    COHORT_FAIL(fmt::format("{}: unknown key '{}.{}' (known in {}: {})", where, section, key,
                            section, known_keys(section)));
  }
  f->set(c, value, fmt::format("{} ({}.{})", where, section, key));
}

void check_one_of(const std::string& value, std::initializer_list<const char*> allowed,
                  const char* key) {
  std::string list;
  for (const char* a : allowed) {
    if (value == a) return;
    list += (list.empty() ? "" : ", ") + std::string(a);
  }
  COHORT_FAIL(fmt::format("config: {} must be one of {}, got '{}'", key, list, value));
}

// The loss section: only a multi-task model has losses to balance, and every key
// belongs to one method, so a key that would not be used is an error, not ignored.
// loss.normalize applies to every model.
void validate_loss(const TrainConfig& c) {
  const TrainConfig defaults;
  check_one_of(c.loss_normalize, {"global", "per_rank"}, "loss.normalize");
  if (!c.class_weights.empty()) {
    COHORT_CHECK(c.class_weights.size() == static_cast<size_t>(c.num_classes),
                 fmt::format("config: loss.class_weights needs one weight per class "
                             "(model.num_classes {}), got {}",
                             c.num_classes, c.class_weights.size()));
    bool any = false;
    for (double w : c.class_weights) {
      COHORT_CHECK(std::isfinite(w) && w >= 0,
                   fmt::format("config: loss.class_weights must be finite and >= 0, got {}", w));
      any = any || w > 0;
    }
    COHORT_CHECK(any, "config: loss.class_weights are all 0: nothing would train");
  }
  check_one_of(c.loss_balancing, {"uncertainty", "fixed", "dwa", "pcgrad", "gradnorm"},
               "loss.balancing");
  auto check_unused = [&](bool is_default, const char* key, const char* needs) {
    COHORT_CHECK(is_default, fmt::format("config: {} is set but only used with {}", key, needs));
  };
  if (!c.depth_head) {
    const char* needs = "model.depth_head true (a multi-task model)";
    check_unused(c.loss_balancing == defaults.loss_balancing, "loss.balancing", needs);
    check_unused(c.loss_weights.empty(), "loss.weights", needs);
    check_unused(c.dwa_temperature == defaults.dwa_temperature, "loss.dwa_temperature", needs);
    check_unused(c.depth_scale == defaults.depth_scale, "model.depth_scale", needs);
  }
  COHORT_CHECK(c.depth_scale > 0 && std::isfinite(c.depth_scale),
               fmt::format("config: model.depth_scale must be a positive number of metres, got {}",
                           c.depth_scale));
  check_unused(
      c.loss_weights.empty() || c.loss_balancing == "fixed" || c.loss_balancing == "pcgrad",
      "loss.weights", "loss.balancing fixed or pcgrad");
  check_unused(c.dwa_temperature == defaults.dwa_temperature || c.loss_balancing == "dwa",
               "loss.dwa_temperature", "loss.balancing dwa");
  const bool gradnorm = c.loss_balancing == "gradnorm";
  check_unused(c.gradnorm_alpha == defaults.gradnorm_alpha || gradnorm, "loss.gradnorm_alpha",
               "loss.balancing gradnorm");
  check_unused(c.gradnorm_lr == defaults.gradnorm_lr || gradnorm, "loss.gradnorm_lr",
               "loss.balancing gradnorm");
  check_unused(c.gradnorm_layer.empty() || gradnorm, "loss.gradnorm_layer",
               "loss.balancing gradnorm");
  COHORT_CHECK(c.dwa_temperature > 0 && std::isfinite(c.dwa_temperature),
               fmt::format("config: loss.dwa_temperature must be > 0, got {}", c.dwa_temperature));
  COHORT_CHECK(c.gradnorm_alpha >= 0 && std::isfinite(c.gradnorm_alpha),
               fmt::format("config: loss.gradnorm_alpha must be >= 0, got {}", c.gradnorm_alpha));
  COHORT_CHECK(c.gradnorm_lr > 0 && std::isfinite(c.gradnorm_lr),
               fmt::format("config: loss.gradnorm_lr must be > 0, got {}", c.gradnorm_lr));
  if (c.loss_balancing == "pcgrad" || gradnorm)
    COHORT_CHECK(c.micro_batches == 1,
                 fmt::format("config: loss.balancing {} takes one backward per task from the "
                             "same forward, so data.micro_batches must be 1, got {} (each "
                             "micro-batch would need a gradient buffer per task)",
                             c.loss_balancing, c.micro_batches));
  if (c.loss_weights.empty()) return;
  const size_t tasks = 2;  // deeplabv3plus with depth_head: segmentation, depth
  COHORT_CHECK(c.loss_weights.size() == tasks,
               fmt::format("config: loss.weights needs one weight per task loss ({}: "
                           "segmentation, depth), got {}: {}",
                           tasks, c.loss_weights.size(), fmt::join(c.loss_weights, ", ")));
  bool any = false;
  for (double w : c.loss_weights) {
    COHORT_CHECK(std::isfinite(w) && w >= 0,
                 fmt::format("config: loss.weights must be finite and >= 0, got {}",
                             fmt::join(c.loss_weights, ", ")));
    any = any || w > 0;
  }
  COHORT_CHECK(any, "config: loss.weights are all 0: nothing would train");
}

// checkpoint.keep_best: a metric the model's evaluation reports, and an eval set.
void validate_keep_best(const TrainConfig& c) {
  if (c.keep_best.empty()) return;
  check_one_of(c.keep_best,
               {"eval_accuracy", "eval_pixel_accuracy", "eval_miou", "eval_depth_abs_rel",
                "eval_depth_rmse"},
               "checkpoint.keep_best");
  const bool dense = c.model == "deeplabv3plus";
  const bool reported = c.keep_best == "eval_accuracy"          ? !dense
                        : c.keep_best.starts_with("eval_depth") ? c.depth_head
                                                                : dense;
  COHORT_CHECK(reported,
               fmt::format("config: checkpoint.keep_best {} is not a metric that "
                           "model.kind {}{} reports",
                           c.keep_best, c.model, c.depth_head ? " with a depth head" : ""));
  COHORT_CHECK(!c.eval_shards.empty(),
               fmt::format("config: checkpoint.keep_best {} needs an evaluation set (data.eval)",
                           c.keep_best));
}

void validate(const TrainConfig& c) {
  check_one_of(c.dtype, {"f32", "bf16", "f16"}, "run.dtype");
  check_one_of(c.model, {"small_cnn", "resnet", "deeplabv3plus"}, "model.kind");
  COHORT_CHECK(c.depth == 18 || c.depth == 34 || c.depth == 50 || c.depth == 101,
               fmt::format("config: model.depth must be 18, 34, 50 or 101, got {}", c.depth));
  COHORT_CHECK(c.model != "deeplabv3plus" || c.depth >= 50,
               fmt::format("config: deeplabv3plus needs a bottleneck ResNet (depth 50 or 101), "
                           "got depth {}",
                           c.depth));
  COHORT_CHECK(
      !c.depth_head || c.model == "deeplabv3plus",
      fmt::format("config: model.depth_head needs model.kind deeplabv3plus, got {}", c.model));
  validate_loss(c);
  COHORT_CHECK(c.freeze_backbone_steps >= 0,
               fmt::format("config: model.freeze_backbone_steps must be >= 0, got {}",
                           c.freeze_backbone_steps));
  COHORT_CHECK(c.freeze_backbone_steps == 0 || c.model != "small_cnn",
               "config: model.freeze_backbone_steps needs a model with a backbone (resnet or "
               "deeplabv3plus), not small_cnn");
  check_one_of(c.eval_crop, {"full", "center"}, "data.eval_crop");
  validate_keep_best(c);
  COHORT_CHECK(c.image_size >= 0,
               fmt::format("config: data.image_size must be >= 0, got {}", c.image_size));
  COHORT_CHECK(c.output_stride == 8 || c.output_stride == 16,
               fmt::format("config: model.output_stride must be 8 or 16, got {}", c.output_stride));
  COHORT_CHECK(c.crop_height >= 1 && c.crop_width >= 1,
               fmt::format("config: data.crop_height/crop_width must be >= 1, got {}x{}",
                           c.crop_height, c.crop_width));
  COHORT_CHECK(c.min_scale > 0 && c.min_scale <= c.max_scale,
               fmt::format("config: need 0 < data.min_scale <= data.max_scale, got {} and {}",
                           c.min_scale, c.max_scale));
  check_one_of(c.augment, {"none", "standard"}, "data.augment");
  check_one_of(c.optimizer, {"sgd", "adamw"}, "optimizer.kind");
  check_one_of(c.schedule, {"constant", "step", "poly", "cosine"}, "schedule.kind");
  COHORT_CHECK(!c.out_dir.empty(), "config: run.out_dir must not be empty");
  COHORT_CHECK(!c.train_shards.empty(), "config: data.train (a shard-set directory) is required");
  COHORT_CHECK(c.num_classes >= 2,
               fmt::format("config: model.num_classes must be >= 2, got {}", c.num_classes));
  COHORT_CHECK(c.batch >= 1, fmt::format("config: data.batch must be >= 1, got {}", c.batch));
  COHORT_CHECK(c.threads >= 0, fmt::format("config: data.threads must be >= 0, got {}", c.threads));
  COHORT_CHECK(c.prefetch >= 1,
               fmt::format("config: data.prefetch must be >= 1, got {}", c.prefetch));
  COHORT_CHECK(c.lr > 0, fmt::format("config: optimizer.lr must be > 0, got {}", c.lr));
  COHORT_CHECK(c.momentum >= 0 && c.momentum < 1,
               fmt::format("config: optimizer.momentum must be in [0, 1), got {}", c.momentum));
  COHORT_CHECK(c.weight_decay >= 0,
               fmt::format("config: optimizer.weight_decay must be >= 0, got {}", c.weight_decay));
  COHORT_CHECK(c.grad_clip_norm >= 0 && std::isfinite(c.grad_clip_norm),
               fmt::format("config: optimizer.grad_clip_norm must be >= 0 (0: off), got {}",
                           c.grad_clip_norm));
  COHORT_CHECK(
      c.micro_batches >= 1 && c.batch % c.micro_batches == 0,
      fmt::format("config: data.micro_batches must be >= 1 and divide data.batch {}, got {}",
                  c.batch, c.micro_batches));
  COHORT_CHECK(c.warmup_steps >= 0,
               fmt::format("config: schedule.warmup_steps must be >= 0, got {}", c.warmup_steps));
  COHORT_CHECK(c.epochs >= 1,
               fmt::format("config: schedule.epochs must be >= 1, got {}", c.epochs));
  COHORT_CHECK(c.max_steps >= 0,
               fmt::format("config: schedule.max_steps must be >= 0, got {}", c.max_steps));
  COHORT_CHECK(c.zero_stage >= 0 && c.zero_stage <= 3,
               fmt::format("config: parallel.zero_stage must be 0-3, got {}", c.zero_stage));
  COHORT_CHECK(
      c.bucket_mib > 0 && c.bucket_mib <= 4096,
      fmt::format("config: parallel.bucket_mib must be in (0, 4096], got {}", c.bucket_mib));
  COHORT_CHECK(
      c.prefetch_mib >= 0 && c.prefetch_mib <= 65536,
      fmt::format("config: parallel.prefetch_mib must be in [0, 65536], got {}", c.prefetch_mib));
  COHORT_CHECK(!c.bf16_gradients || c.zero_stage <= 1,
               fmt::format("config: parallel.bf16_gradients is for zero_stage 0 and 1 (stages 2 "
                           "and 3 reduce f32 gradient shards), got zero_stage {}",
                           c.zero_stage));
  COHORT_CHECK(c.checkpoint_every >= 0, fmt::format("config: checkpoint.every_steps must be >= 0, "
                                                    "got {}",
                                                    c.checkpoint_every));
  COHORT_CHECK(c.keep_last >= 1,
               fmt::format("config: checkpoint.keep_last must be >= 1 (got {})", c.keep_last));
  COHORT_CHECK(
      c.stop_after_steps >= 0,
      fmt::format("config: run.stop_after_steps must be >= 0, got {}", c.stop_after_steps));
  COHORT_CHECK(c.eval_every >= 0,
               fmt::format("config: log.eval_every_steps must be >= 0, got {}", c.eval_every));
  COHORT_CHECK(c.log_every >= 1,
               fmt::format("config: log.every_steps must be >= 1, got {}", c.log_every));
}

void apply_yaml(TrainConfig& c, const YAML::Node& root, const std::string& where) {
  if (!root || root.IsNull()) return;
  COHORT_CHECK(root.IsMap(), fmt::format("{}: expected a mapping of sections", where));
  for (const auto& section : root) {
    const std::string name = section.first.as<std::string>();
    const YAML::Node& body = section.second;
    if (body.IsNull()) continue;
    COHORT_CHECK(body.IsMap(), fmt::format("{}: section '{}' must be a mapping", where, name));
    for (const auto& entry : body) {
      const std::string key = entry.first.as<std::string>();
      const Field* f = find_field(name, key);
      if (f == nullptr) set_field(c, name, key, "", where);  // throws: names what is known
      if (f->list && entry.second.IsSequence()) {
        std::vector<std::string> items;
        for (const auto& item : entry.second) {
          COHORT_CHECK(item.IsScalar(),
                       fmt::format("{}: {}.{} must be a list of numbers", where, name, key));
          items.push_back(item.Scalar());
        }
        // An empty element must not vanish in the join: "[]" stays empty, [1, ""] fails.
        set_field(c, name, key, items.empty() ? "" : fmt::format("{}", fmt::join(items, ",")),
                  where);
        continue;
      }
      COHORT_CHECK(entry.second.IsScalar(),
                   fmt::format("{}: {}.{} must be {}", where, name, key,
                               f->list ? "a list or comma-separated numbers" : "a single value"));
      set_field(c, name, key, entry.second.Scalar(), where);
    }
  }
}

}  // namespace

namespace {

void apply_overrides(TrainConfig& c, const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) {
    const std::string where = fmt::format("--set {}", o);
    const size_t eq = o.find('='), dot = o.find('.');
    COHORT_CHECK(
        eq != std::string::npos && dot != std::string::npos && dot < eq,
        fmt::format("{}: expected section.key=value (known keys: {})", where, known_keys("")));
    set_field(c, o.substr(0, dot), o.substr(dot + 1, eq - dot - 1), o.substr(eq + 1), where);
  }
}

}  // namespace

TrainConfig load_train_config(const std::string& path, const std::vector<std::string>& overrides) {
  TrainConfig c;
  if (!path.empty()) {
    YAML::Node root;
    try {
      root = YAML::LoadFile(path);
    } catch (const YAML::Exception& e) {
      COHORT_FAIL(fmt::format("config {}: {}", path, e.what()));
    }
    apply_yaml(c, root, "config " + path);
  }
  apply_overrides(c, overrides);
  validate(c);
  return c;
}

TrainConfig parse_train_config(const std::string& yaml_text, const std::string& source,
                               const std::vector<std::string>& overrides) {
  TrainConfig c;
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    COHORT_FAIL(fmt::format("config {}: {}", source, e.what()));
  }
  apply_yaml(c, root, "config " + source);
  apply_overrides(c, overrides);
  validate(c);
  return c;
}

TrainConfig checkpoint_train_config(const std::map<std::string, std::string>& checkpoint_strings,
                                    const std::string& path, const std::string& command,
                                    const std::vector<std::string>& overrides) {
  const auto text = checkpoint_strings.find("config");
  COHORT_CHECK(text != checkpoint_strings.end() && !text->second.empty(),
               fmt::format("{}: {} holds no training config (it was not written by `cohort "
                           "train`)",
                           command, path));
  return parse_train_config(text->second, path + " (its stored config)", overrides);
}

std::string to_yaml(const TrainConfig& config) {
  // Every value is written as text and read back through the same parsers.
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string section;
  for (const Field& f : fields()) {
    if (section != f.section) {
      if (!section.empty()) out << YAML::EndMap;
      section = f.section;
      out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    }
    out << YAML::Key << f.key << YAML::Value;
    if (f.list) {
      out << YAML::Flow << YAML::BeginSeq;
      const std::string items = f.get(config);
      for (size_t start = 0; !items.empty();) {
        const size_t comma = items.find(',', start);
        out << trimmed(items.substr(start, comma - start));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      out << YAML::EndSeq;
    } else {
      out << f.get(config);
    }
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace cohort::launch
