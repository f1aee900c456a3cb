// Child processes and config rendering for the end-to-end tests.
#include "tests/e2e/e2e_support.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace turing::testing {

namespace fs = std::filesystem;

child_process::child_process(std::vector<std::string> argv, fs::path log_file)
    : log_file_(std::move(log_file)) {
  if (argv.empty() || access(argv[0].c_str(), X_OK) != 0)
    throw std::runtime_error("cannot start " + (argv.empty() ? std::string{"nothing"} : argv[0]) +
                             ": " + std::strerror(errno));
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  auto parent = getpid();
  pid_ = fork();
  if (pid_ < 0)
    throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(errno));
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec. The child dies with the test:
    // a test that aborts (a failed CAF_REQUIRE) runs no destructor, and its
    // simulator or turing would otherwise outlive it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
      _exit(127); // the test died before prctl
    int out = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0)
      _exit(127);
    dup2(out, 1);
    dup2(out, 2);
    dup2(in, 0);
    execve(args[0], args.data(), environ);
    _exit(127);
  }
}

child_process::~child_process() {
  if (running()) {
    kill(pid_, SIGKILL);
    wait(std::chrono::seconds(10));
  }
}

bool child_process::running() {
  if (status_ != -1)
    return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return true;
}

void child_process::signal(int sig) {
  if (running())
    kill(pid_, sig);
}

int child_process::wait(std::chrono::milliseconds timeout) {
  eventually([this] { return !running(); }, timeout);
  return status_;
}

std::string child_process::output() const {
  std::ifstream in{log_file_};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

temp_dir::temp_dir() {
  char pattern[] = "/tmp/turing-e2e-XXXXXX";
  path = mkdtemp(pattern);
  fs::permissions(path, fs::perms(0755));
}

temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

model_simulator::model_simulator(const temp_dir& dir, std::vector<std::string> extra_args)
    : process(
          [&] {
            std::vector<std::string> argv{TURING_MODEL_SIM_EXE,
                                          "--port",
                                          "0",
                                          "--port-file",
                                          (dir.path / "sim.port").string(),
                                          "--log-level",
                                          "warn"};
            argv.insert(argv.end(), extra_args.begin(), extra_args.end());
            return argv;
          }(),
          dir.path / "sim.log") {
  auto port_file = dir.path / "sim.port";
  if (!eventually([&] { return fs::exists(port_file) && fs::file_size(port_file) > 0; },
                  std::chrono::seconds(20)))
    throw std::runtime_error("model simulator did not start: " + process.output());
  std::ifstream in{port_file};
  in >> port;
}

static std::string read_file(const fs::path& p) {
  std::ifstream in{p};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

static void replace_all(std::string& text, const std::string& from, const std::string& to) {
  if (text.find(from) == std::string::npos)
    throw std::runtime_error("config template has no '" + from + "'");
  for (size_t at = 0; (at = text.find(from, at)) != std::string::npos; at += to.size())
    text.replace(at, from.size(), to);
}

fs::path write_owl_config(const temp_dir& dir, const std::string& database_url,
                          const std::string& endpoint,
                          const std::vector<std::pair<std::string, std::string>>& replacements) {
  std::string owl = TURING_OWL_DIR;
  auto text = read_file(owl + "/owl.toml");
  replace_all(text, "data_dir = \"../../.turing/owl\"", "url = \"" + database_url + "\"");
  replace_all(text, "http://127.0.0.1:11435", endpoint);
  replace_all(text, "\"scripts/lucy.py\"", "\"" + owl + "/scripts/lucy.py\"");
  replace_all(text, "prompt_file = \"prompts/", "prompt_file = \"" + owl + "/prompts/");
  for (const auto& [from, to] : replacements)
    replace_all(text, from, to);
  auto path = dir.path / "owl.toml";
  std::ofstream{path} << text;
  return path;
}

fs::path write_skills(const temp_dir& dir, size_t n) {
  std::ifstream in{std::string(TURING_OWL_DIR) + "/data/skills.jsonl"};
  auto path = dir.path / "skills.jsonl";
  std::ofstream out{path};
  std::string line;
  for (size_t i = 0; i < n && std::getline(in, line); ++i)
    out << line << "\n";
  return path;
}

child_process start_turing(const temp_dir& dir, std::vector<std::string> args,
                           const std::string& log_name) {
  args.insert(args.begin(), TURING_EXE);
  return child_process{std::move(args), dir.path / log_name};
}

int run_turing(const temp_dir& dir, std::vector<std::string> args, std::string* output,
               std::chrono::milliseconds timeout) {
  static int counter = 0;
  auto log = "turing-" + std::to_string(++counter) + ".log";
  auto p = start_turing(dir, std::move(args), log);
  int status = p.wait(timeout);
  if (output)
    *output = p.output();
  return status;
}

bool turing_ok(const temp_dir& dir, std::vector<std::string> args, std::string& output) {
  auto rc = run_turing(dir, std::move(args), &output);
  if (rc != 0)
    std::cerr << "turing exited " << rc << ":\n" << output << "\n";
  return rc == 0;
}

std::filesystem::path write_file(const temp_dir& dir, const std::string& name,
                                 const std::string& text) {
  auto path = dir.path / name;
  std::ofstream(path) << text;
  return path;
}

} // namespace turing::testing
