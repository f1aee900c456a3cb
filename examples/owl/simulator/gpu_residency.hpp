// Which models are in each simulated GPU's memory: at most max_loaded at once,
// so calling another model unloads an idle one and waits out a load, as on a
// real Ollama. The server admits every model call through it.
#pragma once

#include "sim_config.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace turing::model_sim {

/// How it works: per GPU, each listed model is unloaded, loading (until its
/// ready time) or loaded, and counts its admitted requests. admit() joins
/// the GPU's queue, which is served in order like Ollama's scheduler: once a
/// request waits for the GPU, later ones queue behind it, so a stream of
/// calls to a loaded model cannot starve a call to another. The head is
/// admitted when its model is loaded or loading, when a slot is free (the
/// load starts), or when a loaded model has no admitted request (the least
/// recently used such model is evicted and the load starts); otherwise it
/// waits for one to go idle. An admitted request then waits for its model's
/// load, the same load for every request of that model, and holds the model
/// busy until its lease ends. Waits sleep on one condition variable that
/// stop() and every release signal, checking the client every 50 ms.
class gpu_residency {
public:
  using clock_type = std::chrono::steady_clock;

  /// Keeps its model busy (not evictable) until destroyed. An empty lease,
  /// for a model on no GPU, holds nothing.
  class lease {
  public:
    lease() = default;
    lease(lease&& other) noexcept;
    lease& operator=(lease&& other) noexcept;
    lease(const lease&) = delete;
    lease& operator=(const lease&) = delete;
    ~lease();

    /// Ends the lease early (the model is idle from now on); idempotent.
    void release();

  private:
    friend class gpu_residency;
    lease(gpu_residency* owner, std::size_t gpu, std::size_t model)
        : owner_(owner), gpu_(gpu), model_(model) {}

    gpu_residency* owner_ = nullptr;
    std::size_t gpu_ = 0;
    std::size_t model_ = 0;
  };

  /// How admit() ended.
  enum class outcome { ready, stopping, client_gone };

  struct admission {
    outcome how = outcome::ready;
    lease held;
    /// Real time spent waiting for the GPU and the load; zero when the
    /// model was loaded and nobody was queued ahead.
    std::chrono::nanoseconds waited{0};
  };

  /// `gpus` must have passed check_config; load times are multiplied by
  /// `latency_scale`.
  gpu_residency(const std::vector<gpu_profile>& gpus, double latency_scale);

  gpu_residency(const gpu_residency&) = delete;
  gpu_residency& operator=(const gpu_residency&) = delete;

  /// Waits until `model` is loaded and admitted (at once for a model on no
  /// GPU), stop() is called, or `client_gone` (asked every 50 ms while
  /// waiting, without the lock held; may be empty) says the caller left.
  admission admit(const std::string& model, const std::function<bool()>& client_gone);

  /// Releases every waiting admit() with outcome::stopping; later calls
  /// return it at once. Thread-safe, idempotent.
  void stop();

  /// {"<gpu>": {"loads", "evictions", "loaded", "loading",
  /// "waiting_for_load", "max_loaded"}}.
  nlohmann::json snapshot() const;

private:
  struct model_state {
    std::string name;
    bool resident = false; // loading or loaded
    clock_type::time_point ready_at{};
    long active = 0;             // admitted requests not yet released
    std::uint64_t last_used = 0; // the GPU's use counter at the last admit or release
  };

  struct gpu_state {
    std::string name;
    int max_loaded = 1;
    clock_type::duration load_time{};
    std::vector<model_state> models;
    std::deque<std::uint64_t> queue; // tickets of requests not yet admitted
    std::uint64_t uses = 0;
    long loads = 0;
    long evictions = 0;
    long waiting = 0;
  };

  bool try_admit(gpu_state& g, std::size_t model, clock_type::time_point now);
  clock_type::time_point next_ready(const gpu_state& g, clock_type::time_point now) const;
  void release(std::size_t gpu, std::size_t model);
  void release_locked(gpu_state& g, std::size_t model);
  void leave_queue(gpu_state& g, std::uint64_t ticket);

  mutable std::mutex mtx_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::uint64_t next_ticket_ = 0;
  std::vector<gpu_state> gpus_;
  // model name -> (gpu, model) indexes
  std::unordered_map<std::string, std::pair<std::size_t, std::size_t>> where_;
};

} // namespace turing::model_sim
