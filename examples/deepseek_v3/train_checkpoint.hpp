// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The trainer's checkpoints: `<out>/checkpoint-<step>/` holds the FP32 master weights as a Hugging Face
// checkpoint (config.json + model.safetensors, loadable by load_params / `deepseek_v3 logits`) and
// optimizer.safetensors (AdamW's two moments as stored, BF16 or F32, and in its metadata the step,
// seed, data position and recipe name) and loss.csv. A save writes everything into a temp directory,
// fsyncs, renames it into place, then points `<out>/latest` at it (atomic file write) and removes the
// older checkpoints: a kill at any moment leaves `latest` naming a complete checkpoint.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fp8moe/core/error.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/deepseek_v3_config.hpp"
#include "fp8moe/io/file.hpp"
#include "fp8moe/io/safetensors.hpp"
#include "fp8moe/nn/workspace.hpp"
#include "init.hpp"
#include "params.hpp"
#include "recipe.hpp"

namespace dsv3 {

/// One FP32 tensor of the parameters with its HF name and shape (a view into the params' storage).
struct named_tensor {
  std::string name;
  std::vector<std::int64_t> shape;
  std::span<float> data;
};

/// Every tensor of FP32 parameters `p` (p.prec == fp32), in the checkpoint's binding order, as views
/// into p's storage. Also works for any params-shaped FP32 struct (gradients).
inline std::vector<named_tensor> master_tensors(params const& p) {
  fm::require(p.prec == precision::fp32 && p.storage, "dsv3::master_tensors", "p",
              "FP32 parameters (loaded)");
  params q;  // re-bound over the same bytes: the same layout, so the same addresses
  q.cfg = p.cfg;
  q.prec = precision::fp32;
  fm::nn::workspace_arena arena({p.storage.get(), p.bytes});
  std::vector<detail::slot> slots;
  detail::bind_all(q, arena, &slots);
  std::vector<named_tensor> out;
  out.reserve(slots.size());
  for (auto const& s : slots) {
    std::int64_t n = 1;
    for (auto d : s.shape) n *= d;
    float* d = s.linear ? s.linear->f32.data : s.floats;
    out.push_back({s.name, s.shape, {d, static_cast<std::size_t>(n)}});
  }
  return out;
}

/// The optimizer and loop state a checkpoint carries besides the weights.
struct train_state {
  std::int64_t step = 0;            // completed steps (skipped steps included)
  std::int64_t updates = 0;         // AdamW updates applied (its bias-correction step count)
  std::uint64_t seed = 0;           // the run's seed (data sampler)
  std::uint64_t data_position = 0;  // batches drawn
  std::string recipe;               // the recipe's name
  std::string curve_csv;            // the loss curve so far (loss_curve_csv)
  moment_dtype moments = moment_dtype::bf16;
  std::vector<float> m32, v32;       // (N) moments when fp32: all tensors concatenated in binding order
  std::vector<bfloat16_t> m16, v16;  // (N) moments when bf16
};

/// Options of a save (tests inject failures here).
struct save_options {
  /// Called after the temp directory is complete and before it is renamed into place (a throw or a
  /// kill here must leave the previous checkpoint as `latest`).
  std::function<void(std::filesystem::path const& temp)> before_rename;
  bool keep_older = false;  // keep the previous checkpoint-* directories
};

namespace detail {
inline void fsync_path(std::filesystem::path const& p, bool dir) {
  int const fd = ::open(p.c_str(), (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: some file systems refuse a directory fsync
  ::close(fd);
}
inline std::string checkpoint_name(std::int64_t step) {
  return "checkpoint-" + std::to_string(step);
}
}  // namespace detail

/// Saves master weights `master` (FP32 params) and `st` under `out` (created if needed) as
/// checkpoint-<st.step>, atomically as the file comment says. Returns the checkpoint directory.
inline std::filesystem::path save_train_checkpoint(std::filesystem::path const& out, params const& master,
                                                   train_state const& st, save_options const& opt = {}) {
  namespace io = fp8moe::io;
  auto const tensors = master_tensors(master);
  std::size_t n = 0;
  for (auto const& t : tensors) n += t.data.size();
  bool const bf = st.moments == moment_dtype::bf16;
  fm::require((bf ? st.m16.size() : st.m32.size()) == n && (bf ? st.v16.size() : st.v32.size()) == n,
              "dsv3::save_train_checkpoint", "st", "moments of " + std::to_string(n) + " elements");
  std::filesystem::create_directories(out);
  std::string const name = detail::checkpoint_name(st.step);
  std::filesystem::path const final_dir = out / name, tmp = out / ("." + name + ".tmp");
  std::filesystem::remove_all(tmp);  // a leftover of a killed save
  std::filesystem::create_directories(tmp);

  std::vector<io::tensor_entry> entries;
  for (auto const& t : tensors)
    entries.push_back(io::make_tensor_entry<float>(t.name, std::span<float const>(t.data), t.shape));
  io::write_safetensors(tmp / io::single_safetensors_name, entries, {{"format", "pt"}});
  io::write_deepseek_v3_config(tmp / "config.json", checkpoint_config(master.cfg, checkpoint_dtype::f32));
  std::vector<io::tensor_entry> moments;
  auto const N = static_cast<std::int64_t>(n);
  if (bf) {
    moments.push_back(io::make_tensor_entry<bfloat16_t>("exp_avg", std::span<bfloat16_t const>(st.m16), {N}));
    moments.push_back(
        io::make_tensor_entry<bfloat16_t>("exp_avg_sq", std::span<bfloat16_t const>(st.v16), {N}));
  } else {
    moments.push_back(io::make_tensor_entry<float>("exp_avg", std::span<float const>(st.m32), {N}));
    moments.push_back(io::make_tensor_entry<float>("exp_avg_sq", std::span<float const>(st.v32), {N}));
  }
  io::write_safetensors(tmp / "optimizer.safetensors", moments,
                        {{"step", std::to_string(st.step)},
                         {"updates", std::to_string(st.updates)},
                         {"seed", std::to_string(st.seed)},
                         {"data_position", std::to_string(st.data_position)},
                         {"recipe", st.recipe},
                         {"moments", std::string(to_string(st.moments))}});
  io::write_file_atomically(tmp / "loss.csv",
                            std::as_bytes(std::span<char const>(st.curve_csv.data(), st.curve_csv.size())));
  detail::fsync_path(tmp, true);
  if (opt.before_rename) opt.before_rename(tmp);
  std::filesystem::remove_all(final_dir);  // an older run's checkpoint of the same step (never `latest`'s
                                           // target here: latest names a smaller step or another run)
  std::filesystem::rename(tmp, final_dir);
  detail::fsync_path(out, true);
  std::string const latest = name + "\n";
  io::write_file_atomically(out / "latest",
                            std::as_bytes(std::span<char const>(latest.data(), latest.size())));
  if (!opt.keep_older)
    for (auto const& e : std::filesystem::directory_iterator(out)) {
      auto const f = e.path().filename().string();
      if (e.is_directory() && f.starts_with("checkpoint-") && f != name)
        std::filesystem::remove_all(e.path());
    }
  return final_dir;
}

/// The checkpoint directory `dir` names: `dir` itself when it holds optimizer.safetensors, else the one
/// `dir`/latest names. One clear fp8moe::error (naming --resume) otherwise.
inline std::filesystem::path resolve_train_checkpoint(std::filesystem::path const& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir / "optimizer.safetensors", ec)) return dir;
  fm::require(std::filesystem::exists(dir / "latest", ec), "dsv3::resume", "--resume",
              "a training output directory (with a 'latest' file) or a checkpoint-<step> directory",
              "\"" + dir.string() + "\"");
  std::string name = fp8moe::io::read_text_file(dir / "latest", 4096);
  while (!name.empty() && (name.back() == '\n' || name.back() == '\r' || name.back() == ' ')) name.pop_back();
  fm::require(!name.empty() && name.find('/') == std::string::npos &&
                  std::filesystem::exists(dir / name / "optimizer.safetensors", ec),
              "dsv3::resume", "--resume", "a 'latest' file naming a complete checkpoint",
              "\"" + (dir / "latest").string() + "\" names \"" + name + "\"");
  return dir / name;
}

/// Loads a checkpoint (resolve_train_checkpoint): the FP32 master weights and the train state.
inline std::pair<params, train_state> load_train_checkpoint(std::filesystem::path const& dir) {
  namespace io = fp8moe::io;
  auto const ck = resolve_train_checkpoint(dir);
  params p = load_params(ck, precision::fp32);
  io::safetensors_file const f(ck / "optimizer.safetensors");
  auto const& md = f.header().metadata;
  auto get = [&](char const* k) {
    auto const it = md.find(k);
    fm::require(it != md.end(), "dsv3::load_train_checkpoint", "optimizer.safetensors",
                std::string("a metadata entry '") + k + "'");
    return it->second;
  };
  train_state st;
  st.step = std::stoll(get("step"));
  st.updates = std::stoll(get("updates"));
  st.seed = std::stoull(get("seed"));
  st.data_position = std::stoull(get("data_position"));
  st.recipe = get("recipe");
  st.moments = get("moments") == "bf16" ? moment_dtype::bf16 : moment_dtype::fp32;
  std::size_t n = 0;
  for (auto const& t : master_tensors(p)) n += t.data.size();
  auto const N = static_cast<std::int64_t>(n);
  if (st.moments == moment_dtype::bf16) {
    auto const m = f.tensor("exp_avg").as<bfloat16_t>({N});
    auto const v = f.tensor("exp_avg_sq").as<bfloat16_t>({N});
    st.m16.assign(m.begin(), m.end());
    st.v16.assign(v.begin(), v.end());
  } else {
    auto const m = f.tensor("exp_avg").as<float>({N});
    auto const v = f.tensor("exp_avg_sq").as<float>({N});
    st.m32.assign(m.begin(), m.end());
    st.v32.assign(v.begin(), v.end());
  }
  st.curve_csv = io::read_text_file(ck / "loss.csv", 256u << 20);
  return {std::move(p), std::move(st)};
}

}  // namespace dsv3
