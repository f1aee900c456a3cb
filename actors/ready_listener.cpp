// The LISTEN/NOTIFY bridge into CAF groups.
#include "actors/ready_listener.hpp"

#include "messages/runtime.hpp"
#include "persistence/pg_store.hpp"

#include <atomic>
#include <caf/all.hpp>
#include <condition_variable>
#include <memory>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <thread>

namespace turing::actors {

caf::group ready_group(caf::actor_system& sys, const std::string& stage) {
  return sys.groups().get_local("turing.ready." + stage);
}

caf::group any_ready_group(caf::actor_system& sys) {
  return sys.groups().get_local("turing.ready");
}

namespace {

class listener_thread {
public:
  listener_thread(caf::actor_system& sys, std::string dsn, std::string node,
                  std::shared_ptr<persistence::outage_log> outage)
      : sys_(sys), dsn_(std::move(dsn)), node_(std::move(node)), outage_(std::move(outage)),
        thread_([this] { loop(); }) {}
  ~listener_thread() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

private:
  struct forwarder : pqxx::notification_receiver {
    forwarder(pqxx::connection_base& c, caf::actor_system& sys, std::string node)
        : pqxx::notification_receiver(c, persistence::ready_channel), sys_(sys),
          node_(std::move(node)) {}
    void operator()(const std::string& payload, int) override {
      auto notice = persistence::parse_ready_payload(payload);
      // This node's writer woke its pumps when it committed these handoffs.
      if (!node_.empty() && notice.woken_node == node_)
        return;
      caf::anon_send(ready_group(sys_, notice.stage), work_available{notice.stage});
    }
    caf::actor_system& sys_;
    std::string node_;
  };

  bool stopping() {
    std::lock_guard<std::mutex> guard{mutex_};
    return stop_;
  }

  void pause(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock{mutex_};
    wake_.wait_for(lock, d, [this] { return stop_; });
  }

  void loop() {
    std::unique_ptr<pqxx::connection> conn;
    std::unique_ptr<forwarder> receiver;
    bool reported_down = false;
    while (!stopping()) {
      try {
        if (!conn) {
          conn = std::make_unique<pqxx::connection>(dsn_);
          receiver = std::make_unique<forwarder>(*conn, sys_, node_);
          if (reported_down)
            spdlog::log(outage_ ? spdlog::level::debug : spdlog::level::info,
                        "ready listener: listening again on {}", persistence::ready_channel);
          reported_down = false;
          caf::anon_send(any_ready_group(sys_), work_available{""});
        }
        conn->await_notification(0, 250000);
      } catch (const std::exception& e) {
        receiver.reset();
        conn.reset();
        // Usually the first to notice an outage (it waits on the socket): the
        // outage log tells it, and the store's first success tells its end.
        if (!reported_down && outage_)
          outage_->unreachable("ready listener (pumps poll meanwhile)", one_line(e.what()));
        else if (!reported_down)
          spdlog::warn("ready listener: connection lost ({}); pumps fall back to polling until "
                       "it returns",
                       e.what());
        reported_down = true;
        pause(std::chrono::seconds(1));
      }
    }
  }

  static std::string one_line(std::string text) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
      text.pop_back();
    for (auto& c : text)
      if (c == '\n')
        c = ' ';
    return text;
  }

  caf::actor_system& sys_;
  std::string dsn_;
  std::string node_;
  std::shared_ptr<persistence::outage_log> outage_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

struct listener_state {
  std::unique_ptr<listener_thread> thread;
};

} // namespace

caf::behavior ready_listener(caf::event_based_actor* self, std::string connection_string,
                             std::string node, std::shared_ptr<persistence::outage_log> outage) {
  auto state = std::make_shared<listener_state>();
  state->thread = std::make_unique<listener_thread>(self->system(), connection_string,
                                                    std::move(node), std::move(outage));
  // The thread ends with the actor: the behavior owns the state.
  return {[state](caf::get_atom) { return state->thread != nullptr; }};
}

} // namespace turing::actors
