# For bench/run when the top-level CMakeLists.txt does not add_subdirectory(bench): passed as
# CMAKE_PROJECT_sidekey_INCLUDE, it reads bench/CMakeLists.txt once the top-level file is done
# (the libraries it links exist then). A no-op when bench/ is already added.
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL include ${CMAKE_SOURCE_DIR}/bench/CMakeLists.txt)
