# SPDX-License-Identifier: Apache-2.0
# ctest -P script: the code between the two "// [worked-example]" markers of SNIPPET must appear
# verbatim in DOC, so the worked example the docs show is the one the tests compile and run.
file(READ "${SNIPPET}" src)
string(REGEX MATCH "// \\[worked-example\\]\n(.*)// \\[worked-example\\]" found "${src}")
if(NOT found)
  message(FATAL_ERROR "${SNIPPET}: no region between two // [worked-example] markers")
endif()
set(code "${CMAKE_MATCH_1}")
file(READ "${DOC}" doc)
string(FIND "${doc}" "${code}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${DOC} does not quote the worked example of ${SNIPPET} verbatim")
endif()
message(STATUS "worked example quoted verbatim at offset ${at} of ${DOC}")
