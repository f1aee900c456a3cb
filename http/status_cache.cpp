// The /api/status document, cached for a couple of seconds.
#include "http/status_cache.hpp"

#include "operations/dead_letters.hpp"
#include "operations/status_snapshot.hpp"

namespace turing::http {

status_cache::status_cache(std::shared_ptr<const config::pipeline_config> pipeline,
                           std::string connection_string, std::string database_description,
                           std::chrono::milliseconds ttl)
    : pipeline_(std::move(pipeline)), connection_string_(std::move(connection_string)),
      database_description_(std::move(database_description)), ttl_(ttl) {}

std::shared_ptr<const nlohmann::json> status_cache::get() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto now = clock::now();
  if (cached_ && now - read_at_ < ttl_)
    return cached_;
  try {
    if (!store_)
      store_ = std::make_unique<persistence::pg_store>(connection_string_);
    if (!dead_letters_db_)
      dead_letters_db_ = std::make_unique<pqxx::connection>(connection_string_);
    auto snapshot =
        operations::status_snapshot(*store_, *pipeline_, database_description_, &rates_);
    snapshot["dead_letters"] = operations::newest_dead_letters(*dead_letters_db_, 100);
    cached_ = std::make_shared<const nlohmann::json>(std::move(snapshot));
    read_at_ = now;
    return cached_;
  } catch (...) {
    // A broken connection is not reused: the next request opens new ones.
    store_.reset();
    dead_letters_db_.reset();
    throw;
  }
}

std::vector<persistence::run_status> status_cache::runs() {
  std::lock_guard<std::mutex> lock(mutex_);
  auto now = clock::now();
  if (runs_read_at_ && now - *runs_read_at_ < ttl_)
    return runs_;
  try {
    if (!store_)
      store_ = std::make_unique<persistence::pg_store>(connection_string_);
    runs_ = store_->runs(false);
    runs_read_at_ = now;
    return runs_;
  } catch (...) {
    store_.reset();
    throw;
  }
}

} // namespace turing::http
