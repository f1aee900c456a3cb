// Connection strings in log lines and errors: every secret masked, in every
// form a user may write one (issue 9, defect 4: `password='a b'` was only
// partly masked by hand).
#define CAF_SUITE connection_description
#include "persistence/pg_store.hpp"

#include <caf/test/unit_test.hpp>

using turing::persistence::describe_connection;

namespace {

bool shows(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

} // namespace

CAF_TEST(a_quoted_password_with_a_space_is_masked_whole) {
  auto d = describe_connection("host=/tmp dbname=x user=u password='a b'");
  CAF_MESSAGE(d);
  CAF_CHECK(shows(d, "password=***"));
  CAF_CHECK(!shows(d, "a b"));
  CAF_CHECK(!shows(d, " b'"));
  CAF_CHECK(shows(d, "dbname=x"));
  CAF_CHECK(shows(d, "user=u"));
}

CAF_TEST(a_quoted_password_with_an_escaped_quote_is_masked_whole) {
  auto d = describe_connection(R"(host=/tmp password='it\'s secret' dbname=x)");
  CAF_MESSAGE(d);
  CAF_CHECK(!shows(d, "secret"));
  CAF_CHECK(!shows(d, "it"));
  CAF_CHECK(shows(d, "dbname=x"));
}

CAF_TEST(a_url_password_and_a_url_encoded_one_are_masked) {
  auto d = describe_connection("postgresql://alice:s3cr%40t@db.example:5433/app");
  CAF_MESSAGE(d);
  CAF_CHECK(!shows(d, "s3cr"));
  CAF_CHECK(!shows(d, "%40"));
  CAF_CHECK(shows(d, "password=***"));
  CAF_CHECK(shows(d, "user=alice"));
  CAF_CHECK(shows(d, "host=db.example"));
  CAF_CHECK(shows(d, "port=5433"));
}

CAF_TEST(a_password_in_the_query_string_is_masked) {
  auto d = describe_connection("postgresql://alice@db/app?password=hunter2&sslmode=require");
  CAF_MESSAGE(d);
  CAF_CHECK(!shows(d, "hunter2"));
  CAF_CHECK(shows(d, "password=***"));
  CAF_CHECK(shows(d, "sslmode=require"));
}

CAF_TEST(an_ssl_key_password_is_masked_too) {
  auto d = describe_connection("host=db sslpassword=keypass dbname=x");
  CAF_MESSAGE(d);
  CAF_CHECK(!shows(d, "keypass"));
}

CAF_TEST(a_string_without_secrets_is_described_as_is_and_garbage_reveals_nothing) {
  // In libpq's order of keywords.
  CAF_CHECK_EQUAL(describe_connection("host=/tmp/sock port=5432 dbname=turing user=turing"),
                  "user=turing dbname=turing host=/tmp/sock port=5432");
  auto garbage = describe_connection("password=unterminated 'quote");
  CAF_MESSAGE(garbage);
  CAF_CHECK(!shows(garbage, "unterminated"));
}
