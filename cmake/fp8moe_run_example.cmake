# SPDX-License-Identifier: Apache-2.0
# Runs one example command for ctest and judges it by its exit status AND its output (ctest's
# PASS_REGULAR_EXPRESSION alone ignores the exit status):
#   cmake -DEXPECT_EXIT=<status> -DEXPECT_REGEX=<regex> -P fp8moe_run_example.cmake -- <command> <args...>
# Fails unless the command exits with EXPECT_EXIT (default 0) and its stdout+stderr match EXPECT_REGEX
# (when given). The output is echoed so `ctest -V` and the log show what the example printed.
if(NOT DEFINED EXPECT_EXIT)
  set(EXPECT_EXIT 0)
endif()
set(cmd)
set(after_dashes FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE 1 ${last})
  if(after_dashes)
    list(APPEND cmd "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_dashes TRUE)
  endif()
endforeach()
if(NOT cmd)
  message(FATAL_ERROR "fp8moe_run_example.cmake: no command after --")
endif()
execute_process(COMMAND ${cmd} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE out)
message("${out}")
if(NOT "${status}" STREQUAL "${EXPECT_EXIT}")
  message(FATAL_ERROR "example exited with '${status}', expected ${EXPECT_EXIT}")
endif()
if(DEFINED EXPECT_REGEX AND NOT "${EXPECT_REGEX}" STREQUAL "")
  string(REGEX MATCH "${EXPECT_REGEX}" found "${out}")
  if(found STREQUAL "")
    message(FATAL_ERROR "example output does not match '${EXPECT_REGEX}'")
  endif()
endif()
message("example exited with ${status} as expected; output matches '${EXPECT_REGEX}'")
