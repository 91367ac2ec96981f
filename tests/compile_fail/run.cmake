# SPDX-License-Identifier: Apache-2.0
# Compiles SRC and passes only if compilation FAILS with a diagnostic containing EXPECT.
execute_process(COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INC} ${SRC} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SRC} compiled, but it must be rejected")
endif()
string(FIND "${err}" "${EXPECT}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "${SRC} failed to compile, but not with the expected diagnostic '${EXPECT}':\n${err}")
endif()
message(STATUS "rejected as expected: '${EXPECT}'")
