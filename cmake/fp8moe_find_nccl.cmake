# SPDX-License-Identifier: Apache-2.0
# Defines the imported target fp8moe::nccl_library when NCCL (nccl.h + libnccl) is found.
if(NOT TARGET fp8moe::nccl_library)
  find_path(FP8MOE_NCCL_INCLUDE_DIR nccl.h HINTS ${NCCL_ROOT} ENV NCCL_ROOT ${CUDAToolkit_INCLUDE_DIRS}
            PATH_SUFFIXES include)
  find_library(FP8MOE_NCCL_LIBRARY NAMES nccl libnccl.so.2 HINTS ${NCCL_ROOT} ENV NCCL_ROOT ${CUDAToolkit_LIBRARY_DIR}
               PATH_SUFFIXES lib lib64)
  if(FP8MOE_NCCL_INCLUDE_DIR AND FP8MOE_NCCL_LIBRARY)
    add_library(fp8moe::nccl_library UNKNOWN IMPORTED)
    set_target_properties(fp8moe::nccl_library PROPERTIES IMPORTED_LOCATION ${FP8MOE_NCCL_LIBRARY}
                                                          INTERFACE_INCLUDE_DIRECTORIES ${FP8MOE_NCCL_INCLUDE_DIR})
  endif()
endif()
