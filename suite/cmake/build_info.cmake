# Writes the build-info header (commit, dirty flag, version, build type) when it changes, so that
# every result records the commit it was built from. Run at build time by the suite target.
# Inputs: SRC (source dir), OUT (header path), VERSION, BUILD_TYPE.
set(commit "unknown")
set(dirty 0)
find_package(Git QUIET)
if(DEFINED ENV{MASKCHECK_GIT_COMMIT})  # a copy of the tree without .git (e.g. a GPU machine)
  set(commit "$ENV{MASKCHECK_GIT_COMMIT}")
elseif(GIT_FOUND)
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse HEAD WORKING_DIRECTORY "${SRC}"
                  OUTPUT_VARIABLE out RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0)
    set(commit "${out}")
    execute_process(COMMAND "${GIT_EXECUTABLE}" status --porcelain --untracked-files=no
                    WORKING_DIRECTORY "${SRC}" OUTPUT_VARIABLE st ERROR_QUIET)
    if(NOT st STREQUAL "")
      set(dirty 1)
    endif()
  endif()
endif()
set(content "#pragma once\n#define MASKCHECK_GIT_COMMIT \"${commit}\"\n#define MASKCHECK_GIT_DIRTY ${dirty}\n#define MASKCHECK_VERSION \"${VERSION}\"\n#define MASKCHECK_BUILD_TYPE \"${BUILD_TYPE}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL content)
  file(WRITE "${OUT}" "${content}")
endif()
