// Fuzz target: a `turing enqueue` JSON Lines file, line by line, through the
// item check. A bad line is a reason, never an exception; an accepted item is
// a JSON object PostgreSQL can store.
#include "cli/item_line.hpp"
#include "persistence/storable_text.hpp"
#include "tests/fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace turing;
  auto text = fuzz::as_text(data, size);
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    auto parsed = cli::parse_item_line(text.substr(start, end - start), "key");
    FUZZ_REQUIRE(!(parsed.item && !parsed.error.empty()), "an item or an error, not both");
    if (parsed.item) {
      FUZZ_REQUIRE(parsed.item->payload.is_object(), "an item is a JSON object");
      FUZZ_REQUIRE(!persistence::unstorable_json(parsed.item->payload),
                   "an accepted item is storable");
      if (parsed.item->key)
        FUZZ_REQUIRE(!persistence::unstorable_text(*parsed.item->key), "a key is storable");
      // An integer key is its decimal text, so two different integers never
      // share a key (and one would never be skipped as the other's duplicate).
      auto key_field = parsed.item->payload.find("key");
      if (key_field != parsed.item->payload.end() && key_field->is_number_integer())
        FUZZ_REQUIRE(parsed.item->key == key_field->dump(), "an integer key is its decimal text");
    } else if (!parsed.error.empty()) {
      FUZZ_REQUIRE(!persistence::unstorable_text(parsed.error), "an error is storable text");
      FUZZ_REQUIRE(!fuzz::has_line_break(parsed.error), "an error is one line");
    }
    start = end + 1;
  }
  return 0;
}
