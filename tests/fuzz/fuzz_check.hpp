// What every fuzz target shares: the libFuzzer entry point's signature, the
// input as text, and FUZZ_REQUIRE, which turns a broken documented contract
// into a crash libFuzzer (or the corpus driver) reports with the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace turing::fuzz {

inline std::string as_text(const std::uint8_t* data, std::size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

/// True when `text` holds a line break: errors must fit one log line.
inline bool has_line_break(std::string_view text) {
  return text.find_first_of("\r\n") != std::string_view::npos;
}

[[noreturn]] inline void contract_broken(const char* condition, const char* what, const char* file,
                                         int line) {
  std::fprintf(stderr, "%s:%d: contract broken: %s (%s)\n", file, line, what, condition);
  std::abort();
}

} // namespace turing::fuzz

/// Aborts (a finding) when `condition` is false; `what` says which contract.
#define FUZZ_REQUIRE(condition, what)                                                              \
  do {                                                                                             \
    if (!(condition))                                                                              \
      ::turing::fuzz::contract_broken(#condition, what, __FILE__, __LINE__);                       \
  } while (false)
