// A terminal taken over for a live view: alternate screen, hidden cursor, keys
// read without echo; everything restored when the session ends.
#include "cli/terminal.hpp"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

namespace turing::cli {

namespace {

std::atomic<bool> quit_signal{false};
termios saved_mode;

extern "C" void on_quit_signal(int) {
  quit_signal = true;
}

void write_all(const std::string& s) {
  const char* p = s.data();
  auto left = s.size();
  while (left > 0) {
    auto n = ::write(STDOUT_FILENO, p, left);
    if (n <= 0)
      return; // the terminal went away: nothing left to draw on
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

} // namespace

bool is_terminal(int fd) {
  const char* term = std::getenv("TERM");
  return ::isatty(fd) == 1 && !(term && std::strcmp(term, "dumb") == 0);
}

int terminal_width(int fd) {
  winsize ws{};
  if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
    return ws.ws_col;
  return 100;
}

terminal_session::terminal_session() {
  struct sigaction sa {};
  sa.sa_handler = on_quit_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  if (::isatty(STDIN_FILENO) == 1 && ::tcgetattr(STDIN_FILENO, &saved_mode) == 0) {
    auto raw = saved_mode;
    // No echo, keys one by one; ISIG stays, so Ctrl-C still arrives as SIGINT.
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    raw_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  write_all("\x1b[?1049h\x1b[?25l"); // alternate screen, cursor hidden
}

terminal_session::~terminal_session() {
  write_all("\x1b[?25h\x1b[?1049l"); // cursor back, main screen back
  if (raw_)
    ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_mode);
}

void terminal_session::draw(const std::vector<std::string>& lines) {
  std::string frame = "\x1b[H";
  for (const auto& line : lines)
    frame += line + "\x1b[K\r\n";
  frame += "\x1b[J";
  write_all(frame);
}

bool terminal_session::wait_for_quit(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!quit_signal) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    if (!raw_) {
      // No keyboard to read: wait in short steps so a signal is seen soon.
      ::usleep(static_cast<useconds_t>(std::min<int64_t>(left.count(), 100) * 1000));
      continue;
    }
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    auto n = ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 100)));
    if (n > 0) {
      char c = 0;
      auto got = ::read(STDIN_FILENO, &c, 1);
      if (got == 0)
        return true; // end of input
      if (got == 1 && (c == 'q' || c == 'Q' || c == 3 || c == 4))
        return true;
    }
  }
  return true;
}

} // namespace turing::cli
