# SPDX-License-Identifier: Apache-2.0
# cmake -DFUZZER=<exe> -DWORK=<dir> -DSEEDS=<dir> -DDICT=<file> -DSECONDS=<s> -P run_fuzz.cmake
# One bounded fuzz run: a fresh working corpus (libFuzzer adds what it finds there; the seed
# corpus in the source tree is only read), crash artifacts under WORK. Fails when the engine
# reports a finding (non-zero exit).
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus)
execute_process(COMMAND ${FUZZER} -max_total_time=${SECONDS} -seed=1 -rss_limit_mb=2048 -max_len=16384
                        -timeout=10 -print_final_stats=1 -dict=${DICT} -artifact_prefix=${WORK}/ ${WORK}/corpus ${SEEDS}
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${FUZZER}: finding (exit ${rc}); the input is in ${WORK}/")
endif()
