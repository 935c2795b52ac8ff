# What a kernel author does with an installed maskcheck: install it into a fresh prefix, build
# the example plugin on its own against the installed header and CMake package
# (find_package(maskcheck_plugin)), and verify the plugin with the installed maskcheck.
#   cmake -DBUILD_DIR=<maskcheck build> -DSOURCE_DIR=<maskcheck source> -DWORK_DIR=<scratch>
#         -P plugin_install_test.cmake
function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}")
  endif()
  message(STATUS "${what}: ok")
  set(last_output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
if(NOT EXISTS ${prefix}/include/maskcheck/plugin.h)
  message(FATAL_ERROR "maskcheck/plugin.h was not installed")
endif()
run("configure the example alone" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/suite/plugin/examples
    -B ${WORK_DIR}/example -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run("build it" ${CMAKE_COMMAND} --build ${WORK_DIR}/example)
run("verify it" ${prefix}/bin/maskcheck verify
    --plugin ${WORK_DIR}/example/libmaskcheck_example_plugin.so --op attention --cases 5 --seed 1)
if(NOT last_output MATCHES " 0 failed, 0 errors")
  message(FATAL_ERROR "unexpected verify output:\n${last_output}")
endif()
