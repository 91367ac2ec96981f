// SPDX-License-Identifier: Apache-2.0
// Copyright (c) 2026 The fp8moe authors.
// Linked into every MPI test (tests/CMakeLists.txt, MPI_RANKS): a doctest listener that, on the
// first failed check, failed message or escaped exception on any rank, prints it with the rank and
// calls MPI_Abort, so the job fails at once instead of the other ranks waiting in a collective.
#include <mpi.h>

#include <doctest/doctest.h>

#include <cstdio>
#include <cstdlib>

namespace {

int world_rank() {
  int inited = 0, finalized = 0, r = -1;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

[[noreturn]] void abort_job(char const* what, char const* file, int line, char const* detail) {
  std::fprintf(
      stderr, "\n[rank %d] %s at %s:%d\n  %s\n[rank %d] MPI_Abort: a failed check on one rank ends the job\n",
      world_rank(), what, file ? file : "?", line, detail ? detail : "", world_rank());
  std::fflush(stderr);
  std::fflush(stdout);
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::abort();
}

struct mpi_abort_listener : doctest::IReporter {
  explicit mpi_abort_listener(doctest::ContextOptions const&) {}
  void report_query(doctest::QueryData const&) override {}
  void test_run_start() override {}
  void test_run_end(doctest::TestRunStats const&) override {}
  void test_case_start(doctest::TestCaseData const& tc) override { current_ = &tc; }
  void test_case_reenter(doctest::TestCaseData const&) override {}
  void test_case_end(doctest::CurrentTestCaseStats const&) override {}
  void test_case_exception(doctest::TestCaseException const& e) override {
    if (e.is_crash) return;  // a signal: the process dies anyway and mpiexec ends the job
    abort_job("exception escaped test case", current_ ? current_->m_file.c_str() : nullptr,
              current_ ? current_->m_line : 0, e.error_string.c_str());
  }
  void subcase_start(doctest::SubcaseSignature const&) override {}
  void subcase_end() override {}
  void log_assert(doctest::AssertData const& a) override {
    if (!a.m_failed || (a.m_at & doctest::assertType::is_warn)) return;  // WARN_*: not a failure
    std::fprintf(stderr, "[rank %d] failed: %s( %s )\n  values: %s%s%s\n", world_rank(),
                 doctest::assertString(a.m_at), a.m_expr, a.m_decomp.c_str(), a.m_threw ? "\n  threw: " : "",
                 a.m_threw ? a.m_exception.c_str() : "");
    abort_job("check failed", a.m_file, a.m_line, current_ ? current_->m_name : "");
  }
  void log_message(doctest::MessageData const& m) override {
    if (m.m_severity & doctest::assertType::is_warn) return;  // MESSAGE / WARN: not a failure
    abort_job("FAIL message", m.m_file, m.m_line, m.m_string.c_str());
  }
  void test_case_skipped(doctest::TestCaseData const&) override {}

 private:
  doctest::TestCaseData const* current_ = nullptr;
};

}  // namespace

DOCTEST_REGISTER_LISTENER("mpi_abort", 1, mpi_abort_listener);
