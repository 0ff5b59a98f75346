# tryon_add_test(NAME SOURCE... [LABELS label...] [RUN_SERIAL])
#
# One cmocka program per module (or per integration area), linked with the library and
# the test support code, registered with ctest under its labels. Test programs land in
# <build>/tests so that <build>/bin holds only the product.
function(tryon_add_test name)
  cmake_parse_arguments(T "RUN_SERIAL" "" "LABELS" ${ARGN})
  add_executable(${name} ${T_UNPARSED_ARGUMENTS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_link_libraries(${name} PRIVATE tryon tryon_testsupport PkgConfig::CMOCKA tryon_flags)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT 300
    ENVIRONMENT "TRYON_SOURCE_DIR=${PROJECT_SOURCE_DIR};LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0")
  if(T_RUN_SERIAL)
    set_tests_properties(${name} PROPERTIES RUN_SERIAL TRUE)
  endif()
endfunction()
