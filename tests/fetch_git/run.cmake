# SPDX-License-Identifier: Apache-2.0
# cmake -DSRC=<repo> -DBIN=<dir> -DGENERATOR=<g> -DCXX=<c++> -DCTEST=<ctest> -P run.cmake
# Runs tests/fetch_git (the README's FetchContent snippet) against a file:// URL of this repository at
# its HEAD commit. Outside a git checkout (a source tarball) it prints SKIPPED and ctest skips it.
execute_process(COMMAND git -C ${SRC} rev-parse --verify HEAD OUTPUT_VARIABLE commit RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT rc EQUAL 0)
  message("SKIPPED: ${SRC} is not a git checkout with a commit")
  return()
endif()
file(REMOVE_RECURSE ${BIN})
execute_process(COMMAND ${CTEST} --build-and-test ${SRC}/tests/fetch_git ${BIN} --build-generator ${GENERATOR}
                        --build-options -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release
                        -DFP8MOE_README=${SRC}/README.md -DFP8MOE_GIT_URL=file://${SRC}
                        -DFP8MOE_GIT_COMMIT=${commit} -DFETCHCONTENT_TRY_FIND_PACKAGE_MODE=NEVER
                        --test-command ${CTEST} --output-on-failure
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the README's FetchContent snippet failed at ${commit}")
endif()
message("README FetchContent snippet: fetched ${commit} from file://${SRC}, built and ran my_app")
