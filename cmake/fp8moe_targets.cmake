# SPDX-License-Identifier: Apache-2.0
# The library targets. Header sets are globbed by location:
#   include/fp8moe/**/*.hpp outside any cuda/ folder      -> fp8moe::fp8moe (host compiler only)
#   include/fp8moe/**/cuda/*.hpp                          -> fp8moe::cuda   (needs CUDA runtime headers)
#   include/fp8moe/**/cuda/*.cuh, include/fp8moe/cuda.hpp -> fp8moe::cuda, file set `device` (nvcc only)
#   include/fp8moe/comm/mpi*.hpp,  moe/mpi*.hpp            -> fp8moe::mpi
#   include/fp8moe/comm/nccl*.hpp                         -> fp8moe::nccl
#   include/fp8moe/io/*.hpp                               -> fp8moe::io (needs nlohmann/json)
set(_inc ${PROJECT_SOURCE_DIR}/include)
file(GLOB_RECURSE _all_hpp CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR} ${_inc}/fp8moe/*.hpp)
file(GLOB_RECURSE _all_cuh CONFIGURE_DEPENDS RELATIVE ${PROJECT_SOURCE_DIR} ${_inc}/fp8moe/*.cuh)
set(_core_hpp) 
set(_cuda_hpp)
set(_mpi_hpp)
set(_nccl_hpp)
set(_io_hpp)
list(REMOVE_ITEM _all_hpp include/fp8moe/cuda.hpp)  # the nvcc-only umbrella
list(APPEND _all_cuh include/fp8moe/cuda.hpp)
foreach(h IN LISTS _all_hpp)
  if(h MATCHES "/cuda/")
    list(APPEND _cuda_hpp ${h})
  elseif(h MATCHES "^include/fp8moe/io/")
    list(APPEND _io_hpp ${h})
  elseif(h MATCHES "/mpi[^/]*\\.hpp$")
    list(APPEND _mpi_hpp ${h})
  elseif(h MATCHES "/nccl[^/]*\\.hpp$")
    list(APPEND _nccl_hpp ${h})
  else()
    list(APPEND _core_hpp ${h})
  endif()
endforeach()

# ---- core: header-only, host-compilable, never needs CUDA
add_library(fp8moe INTERFACE)
add_library(fp8moe::fp8moe ALIAS fp8moe)
target_compile_features(fp8moe INTERFACE cxx_std_20)
target_sources(fp8moe INTERFACE FILE_SET HEADERS BASE_DIRS include FILES ${_core_hpp})
# OpenMP is used when the consumer has it (host loops); absent OpenMP the code runs serially.
target_link_libraries(fp8moe INTERFACE $<TARGET_NAME_IF_EXISTS:OpenMP::OpenMP_CXX>)
# The pipeline executors use std::thread.
find_package(Threads REQUIRED)
target_link_libraries(fp8moe INTERFACE Threads::Threads)

# ---- CUDA runtime layer: always defined and exported; usable where CUDA::cudart exists
add_library(fp8moe_cuda INTERFACE)
add_library(fp8moe::cuda ALIAS fp8moe_cuda)
set_target_properties(fp8moe_cuda PROPERTIES EXPORT_NAME cuda)
target_link_libraries(fp8moe_cuda INTERFACE fp8moe CUDA::cudart CUDA::cublasLt)  # cuBLASLt: nn::matmul
# cxx_std_20 does not reach nvcc, and CMake < 3.25.2 has no cuda_std_20 for NVIDIA.
if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.25.2)
  target_compile_features(fp8moe_cuda INTERFACE cuda_std_20)
else()
  target_compile_options(fp8moe_cuda INTERFACE $<$<COMPILE_LANG_AND_ID:CUDA,NVIDIA>:-std=c++20>)
endif()
target_compile_options(fp8moe_cuda INTERFACE $<$<COMPILE_LANG_AND_ID:CUDA,NVIDIA>:--expt-relaxed-constexpr>)
# OpenMP reaches nvcc's host compiler too (OpenMP::OpenMP_CXX adds -fopenmp to C++ sources only), so
# the host loops of a consumer's .cu and .cpp sources are the same code.
target_compile_options(fp8moe_cuda INTERFACE
  $<$<AND:$<COMPILE_LANG_AND_ID:CUDA,NVIDIA>,$<TARGET_EXISTS:OpenMP::OpenMP_CXX>>:-Xcompiler=-fopenmp>)
target_sources(fp8moe_cuda INTERFACE FILE_SET HEADERS BASE_DIRS include FILES ${_cuda_hpp}
                                     FILE_SET device TYPE HEADERS BASE_DIRS include FILES ${_all_cuh})

# ---- MPI communicator layer
add_library(fp8moe_mpi INTERFACE)
add_library(fp8moe::mpi ALIAS fp8moe_mpi)
set_target_properties(fp8moe_mpi PROPERTIES EXPORT_NAME mpi)
target_link_libraries(fp8moe_mpi INTERFACE fp8moe MPI::MPI_CXX)
target_sources(fp8moe_mpi INTERFACE FILE_SET HEADERS BASE_DIRS include FILES ${_mpi_hpp})

# ---- NCCL communicator layer (NCCL has no CMake package: the consumer's config finds the library)
add_library(fp8moe_nccl INTERFACE)
add_library(fp8moe::nccl ALIAS fp8moe_nccl)
set_target_properties(fp8moe_nccl PROPERTIES EXPORT_NAME nccl)
target_link_libraries(fp8moe_nccl INTERFACE fp8moe_cuda fp8moe::nccl_library)
target_sources(fp8moe_nccl INTERFACE FILE_SET HEADERS BASE_DIRS include FILES ${_nccl_hpp})

# ---- file I/O (safetensors, config.json, .npy): optional; JSON through nlohmann/json
find_package(nlohmann_json 3.2 QUIET)
add_library(fp8moe_io INTERFACE)
add_library(fp8moe::io ALIAS fp8moe_io)
set_target_properties(fp8moe_io PROPERTIES EXPORT_NAME io)
target_link_libraries(fp8moe_io INTERFACE fp8moe nlohmann_json::nlohmann_json)
target_sources(fp8moe_io INTERFACE FILE_SET HEADERS BASE_DIRS include FILES ${_io_hpp})

# ---- as a subproject (add_subdirectory / FetchContent), our headers are SYSTEM headers for the
# consumer (CMake >= 3.25): its -Wconversion / -Werror builds see no warnings from our code.
if(NOT PROJECT_IS_TOP_LEVEL AND CMAKE_VERSION VERSION_GREATER_EQUAL 3.25)
  set_target_properties(fp8moe fp8moe_cuda fp8moe_mpi fp8moe_nccl fp8moe_io PROPERTIES SYSTEM ON)
endif()
