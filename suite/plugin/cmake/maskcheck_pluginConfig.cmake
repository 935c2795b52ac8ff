# find_package(maskcheck_plugin): the target maskcheck::plugin_abi carries the include directory
# of maskcheck/plugin.h and DLPack's.
include(CMakeFindDependencyMacro)
find_dependency(dlpack)
include(${CMAKE_CURRENT_LIST_DIR}/maskcheck_plugin_targets.cmake)
