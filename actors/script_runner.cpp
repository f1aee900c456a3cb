// Runs a script stage as a child process: posix_spawn into its own process group, one poll()
// loop feeding stdin and draining stdout/stderr, then the exit status and stdout checked against
// the {"outcome", "output"} contract. Every child-side problem becomes a one-line error.
#include "actors/script_runner.hpp"

#include "actors/detail/child_process.hpp"
#include "config/byte_size.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <istream>
#include <memory>
#include <optional>
#include <ostream>
#include <poll.h>
#include <string_view>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>

namespace turing::actors {

using namespace detail;

namespace {

constexpr std::size_t stdout_excerpt_bytes = 200;

/// What stdout_excerpt() reads of a stdout: past its leading white space, a
/// little more than the excerpt.
std::string stdout_excerpt_source(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  return std::string(s.substr(0, stdout_excerpt_bytes + 56));
}

std::string stdout_excerpt(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  if (s.size() <= stdout_excerpt_bytes)
    return one_line(s);
  std::size_t cut = stdout_excerpt_bytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80)
    --cut; // do not split a UTF-8 character
  return one_line(s.substr(0, cut)) + "...";
}

// Writes a JSON document to a child's stdin from a thread of its own, 64 KB
// at a time, so that a payload of megabytes is never also held as text.
// Blocking writes: a child that stops reading holds the thread until it
// exits or is killed at its deadline; EPIPE then ends the writing quietly.
class json_stdin_writer {
public:
  json_stdin_writer(unique_fd fd, const nlohmann::json& input)
      : fd_(std::move(fd)), input_(input), thread_([this] { run(); }) {}
  void join() { thread_.join(); }

private:
  void run() {
    sigpipe_guard no_sigpipe; // the mask is per thread: this one writes
    try {
      fd_output_buffer buffer{fd_.get(), no_sigpipe};
      std::ostream out{&buffer};
      out << input_; // the same text as input_.dump(); a broken pipe makes the rest no-ops
      out.flush();
    } catch (...) {
      // Text the serializer refuses (invalid UTF-8 cannot come from the store): the script
      // gets a cut input and fails on it; nothing here may throw out of its thread.
    }
    fd_.reset(); // EOF tells the script its input is complete
  }

  unique_fd fd_;
  const nlohmann::json& input_;
  joining_thread thread_; // last: started once the members it uses exist
};

// Parses a child's stdout as it arrives, from a thread of its own, so that
// an output of megabytes is never also held as text. Keeps what the stdout
// contract's errors quote (the start of the text, whether it was blank) and
// stops a child whose stdout passes its limit.
class json_stdout_reader {
public:
  json_stdout_reader(unique_fd fd, std::size_t max_bytes, pid_t group)
      : fd_(std::move(fd)), max_bytes_(max_bytes), group_(group), thread_([this] { run(); }) {}
  void join() { thread_.join(); }
  /// After join(): what the child wrote, parsed (discarded if not one JSON value).
  parsed_stdout take() { return std::move(parsed_); }
  bool overflowed() const { return overflow_; }

private:
  class fd_buffer : public std::streambuf {
  public:
    explicit fd_buffer(json_stdout_reader& owner) : owner_(owner) {}

  protected:
    int_type underflow() override {
      if (gptr() < egptr())
        return traits_type::to_int_type(*gptr());
      for (;;) {
        if (owner_.overflow_ || !owner_.fd_)
          return traits_type::eof();
        ssize_t n = ::read(owner_.fd_.get(), buffer_.get(), io_chunk);
        if (n < 0 && errno == EINTR)
          continue;
        if (n <= 0) {
          owner_.fd_.reset();
          return traits_type::eof();
        }
        owner_.seen(std::string_view(buffer_.get(), static_cast<std::size_t>(n)));
        if (owner_.overflow_)
          return traits_type::eof();
        setg(buffer_.get(), buffer_.get(), buffer_.get() + n);
        return traits_type::to_int_type(*gptr());
      }
    }

  private:
    json_stdout_reader& owner_;
    std::unique_ptr<char[]> buffer_ = std::make_unique<char[]>(io_chunk);
  };

  /// Counts, keeps the start for error excerpts, and kills a runaway child.
  void seen(std::string_view chunk) {
    total_ += chunk.size();
    if (total_ > max_bytes_) {
      overflow_ = true;
      kill_process_group(group_); // our memory stays bounded; it and what it started stop
      return;
    }
    for (char c : chunk) {
      if (parsed_.blank && std::isspace(static_cast<unsigned char>(c)))
        continue;
      parsed_.blank = false;
      if (parsed_.head.size() >= head_bytes)
        break;
      parsed_.head += c;
    }
  }

  void run() {
    fd_buffer buffer{*this};
    std::istream in{&buffer};
    parsed_.document = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    // A parse that stopped early leaves the rest unread: drain it, or the
    // child would block writing to a full pipe.
    while (buffer.sbumpc() != std::streambuf::traits_type::eof()) {
    }
    fd_.reset();
  }

  // More than stdout_excerpt() quotes, so that the excerpt is the same as
  // from the whole text.
  static constexpr std::size_t head_bytes = stdout_excerpt_bytes + 56;
  unique_fd fd_;
  std::size_t max_bytes_;
  pid_t group_;
  std::size_t total_ = 0;
  bool overflow_ = false;
  parsed_stdout parsed_;
  joining_thread thread_; // last: started once the members it uses exist
};

} // namespace

void kill_process_group(pid_t pgid) {
  // kill(0, …) would hit our own group and kill(-1, …) every process we may signal.
  if (pgid <= 1)
    return;
  ::kill(-pgid, SIGKILL); // ESRCH: the whole group is already gone
}

namespace {

/// run_script with its input as text (`text`) or as a document streamed to
/// stdin from a thread (`document`); exactly one of them is given.
script_result run_child(const script_spec& spec, const std::string* text,
                        const nlohmann::json* document,
                        const std::function<void(pid_t)>& on_started) {
  static const std::string no_text;
  const std::string& input = text ? *text : no_text;
  // Declared before the child's guard, so destroyed after it: the guard
  // kills the child first, which ends a blocked write with EPIPE.
  std::optional<json_stdin_writer> writer;
  std::optional<json_stdout_reader> reader;
  auto child = spawn_child(spec);
  if (child.pid == 0) {
    script_result r;
    r.error = std::move(child.error);
    return r;
  }
  pid_t pid = child.pid;
  child_guard guard{pid};
  unique_fd in_w = std::move(child.in_w);
  unique_fd out_r = std::move(child.out_r);
  unique_fd err_r = std::move(child.err_r);

  if (on_started)
    on_started(pid);
  if (document) {
    writer.emplace(std::move(in_w), *document);
    reader.emplace(std::move(out_r), spec.max_stdout, pid);
  }

  // --- I/O: feed stdin, drain stdout and stderr, all at once ----------------------------------
  // A child may write megabytes before it reads its input; serving the three pipes from one
  // poll() loop means neither side ever waits for the other.
  std::string out;
  std::string err_tail;
  bool stdout_overflow = false;
  std::string io_error;
  {
    sigpipe_guard no_sigpipe;
    std::size_t written = 0;
    if (input.empty()) {
      in_w.reset();
    } else {
      int flags = ::fcntl(in_w.get(), F_GETFL);
      if (flags < 0 || ::fcntl(in_w.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
        io_error = "cannot make stdin non-blocking: " + errno_text(errno);
        kill_process_group(pid);
        in_w.reset();
      }
    }
    auto buffer = std::make_unique<char[]>(io_chunk);

    while (in_w || out_r || err_r) {
      pollfd fds[3];
      nfds_t count = 0;
      auto watch = [&](const unique_fd& fd, short events) {
        if (!fd)
          return -1;
        fds[count] = {fd.get(), events, 0};
        return static_cast<int>(count++);
      };
      int in_slot = watch(in_w, POLLOUT);
      int out_slot = watch(out_r, POLLIN);
      int err_slot = watch(err_r, POLLIN);

      if (::poll(fds, count, -1) < 0) {
        if (errno == EINTR)
          continue;
        io_error = "poll: " + errno_text(errno);
        kill_process_group(pid);
        break;
      }

      // POLLERR on the write end means the child closed its stdin: the write below then fails
      // with EPIPE, which is how we learn it.
      if (in_slot >= 0 && (fds[in_slot].revents & (POLLOUT | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::write(in_w.get(), input.data() + written, input.size() - written);
        if (n >= 0) {
          written += static_cast<std::size_t>(n);
          if (written == input.size())
            in_w.reset(); // EOF tells the script its input is complete
        } else if (errno == EPIPE) {
          // The script stopped reading (or never started): not an error by itself; its exit
          // status and stdout decide.
          no_sigpipe.note_epipe();
          in_w.reset();
        } else if (errno != EINTR && errno != EAGAIN) {
          in_w.reset();
        }
      }

      if (out_slot >= 0 && (fds[out_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::read(out_r.get(), buffer.get(), io_chunk);
        if (n > 0) {
          if (out.size() + static_cast<std::size_t>(n) > spec.max_stdout) {
            // A runaway script must not exhaust our memory: stop it and everything it started.
            stdout_overflow = true;
            kill_process_group(pid);
            out_r.reset();
            in_w.reset();
          } else {
            out.append(buffer.get(), static_cast<std::size_t>(n));
          }
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          out_r.reset();
        }
      }

      if (err_slot >= 0 && (fds[err_slot].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL))) {
        ssize_t n = ::read(err_r.get(), buffer.get(), io_chunk);
        if (n > 0) {
          err_tail.append(buffer.get(), static_cast<std::size_t>(n));
          if (err_tail.size() > 2 * stderr_tail_bytes) // trim in batches, not per read
            err_tail.erase(0, err_tail.size() - stderr_tail_bytes);
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          err_r.reset();
        }
      }
    }
  }

  // --- exit status --------------------------------------------------------------------------
  // Reaping only now keeps the pid (= pgid) reserved while the pipes were open, so a deadline
  // kill issued before this point cannot reach a recycled process group.
  script_result r;
  auto wait_problem = guard.reap_into(r, std::move(err_tail));
  if (writer)
    writer->join(); // the child is gone: its stdin's read end is closed
  if (reader) {
    reader->join(); // stdout reached EOF (or its limit)
    stdout_overflow = reader->overflowed();
  }

  std::string transport_problem =
      !io_error.empty()       ? io_error
      : !wait_problem.empty() ? wait_problem
      : stdout_overflow       ? "stdout exceeds " + config::format_byte_size(spec.max_stdout)
                              : std::string();
  if (reader)
    return judge_script_exit(std::move(r), reader->take(), transport_problem);
  return judge_script_exit(std::move(r), out, transport_problem);
}

} // namespace

script_result run_script(const script_spec& spec, const std::string& input,
                         const std::function<void(pid_t)>& on_started) {
  return run_child(spec, &input, nullptr, on_started);
}

script_result run_script_streamed(const script_spec& spec, const nlohmann::json& input,
                                  const std::function<void(pid_t)>& on_started) {
  return run_child(spec, nullptr, &input, on_started);
}

script_result judge_script_exit(script_result r, const std::string& out,
                                const std::string& transport_problem) {
  parsed_stdout parsed;
  parsed.document = nlohmann::json::parse(out, nullptr, /*allow_exceptions=*/false);
  parsed.blank = std::all_of(out.begin(), out.end(),
                             [](char c) { return std::isspace(static_cast<unsigned char>(c)); });
  parsed.head = stdout_excerpt_source(out);
  return judge_script_exit(std::move(r), std::move(parsed), transport_problem);
}

script_result judge_script_exit(script_result r, parsed_stdout out,
                                const std::string& transport_problem) {
  auto fail = [&](std::string problem) {
    if (!r.stderr_tail.empty())
      problem += "; stderr: " + r.stderr_tail;
    r.ok = false;
    r.error = one_line(problem);
    return std::move(r);
  };
  if (!transport_problem.empty())
    return fail(transport_problem);
  if (r.term_signal != 0)
    return fail("killed by signal " + std::to_string(r.term_signal));
  if (r.exit_status != 0)
    return fail("exit status " + std::to_string(r.exit_status));

  // --- the stdout contract: exactly one JSON object with a string "outcome" -----------------
  auto& doc = out.document;
  if (doc.is_discarded()) {
    if (out.blank)
      return fail("stdout is empty");
    return fail("stdout is not JSON: " + stdout_excerpt(out.head));
  }
  if (!doc.is_object())
    return fail("stdout is not a JSON object: " + stdout_excerpt(out.head));
  auto outcome = doc.find("outcome");
  if (outcome == doc.end() || !outcome->is_string())
    return fail("stdout has no string field 'outcome'");
  if (outcome->get_ref<const std::string&>().empty())
    return fail("stdout field 'outcome' is empty");

  r.ok = true;
  r.outcome = outcome->get<std::string>();
  if (auto output = doc.find("output"); output != doc.end())
    r.output = std::move(*output);
  return r;
}

} // namespace turing::actors
