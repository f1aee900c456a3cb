// Simulated GPU memory: model residency, loads and evictions (see
// gpu_residency.hpp).
#include "gpu_residency.hpp"

#include <algorithm>
#include <optional>

namespace turing::model_sim {

namespace {

// How often a waiting request asks whether its client is still there.
constexpr auto peer_check_interval = std::chrono::milliseconds{50};
// The longest single sleep: a bound, so no deadline is ever time_point::max.
constexpr auto longest_sleep = std::chrono::seconds{1};

} // namespace

// -- lease ----------------------------------------------------------------------

gpu_residency::lease::lease(lease&& other) noexcept
    : owner_(other.owner_), gpu_(other.gpu_), model_(other.model_) {
  other.owner_ = nullptr;
}

gpu_residency::lease& gpu_residency::lease::operator=(lease&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = other.owner_;
    gpu_ = other.gpu_;
    model_ = other.model_;
    other.owner_ = nullptr;
  }
  return *this;
}

gpu_residency::lease::~lease() {
  release();
}

void gpu_residency::lease::release() {
  if (owner_ == nullptr)
    return;
  owner_->release(gpu_, model_);
  owner_ = nullptr;
}

// -- gpu_residency ----------------------------------------------------------------

gpu_residency::gpu_residency(const std::vector<gpu_profile>& gpus, double latency_scale) {
  for (const auto& profile : gpus) {
    gpu_state g;
    g.name = profile.name;
    g.max_loaded = profile.max_loaded;
    g.load_time = std::chrono::duration_cast<clock_type::duration>(
        std::chrono::duration<double, std::milli>{profile.load_ms * latency_scale});
    for (const auto& m : profile.models) {
      where_.emplace(m, std::make_pair(gpus_.size(), g.models.size()));
      g.models.push_back(model_state{m});
    }
    gpus_.push_back(std::move(g));
  }
}

gpu_residency::admission gpu_residency::admit(const std::string& model,
                                              const std::function<bool()>& client_gone) {
  admission result;
  // where_ is fixed after construction, so it is read without the lock.
  auto found = where_.find(model);
  if (found == where_.end())
    return result;
  const auto [gi, mi] = found->second;

  std::unique_lock<std::mutex> lock{mtx_};
  auto& g = gpus_[gi];
  const auto started = clock_type::now();
  auto last_check = started;
  bool waited = false;
  // One sleep until `until` at most; the outcome if the caller left.
  auto sleep = [&](clock_type::time_point until) -> std::optional<outcome> {
    if (!waited) {
      waited = true;
      ++g.waiting;
    }
    auto now = clock_type::now();
    until = std::min(until, now + longest_sleep);
    if (client_gone)
      until = std::min(until, last_check + peer_check_interval);
    cv_.wait_until(lock, until);
    if (stopping_)
      return outcome::stopping;
    now = clock_type::now();
    if (client_gone && now >= last_check + peer_check_interval) {
      last_check = now;
      // The check reads a socket: not under the lock every request needs.
      lock.unlock();
      bool gone = client_gone();
      lock.lock();
      if (gone)
        return outcome::client_gone;
    }
    return std::nullopt;
  };
  auto give_up = [&](outcome how) {
    if (waited)
      --g.waiting;
    result.how = how;
    return std::move(result);
  };

  // In queue order: wait to be the head, then for the GPU to have room.
  const auto ticket = next_ticket_++;
  g.queue.push_back(ticket);
  for (;;) {
    std::optional<outcome> end;
    if (stopping_)
      end = outcome::stopping;
    auto now = clock_type::now();
    bool head = g.queue.front() == ticket;
    if (!end && head && try_admit(g, mi, now)) {
      g.queue.pop_front();
      cv_.notify_all(); // the next in line may fit too
      break;
    }
    // The head re-checks when a load finishes (its model becomes evictable
    // once idle); everyone re-checks on a release or a queue change.
    if (!end)
      end = sleep(head ? next_ready(g, now) : now + longest_sleep);
    if (end) {
      leave_queue(g, ticket);
      return give_up(*end);
    }
  }

  // Admitted: wait for the load this or an earlier request started. The
  // model cannot be evicted while this request is active, so ready_at holds.
  const auto ready_at = g.models[mi].ready_at;
  while (clock_type::now() < ready_at) {
    auto end = stopping_ ? std::optional<outcome>{outcome::stopping} : sleep(ready_at);
    if (end) {
      release_locked(g, mi);
      return give_up(*end);
    }
  }
  if (waited) {
    --g.waiting;
    result.waited = clock_type::now() - started;
  }
  result.held = lease{this, gi, mi};
  return result;
}

bool gpu_residency::try_admit(gpu_state& g, std::size_t model, clock_type::time_point now) {
  auto& m = g.models[model];
  if (!m.resident) {
    auto resident = std::count_if(g.models.begin(), g.models.end(),
                                  [](const model_state& s) { return s.resident; });
    if (resident >= g.max_loaded) {
      // Only a loaded model nobody is using may go: the least recently used.
      model_state* victim = nullptr;
      for (auto& s : g.models)
        if (s.resident && s.active == 0 && s.ready_at <= now &&
            (victim == nullptr || s.last_used < victim->last_used))
          victim = &s;
      if (victim == nullptr)
        return false;
      victim->resident = false;
      ++g.evictions;
    }
    m.resident = true;
    m.ready_at = now + g.load_time;
    ++g.loads;
  }
  ++m.active;
  m.last_used = ++g.uses;
  return true;
}

gpu_residency::clock_type::time_point gpu_residency::next_ready(const gpu_state& g,
                                                                clock_type::time_point now) const {
  auto next = now + longest_sleep;
  for (const auto& s : g.models)
    if (s.resident && s.ready_at > now)
      next = std::min(next, s.ready_at);
  return next;
}

void gpu_residency::release(std::size_t gpu, std::size_t model) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    release_locked(gpus_[gpu], model);
  }
  cv_.notify_all();
}

void gpu_residency::release_locked(gpu_state& g, std::size_t model) {
  auto& m = g.models[model];
  --m.active;
  m.last_used = ++g.uses;
  cv_.notify_all();
}

void gpu_residency::leave_queue(gpu_state& g, std::uint64_t ticket) {
  auto i = std::find(g.queue.begin(), g.queue.end(), ticket);
  if (i != g.queue.end())
    g.queue.erase(i);
  cv_.notify_all(); // the next in line may now be the head
}

void gpu_residency::stop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    stopping_ = true;
  }
  cv_.notify_all();
}

nlohmann::json gpu_residency::snapshot() const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto now = clock_type::now();
  nlohmann::json out = nlohmann::json::object();
  for (const auto& g : gpus_) {
    auto loaded = nlohmann::json::array();
    auto loading = nlohmann::json::array();
    for (const auto& s : g.models)
      if (s.resident)
        (s.ready_at <= now ? loaded : loading).push_back(s.name);
    out[g.name] = {
        {"loads", g.loads},   {"evictions", g.evictions},      {"loaded", loaded},
        {"loading", loading}, {"waiting_for_load", g.waiting}, {"max_loaded", g.max_loaded}};
  }
  return out;
}

} // namespace turing::model_sim
