// The cluster member.
#include "cluster/cluster_member.hpp"

#include "actors/model_relay.hpp"
#include "actors/store_actor.hpp"
#include "config/duration.hpp"
#include "messages/registry.hpp"

#include <algorithm>
#include <caf/all.hpp>
#include <map>
#include <spdlog/spdlog.h>

namespace turing::cluster {

namespace {

using membership_tick_atom = caf::atom_constant<caf::atom("membertk")>;
using probe_done_atom = caf::atom_constant<caf::atom("probedone")>;
using gone_check_atom = caf::atom_constant<caf::atom("gonecheck")>;

/// A killed process's connections close before its listening socket does:
/// a probe that finds the address half-alive (neither verified nor refused)
/// is repeated this many times, this far apart.
constexpr int gone_check_tries = 5;
constexpr auto gone_check_pause = std::chrono::milliseconds(200);

// The actor clock: virtual in the simulation, steady in a real run.
using clock_point = caf::actor_clock::time_point;

/// Why a probe ran: to connect to a peer, to accept one that connected to
/// us, or to learn whether a lost one's process is gone.
enum class probe_purpose : int { connect = 0, gone_check = 1, accept = 2 };

int64_t to_us(persistence::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}

/// "host:port" (or "[v6]:port") into its parts; false if malformed.
bool split_address(const std::string& address, std::string& host, uint16_t& port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= address.size())
    return false;
  host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  try {
    auto n = std::stoul(address.substr(colon + 1));
    if (n == 0 || n > 65535)
      return false;
    port = static_cast<uint16_t>(n);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

struct peer {
  std::string address;
  /// The peer that connected to us, until its address's certificate is verified.
  caf::actor accepting;
  /// The incarnation turing.nodes shows (started_at, microseconds).
  int64_t started_at_us = 0;
  caf::actor handle;
  bool verified = false;
  bool attempting = false;
  int failures = 0;
  clock_point next_attempt;
  std::string last_error; ///< logged at warn once, then at debug while it repeats

  // Set while a peer we were connected to is lost and its leases not yet returned.
  bool lost = false;
  int gone_checks = 0;
  bool rescue_in_flight = false;
  bool rescued = false;
  clock_point lost_since;
  /// Its report's seen_at when first read after the loss; unchanged for
  /// connection_timeout means its process no longer reports.
  std::optional<persistence::time_point> seen_at_when_lost;
};

} // namespace

struct cluster_member_state {
  std::map<std::string, peer> peers;
  bool tick_in_flight = false;
  std::vector<std::string> published_peers;
  static inline const char* name = "cluster_member";
};

namespace {

using member_actor = caf::stateful_actor<cluster_member_state>;

caf::behavior cluster_member(member_actor* self, cluster_member_options o) {
  const auto& c = o.cluster;
  const std::string my_address = c.advertise_host + ":" + std::to_string(c.advertise_port);
  const cluster_hello mine{o.node, my_address, o.started_at_us};
  const auto attempt_bound = c.connect_timeout;

  auto liveness_store = [=] {
    auto store = o.dir->get(actors::liveness_store_name);
    return store ? store : o.dir->get("store");
  };

  // Placement: the models `node` hosts, by the config.
  auto models_hosted_by = [=](const std::string& node) {
    std::vector<std::string> out;
    if (o.pipeline)
      for (const auto& m : o.pipeline->models)
        if (o.pipeline->model_host(m.name) == node)
          out.push_back(m.name);
    return out;
  };

  // A connected peer's endpoints, for this node's relays; asked every second
  // since an endpoint restarted by its supervisor is a new actor.
  auto refresh_endpoints = [=](const std::string& name, const caf::actor& handle) {
    if (models_hosted_by(name).empty())
      return;
    self->request(handle, attempt_bound, hosted_endpoints_request{})
        .then(
            [=](const hosted_endpoints& reply) {
              for (const auto& [model, endpoint] : reply.endpoints)
                if (endpoint && o.pipeline->model_host(model) == name)
                  o.dir->put(actors::remote_endpoint_name(model), endpoint);
            },
            [=](caf::error& e) {
              spdlog::debug("cluster: node {} did not list its endpoints: {}", name,
                            self->system().render(e));
            });
  };

  auto forget_endpoints = [=](const std::string& name) {
    for (const auto& model : models_hosted_by(name))
      o.dir->put(actors::remote_endpoint_name(model), caf::actor{});
  };

  auto publish_membership = [=] {
    std::vector<std::string> names;
    for (const auto& [name, p] : self->state.peers)
      if (p.verified)
        names.push_back(name);
    if (names == self->state.published_peers)
      return;
    self->state.published_peers = names;
    if (o.monitor)
      self->send(o.monitor, cluster_membership{my_address, names});
  };

  // Blocking probes run on their own short-lived thread, never on this
  // actor's: a peer that accepts TCP and never answers must not stall it.
  auto start_probe = [=](const std::string& name, const std::string& address,
                         probe_purpose purpose) {
    std::string host;
    uint16_t port = 0;
    if (!split_address(address, host, port)) {
      self->send(self, probe_done_atom::value, name, address, static_cast<int>(purpose),
                 static_cast<int>(peer_identity::outcome::unreachable), std::string{},
                 "malformed address " + address);
      return;
    }
    auto probe = o.probe;
    auto run = [=] {
      peer_identity id;
      try {
        id = probe(host, port, attempt_bound);
      } catch (const std::exception& e) {
        // Our own files, not the peer's fault; checked at start, so they changed since.
        id.result = peer_identity::outcome::unreachable;
        id.error = std::string{"our TLS files: "} + e.what();
      }
      return id;
    };
    if (o.probe_inline) {
      auto id = run();
      self->send(self, probe_done_atom::value, name, address, static_cast<int>(purpose),
                 static_cast<int>(id.result), id.common_name, id.error);
      return;
    }
    caf::actor member = caf::actor_cast<caf::actor>(self);
    self->system().spawn([=](caf::blocking_actor* b) {
      auto id = run();
      b->send(member, probe_done_atom::value, name, address, static_cast<int>(purpose),
              static_cast<int>(id.result), id.common_name, id.error);
    });
  };

  auto attempt_failed = [=](const std::string& name, const std::string& why,
                            spdlog::level::level_enum level = spdlog::level::warn) {
    auto it = self->state.peers.find(name);
    if (it == self->state.peers.end())
      return;
    auto& p = it->second;
    p.attempting = false;
    p.failures = std::min(p.failures + 1, 3);
    p.next_attempt = self->clock().now() + std::chrono::seconds(1 << p.failures); // 2 s .. 8 s
    if (why != p.last_error)
      spdlog::log(level, "cluster: node {} at {} not connected: {} (retrying every {} s at most)",
                  name, p.address, why, 1 << 3);
    else
      spdlog::debug("cluster: node {} at {} still not connected: {}", name, p.address, why);
    p.last_error = why;
  };

  // The hello, after CAF's connect: the peer's actor must say the name and
  // address the probe verified.
  auto connect = [=](const std::string& name, const std::string& address) {
    std::string host;
    uint16_t port = 0;
    split_address(address, host, port);
    self->request(o.connector, attempt_bound, caf::connect_atom::value, host, port)
        .then(
            [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
              auto handle = caf::actor_cast<caf::actor>(ptr);
              if (!handle) {
                attempt_failed(name, "no actor is published at " + address);
                return;
              }
              self->request(handle, attempt_bound, mine)
                  .then(
                      [=](const cluster_hello& theirs) {
                        if (theirs.node != name || theirs.address != address) {
                          attempt_failed(name,
                                         "refused: its hello says node " + theirs.node + " at " +
                                             theirs.address,
                                         spdlog::level::err);
                          return;
                        }
                        auto it = self->state.peers.find(name);
                        if (it == self->state.peers.end() || it->second.address != address)
                          return; // it moved or went while we connected
                        auto& p = it->second;
                        p.attempting = false;
                        p.verified = true;
                        p.failures = 0;
                        p.last_error.clear();
                        p.handle = handle;
                        self->monitor(handle);
                        spdlog::info("cluster: connected to node {} at {} (certificate CN "
                                     "verified)",
                                     name, address);
                        publish_membership();
                        refresh_endpoints(name, handle);
                      },
                      [=](caf::error& e) {
                        attempt_failed(name, "no hello: " + self->system().render(e));
                      });
            },
            [=](caf::error& e) {
              attempt_failed(name, "CAF connect failed: " + self->system().render(e));
            });
  };

  // Fenced like the rescuer's pass: an execution the lost node still runs
  // finds its lease gone, and its late result is recorded, not applied.
  auto rescue = [=](const std::string& name, const std::string& why) {
    auto it = self->state.peers.find(name);
    if (it == self->state.peers.end())
      return;
    auto& p = it->second;
    if (p.rescued || p.rescue_in_flight)
      return;
    p.rescue_in_flight = true;
    auto store = liveness_store();
    if (!store) {
      p.rescue_in_flight = false;
      return;
    }
    auto lost_since = p.lost_since;
    auto address = p.address;
    self->request(store, std::chrono::seconds(30), rescue_node_request{name, o.node, o.max_lost})
        .then(
            [=](const std::vector<persistence::rescued_message>& rescued) {
              auto it = self->state.peers.find(name);
              if (it != self->state.peers.end()) {
                it->second.rescue_in_flight = false;
                it->second.rescued = true;
              }
              auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(self->clock().now() -
                                                                              lost_since);
              int64_t dead = 0;
              std::string ids;
              for (const auto& r : rescued) {
                dead += r.dead ? 1 : 0;
                if (ids.size() < 200)
                  ids +=
                      (ids.empty() ? "" : ",") + std::to_string(r.message_id) + "(" + r.stage + ")";
              }
              spdlog::warn("cluster: node {} at {} is gone ({}): returned {} lease(s) to ready, "
                           "{} dead-lettered on their last attempt, {} ms after its connection "
                           "dropped{}{}",
                           name, address, why, rescued.size() - dead, dead, ms.count(),
                           ids.empty() ? "" : ": ", ids);
            },
            [=](caf::error& e) {
              auto it = self->state.peers.find(name);
              if (it != self->state.peers.end())
                it->second.rescue_in_flight = false;
              spdlog::log(persistence::secondhand_level(o.outage),
                          "cluster: could not return the leases of lost node {}: {} (the "
                          "rescuer returns them when they expire)",
                          name, self->system().render(e));
            });
  };

  auto on_nodes = [=](const std::vector<persistence::node_report>& rows) {
    auto now = self->clock().now();
    // Rows long silent (a node that crashed before distributed mode could
    // tell anyone) are not worth a connection attempt every few seconds.
    persistence::time_point newest{};
    for (const auto& row : rows)
      newest = std::max(newest, row.seen_at);
    auto silent_for = [&](const persistence::node_report& row) { return newest - row.seen_at; };
    auto forgotten =
        std::max<persistence::millis>(c.connection_timeout * 4, std::chrono::minutes(1));
    for (const auto& row : rows) {
      if (row.name == o.node)
        continue;
      auto it = self->state.peers.find(row.name);
      bool live = !row.stopped_at && !row.address.empty() && silent_for(row) < forgotten;
      if (!live) {
        // A clean stop released its leases itself; a long-silent row was rescued
        // by the rescuer. Either way nothing is left to do once it is not connected.
        if (it != self->state.peers.end() && !it->second.verified && !it->second.attempting &&
            !it->second.rescue_in_flight)
          self->state.peers.erase(it);
        continue;
      }
      auto& p = self->state.peers[row.name];
      auto incarnation = to_us(row.started_at);
      bool moved = !p.address.empty() && p.address != row.address;
      bool restarted = p.started_at_us != 0 && p.started_at_us != incarnation;
      if (moved || restarted) {
        // Moved or restarted: whatever we knew of it is void.
        if (p.lost && !p.rescued)
          spdlog::info("cluster: node {} restarted (now at {}); its leases stay with it", row.name,
                       row.address);
        p.lost = false;
        p.rescued = false;
        p.seen_at_when_lost.reset();
        if (moved) {
          p.verified = false;
          p.handle = nullptr;
        }
      }
      p.address = row.address;
      p.started_at_us = incarnation;
      if (p.lost && !p.rescued) {
        if (!p.seen_at_when_lost) {
          p.seen_at_when_lost = row.seen_at;
        } else if (row.seen_at != *p.seen_at_when_lost) {
          // It still reports to the database: alive, only unreachable from here for a while.
          spdlog::info("cluster: node {} at {} still reports to the database; its leases stay "
                       "with it, reconnecting",
                       row.name, p.address);
          p.lost = false;
          p.seen_at_when_lost.reset();
        } else if (now - p.lost_since >= c.connection_timeout) {
          rescue(row.name,
                 "no report in turing.nodes for " +
                     config::format_duration(
                         std::chrono::duration_cast<persistence::millis>(now - p.lost_since)) +
                     " since its connection dropped");
        }
      } else if (p.lost && p.rescued && row.seen_at != *p.seen_at_when_lost) {
        // A partitioned or stopped node came back: its late results are fenced.
        spdlog::warn("cluster: node {} at {} reports again after its leases were returned; its "
                     "late results are recorded, not applied",
                     row.name, p.address);
        p.lost = false;
        p.rescued = false;
        p.seen_at_when_lost.reset();
      }
      if (p.verified && p.handle)
        refresh_endpoints(row.name, p.handle);
      // One connection per pair: CAF 0.17 drops both when two nodes connect to
      // each other at once. The node whose name sorts first connects; the
      // other accepts its hello.
      if (o.node < row.name && !p.verified && !p.attempting && !p.lost && now >= p.next_attempt) {
        p.attempting = true;
        start_probe(row.name, p.address, probe_purpose::connect);
      }
    }
  };

  self->set_down_handler([=](caf::down_msg& dm) {
    for (auto& [name, p] : self->state.peers) {
      if (!p.handle || p.handle.address() != dm.source)
        continue;
      forget_endpoints(name);
      p.handle = nullptr;
      p.verified = false;
      if (dm.reason == caf::exit_reason::user_shutdown) {
        // A graceful stop: the peer drained and released its leases itself.
        spdlog::info("cluster: node {} at {} stopped gracefully", name, p.address);
        // Its last report (stopped_at) follows; no reconnecting meanwhile.
        p.next_attempt = self->clock().now() + c.connection_timeout;
        publish_membership();
        return;
      }
      p.lost = true;
      p.rescued = false;
      p.lost_since = self->clock().now();
      p.seen_at_when_lost.reset();
      spdlog::warn("cluster: lost the connection to node {} at {} ({}); checking whether its "
                   "process is gone",
                   name, p.address, self->system().render(dm.reason));
      publish_membership();
      p.gone_checks = 1;
      start_probe(name, p.address, probe_purpose::gone_check);
      return;
    }
  });

  // The address goes into turing.nodes at once: that is how peers find us.
  if (o.monitor)
    self->send(o.monitor, cluster_membership{my_address, {}});
  self->send(self, membership_tick_atom::value);
  return {
      // A node whose name sorts before ours connected: trusted once its
      // address shows a certificate with its name (CAF already checked that
      // the connection's certificate is from our CA; it cannot tell us which).
      [=](const cluster_hello& theirs) -> cluster_hello {
        auto sender = caf::actor_cast<caf::actor>(self->current_sender());
        if (theirs.node == o.node || !sender)
          return mine;
        auto& p = self->state.peers[theirs.node];
        if (p.verified && p.handle == sender)
          return mine;
        spdlog::debug("cluster: hello from node {} at {}; verifying its certificate", theirs.node,
                      theirs.address);
        if (!p.address.empty() && p.address != theirs.address) {
          spdlog::error("cluster: refused a hello from node {}: it says it is at {}, "
                        "turing.nodes says {}",
                        theirs.node, theirs.address, p.address);
          return mine;
        }
        p.address = theirs.address;
        p.accepting = sender;
        p.lost = false;
        p.seen_at_when_lost.reset();
        start_probe(theirs.node, theirs.address, probe_purpose::accept);
        return mine;
      },
      [=](hosted_endpoints_request) -> hosted_endpoints {
        hosted_endpoints out;
        for (const auto& model : models_hosted_by(o.node))
          if (auto endpoint = o.dir->get("model/" + model))
            out.endpoints[model] = endpoint;
        return out;
      },
      [=](membership_tick_atom) {
        self->delayed_send(self, std::chrono::seconds(1), membership_tick_atom::value);
        auto store = liveness_store();
        if (!store || self->state.tick_in_flight)
          return;
        self->state.tick_in_flight = true;
        self->request(store, std::chrono::seconds(30), nodes_request{})
            .then(
                [=](const std::vector<persistence::node_report>& rows) {
                  self->state.tick_in_flight = false;
                  on_nodes(rows);
                },
                [=](caf::error& e) {
                  self->state.tick_in_flight = false;
                  spdlog::log(persistence::secondhand_level(o.outage),
                              "cluster: could not read turing.nodes: {}", self->system().render(e));
                });
      },
      [=](gone_check_atom, const std::string& name, const std::string& address) {
        auto it = self->state.peers.find(name);
        if (it == self->state.peers.end() || it->second.address != address || !it->second.lost ||
            it->second.rescued)
          return;
        ++it->second.gone_checks;
        start_probe(name, address, probe_purpose::gone_check);
      },
      [=](probe_done_atom, const std::string& name, const std::string& address, int purpose,
          int result, const std::string& common_name, const std::string& error) {
        auto it = self->state.peers.find(name);
        if (it == self->state.peers.end() || it->second.address != address)
          return;
        auto outcome = static_cast<peer_identity::outcome>(result);
        if (static_cast<probe_purpose>(purpose) == probe_purpose::gone_check) {
          auto& p = it->second;
          if (!p.lost || p.rescued)
            return;
          if (outcome == peer_identity::outcome::refused)
            rescue(name, "its address refuses connections: the process is gone");
          else if (outcome != peer_identity::outcome::verified && p.gone_checks < gone_check_tries)
            self->delayed_send(self, gone_check_pause, gone_check_atom::value, name, address);
          else
            spdlog::info("cluster: node {} at {} does not refuse connections ({}); its leases "
                         "return once its report in turing.nodes has not advanced for {}",
                         name, address, to_string(outcome),
                         config::format_duration(c.connection_timeout));
          return;
        }
        if (outcome != peer_identity::outcome::verified)
          it->second.accepting = nullptr;
        if (outcome == peer_identity::outcome::rejected) {
          attempt_failed(name, "refused: " + error, spdlog::level::err);
          return;
        }
        if (outcome != peer_identity::outcome::verified) {
          attempt_failed(name,
                         std::string{to_string(outcome)} + (error.empty() ? "" : ": " + error));
          return;
        }
        if (common_name == name && static_cast<probe_purpose>(purpose) == probe_purpose::accept) {
          auto& p = it->second;
          if (!p.accepting)
            return;
          p.handle = std::exchange(p.accepting, caf::actor{});
          p.verified = true;
          p.attempting = false;
          p.failures = 0;
          p.last_error.clear();
          self->monitor(p.handle);
          spdlog::info("cluster: accepted node {} at {} (certificate CN verified)", name, address);
          publish_membership();
          refresh_endpoints(name, p.handle);
          return;
        }
        if (common_name != name) {
          it->second.accepting = nullptr;
          attempt_failed(name,
                         "refused: its certificate's CN is " + common_name +
                             ", not the node's name (CAF checks the CA, not the name)",
                         spdlog::level::err);
          return;
        }
        connect(name, address);
      },
  };
}

} // namespace

caf::actor spawn_cluster_member(caf::actor_system& sys, cluster_member_options options) {
  return sys.spawn(cluster_member, std::move(options));
}

} // namespace turing::cluster
