// The node's directory of named actors ("store", "lease_keeper",
// "model/<name>", "pump/<stage>", "supervisor/<id>"). A supervisor's start function registers
// each actor it (re)starts, so senders always reach the current incarnation.
#pragma once

#include <caf/actor.hpp>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace turing::actors {

class actor_directory {
public:
  void put(const std::string& name, caf::actor handle) {
    std::lock_guard<std::mutex> guard{mutex_};
    actors_[name] = std::move(handle);
  }

  /// The current actor of that name; an invalid handle while none is
  /// registered (e.g. between a crash and its restart).
  caf::actor get(const std::string& name) const {
    std::lock_guard<std::mutex> guard{mutex_};
    auto it = actors_.find(name);
    return it == actors_.end() ? caf::actor{} : it->second;
  }

  /// The name `handle` is registered under; empty if none.
  std::string name_of(const caf::actor& handle) const {
    std::lock_guard<std::mutex> guard{mutex_};
    for (const auto& [name, h] : actors_)
      if (h == handle)
        return name;
    return {};
  }

  /// Every registered actor (a simulated SIGKILL ends them all).
  std::vector<caf::actor> all() const {
    std::lock_guard<std::mutex> guard{mutex_};
    std::vector<caf::actor> out;
    for (const auto& [name, handle] : actors_)
      out.push_back(handle);
    return out;
  }

  void clear() {
    std::lock_guard<std::mutex> guard{mutex_};
    actors_.clear();
  }

private:
  mutable std::mutex mutex_;
  std::map<std::string, caf::actor> actors_;
};

} // namespace turing::actors
