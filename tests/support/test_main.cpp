// The one translation unit that provides main() for every CAF test binary.
//
// CAF's engine picks suites and tests (-s, -t, -S, -T) with std::regex. GCC 12
// instantiating std::regex under -fsanitize=address warns -Wmaybe-uninitialized
// inside libstdc++ (GCC PR 105562), which -Werror turns into a broken sanitizer
// build. So the engine's `std::regex` and `std::regex_search` are redirected to
// POSIX extended regular expressions (<regex.h>): same patterns for what tests
// use (`a|b`, `.*`, anchors), and no std::regex is instantiated at all.
#include <memory>
#include <regex.h>
#include <stdexcept>
#include <string>

// Everything the engine's header includes, before the macros below exist, so
// that only the engine's own body sees them.
#include <algorithm>
#include <caf/config.hpp>
#include <caf/message_builder.hpp>
#include <caf/message_handler.hpp>
#include <caf/string_algorithms.hpp>
#include <caf/test/unit_test.hpp>
#include <cassert>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <thread>

namespace std {

/// What the engine needs of std::regex: default-constructed matches nothing,
/// constructed or assigned from a pattern matches where regexec() finds it.
class turing_posix_regex {
public:
  turing_posix_regex() = default;
  explicit turing_posix_regex(const std::string& pattern) { assign(pattern); }

  void assign(const std::string& pattern) {
    auto fresh = std::make_unique<::regex_t>();
    if (int err = ::regcomp(fresh.get(), pattern.c_str(), REG_EXTENDED | REG_NOSUB); err != 0) {
      char reason[256];
      ::regerror(err, fresh.get(), reason, sizeof reason);
      throw std::invalid_argument("test filter '" + pattern + "': " + reason);
    }
    compiled_.reset(fresh.release(), [](::regex_t* re) {
      ::regfree(re);
      delete re;
    });
  }

  bool search(const std::string& text) const {
    return compiled_ && ::regexec(compiled_.get(), text.c_str(), 0, nullptr, 0) == 0;
  }

private:
  std::shared_ptr<::regex_t> compiled_; // shared: copyable, as std::regex is
};

inline bool turing_posix_regex_search(const std::string& text, const turing_posix_regex& re) {
  return re.search(text);
}

} // namespace std

#define regex turing_posix_regex
#define regex_search turing_posix_regex_search
#include <caf/test/unit_test_impl.hpp>
#undef regex_search
#undef regex
