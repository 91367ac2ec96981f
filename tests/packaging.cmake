# SPDX-License-Identifier: Apache-2.0
# Packaging tests: header self-containment, install + find_package consumers (core / cuda / mpi),
# a FetchContent consumer that must not see our tests, and compile-fail tests for the concepts.

# ---- every header compiles alone (host headers with g++; CUDA-runtime headers with g++ + cudart)
set_target_properties(fp8moe PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
if(FP8MOE_HAVE_CUDA)
  set_target_properties(fp8moe_cuda PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON INTERFACE_HEADER_SETS_TO_VERIFY HEADERS)
  # device (.cuh) headers: one nvcc translation unit per header
  get_target_property(_cuh fp8moe_cuda HEADER_SET_device)
  set(_cuh_tus)
  foreach(h IN LISTS _cuh)
    string(MAKE_C_IDENTIFIER ${h} id)
    set(tu ${CMAKE_CURRENT_BINARY_DIR}/cuh_alone/${id}.cu)
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR}/include ${h})
    file(CONFIGURE OUTPUT ${tu} CONTENT "#include <${rel}>\n")
    list(APPEND _cuh_tus ${tu})
  endforeach()
  if(_cuh_tus)
    add_library(fp8moe_verify_device_headers OBJECT ${_cuh_tus})
    fp8moe_cuda_target(fp8moe_verify_device_headers)
  endif()
endif()
if(FP8MOE_HAVE_MPI)
  set_target_properties(fp8moe_mpi PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
endif()
set(_have_io OFF)  # the io component needs nlohmann/json
if(TARGET nlohmann_json::nlohmann_json)
  set(_have_io ON)
  set_target_properties(fp8moe_io PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
endif()
if(FP8MOE_HAVE_CUDA AND TARGET fp8moe::nccl_library)
  set_target_properties(fp8moe_nccl PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
endif()
add_test(NAME pkg.headers_compile_alone
         COMMAND ${CMAKE_COMMAND} --build ${PROJECT_BINARY_DIR} --target all_verify_interface_header_sets)
set_tests_properties(pkg.headers_compile_alone PROPERTIES LABELS "package" TIMEOUT 1200 RUN_SERIAL ON)

# ---- install into the build tree, then consume with find_package
set(_pfx ${CMAKE_CURRENT_BINARY_DIR}/pkg_prefix)
add_test(NAME pkg.install COMMAND ${CMAKE_COMMAND} --install ${PROJECT_BINARY_DIR} --prefix ${_pfx})
set_tests_properties(pkg.install PROPERTIES FIXTURES_SETUP fp8moe_pkg LABELS "package")

set(_common_opts -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)
add_test(NAME pkg.find_package_core
         COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${CMAKE_CURRENT_SOURCE_DIR}/package
                 ${CMAKE_CURRENT_BINARY_DIR}/package_core --build-generator ${CMAKE_GENERATOR}
                 --build-options -DCMAKE_PREFIX_PATH=${_pfx} ${_common_opts} -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON
                 -DEXPECT_CUDA=OFF -DEXPECT_IO=${_have_io}
                 --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)
set_tests_properties(pkg.find_package_core PROPERTIES FIXTURES_REQUIRED fp8moe_pkg LABELS "package")

add_test(NAME pkg.version_mismatch_rejected
         COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${CMAKE_CURRENT_SOURCE_DIR}/package_version
                 ${CMAKE_CURRENT_BINARY_DIR}/package_version --build-generator ${CMAKE_GENERATOR}
                 --build-options -DCMAKE_PREFIX_PATH=${_pfx} ${_common_opts})
set_tests_properties(pkg.version_mismatch_rejected PROPERTIES FIXTURES_REQUIRED fp8moe_pkg LABELS "package")

if(FP8MOE_HAVE_CUDA)
  add_test(NAME pkg.find_package_cuda
           COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${CMAKE_CURRENT_SOURCE_DIR}/package
                   ${CMAKE_CURRENT_BINARY_DIR}/package_cuda --build-generator ${CMAKE_GENERATOR}
                   --build-options -DCMAKE_PREFIX_PATH=${_pfx} ${_common_opts} -DEXPECT_CUDA=ON
                   -DCMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER}
                   --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)
  set_tests_properties(pkg.find_package_cuda PROPERTIES FIXTURES_REQUIRED fp8moe_pkg LABELS "package")
endif()
if(FP8MOE_HAVE_MPI)
  add_test(NAME pkg.find_package_mpi
           COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${CMAKE_CURRENT_SOURCE_DIR}/package
                   ${CMAKE_CURRENT_BINARY_DIR}/package_mpi --build-generator ${CMAKE_GENERATOR}
                   --build-options -DCMAKE_PREFIX_PATH=${_pfx} ${_common_opts} -DEXPECT_MPI=ON
                   -DCMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit=ON -DEXPECT_CUDA=OFF
                   --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)
  set_tests_properties(pkg.find_package_mpi PROPERTIES FIXTURES_REQUIRED fp8moe_pkg LABELS "package")
endif()

# ---- FetchContent from SOURCE_DIR (offline); must not leak our tests/benchmarks/examples
add_test(NAME pkg.fetch_content
         COMMAND ${CMAKE_CTEST_COMMAND} --build-and-test ${CMAKE_CURRENT_SOURCE_DIR}/fetch
                 ${CMAKE_CURRENT_BINARY_DIR}/fetch --build-generator ${CMAKE_GENERATOR}
                 --build-options -DFP8MOE_SOURCE_DIR=${PROJECT_SOURCE_DIR} ${_common_opts}
                 --test-command ${CMAKE_CTEST_COMMAND} --output-on-failure)
set_tests_properties(pkg.fetch_content PROPERTIES LABELS "package" FIXTURES_REQUIRED fp8moe_fetch_clean)
# a fresh build tree each run: a cached option from an earlier configure must not mask a regression
add_test(NAME pkg.fetch_content.clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${CMAKE_CURRENT_BINARY_DIR}/fetch)
set_tests_properties(pkg.fetch_content.clean PROPERTIES LABELS "package" FIXTURES_SETUP fp8moe_fetch_clean)

# ---- the README's FetchContent snippet, verbatim, from a git URL of this repository at HEAD
add_test(NAME pkg.fetch_readme_snippet
         COMMAND ${CMAKE_COMMAND} -DSRC=${PROJECT_SOURCE_DIR} -DBIN=${CMAKE_CURRENT_BINARY_DIR}/fetch_git
                 -DGENERATOR=${CMAKE_GENERATOR} -DCXX=${CMAKE_CXX_COMPILER} -DCTEST=${CMAKE_CTEST_COMMAND}
                 -P ${CMAKE_CURRENT_SOURCE_DIR}/fetch_git/run.cmake)
set_tests_properties(pkg.fetch_readme_snippet PROPERTIES LABELS "package" SKIP_REGULAR_EXPRESSION "SKIPPED")

# ---- compile-fail: each source must NOT compile, and must fail for the documented reason
file(GLOB _cf CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/*.cpp)
foreach(src IN LISTS _cf)
  get_filename_component(stem ${src} NAME_WE)
  file(STRINGS ${src} _expect REGEX "^// EXPECT: ")
  string(REPLACE "// EXPECT: " "" _expect "${_expect}")
  add_test(NAME compile_fail.${stem}
           COMMAND ${CMAKE_COMMAND} -DCXX=${CMAKE_CXX_COMPILER} -DSRC=${src} -DINC=${PROJECT_SOURCE_DIR}/include
                   "-DEXPECT=${_expect}" -P ${CMAKE_CURRENT_SOURCE_DIR}/compile_fail/run.cmake)
  set_tests_properties(compile_fail.${stem} PROPERTIES LABELS "package;compile_fail")
endforeach()
