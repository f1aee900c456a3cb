# Finds turing's dependencies from Debian's packages only. CAF 0.17.6 ships no
# CMake config or .pc file on Debian, so it is found by header and library path.
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(tomlplusplus REQUIRED)
find_package(CLI11 REQUIRED)


find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIB caf_core REQUIRED)
find_library(CAF_IO_LIB caf_io REQUIRED)
find_library(CAF_OPENSSL_LIB caf_openssl REQUIRED)

add_library(CAF::core INTERFACE IMPORTED)
set_target_properties(CAF::core PROPERTIES
  INTERFACE_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES "${CAF_CORE_LIB};Threads::Threads")
add_library(CAF::io INTERFACE IMPORTED)
set_target_properties(CAF::io PROPERTIES INTERFACE_LINK_LIBRARIES "${CAF_IO_LIB};CAF::core")
add_library(CAF::openssl INTERFACE IMPORTED)
set_target_properties(CAF::openssl PROPERTIES
  INTERFACE_LINK_LIBRARIES "${CAF_OPENSSL_LIB};CAF::io;OpenSSL::SSL;OpenSSL::Crypto")

pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET libpq)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# jemalloc for the turing executable: the hot path builds and frees many
# small JSON values per message, and glibc's malloc spent about a quarter of
# turing's CPU per transition on them (perf; bench/README has the A/B).
pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)

# cpp-httplib with TLS, for every target that includes httplib.h. Debian's
# libcpp-httplib is a compiled library built with OpenSSL; a translation unit
# that sees other CPPHTTPLIB_* definitions than the library was built with
# gets other class layouts (an ODR violation, crashes rather than errors), so
# no target links PkgConfig::HTTPLIB directly, only this one.
if(NOT "-DCPPHTTPLIB_OPENSSL_SUPPORT" IN_LIST HTTPLIB_CFLAGS_OTHER)
  message(FATAL_ERROR "cpp-httplib was built without OpenSSL (its cpp-httplib.pc lacks "
    "-DCPPHTTPLIB_OPENSSL_SUPPORT); https:// model endpoints need it: install Debian's "
    "libcpp-httplib-dev")
endif()
add_library(turing::httplib INTERFACE IMPORTED)
set_target_properties(turing::httplib PROPERTIES
  INTERFACE_COMPILE_DEFINITIONS "CPPHTTPLIB_OPENSSL_SUPPORT"
  INTERFACE_LINK_LIBRARIES "PkgConfig::HTTPLIB;OpenSSL::SSL;OpenSSL::Crypto")
