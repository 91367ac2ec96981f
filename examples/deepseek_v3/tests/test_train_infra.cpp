// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The trainer's infrastructure without a backward: the recipe presets and their fields, the byte
// tokenizer, the corpus reader and the seeded batch sampler (determinism, resume by position, bad
// files), the loss curve (CSV round trip, SVG), the progress line, and the checkpoint (round trip bit
// for bit; a failure or a SIGKILL between the temp write and the rename leaves `latest` intact).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"
#include "data.hpp"
#include "init.hpp"
#include "io_test_support.hpp"
#include "loss_curve.hpp"
#include "params.hpp"
#include "progress.hpp"
#include "recipe.hpp"
#include "tokenizer.hpp"
#include "train_checkpoint.hpp"

namespace ft = fp8moe::test;

TEST_CASE("recipe presets: DeepSeek-V3 §3.3-3.4 values, every field switchable") {
  auto const r = dsv3::fp8_recipe();
  CHECK(r.fprop == dsv3::gemm_precision::fp8);
  CHECK(r.dgrad == dsv3::gemm_precision::fp8);
  CHECK(r.wgrad == dsv3::gemm_precision::fp8);
  CHECK(r.other == dsv3::gemm_precision::bf16);
  CHECK(r.moments == dsv3::moment_dtype::bf16);
  CHECK(r.fp8.activation.tile.cols == 128);
  CHECK(r.fp8.weight.tile.rows == 128);
  CHECK(r.fp8.weight.tile.cols == 128);
  CHECK(r.adamw.beta1 == 0.9f);
  CHECK(r.adamw.beta2 == 0.95f);
  CHECK(r.adamw.weight_decay == 0.1f);
  CHECK(r.clip_norm == 1.0f);
  CHECK(r.schedule.peak_lr == 2.2e-4f);
  CHECK(r.schedule.floor_lr == 2.2e-5f);
  CHECK(r.schedule.warmup_steps == 2000);
  CHECK(r.bias_update.gamma == 1e-3f);
  CHECK(r.balance_alpha == 1e-4f);
  CHECK(r.mtp_lambda == 0.3f);
  CHECK(r.model_precision() == dsv3::precision::fp32);  // FP32 masters, quantized per GEMM
  CHECK(r.any_fp8());
  CHECK(dsv3::bf16_recipe().model_precision() == dsv3::precision::bf16);
  CHECK(dsv3::fp32_recipe().model_precision() == dsv3::precision::fp32);
  CHECK(dsv3::fp32_recipe().moments == dsv3::moment_dtype::fp32);
  CHECK(dsv3::recipe_preset("bf16").name == "bf16");
  ft::check_error([] { (void)dsv3::recipe_preset("fp16"); }, {"precision", "fp8, bf16 or fp32", "fp16"});
  auto const s = r.with_steps(300, 3e-3f);
  CHECK(s.schedule.total_steps == 300);
  CHECK(s.schedule.warmup_steps == 30);
  CHECK(s.schedule.peak_lr == 3e-3f);
  CHECK(s.schedule.lr(30) == 3e-3f);
  CHECK(s.schedule.lr(300) == doctest::Approx(3e-4f));
  CHECK(dsv3::describe(s).find("fprop fp8, dgrad fp8, wgrad fp8") != std::string::npos);
  auto mixed = r;  // switch one piece back
  mixed.wgrad = dsv3::gemm_precision::bf16;
  CHECK(dsv3::describe(mixed).find("wgrad bf16") != std::string::npos);
}

TEST_CASE("byte tokenizer: id = byte value, round trip") {
  std::string const text = "Hi \xC3\xA9\n\x01\xFF";
  auto const ids = dsv3::encode_bytes(text);
  REQUIRE(ids.size() == text.size());
  CHECK(ids[0] == 'H');
  CHECK(ids[3] == 0xC3);
  CHECK(ids[7] == 0xFF);
  CHECK(dsv3::decode_bytes(ids) == text);
  std::vector<std::int32_t> const odd{72, 300, -1};
  CHECK(dsv3::decode_bytes(odd) == "H??");
  ft::check_error([] { dsv3::check_byte_vocab(64, "test"); }, {"vocab_size", "at least 256", "64"});
}

TEST_CASE("corpus and batches: seeded, resumable by position, held-out fixed; bad files named") {
  ft::scratch_dir dir;
  std::string text;
  for (int i = 0; i < 200; ++i) text += "line " + std::to_string(i) + " of the corpus\n";
  { std::ofstream(dir / "c.txt") << text; }
  auto const c = dsv3::read_corpus(dir / "c.txt", 0.1);
  CHECK(c.train.size() + c.heldout.size() == text.size());
  CHECK(c.heldout.size() == text.size() - static_cast<std::size_t>(text.size() * 0.9));
  CHECK(c.train[0] == 'l');
  dsv3::batch_sampler a(c.train, 4, 16, 7), b(c.train, 4, 16, 7), other(c.train, 4, 16, 8);
  auto const a0 = a.next(), a1 = a.next();
  CHECK(a0.tokens == b.next().tokens);
  CHECK(a1.tokens == b.next().tokens);
  CHECK(a0.tokens != a1.tokens);
  CHECK(a0.tokens != other.next().tokens);
  CHECK(a.position() == 2);
  dsv3::batch_sampler resumed(c.train, 4, 16, 7);
  resumed.seek(2);
  CHECK(resumed.next().tokens == a.next().tokens);
  // every row is a window of the stream
  for (std::int64_t r = 0; r < a0.rows; ++r) {
    auto const row = a0.row(r);
    auto const it = std::search(c.train.begin(), c.train.end(), row.begin(), row.end());
    CHECK(it != c.train.end());
  }
  auto const h = dsv3::heldout_batch(c.heldout, 3, 16);
  CHECK(h.tokens == dsv3::heldout_batch(c.heldout, 3, 16).tokens);
  CHECK(std::equal(h.row(0).begin(), h.row(0).end(), c.heldout.begin()));
  CHECK(std::equal(h.row(2).begin(), h.row(2).end(), c.heldout.end() - 17));
  // errors: missing, empty, directory, too short
  ft::check_error([&] { (void)dsv3::read_corpus(dir / "missing.txt"); },
                  {"--data", "no such file", "missing.txt"});
  { std::ofstream(dir / "empty.txt"); }
  ft::check_error([&] { (void)dsv3::read_corpus(dir / "empty.txt"); }, {"--data", "empty"});
  ft::check_error([&] { (void)dsv3::read_corpus(dir.path()); }, {"--data", "not a regular file"});
  std::vector<std::int32_t> const few(10, 1);
  ft::check_error([&] { dsv3::batch_sampler s(few, 2, 16, 1); },
                  {"training data", "at least seq + 1 = 17", "10"});
}

TEST_CASE("loss curve: CSV round trip, SVG with both curves, atomic files") {
  std::vector<dsv3::loss_point> pts;
  for (int s = 1; s <= 20; ++s) pts.push_back({s, 5.0f / s + 0.1, s % 5 == 0 ? 6.0 / s : NAN, 1e-3 * s});
  auto const csv = dsv3::loss_curve_csv(pts);
  CHECK(csv.starts_with("step,train_loss,heldout_loss,lr\n1,"));
  auto const back = dsv3::parse_loss_curve(csv);
  REQUIRE(back.size() == pts.size());
  for (std::size_t i = 0; i < pts.size(); ++i) {
    CHECK(back[i].step == pts[i].step);
    CHECK(static_cast<float>(back[i].train) == static_cast<float>(pts[i].train));
    CHECK(std::isnan(back[i].heldout) == std::isnan(pts[i].heldout));
  }
  CHECK(dsv3::loss_curve_csv(back) == csv);
  ft::check_error([] { (void)dsv3::parse_loss_curve("step,x\n"); }, {"csv", "header"});
  ft::check_error([] { (void)dsv3::parse_loss_curve("step,train_loss,heldout_loss,lr\n1,oops\n"); },
                  {"line 2"});
  auto const svg = dsv3::loss_curve_svg(pts, "tiny <fp8>");
  CHECK(svg.starts_with("<svg"));
  CHECK(svg.find("tiny &lt;fp8&gt;") != std::string::npos);
  CHECK(svg.find("training loss") != std::string::npos);
  CHECK(std::count(svg.begin(), svg.end(), '\n') > 10);
  CHECK(svg.find("<circle") != std::string::npos);  // 4 held-out points
  ft::scratch_dir dir;
  dsv3::write_loss_curve(dir.path(), pts, "t");
  CHECK(fp8moe::io::read_text_file(dir / "loss.csv") == csv);
  CHECK(dir.entries().size() == 2);  // no temp files left
}

TEST_CASE("progress line and expert load") {
  dsv3::step_report r{.step = 70,
                      .total_steps = 300,
                      .loss = 2.83,
                      .mtp_loss = 3.01,
                      .lr = 2.95e-3,
                      .grad_norm = 0.912,
                      .tokens_per_s = 1234,
                      .mfu = 0.182,
                      .eta_s = 41};
  auto const l = dsv3::progress_line(r);
  CHECK(
      l ==
      "[####................] step 70/300 loss 2.8300 mtp 3.0100 lr 2.95e-03 |g| 0.912 1234 tok/s MFU 18.2% "
      "ETA 41.0s");
  r.skipped = true;
  CHECK(dsv3::progress_line(r).find("skipped (NaN/Inf)") != std::string::npos);
  CHECK(dsv3::duration_text(125) == "2m05s");
  std::vector<std::vector<std::int32_t>> const counts{{4, 4, 4, 4}, {10, 2, 2, 2}};
  std::vector<std::int64_t> const layers{1, 2};
  CHECK(dsv3::expert_load_line(layers, counts) ==
        "expert load (max/mean tokens per expert): layer 1 1.00 (4/4.0), layer 2 2.50 (10/4.0)");
  double const f = dsv3::measure_sgemm_flops(128, 2);
  CHECK(f > 1e7);  // any machine does more than 10 MFLOP/s
  CHECK(std::isfinite(f));
}

namespace {
/// A random nano model as FP32 params and a train state with recognisable moments.
std::pair<dsv3::params, dsv3::train_state> nano_state(ft::scratch_dir const& dir, dsv3::moment_dtype md) {
  dsv3::write_random_checkpoint(dsv3::nano_config(), dir / "init", "f32", 3);
  auto p = dsv3::load_params(dir / "init", dsv3::precision::fp32);
  std::size_t n = 0;
  for (auto const& t : dsv3::master_tensors(p)) n += t.data.size();
  dsv3::train_state st;
  st.step = 5;
  st.seed = 42;
  st.data_position = 5;
  st.recipe = "fp8";
  st.curve_csv = "step,train_loss,heldout_loss,lr\n1,4,,0.001\n";
  st.moments = md;
  for (std::size_t i = 0; i < n; ++i) {
    float const m = std::sin(static_cast<float>(i)) * 1e-3f, v = 1e-6f * static_cast<float>(i % 13);
    if (md == dsv3::moment_dtype::bf16)
      st.m16.push_back(dsv3::bfloat16_t(m)), st.v16.push_back(dsv3::bfloat16_t(v));
    else
      st.m32.push_back(m), st.v32.push_back(v);
  }
  return {std::move(p), std::move(st)};
}

// Bit equality of two bf16 vectors (memcmp is not called on an empty vector's null data()).
bool same_bits(std::vector<dsv3::bfloat16_t> const& a, std::vector<dsv3::bfloat16_t> const& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(dsv3::bfloat16_t)) == 0);
}

bool same_bits(dsv3::params const& a, dsv3::params const& b) {
  auto const ta = dsv3::master_tensors(a), tb = dsv3::master_tensors(b);
  if (ta.size() != tb.size()) return false;
  for (std::size_t i = 0; i < ta.size(); ++i)
    if (ta[i].name != tb[i].name || ta[i].data.size() != tb[i].data.size() ||
        (!ta[i].data.empty() &&
         std::memcmp(ta[i].data.data(), tb[i].data.data(), ta[i].data.size_bytes()) != 0))
      return false;
  return true;
}
}  // namespace

TEST_CASE("train checkpoint: round trip bit for bit (bf16 and fp32 moments), HF-loadable") {
  for (auto md : {dsv3::moment_dtype::bf16, dsv3::moment_dtype::fp32}) {
    ft::scratch_dir dir;
    auto [p, st] = nano_state(dir, md);
    auto const ck = dsv3::save_train_checkpoint(dir / "out", p, st);
    CHECK(ck.filename() == "checkpoint-5");
    CHECK(fp8moe::io::read_text_file(dir / "out" / "latest") == "checkpoint-5\n");
    auto [q, s2] = dsv3::load_train_checkpoint(dir / "out");
    CHECK(same_bits(p, q));
    CHECK(s2.step == 5);
    CHECK(s2.seed == 42);
    CHECK(s2.data_position == 5);
    CHECK(s2.recipe == "fp8");
    CHECK(s2.curve_csv == st.curve_csv);
    CHECK(s2.moments == md);
    CHECK(s2.m32 == st.m32);
    CHECK(s2.v32 == st.v32);
    CHECK(same_bits(s2.m16, st.m16));  // empty for fp32 moments
    CHECK(same_bits(s2.v16, st.v16));
    // the checkpoint directory itself also resolves; a wrong path is one clear error
    CHECK(dsv3::resolve_train_checkpoint(ck) == ck);
    ft::check_error([&] { (void)dsv3::resolve_train_checkpoint(dir / "nowhere"); }, {"--resume", "nowhere"});
  }
}

TEST_CASE("train checkpoint: a failure or a kill between temp write and rename loses nothing") {
  ft::scratch_dir dir;
  auto [p, st] = nano_state(dir, dsv3::moment_dtype::bf16);
  (void)dsv3::save_train_checkpoint(dir / "out", p, st);
  auto const before = dsv3::master_tensors(p);
  float const saved = before[0].data[0];
  // the next save's weights differ
  dsv3::train_state st2 = st;
  st2.step = 6;
  before[0].data[0] += 1.0f;
  dsv3::save_options fail;
  fail.before_rename = [](std::filesystem::path const& tmp) {
    CHECK(std::filesystem::exists(tmp / "model.safetensors"));  // the temp directory is complete
    throw std::runtime_error("injected failure");
  };
  CHECK_THROWS_WITH(dsv3::save_train_checkpoint(dir / "out", p, st2, fail), "injected failure");
  auto check_previous = [&] {
    auto [q, s] = dsv3::load_train_checkpoint(dir / "out");
    CHECK(s.step == 5);
    CHECK(dsv3::master_tensors(q)[0].data[0] == saved);
  };
  check_previous();
  // a real kill: a child process SIGKILLs itself at the same point
  pid_t const pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dsv3::save_options die;
    die.before_rename = [](std::filesystem::path const&) { ::raise(SIGKILL); };
    try {
      (void)dsv3::save_train_checkpoint(dir / "out", p, st2, die);
    } catch (...) {
    }
    ::_exit(0);  // not reached when the kill happened
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  check_previous();
  // the next save cleans the leftover temp directory up and moves `latest`
  (void)dsv3::save_train_checkpoint(dir / "out", p, st2);
  auto [q, s] = dsv3::load_train_checkpoint(dir / "out");
  CHECK(s.step == 6);
  CHECK(same_bits(p, q));
  std::vector<std::string> names;
  for (auto const& e : std::filesystem::directory_iterator(dir / "out")) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"checkpoint-6", "latest"});
}
