// A terminal taken over for a live view: alternate screen, hidden cursor, keys
// read without echo; everything restored when the session ends.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace turing::cli {

/// True when `fd` is a terminal (and TERM is not "dumb").
bool is_terminal(int fd);

/// The terminal's width in columns; 100 when it cannot tell.
int terminal_width(int fd);

class terminal_session {
public:
  terminal_session();
  ~terminal_session();
  terminal_session(const terminal_session&) = delete;
  terminal_session& operator=(const terminal_session&) = delete;

  /// Redraws the screen in place with `lines` (no flicker: each line is
  /// overwritten and cleared to its end, then the rest of the screen).
  void draw(const std::vector<std::string>& lines);

  /// Waits up to `timeout` for a key; true when the user asked to quit
  /// (q, Q, Ctrl-C as a key, Ctrl-D) or a SIGINT/SIGTERM arrived.
  bool wait_for_quit(std::chrono::milliseconds timeout);

private:
  bool restored_ = false;
  bool raw_ = false;
};

} // namespace turing::cli
