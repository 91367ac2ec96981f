# SPDX-License-Identifier: Apache-2.0
# format.check: every C++/CUDA source is clang-format clean (the repo's .clang-format).
find_program(FP8MOE_CLANG_FORMAT NAMES clang-format clang-format-14)
if(FP8MOE_CLANG_FORMAT)
  file(GLOB_RECURSE _fmt_sources CONFIGURE_DEPENDS
       ${PROJECT_SOURCE_DIR}/include/*.hpp ${PROJECT_SOURCE_DIR}/include/*.cuh
       ${PROJECT_SOURCE_DIR}/tests/*.hpp ${PROJECT_SOURCE_DIR}/tests/*.cpp
       ${PROJECT_SOURCE_DIR}/bench/*.cpp ${PROJECT_SOURCE_DIR}/bench/*.cu ${PROJECT_SOURCE_DIR}/examples/*.cpp)
  add_test(NAME format.check COMMAND ${FP8MOE_CLANG_FORMAT} --dry-run --Werror ${_fmt_sources})
  set_tests_properties(format.check PROPERTIES LABELS "package")
endif()
