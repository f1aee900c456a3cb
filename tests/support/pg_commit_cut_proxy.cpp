// The commit-cutting PostgreSQL proxy: plain sockets, a thread per
// connection, just enough of the wire protocol to find COMMIT.
#include "tests/support/pg_commit_cut_proxy.hpp"

#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace turing::testing {

namespace {

constexpr uint32_t ssl_request_code = 80877103;
constexpr uint32_t gssenc_request_code = 80877104;

uint32_t be32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return ntohl(v);
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    auto n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

/// A simple query whose whole text is COMMIT (any case, `;` and spaces around).
bool is_commit(const std::string& message) {
  if (message.size() < 6 || message[0] != 'Q')
    return false;
  std::string text = message.substr(5);
  while (!text.empty() && (text.back() == '\0' || text.back() == ';' ||
                           std::isspace(static_cast<unsigned char>(text.back()))))
    text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start])))
    ++start;
  text = text.substr(start);
  if (text.size() != 6)
    return false;
  for (auto& c : text)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text == "COMMIT";
}

/// Takes the next whole message off `buffer`: untyped (startup phase) or
/// type byte + int32 length. Empty when incomplete.
std::string next_message(std::string& buffer, bool typed) {
  size_t header = typed ? 5 : 4;
  if (buffer.size() < header)
    return {};
  size_t length = be32(buffer.data() + (typed ? 1 : 0)) + (typed ? 1 : 0);
  if (length < header || buffer.size() < length)
    return {};
  auto message = buffer.substr(0, length);
  buffer.erase(0, length);
  return message;
}

void cut(int fd) {
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

std::string conninfo_value(const std::string& v) {
  if (!v.empty() && v.find_first_of(" \t\n\r'\\") == std::string::npos)
    return v;
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\')
      out += '\\';
    out += c;
  }
  return out + "'";
}

/// The conninfo's options as (keyword, value) pairs, in libpq's order.
std::vector<std::pair<std::string, std::string>> parse_conninfo(const std::string& conninfo) {
  char* error = nullptr;
  PQconninfoOption* options = ::PQconninfoParse(conninfo.c_str(), &error);
  if (options == nullptr) {
    std::string why = error != nullptr ? error : "out of memory";
    ::PQfreemem(error);
    throw std::invalid_argument("pg_commit_cut_proxy: bad connection string: " + why);
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (auto* o = options; o->keyword != nullptr; ++o)
    if (o->val != nullptr && *o->val != '\0')
      out.emplace_back(o->keyword, o->val);
  ::PQconninfoFree(options);
  return out;
}

} // namespace

const char* to_string(commit_cut how) {
  switch (how) {
  case commit_cut::after_reply:
    return "after_reply";
  case commit_cut::before_server:
    return "before_server";
  case commit_cut::racing:
    return "racing";
  }
  return "?";
}

pg_commit_cut_proxy::pg_commit_cut_proxy(std::string upstream_socket)
    : upstream_(std::move(upstream_socket)) {
  if (::pipe2(wake_, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pg_commit_cut_proxy: pipe: ") + std::strerror(errno));
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    throw std::runtime_error(std::string("pg_commit_cut_proxy: listen on 127.0.0.1: ") +
                             std::strerror(errno));
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

pg_commit_cut_proxy::~pg_commit_cut_proxy() {
  stopping_ = true;
  // Never read, so it stays readable: every thread's poll wakes on it.
  (void)!::write(wake_[1], "x", 1);
  acceptor_.join();
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> guard{mutex_};
    workers.swap(workers_);
  }
  for (auto& t : workers)
    t.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

std::string pg_commit_cut_proxy::socket_of(const std::string& conninfo) {
  std::string host;
  std::string port = "5432";
  for (const auto& [key, value] : parse_conninfo(conninfo)) {
    if (key == "host")
      host = value;
    else if (key == "port")
      port = value;
  }
  if (host.empty() || host[0] != '/')
    throw std::invalid_argument("pg_commit_cut_proxy: no unix socket directory in '" + conninfo +
                                "'");
  return host + "/.s.PGSQL." + port;
}

std::string pg_commit_cut_proxy::through(const std::string& conninfo) const {
  std::string out =
      "host=127.0.0.1 port=" + std::to_string(port_) + " sslmode=disable gssencmode=disable";
  for (const auto& [key, value] : parse_conninfo(conninfo))
    if (key != "host" && key != "hostaddr" && key != "port" && key != "sslmode" &&
        key != "gssencmode")
      out += " " + key + "=" + conninfo_value(value);
  return out;
}

void pg_commit_cut_proxy::arm(commit_cut how, std::function<void()> after_forwarding) {
  std::lock_guard<std::mutex> guard{mutex_};
  armed_ = true;
  how_ = how;
  after_forwarding_ = std::move(after_forwarding);
}

bool pg_commit_cut_proxy::armed() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return armed_;
}

void pg_commit_cut_proxy::accept_loop() {
  while (!stopping_) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      spdlog::error("pg_commit_cut_proxy: poll on port {}: {}", port_, std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0)
      return;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0)
      continue;
    ++connections_;
    std::lock_guard<std::mutex> guard{mutex_};
    workers_.emplace_back([this, client] { serve(client); });
  }
}

void pg_commit_cut_proxy::serve(int client) {
  int server = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, upstream_.c_str(), sizeof addr.sun_path - 1);
  if (server < 0 || ::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    spdlog::warn("pg_commit_cut_proxy: cannot reach {} for a client on port {}: {}", upstream_,
                 port_, std::strerror(errno));
    if (server >= 0)
      ::close(server);
    cut(client);
    return;
  }
  std::string from_client;
  bool typed = false; // past the startup packet
  char buf[65536];
  for (;;) {
    pollfd fds[3] = {{client, POLLIN, 0}, {server, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[2].revents != 0)
      break;
    if (fds[1].revents != 0) {
      auto n = ::recv(server, buf, sizeof buf, 0);
      if (n <= 0 || !write_all(client, buf, static_cast<size_t>(n)))
        break;
    }
    if (fds[0].revents == 0)
      continue;
    auto n = ::recv(client, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    from_client.append(buf, static_cast<size_t>(n));
    bool ok = true;
    for (auto message = next_message(from_client, typed); ok && !message.empty();
         message = next_message(from_client, typed)) {
      if (!typed) {
        // An SSL or GSS request is followed by another untyped packet.
        auto code = message.size() >= 8 ? be32(message.data() + 4) : 0;
        typed = code != ssl_request_code && code != gssenc_request_code;
      }
      if (typed && is_commit(message)) {
        commit_cut how;
        std::function<void()> hook;
        {
          std::lock_guard<std::mutex> guard{mutex_};
          if (armed_) {
            armed_ = false;
            how = how_;
            hook = std::move(after_forwarding_);
            after_forwarding_ = nullptr;
          } else {
            ok = write_all(server, message.data(), message.size());
            continue;
          }
        }
        if (how != commit_cut::before_server)
          write_all(server, message.data(), message.size());
        if (how == commit_cut::after_reply) {
          // Read the server's reply up to ReadyForQuery, and drop it.
          std::string reply;
          bool ready = false;
          while (!ready) {
            pollfd wait[2] = {{server, POLLIN, 0}, {wake_[0], POLLIN, 0}};
            if (::poll(wait, 2, 30000) <= 0 || wait[1].revents != 0)
              break;
            auto got = ::recv(server, buf, sizeof buf, 0);
            if (got <= 0)
              break;
            reply.append(buf, static_cast<size_t>(got));
            for (auto m = next_message(reply, true); !m.empty(); m = next_message(reply, true))
              ready = ready || m[0] == 'Z';
          }
          if (!ready)
            spdlog::warn("pg_commit_cut_proxy: no reply to COMMIT from {} (port {}); cutting",
                         upstream_, port_);
        }
        if (hook)
          hook();
        ++cuts_;
        cut(server);
        cut(client);
        return;
      }
      ok = write_all(server, message.data(), message.size());
    }
    if (!ok)
      break;
  }
  cut(server);
  cut(client);
}

} // namespace turing::testing
