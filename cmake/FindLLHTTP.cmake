# Finds llhttp: a system libllhttp if present, else builds the C sources Debian's node-llhttp ships.
# Defines the imported target llhttp::llhttp.
include(FindPackageHandleStandardArgs)

find_path(LLHTTP_SYSTEM_INCLUDE_DIR llhttp.h PATHS /usr/include /usr/local/include NO_DEFAULT_PATH)
find_library(LLHTTP_SYSTEM_LIBRARY NAMES llhttp)

if(LLHTTP_SYSTEM_INCLUDE_DIR AND LLHTTP_SYSTEM_LIBRARY)
  add_library(llhttp::llhttp UNKNOWN IMPORTED)
  set_target_properties(llhttp::llhttp PROPERTIES
    IMPORTED_LOCATION "${LLHTTP_SYSTEM_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LLHTTP_SYSTEM_INCLUDE_DIR}")
  set(LLHTTP_FOUND_VIA "system library ${LLHTTP_SYSTEM_LIBRARY}")
  find_package_handle_standard_args(LLHTTP DEFAULT_MSG LLHTTP_SYSTEM_LIBRARY LLHTTP_SYSTEM_INCLUDE_DIR)
else()
  find_path(LLHTTP_SOURCE_DIR llhttp.c PATHS /usr/share/llhttp NO_DEFAULT_PATH)
  find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS /usr/share/include/llhttp NO_DEFAULT_PATH)
  find_package_handle_standard_args(LLHTTP DEFAULT_MSG LLHTTP_SOURCE_DIR LLHTTP_INCLUDE_DIR)
  if(LLHTTP_FOUND AND NOT TARGET llhttp_src)
    # Generated code: compile without our warning flags, but with the sanitizers if enabled.
    add_library(llhttp_src STATIC
      ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c ${LLHTTP_SOURCE_DIR}/http.c)
    target_include_directories(llhttp_src SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
    target_compile_options(llhttp_src PRIVATE -w)
    set_target_properties(llhttp_src PROPERTIES POSITION_INDEPENDENT_CODE ON)
    add_library(llhttp::llhttp ALIAS llhttp_src)
    set(LLHTTP_FOUND_VIA "sources in ${LLHTTP_SOURCE_DIR}")
  endif()
endif()
if(LLHTTP_FOUND)
  message(STATUS "llhttp: ${LLHTTP_FOUND_VIA}")
endif()
