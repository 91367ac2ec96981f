// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// dsv3::trainer: the training loop of `deepseek_v3 train`. Per step: B sequences of S+1 tokens from
// the seeded sampler -> for each, model::forward + model::backward with the recipe's balance term and
// MTP term (lambda = recipe.mtp_lambda; the MTP layer trains through it) (gradients ACCUMULATE in one
// FP32 gradient struct) -> NaN/Inf check of the loss and every gradient (reported with the step and the
// tensor's HF name; the step is skipped, weights and moments untouched) -> global norm of the mean
// gradient, clip -> AdamW (FP32 master weights, moments as the recipe says) at the schedule's lr ->
// the aux-loss-free bias update from the batch's expert counts -> the compute weights (bf16 / fp8)
// re-derived from the masters. Held-out loss every eval_every steps; checkpoints (train_checkpoint.hpp)
// every save_every steps and at the end; --resume continues bit-exactly. Single-threaded caller.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "config.hpp"
#include "counts.hpp"
#include "data.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/moe/balance.hpp"
#include "fp8moe/nn/softmax.hpp"
#include "fp8moe/optim/adamw.hpp"
#include "fp8moe/optim/clip.hpp"
#include "hf_names.hpp"
#include "init.hpp"
#include "loss_curve.hpp"
#include "model.hpp"
#include "params.hpp"
#include "progress.hpp"
#include "recipe.hpp"
#include "tokenizer.hpp"
#include "train_checkpoint.hpp"

namespace dsv3 {

/// What a training run does besides its recipe.
struct train_options {
  std::string config = "tiny";  // a preset, a config.json, or a checkpoint directory (its weights start)
  std::int64_t steps = 100;     // total optimizer steps of the run (the schedule's length)
  std::int64_t stop_after = 0;  // stop (and save) after this step, as if killed there (0: run to `steps`)
  std::int64_t batch = 4;       // B sequences per step
  std::int64_t seq = 64;        // S tokens per sequence (each row holds S+1)
  std::uint64_t seed = 1;       // initial weights (random init) and the data sampler
  training_recipe recipe = fp8_recipe();
  std::filesystem::path out;     // checkpoints, loss.csv, loss.svg (empty: write nothing)
  std::filesystem::path resume;  // a previous run's out directory or checkpoint (empty: start fresh)
  std::int64_t eval_every = 25;  // held-out loss every this many steps (and at the last)
  std::int64_t save_every = 0;   // checkpoint every this many steps (0: only at the end)
  std::int64_t log_every = 1;    // a progress line every this many steps (0: none)
  std::int64_t load_every = 25;  // the expert-load line every this many steps (0: none)
  std::FILE* log = stdout;       // where the lines go (nullptr: nowhere)
  /// Test hook: called with the step and the gradients after the backward, before the checks.
  std::function<void(std::int64_t step, params& grads)> inspect_gradients;
};

/// What one step did.
struct step_result {
  std::int64_t step = 0;
  double loss = NAN;      // mean main cross-entropy over the batch
  double balance = 0;     // the balance term (alpha included)
  double mtp_loss = NAN;  // mean MTP cross-entropy (lambda excluded); NaN: no MTP term (lambda 0 or no layer)
  double grad_norm = NAN;  // of the mean gradient, before clipping
  float lr = 0;
  bool skipped = false;
  std::string problem;                                    // why it was skipped
  double forward_s = 0, backward_s = 0, optimizer_s = 0;  // seconds of the step's phases
};

namespace detail {

/// Random initial FP32 weights of `c` (init.hpp's random_values per HF tensor name and seed).
inline params random_params(config const& c, std::uint64_t seed) {
  params p;
  p.cfg = c;
  p.prec = precision::fp32;
  p.bytes = param_bytes(c, precision::fp32);
  p.storage = std::shared_ptr<std::byte[]>(new std::byte[p.bytes]());
  fm::nn::workspace_arena arena({p.storage.get(), p.bytes});
  bind_all(p, arena, nullptr);
  auto tensors = master_tensors(p);
  auto const inv = hf_inventory(c);
  for (auto const& t : tensors) {
    auto const it =
        std::find_if(inv.begin(), inv.end(), [&](hf_tensor const& h) { return h.name == t.name; });
    fm::require(it != inv.end(), "dsv3::random_params", "config", "a tensor inventory naming " + t.name);
    random_values(*it, seed, t.data);
  }
  return p;
}

/// The compute weights of precision `prec` with the same layout as the masters (same config).
inline params compute_params_like(params const& master, precision prec) {
  params p;
  p.cfg = master.cfg;
  p.prec = prec;
  p.bytes = param_bytes(p.cfg, prec);
  p.storage = std::shared_ptr<std::byte[]>(new std::byte[p.bytes]());
  fm::nn::workspace_arena arena({p.storage.get(), p.bytes});
  bind_all(p, arena, nullptr);
  return p;
}

}  // namespace detail

/// Re-derives BF16 compute weights `c` (compute_params_like) from FP32 masters `m` as load_params
/// derives them from a float checkpoint: every weight, norm and embedding rounded to BF16 (the float
/// linears too: router gate, head, eh_proj), the router bias copied as is, wkv_b's float copy refilled.
inline void derive_compute_weights(params const& m, params& c) {
  fm::require(m.prec == precision::fp32 && c.prec == precision::bf16, "dsv3::derive_compute_weights", "m, c",
              "FP32 masters and bf16 compute weights");
  params q = c;  // rebound over c's bytes to list its slots
  fm::nn::workspace_arena arena({c.storage.get(), c.bytes});
  std::vector<detail::slot> slots;
  detail::bind_all(q, arena, &slots);
  auto const src = master_tensors(m);
  fm::require(src.size() == slots.size(), "dsv3::derive_compute_weights", "c", "the masters' layout");
  for (std::size_t i = 0; i < slots.size(); ++i) {
    auto const& s = slots[i];
    std::span<float const> const x = src[i].data;
    bool const keep = s.name.ends_with("e_score_correction_bias");
    if (s.linear && s.linear->bf16.data) {
      for (std::size_t j = 0; j < x.size(); ++j) s.linear->bf16.data[j] = bfloat16_t(x[j]);
      continue;
    }
    float* out = s.linear ? s.linear->f32.data : s.floats;
    for (std::size_t j = 0; j < x.size(); ++j) out[j] = keep ? x[j] : static_cast<float>(bfloat16_t(x[j]));
  }
  for (auto& L : q.layers) detail::fill_wkv_b_float(L.attn, c.prec);
  for (auto& t : q.mtp) detail::fill_wkv_b_float(t.block.attn, c.prec);
}

/// The training loop (see the file comment). Construct, then run() (or step() at a time).
class trainer {
 public:
  /// Starts fresh (random weights of o.config with o.seed, or a checkpoint directory's weights) or,
  /// with o.resume, from a checkpoint: its weights, moments, step, seed and data position, and curve.
  trainer(train_options o, token_corpus corpus) : o_(std::move(o)), data_(std::move(corpus)) {
    constexpr char const* where = "dsv3::train";
    fm::require(o_.steps >= 1, where, "--steps", ">= 1", std::to_string(o_.steps));
    fm::require(o_.batch >= 1, where, "--batch", ">= 1", std::to_string(o_.batch));
    fm::require(o_.seq >= 1, where, "--seq", ">= 1", std::to_string(o_.seq));
    fm::require(o_.stop_after >= 0 && o_.stop_after <= o_.steps, where, "--stop-after",
                "0 <= stop_after <= steps = " + std::to_string(o_.steps), std::to_string(o_.stop_after));
    if (!o_.resume.empty()) {
      auto [p, st] = load_train_checkpoint(o_.resume);
      fm::require(st.recipe == o_.recipe.name, where, "--precision",
                  "the recipe of the resumed run (" + st.recipe + ")", o_.recipe.name);
      fm::require(st.step < o_.steps, where, "--steps",
                  "more than the resumed checkpoint's step " + std::to_string(st.step),
                  std::to_string(o_.steps));
      master_ = std::move(p);
      st_ = std::move(st);
      o_.seed = st_.seed;
      curve_ = parse_loss_curve(st_.curve_csv);
    } else {
      std::error_code ec;
      std::filesystem::path const dir(o_.config);
      if (std::filesystem::is_directory(dir, ec) &&
          (std::filesystem::exists(dir / fm::io::single_safetensors_name, ec) ||
           std::filesystem::exists(dir / fm::io::safetensors_index_name, ec)))
        master_ = load_params(dir, precision::fp32);
      else
        master_ = detail::random_params(load_config(o_.config), o_.seed);
      st_.seed = o_.seed;
      st_.recipe = o_.recipe.name;
      st_.moments = o_.recipe.moments;
    }
    auto const& c = master_.cfg;
    if (o_.seq + 1 > c.max_position_embeddings)
      fm::detail::throw_argument(
          where, "--seq",
          "at most max_position_embeddings - 1 = " + std::to_string(c.max_position_embeddings - 1),
          std::to_string(o_.seq));
    for (auto const& ids :
         {std::span<std::int32_t const>(data_.train), std::span<std::int32_t const>(data_.heldout)})
      for (auto id : ids)
        if (id < 0 || id >= c.vocab_size)
          fm::detail::throw_argument(where, "--data",
                                     "token ids below vocab_size = " + std::to_string(c.vocab_size),
                                     std::to_string(id));
    sampler_.emplace(data_.train, o_.batch, o_.seq, st_.seed);
    sampler_->seek(st_.data_position);
    if (!data_.heldout.empty() && static_cast<std::int64_t>(data_.heldout.size()) >= o_.seq + 1)
      heldout_ = heldout_batch(data_.heldout, o_.batch, o_.seq);
    // the model computes in the recipe's precision over its own weights (bf16/fp8: derived from the masters)
    precision const prec = o_.recipe.model_precision();
    params compute = master_;
    if (prec != precision::fp32) {
      compute = detail::compute_params_like(master_, prec);
      derive_compute_weights(master_, compute);
    }
    compute_ = compute;
    model_options mo{.attention = mla_form::naive, .fp8_recipe = o_.recipe.fp8};
    mo.train = {.fprop = o_.recipe.fprop == gemm_precision::fp8,
                .dgrad = o_.recipe.dgrad == gemm_precision::fp8,
                .wgrad = o_.recipe.wgrad == gemm_precision::fp8,
                .recipe = o_.recipe.fp8};
    model_.emplace(std::move(compute), mo);
    grads_ = make_gradients(c);
    masters_ = master_tensors(master_);
    grad_list_ = master_tensors(grads_);
    std::size_t n = 0;
    for (auto const& t : masters_) n += t.data.size();
    if (st_.moments == moment_dtype::bf16) {
      if (st_.m16.empty()) st_.m16.assign(n, bfloat16_t(0.0f)), st_.v16.assign(n, bfloat16_t(0.0f));
    } else if (st_.m32.empty()) {
      st_.m32.assign(n, 0.0f), st_.v32.assign(n, 0.0f);
    }
    fm::require(st_.moments == o_.recipe.moments, where, "recipe.moments", "the resumed run's moment dtype");
    grad_spans_.reserve(grad_list_.size());
    for (auto const& g : grad_list_) grad_spans_.emplace_back(g.data);
    for (std::int64_t l = 0; l < c.num_hidden_layers; ++l)
      if (c.is_moe_layer(l)) moe_layers_.push_back(l);
    counts_.assign(moe_layers_.size(),
                   std::vector<std::int32_t>(static_cast<std::size_t>(c.n_routed_experts)));
    flops_per_token_ = static_cast<double>(dsv3::flops_per_token(c, (o_.seq + 1) / 2).total());
  }

  params const& master() const { return master_; }
  params& gradients() { return grads_; }
  model& net() { return *model_; }
  std::int64_t step_count() const { return st_.step; }
  std::uint64_t data_position() const { return sampler_->position(); }
  std::vector<loss_point> const& curve() const { return curve_; }
  train_state const& state() const { return st_; }
  /// Expert counts (tokens per expert) of each MoE layer in the last step's batch.
  std::vector<std::vector<std::int32_t>> const& expert_counts() const { return counts_; }
  std::vector<std::int64_t> const& moe_layers() const { return moe_layers_; }
  double flops_per_token() const { return flops_per_token_; }

  /// Mean cross-entropy of the model on the held-out batch (NaN when there is none).
  double heldout_loss() {
    if (heldout_.rows == 0) return NAN;
    double sum = 0;
    std::vector<float> losses(static_cast<std::size_t>(o_.seq));
    for (std::int64_t b = 0; b < heldout_.rows; ++b) {
      auto const row = heldout_.row(b);
      auto const logits = model_->forward(row.first(static_cast<std::size_t>(o_.seq)));
      sum += fm::nn::cross_entropy_forward(fm::host_executor{}, logits, row.subspan(1),
                                           std::span<float>(losses));
    }
    return sum / static_cast<double>(heldout_.rows);
  }

  /// One optimizer step (the next batch); see the file comment.
  step_result step() {
    auto const& c = master_.cfg;
    fm::host_executor ex;
    step_result r;
    r.step = ++st_.step;
    auto const batch = sampler_->next();
    st_.data_position = sampler_->position();
    zero_gradients(grads_);
    for (auto& v : counts_) std::fill(v.begin(), v.end(), 0);
    backward_options bo;
    bo.balance = {.alpha = o_.recipe.balance_alpha, .sequence_length = 0};
    bo.mtp_weight = o_.recipe.mtp_lambda;
    bool const has_mtp = bo.mtp_weight != 0.0f && !master_.mtp.empty();
    double loss = 0, balance = 0, mtp = 0;
    for (std::int64_t b = 0; b < batch.rows; ++b) {
      auto const row = batch.row(b);
      double const t0 = now_seconds();
      (void)model_->forward(row.first(static_cast<std::size_t>(o_.seq)));
      double const t1 = now_seconds();
      auto const lt = model_->backward(row.subspan(1), grads_, bo);
      r.forward_s += t1 - t0;
      r.backward_s += now_seconds() - t1;
      loss += lt.main;
      balance += lt.balance;
      mtp += lt.mtp;
      for (std::size_t i = 0; i < moe_layers_.size(); ++i) {
        auto const cnt = model_->acts().layers[static_cast<std::size_t>(moe_layers_[i])].moe.counts;
        for (std::size_t e = 0; e < cnt.size(); ++e) counts_[i][e] += cnt[e];
      }
    }
    auto const B = static_cast<double>(batch.rows);
    r.loss = loss / B;
    r.balance = balance / B;
    if (has_mtp) r.mtp_loss = mtp / B / static_cast<double>(bo.mtp_weight);  // lt.mtp includes lambda
    if (o_.inspect_gradients) o_.inspect_gradients(r.step, grads_);
    r.lr = o_.recipe.schedule.lr(r.step);
    double const t_opt = now_seconds();
    // NaN/Inf: the loss, then every gradient (the first one in binding order is named)
    auto const gn = fm::optim::grad_norm(ex, grad_spans_);
    bool const loss_finite = std::isfinite(r.loss) && (!has_mtp || std::isfinite(r.mtp_loss));
    if (!loss_finite || !gn.finite()) {
      r.skipped = true;
      r.problem = !loss_finite ? "non-finite loss " + std::to_string(r.loss) +
                                     (has_mtp ? " (MTP " + std::to_string(r.mtp_loss) + ")" : "")
                               : "non-finite gradient (NaN or Inf) in '" +
                                     grad_list_[static_cast<std::size_t>(gn.nonfinite_tensor)].name +
                                     "' element " + std::to_string(gn.nonfinite_element);
      curve_.push_back({r.step, NAN, NAN, r.lr});
      return r;
    }
    r.grad_norm = gn.norm / B;  // the mean gradient's norm (the backward summed B sequence means)
    float const clip = fm::optim::clip_coefficient(r.grad_norm, o_.recipe.clip_norm);
    float const scale = static_cast<float>(static_cast<double>(clip) / B);
    auto cfg = o_.recipe.adamw;
    cfg.lr = r.lr;
    if (st_.moments == moment_dtype::bf16)
      adam_step<bfloat16_t>(cfg, st_.m16, st_.v16, scale);
    else
      adam_step<float>(cfg, st_.m32, st_.v32, scale);
    // the aux-loss-free bias update from this batch's expert loads
    for (std::size_t i = 0; i < moe_layers_.size(); ++i) {
      auto const bias = master_.layers[static_cast<std::size_t>(moe_layers_[i])].moe.bias;
      if (bias.empty()) continue;
      fm::moe::update_bias(ex, fm::vector_view<float>{bias.data(), static_cast<std::int64_t>(bias.size())},
                           fm::vector_view<std::int32_t const>{counts_[i].data(),
                                                               static_cast<std::int64_t>(counts_[i].size())},
                           o_.recipe.bias_update);
    }
    if (compute_.prec != precision::fp32) derive_compute_weights(master_, compute_);
    curve_.push_back({r.step, r.loss, NAN, r.lr});
    r.optimizer_s = now_seconds() - t_opt;
    (void)c;
    return r;
  }

  /// Runs the remaining steps (to o.steps, or o.stop_after), printing progress, evaluating, saving.
  /// Returns the results of the steps it ran.
  std::vector<step_result> run() {
    std::vector<step_result> out;
    if (o_.log) std::fprintf(o_.log, "%s\n", describe(o_.recipe).c_str());
    double const peak = measure_sgemm_flops();
    if (o_.log)
      std::fprintf(o_.log,
                   "sgemm (this machine, 512^3): %.1f GFLOP/s; model: %.1f MFLOP per token (fwd+bwd)\n",
                   peak * 1e-9, flops_per_token_ * 1e-6);
    std::int64_t const last = o_.stop_after ? o_.stop_after : o_.steps;
    if (st_.step == 0 && o_.eval_every > 0) curve_.push_back({0, NAN, heldout_loss(), 0.0});  // the start
    auto const t_start = std::chrono::steady_clock::now();
    auto t_prev = t_start;
    std::int64_t since = 0, ran = 0;
    while (st_.step < last) {
      auto r = step();
      ++since, ++ran;
      bool const eval = r.step == last || (o_.eval_every > 0 && r.step % o_.eval_every == 0);
      if (eval && !r.skipped) curve_.back().heldout = heldout_loss();
      if (r.skipped && o_.log)
        std::fprintf(o_.log, "step %lld: %s: step skipped, weights untouched\n",
                     static_cast<long long>(r.step), r.problem.c_str());
      if (o_.log && o_.log_every > 0 && (r.step % o_.log_every == 0 || r.step == last)) {
        auto const now = std::chrono::steady_clock::now();
        double const dt = std::chrono::duration<double>(now - t_prev).count();
        double const total = std::chrono::duration<double>(now - t_start).count();
        double const tps = static_cast<double>(since * o_.batch * o_.seq) / dt;
        step_report rep{.step = r.step,
                        .total_steps = o_.steps,
                        .loss = r.loss,
                        .mtp_loss = r.mtp_loss,
                        .lr = r.lr,
                        .grad_norm = r.grad_norm,
                        .tokens_per_s = tps,
                        .mfu = tps * flops_per_token_ / peak,
                        .eta_s = total / static_cast<double>(ran) * static_cast<double>(last - r.step),
                        .skipped = r.skipped};
        std::string line = progress_line(rep);
        if (eval && !r.skipped) {
          char b[48];
          std::snprintf(b, sizeof b, " held-out %.4f", curve_.back().heldout);
          line += b;
        }
        std::fprintf(o_.log, "%s\n", line.c_str());
        std::fflush(o_.log);
        t_prev = now, since = 0;
      }
      if (o_.log && o_.load_every > 0 && r.step % o_.load_every == 0 && !moe_layers_.empty())
        std::fprintf(o_.log, "%s\n", expert_load_line(moe_layers_, counts_).c_str());
      if (!o_.out.empty() && ((o_.save_every > 0 && r.step % o_.save_every == 0) || r.step == last)) save();
      out.push_back(std::move(r));
    }
    return out;
  }

  /// Writes a checkpoint of the current state and the loss curve to o.out.
  std::filesystem::path save(save_options const& so = {}) {
    st_.curve_csv = loss_curve_csv(curve_);
    std::filesystem::create_directories(o_.out);
    write_loss_curve(o_.out, curve_, "DeepSeek-V3 " + std::string(o_.config) + ", recipe " + o_.recipe.name);
    return save_train_checkpoint(o_.out, master_, st_, so);
  }

 private:
  template <class M>
  void adam_step(fm::optim::adamw_config const& cfg, std::vector<M>& m, std::vector<M>& v, float scale) {
    std::vector<fm::optim::adamw_tensor<M>> ts;
    ts.reserve(masters_.size());
    std::size_t off = 0;
    for (std::size_t i = 0; i < masters_.size(); ++i) {
      auto const& t = masters_[i];
      std::size_t const n = t.data.size();
      // the router bias moves by the bias update only; 1-D tensors (norms) are not decayed
      if (!t.name.ends_with("e_score_correction_bias"))
        ts.push_back({t.data, grad_list_[i].data, std::span<M>(m.data() + off, n),
                      std::span<M>(v.data() + off, n), t.shape.size() == 2});
      off += n;
    }
    fm::optim::adamw_step(fm::host_executor{}, cfg, ++st_.updates, ts, scale);
  }

  train_options o_;
  token_corpus data_;
  params master_, compute_, grads_;
  train_state st_;
  std::vector<loss_point> curve_;
  std::optional<batch_sampler> sampler_;
  token_batch heldout_;
  std::optional<model> model_;
  std::vector<named_tensor> masters_, grad_list_;
  std::vector<std::span<float>> grad_spans_;
  std::vector<std::int64_t> moe_layers_;
  std::vector<std::vector<std::int32_t>> counts_;
  double flops_per_token_ = 0;
};

/// The arguments of `deepseek_v3 train` (main.cpp parses them).
struct train_args {
  std::string config = "tiny", data, precision = "fp8", out, resume;
  std::int64_t steps = 200, batch = 4, seq = 64, stop_after = 0, eval_every = 25, save_every = 0,
               log_every = 10;
  std::uint64_t seed = 1;
  float lr = 3e-3f;
};

/// `deepseek_v3 train`: reads the corpus, builds the recipe preset with the run's schedule, trains,
/// prints progress and a summary line; returns the exit status (errors throw fp8moe::error).
inline int run_train(train_args const& a) {
  train_options o;
  o.config = a.config;
  o.steps = a.steps;
  o.stop_after = a.stop_after;
  o.batch = a.batch;
  o.seq = a.seq;
  o.seed = a.seed;
  o.recipe = recipe_preset(a.precision).with_steps(a.steps, a.lr);
  fm::require(!a.out.empty(), "train", "--out", "an output directory");
  o.out = a.out;
  o.resume = a.resume;
  o.eval_every = a.eval_every;
  o.save_every = a.save_every;
  o.log_every = a.log_every;
  o.load_every = a.log_every > 0 ? 5 * a.log_every : 0;
  token_corpus corpus = read_corpus(a.data);
  std::size_t const n_train = corpus.train.size(), n_held = corpus.heldout.size();
  trainer t(o, std::move(corpus));  // every argument checked before anything is printed or written
  std::printf("data: %s: %zu training + %zu held-out byte tokens\n", a.data.c_str(), n_train, n_held);
  auto const t0 = std::chrono::steady_clock::now();
  auto const rs = t.run();
  double const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto const& cv = t.curve();
  double first = NAN, last = NAN;
  for (auto const& p : cv)
    if (std::isfinite(p.heldout)) (std::isnan(first) ? first : last) = p.heldout;
  double tr_first = NAN, tr_last = NAN;
  for (auto const& p : cv)
    if (std::isfinite(p.train)) (std::isnan(tr_first) ? tr_first : tr_last) = p.train;
  std::int64_t skipped = 0;
  for (auto const& r : rs) skipped += r.skipped;
  std::printf(
      "deepseek_v3 train: %zu steps (to %lld of %lld) of %s, recipe %s, %lld skipped, %.1f s (%.0f "
      "tokens/s): "
      "train loss %.4f -> %.4f, held-out %.4f -> %.4f (%.1f%% lower); wrote %s/loss.csv, %s/loss.svg, %s\n",
      rs.size(), static_cast<long long>(t.step_count()), static_cast<long long>(a.steps), a.config.c_str(),
      a.precision.c_str(), static_cast<long long>(skipped), secs,
      static_cast<double>(rs.size()) * static_cast<double>(a.batch * a.seq) / secs, tr_first, tr_last, first,
      last, 100.0 * (1.0 - last / first), a.out.c_str(), a.out.c_str(),
      resolve_train_checkpoint(a.out).string().c_str());
  return 0;
}

}  // namespace dsv3
