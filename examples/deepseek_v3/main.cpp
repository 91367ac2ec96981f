// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// The `deepseek_v3` command:
//   deepseek_v3 init --config tiny|nano|FILE --out DIR [--dtype f32|bf16|fp8] [--seed N]
//   deepseek_v3 info --model DIR | --config tiny|nano|671b|FILE [--context N]
//   deepseek_v3 logits --model DIR --tokens 1,2,3|@FILE --out FILE.npy [--precision fp32|bf16|fp8]
//                      [--mtp-out FILE.npy]
//   deepseek_v3 generate --model DIR (--prompt-tokens 1,2,3|@FILE | --prompt TEXT) --max-new N
//                        [--speculative [--draft-depth D]] [--temperature T --top-k K --top-p P --seed S]
//                        [--eos ID] [--precision fp32|bf16|fp8]
//   deepseek_v3 train --config tiny|nano|DIR --data FILE --steps N --batch B --seq S
//                     --precision fp8|bf16|fp32 --out DIR [--resume DIR] [--seed S] [--lr LR]
//                     [--stop-after K]
// Exit status 0 on success; on any error one line "deepseek_v3: error: ..." on stderr and exit 1
// (bad arguments: 2).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "counts.hpp"
#include "decode.hpp"
#include "fp8moe/core/error.hpp"
#include "fp8moe/io/checkpoint.hpp"
#include "fp8moe/io/file.hpp"
#include "fp8moe/io/npy.hpp"
#include "generate.hpp"
#include "hf_names.hpp"
#include "init.hpp"
#include "model.hpp"
#include "mtp_layer.hpp"
#include "tokenizer.hpp"
#include "train.hpp"

namespace {

/// 671026419200 -> "671,026,419,200"
std::string grouped(std::int64_t v) {
  std::string const digits = std::to_string(v < 0 ? -v : v);
  std::string s = v < 0 ? "-" : "";
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) s.push_back(',');
    s.push_back(digits[i]);
  }
  return s;
}

/// v in the largest unit it reaches (each `base` times the previous): 1536 B -> "1.50 KiB".
std::string scaled(double v, double base, std::initializer_list<char const*> units) {
  auto u = units.begin();
  while (v >= base && u + 1 != units.end()) v /= base, ++u;
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.2f %s", v, *u);
  return buf;
}
std::string bytes_text(std::uint64_t b) {
  return scaled(static_cast<double>(b), 1024.0, {"B", "KiB", "MiB", "GiB", "TiB"});
}
std::string flop_text(std::int64_t f) {
  return scaled(static_cast<double>(f), 1000.0, {"FLOP", "kFLOP", "MFLOP", "GFLOP", "TFLOP"});
}

int run_init(std::string const& config_arg, std::string const& out, std::string const& dtype,
             std::uint64_t seed) {
  dsv3::config const c = dsv3::load_config(config_arg);
  dsv3::write_random_checkpoint(c, out, dtype, seed);
  dsv3::checkpoint_summary const s = dsv3::check_checkpoint(c, fp8moe::io::checkpoint(out));
  std::printf("deepseek_v3 init: wrote %s (%s, seed %llu): %zu files, %zu tensors, %s\n", out.c_str(),
              dtype.c_str(), static_cast<unsigned long long>(seed), s.files, s.tensors,
              bytes_text(s.bytes).c_str());
  return 0;
}

void print_config(dsv3::config const& c) {
  auto const p = dsv3::counts(c);
  std::printf("config: vocab %lld, hidden %lld, %lld layers (%lld dense + %lld MoE) + %lld MTP, %lld heads\n",
              static_cast<long long>(c.vocab_size), static_cast<long long>(c.hidden_size),
              static_cast<long long>(c.num_hidden_layers), static_cast<long long>(p.dense_layers),
              static_cast<long long>(p.moe_layers), static_cast<long long>(c.num_nextn_predict_layers),
              static_cast<long long>(c.num_attention_heads));
  std::printf("  MLA: q_lora_rank %s, kv_lora_rank %lld, qk_nope %lld + qk_rope %lld, v %lld\n",
              c.q_lora_rank ? std::to_string(*c.q_lora_rank).c_str() : "none (q_proj)",
              static_cast<long long>(c.kv_lora_rank), static_cast<long long>(c.qk_nope_head_dim),
              static_cast<long long>(c.qk_rope_head_dim), static_cast<long long>(c.v_head_dim));
  std::printf(
      "  FFN: dense %lld; MoE %lld routed experts of %lld in %lld groups (%lld per token), top-%lld, "
      "%lld shared, %s, %s, x%g\n",
      static_cast<long long>(c.intermediate_size), static_cast<long long>(c.n_routed_experts),
      static_cast<long long>(c.moe_intermediate_size), static_cast<long long>(c.n_group),
      static_cast<long long>(c.topk_group), static_cast<long long>(c.num_experts_per_tok),
      static_cast<long long>(c.n_shared_experts), c.scoring_func.c_str(), c.topk_method.c_str(),
      c.routed_scaling_factor);
  if (c.rope_scaling)
    std::printf("  RoPE: theta %g, YaRN factor %g from %lld positions, max %lld\n", c.rope_theta,
                c.rope_scaling->factor,
                static_cast<long long>(c.rope_scaling->original_max_position_embeddings),
                static_cast<long long>(c.max_position_embeddings));
  else
    std::printf("  RoPE: theta %g, no scaling, max %lld\n", c.rope_theta,
                static_cast<long long>(c.max_position_embeddings));
  std::printf("  quantization: %s\n",
              c.quantization_config ? "fp8 e4m3, 128x128 weight blocks, dynamic activations" : "none");
}

int run_info(std::string const& model, std::string const& config_arg, std::int64_t context) {
  dsv3::config c;
  if (!model.empty()) {
    if (!std::filesystem::is_directory(model))
      fp8moe::detail::throw_argument("info", "--model", "a checkpoint directory",
                                     "\"" + model + "\" (no such directory)");
    c = fp8moe::io::read_deepseek_v3_config(model);
    dsv3::checkpoint_summary const s = dsv3::check_checkpoint(c, fp8moe::io::checkpoint(model));
    std::printf(
        "model: %s: %zu files, %zu tensors (%zu F8_E4M3 with weight_scale_inv), %s; names and shapes "
        "match config.json\n",
        model.c_str(), s.files, s.tensors, s.fp8_weights, bytes_text(s.bytes).c_str());
  } else {
    c = dsv3::load_config(config_arg);
    std::printf("config: %s\n", config_arg.c_str());
  }
  print_config(c);
  auto const p = dsv3::counts(c);
  std::printf("parameters: total %s (main model with head), activated per token %s\n",
              grouped(p.total).c_str(), grouped(p.activated_per_token).c_str());
  std::printf("  MTP %s (+ %s in its copies of embedding and head); the checkpoint holds %s\n",
              grouped(p.mtp).c_str(), grouped(p.mtp_duplicates).c_str(), grouped(p.stored).c_str());
  std::printf("memory (checkpoint weights): fp32 %s, bf16 %s, fp8 %s\n",
              bytes_text(dsv3::checkpoint_bytes(c, dsv3::checkpoint_dtype::f32)).c_str(),
              bytes_text(dsv3::checkpoint_bytes(c, dsv3::checkpoint_dtype::bf16)).c_str(),
              bytes_text(dsv3::checkpoint_bytes(c, dsv3::checkpoint_dtype::fp8)).c_str());
  if (context == 0)
    context = c.rope_scaling ? c.rope_scaling->original_max_position_embeddings : c.max_position_embeddings;
  auto const f = dsv3::flops_per_token(c, context);
  auto const fm = dsv3::flops_per_token(c, context, true);
  std::printf("FLOPs per token attending %lld keys: forward %s, backward %s (with MTP: %s, %s)\n",
              static_cast<long long>(context), flop_text(f.forward).c_str(), flop_text(f.backward).c_str(),
              flop_text(fm.forward).c_str(), flop_text(fm.backward).c_str());
  auto const kv = dsv3::cache_footprint_of(c);
  std::printf(
      "KV cache per token: %lld values per layer (latent + rope key) x %lld layers: %s in bf16, %s in "
      "fp32 (generate's cache); a multi-head K/V cache: %lld values per layer, %s in bf16 (x%.1f)\n",
      static_cast<long long>(kv.latent_values), static_cast<long long>(kv.layers),
      bytes_text(static_cast<std::uint64_t>(kv.latent_bytes(2))).c_str(),
      bytes_text(static_cast<std::uint64_t>(kv.latent_bytes(4))).c_str(),
      static_cast<long long>(kv.mha_values), bytes_text(static_cast<std::uint64_t>(kv.mha_bytes(2))).c_str(),
      static_cast<double>(kv.mha_values) / static_cast<double>(kv.latent_values));
  return 0;
}

/// "1,2,3" or "@FILE" (integers separated by commas and/or whitespace) -> token ids; each a
/// non-negative integer below 2^31 (the model checks them against the vocabulary).
std::vector<std::int32_t> parse_tokens(std::string const& arg, char const* command = "logits",
                                       char const* option = "--tokens") {
  std::string const text = arg.starts_with('@') ? fp8moe::io::read_text_file(arg.substr(1), 64u << 20) : arg;
  std::vector<std::int32_t> out;
  std::size_t i = 0;
  auto const sep = [](char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (i < text.size()) {
    if (sep(text[i])) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && !sep(text[j])) ++j;
    std::string_view const item(text.data() + i, j - i);
    std::int32_t v = -1;
    auto const [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (ec != std::errc{} || end != item.data() + item.size() || v < 0)
      fp8moe::detail::throw_argument(
          command, option, "non-negative integers below 2^31 separated by commas or spaces",
          "\"" + std::string(item) + "\" (token " + std::to_string(out.size()) + ")");
    out.push_back(v);
    i = j;
  }
  fp8moe::require(!out.empty(), command, option, "at least one token id", "none");
  return out;
}

int run_logits(std::string const& model, std::string const& tokens_arg, std::string const& out,
               std::string const& precision, std::string const& mtp_out) {
  dsv3::precision const p = dsv3::parse_precision(precision);
  std::vector<std::int32_t> const tokens = parse_tokens(tokens_arg);
  if (!std::filesystem::is_directory(model))
    fp8moe::detail::throw_argument("logits", "--model", "a checkpoint directory",
                                   "\"" + model + "\" (no such directory)");
  std::vector<float> const logits = dsv3::compute_logits(model, tokens, p);
  auto const T = static_cast<std::int64_t>(tokens.size());
  auto const vocab = static_cast<std::int64_t>(logits.size()) / T;
  fp8moe::io::write_npy<float>(out, logits, {T, vocab});
  std::printf("deepseek_v3 logits: wrote %s: float32 [%lld, %lld] (precision %s)\n", out.c_str(),
              static_cast<long long>(T), static_cast<long long>(vocab), precision.c_str());
  if (!mtp_out.empty()) {  // the MTP layer's depth-1 logits: row i predicts token i+2
    dsv3::model m(model, p);
    std::vector<float> const mtp = dsv3::mtp_logits(m, tokens);
    fp8moe::io::write_npy<float>(mtp_out, mtp, {T - 1, vocab});
    std::printf("deepseek_v3 logits: wrote %s: float32 [%lld, %lld] (MTP depth 1, precision %s)\n",
                mtp_out.c_str(), static_cast<long long>(T - 1), static_cast<long long>(vocab),
                precision.c_str());
  }
  return 0;
}

struct generate_args {
  std::string model, prompt_tokens, prompt, precision = "fp32";
  std::int64_t max_new = 32, draft_depth = 1, eos = -1;
  bool speculative = false;
  float temperature = 0.0f, top_p = 1.0f;
  std::int32_t top_k = 0;
  std::uint64_t seed = 0;
};

/// `generate`: streams the new token ids (and, for --prompt, the text) as they are chosen, then the
/// stop reason, the speed and, with --speculative, the acceptance and the speed-up over plain decoding.
int run_generate(generate_args const& a) {
  dsv3::precision const prec = dsv3::parse_precision(a.precision);
  if (!std::filesystem::is_directory(a.model))
    fp8moe::detail::throw_argument("generate", "--model", "a checkpoint directory",
                                   "\"" + a.model + "\" (no such directory)");
  dsv3::params const p = dsv3::load_params(a.model, prec);
  bool const text = a.prompt_tokens.empty();
  if (text) {
    dsv3::check_byte_vocab(p.cfg.vocab_size, "generate --prompt");
    fp8moe::require(!a.prompt.empty(), "generate", "--prompt", "a non-empty text", "\"\"");
  }
  std::vector<std::int32_t> const prompt =
      text ? dsv3::encode_bytes(a.prompt) : parse_tokens(a.prompt_tokens, "generate", "--prompt-tokens");
  dsv3::generate_options o{.sampling = {.temperature = a.temperature, .top_k = a.top_k, .top_p = a.top_p},
                           .seed = a.seed,
                           .max_new = a.max_new,
                           .speculative = a.speculative,
                           .draft_depth = a.draft_depth};
  if (a.eos >= 0) o.eos = static_cast<std::int32_t>(a.eos);
  dsv3::check_generate(p.cfg, prompt, o);
  std::printf("deepseek_v3 generate: %s (%s), prompt %zu tokens, %s, max %lld new%s\n", a.model.c_str(),
              a.precision.c_str(), prompt.size(), a.temperature == 0.0f ? "greedy" : "sampled",
              static_cast<long long>(a.max_new),
              a.speculative ? (", MTP speculative depth " + std::to_string(a.draft_depth)).c_str() : "");
  std::printf("tokens:");
  std::fflush(stdout);
  auto const r = dsv3::generate(p, prompt, o, [](std::int32_t t) {
    std::printf(" %d", t);
    std::fflush(stdout);  // streaming
  });
  std::printf("\n");
  if (text) {
    std::string shown;
    for (char ch : dsv3::decode_bytes(r.tokens))
      shown += (ch >= 32 && ch < 127) ? std::string(1, ch)
                                      : "\\x" + std::to_string(static_cast<unsigned char>(ch));
    std::printf("text: %s\n", shown.c_str());
  }
  std::printf("generated %zu tokens (stop: %s): prefill %.3f s, decode %.1f tokens/s\n", r.tokens.size(),
              dsv3::to_string(r.why), r.prefill_seconds, r.decode_tokens_per_second());
  if (a.speculative) {
    // the speed-up: the same tokens decoded plain and speculatively, alternating, best of
    // speedup_rounds each (the streamed run above pays the first-use allocations and page faults; the
    // machine's speed drifts between seconds)
    constexpr int speedup_rounds = 3;
    o.max_new = static_cast<std::int64_t>(r.tokens.size());
    o.eos.reset();
    double plain_tps = 0, spec_tps = 0;
    for (int i = 0; i < speedup_rounds; ++i) {
      o.speculative = false;
      plain_tps = std::max(plain_tps, dsv3::generate(p, prompt, o).decode_tokens_per_second());
      o.speculative = true;
      spec_tps = std::max(spec_tps, dsv3::generate(p, prompt, o).decode_tokens_per_second());
    }
    std::printf(
        "speculative: acceptance %.1f%% (%lld of %lld drafts), %.2f tokens per main-model forward; "
        "plain decoding %.1f tokens/s: speed-up x%.2f (speculative %.1f tokens/s; best of %d alternating "
        "runs each)\n",
        100.0 * r.stats.acceptance_rate(), static_cast<long long>(r.stats.accepted),
        static_cast<long long>(r.stats.drafted), r.stats.tokens_per_forward(), plain_tps,
        plain_tps > 0 ? spec_tps / plain_tps : 0.0, spec_tps, speedup_rounds);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"deepseek_v3: DeepSeek-V3 in Hugging Face format: random checkpoints, their facts, logits"};
  app.require_subcommand(1);

  std::string init_config, init_out, init_dtype = "f32";
  std::uint64_t init_seed = 0;
  auto* init = app.add_subcommand("init", "write a randomly initialised model as a HF checkpoint directory");
  init->add_option("--config", init_config, "tiny | nano | a config.json (or a directory holding one)")
      ->required();
  init->add_option("--out", init_out, "the directory to create (must be new or empty)")->required();
  init->add_option("--dtype", init_dtype, "f32 | bf16 | fp8 (E4M3 weights + 128x128 weight_scale_inv)")
      ->capture_default_str();
  init->add_option("--seed", init_seed, "seed of the initialisation")->capture_default_str();

  std::string info_model, info_config;
  std::int64_t info_context = 0;
  auto* info = app.add_subcommand("info", "config, parameter counts, memory per precision, FLOPs per token");
  auto* model_opt =
      info->add_option("--model", info_model, "a checkpoint directory (checked against its config)");
  auto* config_opt = info->add_option("--config", info_config, "tiny | nano | 671b | a config.json");
  model_opt->excludes(config_opt);
  info->require_option(1);
  info->add_option("--context", info_context,
                   "keys a token attends, for FLOPs (default: the pre-YaRN length)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));

  std::string logits_model, logits_tokens, logits_out, logits_precision = "fp32";
  auto* logits = app.add_subcommand("logits", "float32 logits [T, vocab] of every position, as a NumPy .npy");
  logits->add_option("--model", logits_model, "a checkpoint directory")->required();
  logits->add_option("--tokens", logits_tokens, "token ids: 1,2,3 or @FILE (ids separated by commas/spaces)")
      ->required();
  logits->add_option("--out", logits_out, "the .npy file to write")->required();
  logits->add_option("--precision", logits_precision, "fp32 | bf16 | fp8")->capture_default_str();
  std::string logits_mtp_out;
  logits->add_option("--mtp-out", logits_mtp_out, "also write the MTP layer's logits [T-1, vocab] (.npy)");

  generate_args gen;
  auto* generate =
      app.add_subcommand("generate", "generate tokens from a prompt (latent KV cache, MTP speculative)");
  generate->add_option("--model", gen.model, "a checkpoint directory")->required();
  auto* gen_tokens =
      generate->add_option("--prompt-tokens", gen.prompt_tokens, "prompt token ids: 1,2,3 or @FILE");
  auto* gen_text = generate->add_option(
      "--prompt", gen.prompt, "prompt text, byte-level tokens (id = byte value; needs vocab >= 256)");
  gen_tokens->excludes(gen_text);
  generate->require_option(1, 0);
  generate->add_option("--max-new", gen.max_new, "tokens to generate at most")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30))
      ->capture_default_str();
  auto* spec = generate->add_flag("--speculative", gen.speculative, "MTP speculative decoding");
  generate->add_option("--draft-depth", gen.draft_depth, "drafts per main-model forward (MTP layer chained)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{16}))
      ->needs(spec)
      ->capture_default_str();
  generate->add_option("--temperature", gen.temperature, "0: greedy")
      ->check(CLI::Range(0.0f, 1e6f))
      ->capture_default_str();
  generate->add_option("--top-k", gen.top_k, "keep the k most probable tokens (0: off)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  generate->add_option("--top-p", gen.top_p, "nucleus mass in (0, 1] (1: off)")->capture_default_str();
  generate->add_option("--seed", gen.seed, "seed of the sampler")->capture_default_str();
  generate->add_option("--eos", gen.eos, "stop after emitting this token id")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 30));
  generate->add_option("--precision", gen.precision, "fp32 | bf16 | fp8")->capture_default_str();

  dsv3::train_args tr;
#ifdef DSV3_DEFAULT_CORPUS
  tr.data = DSV3_DEFAULT_CORPUS;  // the corpus the build generates (the repository's docs and headers)
#endif
  auto* train = app.add_subcommand("train", "train a model (byte-level tokens from a text file)");
  train->add_option("--config", tr.config, "tiny | nano | a config.json | a checkpoint directory")
      ->capture_default_str();
  train->add_option("--data", tr.data, "a text file (default: the corpus built with the example)");
  train->add_option("--steps", tr.steps, "optimizer steps of the run")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->capture_default_str();
  train->add_option("--batch", tr.batch, "sequences per step")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  train->add_option("--seq", tr.seq, "tokens per sequence")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  train->add_option("--precision", tr.precision, "the recipe: fp8 | bf16 | fp32")->capture_default_str();
  train->add_option("--out", tr.out, "output directory (checkpoints, loss.csv, loss.svg)")->required();
  train->add_option("--resume", tr.resume, "continue a run from its --out directory (bit-exactly)");
  train->add_option("--seed", tr.seed, "seed of the initial weights and the data order")
      ->capture_default_str();
  train->add_option("--lr", tr.lr, "peak learning rate (warm-up 10%, cosine to lr/10)")
      ->check(CLI::Range(1e-8f, 0.999f))
      ->capture_default_str();
  train->add_option("--stop-after", tr.stop_after, "stop after this step (checkpointed) as if interrupted");
  train->add_option("--eval-every", tr.eval_every, "held-out loss every N steps")->capture_default_str();
  train->add_option("--save-every", tr.save_every, "checkpoint every N steps (0: at the end)")
      ->capture_default_str();
  train->add_option("--log-every", tr.log_every, "a progress line every N steps")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (CLI::CallForHelp const& e) {
    return app.exit(e);
  } catch (CLI::CallForAllHelp const& e) {
    return app.exit(e);
  } catch (CLI::ParseError const& e) {
    std::fprintf(stderr, "deepseek_v3: error: %s (see --help)\n", e.what());
    return 2;
  }
  try {
    if (*init) return run_init(init_config, init_out, init_dtype, init_seed);
    if (*logits) return run_logits(logits_model, logits_tokens, logits_out, logits_precision, logits_mtp_out);
    if (*generate) return run_generate(gen);
    if (*train) return dsv3::run_train(tr);
    return run_info(info_model, info_config, info_context);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "deepseek_v3: error: %s\n", e.what());
    return 1;
  }
}
