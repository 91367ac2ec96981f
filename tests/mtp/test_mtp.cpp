// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// mtp::mtp_module over tiny_block: forward against the float64 reference (mtp_reference.hpp) for
// both depth-1 inputs; the loss (lambda/D weighting, torchtitan's shifted targets with an ignored
// tail); the backward against float64 central differences for every parameter, h_prev and the
// embedding rows, for one depth and for two chained depths reusing the module; bad input.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fp8moe/mtp/mtp.hpp"
#include "mtp_checks.hpp"
#include "mtp_reference.hpp"
#include "test_support.hpp"

using namespace fp8moe;
using mtp_checks::check_gradient;
using mtp_checks::error_of;

namespace {

/// Float copies of the reference parameters, their gradient buffers and the module over them.
struct model {
  mtp_ref::params const& p;
  std::int64_t V, C, F;
  std::vector<float> embed, final_norm, enorm, hnorm, eh, head_norm, head, g, w1, w2;
  std::vector<float> d_embed, d_final_norm, d_enorm, d_hnorm, d_eh, d_head_norm, d_head, dg, dw1, dw2;
  mtp::tiny_block block;
  mtp::mtp_module<mtp::tiny_block> m;

  model(mtp_ref::params const& p_, mtp::mtp_options o)
      : p(p_),
        V(p.V),
        C(p.C),
        F(p.F),
        embed(f(p.embed)),
        final_norm(f(p.final_norm)),
        enorm(f(p.enorm)),
        hnorm(f(p.hnorm)),
        eh(f(p.eh_proj)),
        head_norm(f(p.head_norm)),
        head(f(p.head)),
        g(f(p.blk.g)),
        w1(f(p.blk.w1)),
        w2(f(p.blk.w2)),
        d_embed(embed.size()),
        d_final_norm(final_norm.size()),
        d_enorm(enorm.size()),
        d_hnorm(hnorm.size()),
        d_eh(eh.size()),
        d_head_norm(head_norm.size()),
        d_head(head.size()),
        dg(g.size()),
        dw1(w1.size()),
        dw2(w2.size()),
        block({g, make_matrix<float const>(w1.data(), F, C), make_matrix<float const>(w2.data(), C, F)},
              {dg, make_matrix(dw1.data(), F, C), make_matrix(dw2.data(), C, F)}),
        m{.weights = {.embed = make_matrix<float const>(embed.data(), V, C),
                      .final_norm = final_norm,
                      .enorm = enorm,
                      .hnorm = hnorm,
                      .eh_proj = make_matrix<float const>(eh.data(), C, 2 * C),
                      .head_norm = head_norm,
                      .head = make_matrix<float const>(head.data(), V, C)},
          .grads = {.d_embed = make_matrix(d_embed.data(), V, C),
                    .d_final_norm = d_final_norm,
                    .d_enorm = d_enorm,
                    .d_hnorm = d_hnorm,
                    .d_eh_proj = make_matrix(d_eh.data(), C, 2 * C),
                    .d_head_norm = d_head_norm,
                    .d_head = make_matrix(d_head.data(), V, C)},
          .block = &block,
          .options = o} {}
  static std::vector<float> f(mtp_ref::vec const& v) { return mtp_ref::to_float(v); }
};

std::vector<std::int32_t> iota_positions(std::int64_t T) {
  std::vector<std::int32_t> pos(static_cast<std::size_t>(T));
  for (std::int64_t i = 0; i < T; ++i) pos[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  return pos;
}

/// A training window: tokens (T) with repeats, labels_i = tokens_{i+1} (the last one given).
struct window {
  std::vector<std::int32_t> tokens, labels;
};
window make_window(std::int64_t T, std::int64_t V) {
  window w;
  for (std::int64_t i = 0; i <= T; ++i) w.tokens.push_back(static_cast<std::int32_t>((i * 7 + i * i) % V));
  w.labels.assign(w.tokens.begin() + 1, w.tokens.end());
  w.tokens.pop_back();
  w.tokens[3] = w.tokens[1];  // a repeated id: its embedding row gathers two gradients
  return w;
}

}  // namespace

TEST_CASE("mtp_forward matches the float64 reference, with the final norm before depth 1 and without") {
  std::int64_t const T = 13, V = 50, C = 32, F = 40;
  auto const p = mtp_ref::random_params(V, C, F, 1000);
  auto const h = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 2.0, 1011);
  auto const hf = mtp_ref::to_float(h);
  auto const win = make_window(T, V);
  auto const pos = iota_positions(T);
  std::vector<std::int32_t> tok(static_cast<std::size_t>(T)), tgt(tok.size());
  mtp::shift_for_depth(win.tokens, win.labels, 1, tok, tgt);
  for (auto d1 : {mtp::depth1_input::after_final_norm, mtp::depth1_input::before_final_norm}) {
    model md(p, {.depth1 = d1});
    for (int threads : {1, 3}) {
      host_executor const exec{threads};
      std::vector<std::byte> ws(mtp::workspace_bytes(exec, md.m, T));
      std::vector<float> logits(static_cast<std::size_t>(T * V));
      test::poison(logits);
      auto const st = mtp::mtp_forward(exec, md.m, mtp::source::main_model, tok, make_matrix(hf.data(), T, C),
                                       pos, make_matrix(logits.data(), T, V), ws);
      auto const ref = mtp_ref::depth(p, tok, h, pos, d1 == mtp::depth1_input::after_final_norm, 1e-6);
      // Float stages: three or four RMSNorms (C = 32 squares), eh_proj (K = 64), the block (K <= 40),
      // the head (K = 32), each adding a relative error <= K * 2^-24 ~ 4e-6 of its terms' magnitude
      // (<= ~10 here): 1e-4 absolute on logits and hidden states of magnitude <= ~10.
      for (std::size_t i = 0; i < logits.size(); ++i)
        REQUIRE(std::abs(logits[i] - ref.logits[i]) <= 1e-4 * (1.0 + std::abs(ref.logits[i])));
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t c = 0; c < C; ++c)
          REQUIRE(std::abs(st.hidden(t, c) - ref.hidden[static_cast<std::size_t>(t * C + c)]) <=
                  1e-4 * (1.0 + std::abs(ref.hidden[static_cast<std::size_t>(t * C + c)])));
    }
  }
  // the option matters: the two depth-1 inputs give different logits for a non-unit final norm
  auto const a = mtp_ref::depth(p, tok, h, pos, true, 1e-6), b = mtp_ref::depth(p, tok, h, pos, false, 1e-6);
  CHECK(test::calc_diff(a.logits, b.logits) > 1e-4);
}

TEST_CASE("shift_for_depth aligns as torchtitan: tokens shifted by k, tail padded and ignored") {
  std::vector<std::int32_t> const tokens{10, 11, 12, 13, 14}, labels{11, 12, 13, 14, 15};
  std::vector<std::int32_t> e(5), t(5);
  mtp::shift_for_depth(tokens, labels, 1, e, t);
  CHECK(e == std::vector<std::int32_t>{11, 12, 13, 14, 0});
  CHECK(t == std::vector<std::int32_t>{12, 13, 14, 15, -100});
  mtp::shift_for_depth(tokens, labels, 2, e, t, -1, 7);
  CHECK(e == std::vector<std::int32_t>{12, 13, 14, 7, 7});
  CHECK(t == std::vector<std::int32_t>{13, 14, 15, -1, -1});
  CHECK(error_of([&] { mtp::shift_for_depth(tokens, labels, 0, e, t); }).find("'depth'") !=
        std::string::npos);
  std::vector<std::int32_t> short_t(4);
  CHECK(error_of([&] { mtp::shift_for_depth(tokens, labels, 1, e, short_t); }).find("'targets'") !=
        std::string::npos);
}

TEST_CASE("mtp_loss is (lambda / D) * the mean cross-entropy over the valid rows") {
  std::int64_t const T = 9, V = 20, C = 16, F = 8;
  auto const p = mtp_ref::random_params(V, C, F, 2000);
  model md(p, {.loss_weight = 0.3f, .depths = 2});
  auto const win = make_window(T, V);
  std::vector<std::int32_t> tok(static_cast<std::size_t>(T)), tgt(tok.size());
  mtp::shift_for_depth(win.tokens, win.labels, 2, tok, tgt);
  auto const logits = mtp_ref::to_float(mtp_ref::random_vec(static_cast<std::size_t>(T * V), 2.0, 2001));
  std::vector<float> losses(static_cast<std::size_t>(T));
  host_executor const exec;
  float const l = mtp::mtp_loss(exec, md.m, make_matrix(logits.data(), T, V), tgt, losses);
  double const ref = 0.3 / 2 * mtp_ref::cross_entropy({logits.begin(), logits.end()}, tgt, V, -100);
  CHECK(l == doctest::Approx(ref).epsilon(1e-6));
  CHECK(losses[static_cast<std::size_t>(T - 1)] == 0.0f);  // the ignored tail
  // the backward is the gradient of that loss: d/dlogits by central differences in float64
  std::vector<float> dl(logits.size());
  mtp::mtp_loss_backward(exec, md.m, make_matrix(logits.data(), T, V), tgt, make_matrix(dl.data(), T, V),
                         2.0f);
  mtp_ref::vec lg(logits.begin(), logits.end());
  for (std::size_t i = 0; i < lg.size(); i += 7) {
    double const keep = lg[i], h = 1e-5;
    lg[i] = keep + h;
    double const lp = 0.3 / 2 * mtp_ref::cross_entropy(lg, tgt, V, -100);
    lg[i] = keep - h;
    double const lm = 0.3 / 2 * mtp_ref::cross_entropy(lg, tgt, V, -100);
    lg[i] = keep;
    REQUIRE(dl[i] == doctest::Approx(2.0 * (lp - lm) / (2 * h)).epsilon(1e-4).scale(1e-3));
  }
}

TEST_CASE("mtp_backward matches float64 central differences: every parameter, h_prev, the embedding rows") {
  std::int64_t const T = 8, V = 24, C = 12, F = 10;
  for (auto d1 : {mtp::depth1_input::after_final_norm, mtp::depth1_input::before_final_norm}) {
    auto p = mtp_ref::random_params(V, C, F, 3000);
    model md(p, {.depth1 = d1, .loss_weight = 0.3f, .depths = 1});
    auto h = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 1.5, 3001);
    auto const hf = mtp_ref::to_float(h);
    auto const win = make_window(T, V);
    auto const pos = iota_positions(T);
    std::vector<std::int32_t> tok(static_cast<std::size_t>(T)), tgt(tok.size());
    mtp::shift_for_depth(win.tokens, win.labels, 1, tok, tgt);
    host_executor const exec{2};
    std::vector<std::byte> ws(mtp::workspace_bytes(exec, md.m, T));
    std::vector<float> logits(static_cast<std::size_t>(T * V)), losses(static_cast<std::size_t>(T));
    // dh_prev accumulates: start from a known value and subtract it after
    std::vector<float> dh(static_cast<std::size_t>(T * C), 0.25f);
    auto const st = mtp::mtp_forward(exec, md.m, mtp::source::main_model, tok, make_matrix(hf.data(), T, C),
                                     pos, make_matrix(logits.data(), T, V), ws);
    mtp::mtp_loss(exec, md.m, make_matrix<float const>(logits.data(), T, V), tgt, losses);
    mtp::mtp_loss_backward(exec, md.m, make_matrix<float const>(logits.data(), T, V), tgt,
                           make_matrix(logits.data(), T, V));  // in place
    mtp::mtp_backward(exec, md.m, st, make_matrix<float const>(logits.data(), T, V),
                      matrix_view<float const>{}, make_matrix(dh.data(), T, C), ws);
    for (auto& v : dh) v -= 0.25f;
    bool const fn = d1 == mtp::depth1_input::after_final_norm;
    auto loss = [&] {
      return 0.3 * mtp_ref::cross_entropy(mtp_ref::depth(p, tok, h, pos, fn, 1e-6).logits, tgt, V, -100);
    };
    check_gradient(h, dh, "dh_prev", loss);
    check_gradient(p.embed, md.d_embed, "d_embed", loss);
    check_gradient(p.enorm, md.d_enorm, "d_enorm", loss);
    check_gradient(p.hnorm, md.d_hnorm, "d_hnorm", loss);
    check_gradient(p.eh_proj, md.d_eh, "d_eh_proj", loss);
    check_gradient(p.head_norm, md.d_head_norm, "d_head_norm", loss);
    check_gradient(p.head, md.d_head, "d_head", loss);
    check_gradient(p.blk.g, md.dg, "block d_norm", loss);
    check_gradient(p.blk.w1, md.dw1, "block d_w1", loss);
    check_gradient(p.blk.w2, md.dw2, "block d_w2", loss);
    if (fn)
      check_gradient(p.final_norm, md.d_final_norm, "d_final_norm", loss);
    else
      CHECK(std::all_of(md.d_final_norm.begin(), md.d_final_norm.end(), [](float v) { return v == 0.0f; }));
    // rows of embed whose token never appears get no gradient
    for (std::int64_t v = 0; v < V; ++v)
      if (std::find(tok.begin(), tok.end(), static_cast<std::int32_t>(v)) == tok.end())
        for (std::int64_t c = 0; c < C; ++c) REQUIRE(md.d_embed[static_cast<std::size_t>(v * C + c)] == 0.0f);
  }
}

TEST_CASE("two chained depths reuse one module: loss (lambda/2)(L1 + L2), gradients by central differences") {
  std::int64_t const T = 8, V = 24, C = 12, F = 10;
  auto p = mtp_ref::random_params(V, C, F, 4000);
  model md(p, {.loss_weight = 0.3f, .depths = 2});
  auto h = mtp_ref::random_vec(static_cast<std::size_t>(T * C), 1.0, 4001);
  auto const hf = mtp_ref::to_float(h);
  auto const win = make_window(T, V);
  auto const pos = iota_positions(T);
  std::vector<std::int32_t> tok1(static_cast<std::size_t>(T)), tgt1(tok1.size()), tok2(tok1.size()),
      tgt2(tok1.size());
  mtp::shift_for_depth(win.tokens, win.labels, 1, tok1, tgt1);
  mtp::shift_for_depth(win.tokens, win.labels, 2, tok2, tgt2);
  host_executor const exec;
  std::size_t const bytes = mtp::workspace_bytes(exec, md.m, T);
  std::vector<std::byte> ws1(bytes), ws2(bytes);
  std::vector<float> lg1(static_cast<std::size_t>(T * V)), lg2(lg1.size()),
      losses(static_cast<std::size_t>(T));
  std::vector<float> dh(static_cast<std::size_t>(T * C)), dhid1(dh.size());
  auto const s1 = mtp::mtp_forward(exec, md.m, mtp::source::main_model, tok1, make_matrix(hf.data(), T, C),
                                   pos, make_matrix(lg1.data(), T, V), ws1);
  auto const s2 =
      mtp::mtp_forward(exec, md.m, mtp::source::previous_depth, tok2, matrix_view<float const>(s1.hidden),
                       pos, make_matrix(lg2.data(), T, V), ws2);
  float const l1 = mtp::mtp_loss(exec, md.m, make_matrix<float const>(lg1.data(), T, V), tgt1, losses);
  float const l2 = mtp::mtp_loss(exec, md.m, make_matrix<float const>(lg2.data(), T, V), tgt2, losses);
  auto ref_loss = [&] {
    auto const o1 = mtp_ref::depth(p, tok1, h, pos, true, 1e-6);
    auto const o2 = mtp_ref::depth(p, tok2, o1.hidden, pos, false, 1e-6);
    return 0.15 * (mtp_ref::cross_entropy(o1.logits, tgt1, V, -100) +
                   mtp_ref::cross_entropy(o2.logits, tgt2, V, -100));
  };
  CHECK(l1 + l2 == doctest::Approx(ref_loss()).epsilon(1e-5));
  mtp::mtp_loss_backward(exec, md.m, make_matrix<float const>(lg2.data(), T, V), tgt2,
                         make_matrix(lg2.data(), T, V));
  mtp::mtp_backward(exec, md.m, s2, make_matrix<float const>(lg2.data(), T, V), matrix_view<float const>{},
                    make_matrix(dhid1.data(), T, C), ws2);
  mtp::mtp_loss_backward(exec, md.m, make_matrix<float const>(lg1.data(), T, V), tgt1,
                         make_matrix(lg1.data(), T, V));
  mtp::mtp_backward(exec, md.m, s1, make_matrix<float const>(lg1.data(), T, V),
                    make_matrix<float const>(dhid1.data(), T, C), make_matrix(dh.data(), T, C), ws1);
  check_gradient(h, dh, "dh_prev", ref_loss);
  check_gradient(p.embed, md.d_embed, "d_embed", ref_loss);
  check_gradient(p.eh_proj, md.d_eh, "d_eh_proj", ref_loss);
  check_gradient(p.hnorm, md.d_hnorm, "d_hnorm", ref_loss);
  check_gradient(p.enorm, md.d_enorm, "d_enorm", ref_loss);
  check_gradient(p.head_norm, md.d_head_norm, "d_head_norm", ref_loss);
  check_gradient(p.head, md.d_head, "d_head", ref_loss);
  check_gradient(p.final_norm, md.d_final_norm, "d_final_norm", ref_loss);
  check_gradient(p.blk.w1, md.dw1, "block d_w1", ref_loss);
  check_gradient(p.blk.w2, md.dw2, "block d_w2", ref_loss);
  check_gradient(p.blk.g, md.dg, "block d_norm", ref_loss);
}

TEST_CASE("mtp_forward / mtp_backward reject bad input before writing, naming the argument") {
  std::int64_t const T = 5, V = 16, C = 8, F = 6;
  auto const p = mtp_ref::random_params(V, C, F, 5000);
  model md(p, {});
  host_executor const exec;
  std::vector<std::byte> ws(mtp::workspace_bytes(exec, md.m, T));
  std::vector<float> h(static_cast<std::size_t>(T * C), 0.5f), logits(static_cast<std::size_t>(T * V), 9.0f);
  std::vector<std::int32_t> tok{1, 2, 3, 4, 5};
  auto const pos = iota_positions(T);
  auto fwd = [&](std::span<std::int32_t const> t, matrix_view<float const> hp, std::span<std::byte> w) {
    mtp::mtp_forward(exec, md.m, mtp::source::main_model, t, hp, pos, make_matrix(logits.data(), T, V), w);
  };
  auto const hv = make_matrix<float const>(h.data(), T, C);
  std::vector<std::int32_t> bad_tok{1, 2, 16, 4, 5};
  CHECK(error_of([&] { fwd(bad_tok, hv, ws); }).find("'tokens'") != std::string::npos);
  CHECK(error_of([&] { fwd(tok, make_matrix<float const>(h.data(), T, C - 1), ws); }).find("'h_prev'") !=
        std::string::npos);
  std::vector<std::byte> small(ws.size() / 2);
  CHECK(error_of([&] { fwd(tok, hv, small); }).find("'workspace'") != std::string::npos);
  CHECK(std::all_of(logits.begin(), logits.end(), [](float v) { return v == 9.0f; }));  // untouched

  auto bad = md.m;
  bad.weights.final_norm = {};
  CHECK(error_of([&] {
          mtp::mtp_forward(exec, bad, mtp::source::main_model, tok, hv, pos, make_matrix(logits.data(), T, V),
                           ws);
        }).find("'weights.final_norm'") != std::string::npos);
  bad = md.m;
  bad.weights.eh_proj = make_matrix<float const>(md.eh.data(), C, C);  // (C,C): the hidden half missing
  CHECK(error_of([&] {
          mtp::mtp_forward(exec, bad, mtp::source::main_model, tok, hv, pos, make_matrix(logits.data(), T, V),
                           ws);
        }).find("'weights.eh_proj'") != std::string::npos);
  bad = md.m;
  bad.options.loss_weight = -1.0f;
  std::vector<float> losses(static_cast<std::size_t>(T));
  CHECK(error_of([&] {
          mtp::mtp_loss(exec, bad, make_matrix<float const>(logits.data(), T, V), tok, losses);
        }).find("'options.loss_weight'") != std::string::npos);
  bad = md.m;
  bad.options.depths = 0;
  CHECK(error_of([&] {
          mtp::mtp_loss(exec, bad, make_matrix<float const>(logits.data(), T, V), tok, losses);
        }).find("'options.depths'") != std::string::npos);

  auto const st = mtp::mtp_forward(exec, md.m, mtp::source::main_model, tok, hv, pos,
                                   make_matrix(logits.data(), T, V), ws);
  std::vector<float> dh(h.size(), 3.0f);
  bad = md.m;
  bad.grads.d_head = {};
  CHECK(error_of([&] {
          mtp::mtp_backward(exec, bad, st, make_matrix<float const>(logits.data(), T, V),
                            matrix_view<float const>{}, make_matrix(dh.data(), T, C), ws);
        }).find("'grads.d_head'") != std::string::npos);
  CHECK(error_of([&] {
          mtp::mtp_backward(exec, md.m, st, make_matrix<float const>(logits.data(), T, V - 1),
                            matrix_view<float const>{}, make_matrix(dh.data(), T, C), ws);
        }).find("'dlogits'") != std::string::npos);
  CHECK(std::all_of(dh.begin(), dh.end(), [](float v) { return v == 3.0f; }));
  CHECK(std::all_of(md.d_head.begin(), md.d_head.end(), [](float v) { return v == 0.0f; }));
}
