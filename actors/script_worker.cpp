// Worker mode's I/O: a long-lived child fed one JSON line per request by a writer thread and
// read one reply line at a time by a parser thread, with this thread keeping stderr, reporting
// the replies in order and ending the child when asked to (see script_worker.hpp).
#include "actors/script_worker.hpp"

#include "actors/detail/child_process.hpp"
#include "persistence/json_parse.hpp"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <istream>
#include <memory>
#include <ostream>
#include <poll.h>
#include <system_error>
#include <thread>
#include <vector>

namespace turing::actors {

using namespace detail;

// --- the control shared with the actor feeding the child -----------------------------------

script_worker_control::script_worker_control() {
  // Non-blocking both ways: send() and stop() must never block their (scheduler) thread, and the
  // I/O thread drains the pipe until EAGAIN.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
    throw std::system_error(errno, std::generic_category(), "script worker wake-up pipe");
  wake_r_ = fds[0];
  wake_w_ = fds[1];
}

script_worker_control::~script_worker_control() {
  ::close(wake_r_);
  ::close(wake_w_);
}

void script_worker_control::send(request r) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requests_.push_back(std::move(r));
    ++sent_;
  }
  changed_.notify_all();
  wake();
}

void script_worker_control::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  wake();
}

script_worker_control::snapshot script_worker_control::state() {
  std::lock_guard<std::mutex> lock(mutex_);
  return {stop_, sent_};
}

script_worker_control::request script_worker_control::next_request() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return stop_ || closed_ || !requests_.empty(); });
  if (stop_ || closed_)
    return nullptr;
  auto r = std::move(requests_.front());
  requests_.pop_front();
  return r;
}

void script_worker_control::close() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
  }
  changed_.notify_all();
}

void script_worker_control::wake() {
  char byte = 1;
  // EAGAIN: the pipe is full of wake-ups already, which is as good as one more.
  while (::write(wake_w_, &byte, 1) < 0 && errno == EINTR) {
  }
}

namespace {

constexpr std::size_t reply_head_bytes = 256; // what the contract's error excerpts quote

// A pipe whose read end a thread polls beside its descriptor: one byte written ends the wait.
struct signal_pipe {
  unique_fd read_end, write_end;
  signal_pipe() {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0)
      throw std::system_error(errno, std::generic_category(), "script worker signal pipe");
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  void raise() {
    char byte = 1;
    while (::write(write_end.get(), &byte, 1) < 0 && errno == EINTR) {
    }
  }
  void drain() {
    char bytes[64];
    while (::read(read_end.get(), bytes, sizeof bytes) > 0) {
    }
  }
};

// The child's stdout one line at a time: reads the descriptor 64 KB at a time and ends each
// line at its '\n', so that a JSON parser reading it sees one reply and nothing else. Keeps
// what the contract's errors quote (the start of the line, whether it was blank) and stops a
// line at its limit.
class reply_lines : public std::streambuf {
public:
  reply_lines(int fd, int halt_fd, std::size_t max_line)
      : fd_(fd), halt_fd_(halt_fd), max_line_(max_line),
        chunk_(std::make_unique<char[]>(io_chunk)) {}

  /// Starts the next line; false once stdout ended (or the reader was halted) before it.
  bool next_line() {
    setg(nullptr, nullptr, nullptr);
    ended_ = false;
    bytes_ = 0;
    blank_ = true;
    head_.clear();
    return fill();
  }
  /// Skips what the parser left of the current line.
  void finish_line() {
    while (!ended_ && !overflow_) {
      setg(egptr(), egptr(), egptr());
      if (traits_type::eq_int_type(underflow(), traits_type::eof()))
        break;
    }
  }
  /// The line ended with its '\n' (not with the end of stdout or its limit).
  bool complete() const { return ended_; }
  bool overflowed() const { return overflow_; }
  bool blank() const { return blank_; }
  const std::string& head() const { return head_; }

protected:
  int_type underflow() override {
    if (gptr() < egptr())
      return traits_type::to_int_type(*gptr());
    if (ended_ || overflow_ || !fill())
      return traits_type::eof();
    if (*pos_ == '\n') {
      ++pos_;
      ended_ = true;
      return traits_type::eof();
    }
    auto* nl = static_cast<char*>(std::memchr(pos_, '\n', static_cast<std::size_t>(end_ - pos_)));
    char* stop = nl ? nl : end_;
    auto n = static_cast<std::size_t>(stop - pos_);
    if (bytes_ + n > max_line_) {
      overflow_ = true; // a runaway child must not exhaust our memory
      return traits_type::eof();
    }
    bytes_ += n;
    keep_head(pos_, n);
    setg(pos_, pos_, stop);
    pos_ = stop;
    return traits_type::to_int_type(*gptr());
  }

private:
  // At least one unread byte in the chunk; false at the end of stdout or when halted.
  bool fill() {
    while (pos_ == end_) {
      if (done_)
        return false;
      pollfd fds[2] = {{fd_, POLLIN, 0}, {halt_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno != EINTR)
          done_ = true;
        continue;
      }
      if (fds[1].revents != 0) {
        done_ = true;
        continue;
      }
      ssize_t n = ::read(fd_, chunk_.get(), io_chunk);
      if (n < 0 && (errno == EINTR || errno == EAGAIN))
        continue;
      if (n <= 0) {
        done_ = true;
        continue;
      }
      pos_ = chunk_.get();
      end_ = pos_ + n;
    }
    return true;
  }

  void keep_head(const char* at, std::size_t n) {
    for (std::size_t i = 0; i < n && head_.size() < reply_head_bytes; ++i) {
      if (blank_ && std::isspace(static_cast<unsigned char>(at[i])))
        continue;
      blank_ = false;
      head_ += at[i];
    }
  }

  int fd_;
  int halt_fd_;
  std::size_t max_line_;
  std::unique_ptr<char[]> chunk_;
  char* pos_ = nullptr; // read from the descriptor, not yet handed to the parser
  char* end_ = nullptr;
  bool done_ = false;
  bool ended_ = false;
  bool overflow_ = false;
  std::size_t bytes_ = 0;
  bool blank_ = true;
  std::string head_;
};

// What the parser thread hands to the serving thread, in stdout's order.
struct reply_event {
  enum class kind { reply, overflow, end } type = kind::reply;
  parsed_stdout text;
};

// Parses the child's stdout line by line on a thread of its own.
class reply_reader {
public:
  reply_reader(unique_fd out, int halt_fd, std::size_t max_line)
      : out_(std::move(out)), lines_(out_.get(), halt_fd, max_line), thread_([this] { run(); }) {}
  void join() { thread_.join(); }
  /// Readable when events are waiting.
  int ready_fd() const { return ready_.read_end.get(); }
  /// The events parsed since the last call, in order.
  std::vector<reply_event> take() {
    ready_.drain();
    std::lock_guard<std::mutex> lock(mutex_);
    return std::exchange(events_, {});
  }

private:
  void push(reply_event e) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      events_.push_back(std::move(e));
    }
    ready_.raise();
  }

  void run() {
    while (lines_.next_line()) {
      reply_event e;
      {
        std::istream in{&lines_};
        try {
          e.text.document = persistence::parse_json_moving(in);
        } catch (const std::exception&) {
          e.text.document = nlohmann::json(nlohmann::json::value_t::discarded);
        }
      }
      lines_.finish_line();
      if (lines_.overflowed()) {
        push({reply_event::kind::overflow, {}});
        return;
      }
      if (!lines_.complete())
        break; // stdout ended mid-line: no reply
      e.text.blank = lines_.blank();
      e.text.head = lines_.head();
      push(std::move(e));
    }
    push({reply_event::kind::end, {}});
  }

  unique_fd out_;
  reply_lines lines_;
  signal_pipe ready_;
  std::mutex mutex_;
  std::vector<reply_event> events_;
  joining_thread thread_; // last: started once the members it uses exist
};

// Writes each request to the child's stdin as one JSON line, serialized straight into the pipe.
class request_writer {
public:
  request_writer(unique_fd in, int halt_fd, script_worker_control& control)
      : in_(std::move(in)), halt_fd_(halt_fd), control_(control), thread_([this] { run(); }) {}
  void join() { thread_.join(); }

private:
  void run() {
    sigpipe_guard no_sigpipe; // the mask is per thread: this one writes
    fd_output_buffer buffer{in_.get(), no_sigpipe, halt_fd_};
    std::ostream out{&buffer};
    while (auto request = control_.next_request()) {
      try {
        // dump(-1, ' ', false, replace) without the string: replace keeps one bad byte from
        // cutting the line (the store hands out valid UTF-8, so this is a safety net).
        nlohmann::detail::serializer<nlohmann::json> text(
            nlohmann::detail::output_adapter<char>(out), ' ',
            nlohmann::json::error_handler_t::replace);
        text.dump(*request, false, false, 0);
      } catch (...) {
        // Nothing may throw out of this thread; the newline still ends the request's line.
      }
      out.put('\n');
      out.flush();
      if (buffer.broken())
        break; // it closed its stdin or we halted: it takes no more requests
    }
    in_.reset();
  }

  unique_fd in_;
  int halt_fd_;
  script_worker_control& control_;
  joining_thread thread_; // last: started once the members it uses exist
};

} // namespace

script_result serve_script_worker(const script_spec& spec, script_worker_control& control,
                                  const script_worker_callbacks& callbacks,
                                  std::size_t max_line_bytes) {
  auto child = spawn_child(spec);
  if (child.pid == 0) {
    script_result r;
    r.error = std::move(child.error);
    return r;
  }
  pid_t pid = child.pid;
  child_guard guard{pid};
  unique_fd err_r = std::move(child.err_r);
  if (callbacks.started)
    callbacks.started(pid);

  std::string err_tail;       // the child's whole stderr, tail
  std::string request_stderr; // stderr since the current request was sent, tail
  std::string problem;        // why we ended the child, if we did
  auto keep_tail = [](std::string& s) {
    if (s.size() > 2 * stderr_tail_bytes) // trim in batches, not per read
      s.erase(0, s.size() - stderr_tail_bytes);
  };
  auto read_stderr = [&](const std::unique_ptr<char[]>& buffer) {
    ssize_t n = ::read(err_r.get(), buffer.get(), io_chunk);
    if (n > 0) {
      err_tail.append(buffer.get(), static_cast<std::size_t>(n));
      request_stderr.append(buffer.get(), static_cast<std::size_t>(n));
      keep_tail(err_tail);
      keep_tail(request_stderr);
      return true;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN))
      err_r.reset();
    return false;
  };

  {
    // Declared before the threads, so destroyed after them.
    std::unique_ptr<signal_pipe> halt;
    std::unique_ptr<request_writer> writer;
    std::unique_ptr<reply_reader> reader;
    try {
      halt = std::make_unique<signal_pipe>();
      int flags = ::fcntl(child.in_w.get(), F_GETFL);
      if (flags < 0 || ::fcntl(child.in_w.get(), F_SETFL, flags | O_NONBLOCK) < 0)
        throw std::system_error(errno, std::generic_category(), "making stdin non-blocking");
      flags = ::fcntl(err_r.get(), F_GETFL);
      if (flags < 0 || ::fcntl(err_r.get(), F_SETFL, flags | O_NONBLOCK) < 0)
        throw std::system_error(errno, std::generic_category(), "making stderr non-blocking");
      reader = std::make_unique<reply_reader>(std::move(child.out_r), halt->read_end.get(),
                                              max_line_bytes);
      writer =
          std::make_unique<request_writer>(std::move(child.in_w), halt->read_end.get(), control);
    } catch (const std::system_error& e) {
      problem = e.what();
    }

    auto buffer = std::make_unique<char[]>(io_chunk);
    std::uint64_t sent_seen = 0;
    bool serving = problem.empty();
    // Until stdout ends (the child exited) or we end the child: stderr is only drained on the
    // way, since a grandchild may hold it open forever.
    while (serving) {
      pollfd fds[3];
      nfds_t count = 0;
      auto watch = [&](int fd) {
        fds[count] = {fd, POLLIN, 0};
        return static_cast<int>(count++);
      };
      int wake_slot = watch(control.wake_fd());
      int ready_slot = watch(reader->ready_fd());
      int err_slot = err_r ? watch(err_r.get()) : -1;
      if (::poll(fds, count, -1) < 0) {
        if (errno != EINTR) {
          problem = "poll: " + errno_text(errno);
          serving = false;
        }
        continue;
      }
      if (fds[wake_slot].revents & POLLIN) {
        char drain[64];
        while (::read(control.wake_fd(), drain, sizeof drain) > 0) {
        }
        auto now = control.state();
        if (now.sent != sent_seen) {
          sent_seen = now.sent;
          request_stderr.clear(); // a new request: earlier stderr belongs to earlier ones
        }
        if (now.stop) {
          problem = "stopped";
          serving = false;
          continue;
        }
      }
      if (err_slot >= 0 && (fds[err_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)))
        read_stderr(buffer);
      if (fds[ready_slot].revents & POLLIN) {
        for (auto& e : reader->take()) {
          if (!serving)
            break;
          if (e.type == reply_event::kind::overflow) {
            problem = "reply line exceeds " + std::to_string(max_line_bytes >> 20) + " MiB";
            serving = false;
          } else if (e.type == reply_event::kind::end) {
            serving = false;
          } else {
            // What the child logged before its reply is in the pipe already: it goes with it.
            while (err_r && read_stderr(buffer)) {
            }
            if (request_stderr.size() > stderr_tail_bytes)
              request_stderr.erase(0, request_stderr.size() - stderr_tail_bytes);
            script_result judged;
            judged.pid = pid;
            judged.exit_status = 0; // judged like a child that exited 0 with the line on stdout
            judged.stderr_tail = std::move(request_stderr);
            request_stderr.clear();
            bool in_step = !e.text.document.is_discarded();
            judged = judge_script_exit(std::move(judged), std::move(e.text));
            if (callbacks.reply)
              callbacks.reply(std::move(judged), in_step);
          }
        }
      }
    }
    // Stdout ended or we end the child: anything left in its group is the orphaned work of a
    // worker nobody can talk to any more. Still unreaped: the group cannot have been recycled.
    kill_process_group(pid);
    control.close();
    if (halt)
      halt->raise();
    if (writer)
      writer->join();
    if (reader)
      reader->join();
  }

  script_result r;
  auto wait_problem = guard.reap_into(r, "");

  // Its last words on stderr: the group is dead, so EOF comes at once unless something escaped
  // the group; a second bounds that case.
  if (err_r) {
    auto buffer = std::make_unique<char[]>(io_chunk);
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (err_r) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      give_up - std::chrono::steady_clock::now())
                      .count();
      pollfd fd{err_r.get(), POLLIN, 0};
      int ready = left > 0 ? ::poll(&fd, 1, static_cast<int>(left)) : 0;
      if (ready < 0 && errno == EINTR)
        continue;
      if (ready <= 0)
        break;
      ssize_t n = ::read(err_r.get(), buffer.get(), io_chunk);
      if (n > 0) {
        err_tail.append(buffer.get(), static_cast<std::size_t>(n));
        keep_tail(err_tail);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        break;
      }
    }
    err_r.reset();
  }

  if (err_tail.size() > stderr_tail_bytes)
    err_tail.erase(0, err_tail.size() - stderr_tail_bytes);
  r.stderr_tail = std::move(err_tail);
  if (problem.empty())
    problem = !wait_problem.empty() ? wait_problem
              : r.term_signal != 0  ? "killed by signal " + std::to_string(r.term_signal)
                                    : "exit status " + std::to_string(r.exit_status);
  return judge_script_exit(std::move(r), "", problem);
}

} // namespace turing::actors
