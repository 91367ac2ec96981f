// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Checks the mtp tests share: the message of the fp8moe::error a call throws, and the comparison of
// a float analytic gradient with float64 central differences of a float64 loss.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "fp8moe/core/error.hpp"

namespace mtp_checks {

/// what() of the fp8moe::error f() throws, or "no error".
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (fp8moe::error const& e) {
    return e.what();
  }
  return "no error";
}

/// Central differences (float64, h = 1e-5) of `loss` over every `stride`-th element of `param`
/// against the float analytic gradient `grad`: the float backward carries ~1e-5 relative error,
/// truncation (~h^2 L''') and rounding (~1e-16 / h) of the quotient are below 1e-8, so
/// 2e-4 * (1 + |fd|) separates a right gradient from a wrong one (a missing term or factor is O(|fd|)).
/// Also requires the differences not to be all zero, so the check has something to check.
template <class Loss>
void check_gradient(std::vector<double>& param, std::vector<float> const& grad, char const* name,
                    Loss const& loss, std::size_t stride = 1) {
  REQUIRE(param.size() == grad.size());
  double norm = 0;
  for (std::size_t i = 0; i < param.size(); i += stride) {
    double const keep = param[i], h = 1e-5;
    param[i] = keep + h;
    double const lp = loss();
    param[i] = keep - h;
    double const lm = loss();
    param[i] = keep;
    double const fd = (lp - lm) / (2 * h);
    norm += fd * fd;
    INFO(name << "[" << i << "]: analytic " << grad[i] << ", central difference " << fd);
    REQUIRE(std::abs(grad[i] - fd) <= 2e-4 * (1.0 + std::abs(fd)));
  }
  CHECK_MESSAGE(norm > 1e-10, name << ": the gradient is not all zero");
}

}  // namespace mtp_checks
