# SPDX-License-Identifier: Apache-2.0
# Dependency discovery and helper functions for fp8moe's OWN tests, benchmarks and examples.
# Never included when fp8moe is a subproject of a consumer (see FP8MOE_BUILD_* options).
find_package(OpenMP COMPONENTS CXX)
find_package(Threads REQUIRED)

set(FP8MOE_HAVE_CUDA OFF)
if(FP8MOE_ENABLE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES ${FP8MOE_CUDA_ARCHITECTURES})
    endif()
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(FP8MOE_HAVE_CUDA ON)
    include(${PROJECT_SOURCE_DIR}/cmake/fp8moe_find_nccl.cmake)
  endif()
endif()
message(STATUS "fp8moe: CUDA targets ${FP8MOE_HAVE_CUDA} (architectures: ${CMAKE_CUDA_ARCHITECTURES})")

set(FP8MOE_HAVE_MPI OFF)
if(FP8MOE_ENABLE_MPI)
  find_package(MPI COMPONENTS CXX)
  if(MPI_CXX_FOUND)
    set(FP8MOE_HAVE_MPI ON)
  endif()
endif()
message(STATUS "fp8moe: MPI targets ${FP8MOE_HAVE_MPI}")

# A CBLAS (OpenBLAS here) for host nn::matmul in our own tests: such targets link BLAS::BLAS and
# define FP8MOE_HAVE_BLAS=1 (a consumer opts in the same way; see docs/nn.md).
option(FP8MOE_ENABLE_BLAS "Route host nn::matmul (float) of our own tests through CBLAS sgemm when found" ON)
set(FP8MOE_HAVE_BLAS OFF)
if(FP8MOE_ENABLE_BLAS)
  find_package(BLAS QUIET)
  if(BLAS_FOUND)
    set(FP8MOE_HAVE_BLAS ON)
  endif()
endif()
message(STATUS "fp8moe: CBLAS for nn::matmul ${FP8MOE_HAVE_BLAS}")

# Warnings for our own code only (never exported)
add_library(fp8moe_warnings INTERFACE)
target_compile_options(fp8moe_warnings INTERFACE
  $<$<COMPILE_LANG_AND_ID:CXX,GNU,Clang>:-Wall -Wextra -Wpedantic -Wno-unknown-pragmas>
  $<$<COMPILE_LANG_AND_ID:CUDA,NVIDIA>:-Xcompiler=-Wall --resource-usage -Xptxas=-warn-spills>)

# fp8moe_cuda_target(<target>): nvcc settings for one of our CUDA executables.
function(fp8moe_cuda_target target)
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
  target_link_libraries(${target} PRIVATE fp8moe::cuda fp8moe_warnings)
  if(OpenMP_CXX_FOUND)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-fopenmp>)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
  endif()
endfunction()

# fp8moe_cu_shim(<out_var> <source>): a generated one-line .cu that #includes a .cpp, so the same
# source compiles once with the host compiler and once with nvcc (LANGUAGE is per directory).
function(fp8moe_cu_shim out_var source)
  get_filename_component(abs ${source} ABSOLUTE)
  get_filename_component(stem ${source} NAME_WE)
  set(shim ${CMAKE_CURRENT_BINARY_DIR}/${stem}_shim.cu)
  file(CONFIGURE OUTPUT ${shim} CONTENT "#include \"${abs}\"\n")
  set(${out_var} ${shim} PARENT_SCOPE)
endfunction()

# fp8moe_example_test(<test name> EXIT <status> REGEX <regex> [LABELS <labels...>] COMMAND <command...>)
#   A ctest that passes only when the command exits with <status> AND its output matches <regex>
#   (cmake/fp8moe_run_example.cmake; PASS_REGULAR_EXPRESSION alone would ignore the exit status).
set(FP8MOE_RUN_EXAMPLE ${CMAKE_CURRENT_LIST_DIR}/fp8moe_run_example.cmake)
function(fp8moe_example_test name)
  cmake_parse_arguments(X "" "EXIT;REGEX;WORKING_DIRECTORY" "LABELS;COMMAND" ${ARGN})
  if(NOT DEFINED X_EXIT)
    set(X_EXIT 0)
  endif()
  if(NOT X_WORKING_DIRECTORY)
    set(X_WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  endif()
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} -DEXPECT_EXIT=${X_EXIT} "-DEXPECT_REGEX=${X_REGEX}" -P ${FP8MOE_RUN_EXAMPLE}
                   -- ${X_COMMAND}
           WORKING_DIRECTORY ${X_WORKING_DIRECTORY})
  set(labels example ${X_LABELS})
  set_tests_properties(${name} PROPERTIES LABELS "${labels}")
endfunction()

# fp8moe_add_example(<name> SOURCES <files...> [TEST_ARGS <args...>] [PASS_REGEX <regex>])
#   An example executable; with PASS_REGEX (and tests enabled) it also runs as ctest example.<name>,
#   which passes when the example exits 0 and prints a line matching <regex>.
function(fp8moe_add_example name)
  cmake_parse_arguments(X "" "PASS_REGEX" "SOURCES;TEST_ARGS" ${ARGN})
  add_executable(${name} ${X_SOURCES})
  target_link_libraries(${name} PRIVATE fp8moe::fp8moe fp8moe_warnings)
  if(OpenMP_CXX_FOUND)
    target_link_libraries(${name} PRIVATE OpenMP::OpenMP_CXX)
  endif()
  if(X_PASS_REGEX AND FP8MOE_BUILD_TESTS)
    fp8moe_example_test(example.${name} EXIT 0 REGEX "${X_PASS_REGEX}" COMMAND $<TARGET_FILE:${name}> ${X_TEST_ARGS})
  endif()
endfunction()
