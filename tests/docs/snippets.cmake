# SPDX-License-Identifier: Apache-2.0
# C++ snippets of the README and docs/*.md, each a ```cpp block right after a line
#   <!-- snippet: NAME -->
# NAME picks tests/docs/prelude/NAME.hpp, the declarations the block assumes (includes, the views it
# names); a prelude that defines FP8MOE_SNIPPET_PARAMS wraps the block in a function body with those
# parameters, otherwise the block stands at namespace scope. prelude/NAME.post.hpp, when present,
# follows the block (to instantiate a template the block defines). Usable in script mode (-P).
# The markdown is handled as one string (never as a CMake list: C++ is full of ';').

# fp8moe_snippet_blocks(<markdown file> <out prefix>): sets <prefix>_COUNT (marked blocks),
# <prefix>_NAME_<i>, <prefix>_LINE_<i> (line of its first code line), <prefix>_CODE_<i>, and
# <prefix>_UNMARKED (```cpp blocks without a marker).
function(fp8moe_snippet_blocks md prefix)
  file(READ ${md} text)
  set(count 0)
  set(unmarked 0)
  set(consumed 0)  # characters of `text` before `rest`
  set(rest "${text}")
  while(TRUE)
    string(FIND "${rest}" "```cpp\n" open)
    if(open EQUAL -1)
      break()
    endif()
    string(SUBSTRING "${rest}" 0 ${open} before)
    math(EXPR body_at "${open} + 7")
    string(SUBSTRING "${rest}" ${body_at} -1 after)
    string(FIND "${after}" "\n```" close)
    if(close EQUAL -1)
      message(FATAL_ERROR "${md}: unterminated ```cpp block")
    endif()
    math(EXPR close_nl "${close} + 1")
    string(SUBSTRING "${after}" 0 ${close_nl} code)
    if(before MATCHES "<!-- snippet: ([A-Za-z0-9_]+) -->\n$")
      set(${prefix}_NAME_${count} "${CMAKE_MATCH_1}" PARENT_SCOPE)
      string(SUBSTRING "${text}" 0 ${consumed} head)
      string(APPEND head "${before}")
      string(REGEX MATCHALL "\n" nls "${head}")
      list(LENGTH nls nl)
      math(EXPR first "${nl} + 2")  # the ```cpp line is nl + 1
      set(${prefix}_LINE_${count} ${first} PARENT_SCOPE)
      set(${prefix}_CODE_${count} "${code}" PARENT_SCOPE)
      math(EXPR count "${count} + 1")
    else()
      math(EXPR unmarked "${unmarked} + 1")
    endif()
    math(EXPR skip "${body_at} + ${close} + 4")
    math(EXPR consumed "${consumed} + ${skip}")
    string(SUBSTRING "${rest}" ${skip} -1 rest)
  endwhile()
  set(${prefix}_COUNT ${count} PARENT_SCOPE)
  set(${prefix}_UNMARKED ${unmarked} PARENT_SCOPE)
endfunction()

# fp8moe_snippet_source(<markdown file> <index> <prelude dir> <out file>): writes the translation unit
# of marked block <index> (prelude, #line pointing into the markdown, block, post). Rewrites <out>
# only when its content changes.
function(fp8moe_snippet_source md index prelude_dir out)
  fp8moe_snippet_blocks(${md} _s)
  set(name "${_s_NAME_${index}}")
  set(tu "// Generated from ${md} (snippet '${name}'): edit the markdown, not this file.\n")
  string(APPEND tu "#include \"${prelude_dir}/${name}.hpp\"\n#ifdef FP8MOE_SNIPPET_PARAMS\n")
  string(APPEND tu "[[maybe_unused]] static void fp8moe_snippet(FP8MOE_SNIPPET_PARAMS) {\n#endif\n")
  string(APPEND tu "#line ${_s_LINE_${index}} \"${md}\"\n${_s_CODE_${index}}")
  string(APPEND tu "#ifdef FP8MOE_SNIPPET_PARAMS\n}\n#endif\n")
  if(EXISTS ${prelude_dir}/${name}.post.hpp)
    string(APPEND tu "#include \"${prelude_dir}/${name}.post.hpp\"\n")
  endif()
  set(old "")
  if(EXISTS ${out})
    file(READ ${out} old)
  endif()
  if(NOT old STREQUAL tu)
    file(WRITE ${out} "${tu}")
  endif()
endfunction()

# fp8moe_snippet_named(<markdown file> <name> <out var>): index of the first block marked <name>.
function(fp8moe_snippet_named md name out)
  fp8moe_snippet_blocks(${md} _s)
  set(i 0)
  while(i LESS _s_COUNT)
    if(_s_NAME_${i} STREQUAL name)
      set(${out} ${i} PARENT_SCOPE)
      return()
    endif()
    math(EXPR i "${i} + 1")
  endwhile()
  message(FATAL_ERROR "${md} has no ```cpp block marked '<!-- snippet: ${name} -->'")
endfunction()

# fp8moe_doc_snippet_test(<test> <markdown file> <snippet name> <fp8moe_add_test arguments...>): the
# block of <markdown file> marked "<!-- snippet: <snippet name> -->", extracted at configure time
# (again whenever the page changes) with its prelude into generated/<snippet name>.hpp, and the test
# <test> whose sources include that header (docs.snippets also compiles the block alone).
function(fp8moe_doc_snippet_test test md name)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${md})
  fp8moe_snippet_named(${md} ${name} _index)
  fp8moe_snippet_source(${md} ${_index} ${PROJECT_SOURCE_DIR}/tests/docs/prelude
                        ${CMAKE_CURRENT_BINARY_DIR}/generated/${name}.hpp)
  fp8moe_add_test(${test} ${ARGN})
  target_include_directories(${test} PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/generated)
endfunction()
