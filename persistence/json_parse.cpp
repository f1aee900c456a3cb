// A SAX handler that builds the document as nlohmann's DOM parser does, but
// moves the parser's string buffers into it (see json_parse.hpp).
#include "persistence/json_parse.hpp"

#include <utility>
#include <vector>

namespace turing::persistence {

namespace {

using json = nlohmann::json;

class moving_dom_builder {
public:
  explicit moving_dom_builder(json& root) : root_(root) {}

  bool null() { return add(nullptr); }
  bool boolean(bool v) { return add(v); }
  bool number_integer(json::number_integer_t v) { return add(v); }
  bool number_unsigned(json::number_unsigned_t v) { return add(v); }
  bool number_float(json::number_float_t v, const json::string_t&) { return add(v); }
  bool string(json::string_t& v) { return add(std::move(v)); }
  bool binary(json::binary_t& v) { return add(json::binary(std::move(v))); }
  bool start_object(std::size_t) {
    stack_.push_back(place(json::value_t::object));
    return true;
  }
  bool key(json::string_t& k) {
    member_ = &(*stack_.back())[std::move(k)]; // a repeated key: the last value wins
    return true;
  }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    stack_.push_back(place(json::value_t::array));
    return true;
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  template <class Exception> bool parse_error(std::size_t, const std::string&, const Exception& e) {
    throw e;
  }

private:
  template <class Value> bool add(Value&& v) {
    place(std::forward<Value>(v));
    return true;
  }
  template <class Value> json* place(Value&& v) {
    if (stack_.empty()) {
      root_ = json(std::forward<Value>(v));
      return &root_;
    }
    if (stack_.back()->is_array()) {
      stack_.back()->emplace_back(std::forward<Value>(v));
      return &stack_.back()->back();
    }
    *member_ = json(std::forward<Value>(v));
    return member_;
  }

  json& root_;
  std::vector<json*> stack_;
  json* member_ = nullptr;
};

} // namespace

json parse_json_moving(const char* first, const char* last) {
  json root;
  moving_dom_builder builder{root};
  json::sax_parse(first, last, &builder);
  return root;
}

json parse_json_moving(std::istream& in) {
  json root;
  moving_dom_builder builder{root};
  json::sax_parse(in, &builder);
  return root;
}

} // namespace turing::persistence
