# SPDX-License-Identifier: Apache-2.0
# Builds the trainer's default corpus: the repository's own docs/*.md and include/**/*.hpp, in sorted
# path order, each preceded by a line "==> <path> <==", concatenated into OUT (written to a temp file,
# then renamed). No network. Run by the build: cmake -DROOT=<repo> -DOUT=<file> -P make_corpus.cmake
if(NOT ROOT OR NOT OUT)
  message(FATAL_ERROR "make_corpus.cmake: pass -DROOT=<repository> -DOUT=<file>")
endif()
file(GLOB docs RELATIVE ${ROOT} ${ROOT}/docs/*.md)
file(GLOB_RECURSE headers RELATIVE ${ROOT} ${ROOT}/include/*.hpp)
list(SORT docs)
list(SORT headers)
set(tmp "${OUT}.tmp")
file(WRITE ${tmp} "")
foreach(f IN LISTS docs headers)
  file(READ ${ROOT}/${f} text)
  file(APPEND ${tmp} "==> ${f} <==\n${text}\n")
endforeach()
file(RENAME ${tmp} ${OUT})
