// A stand-in for libFuzzer in the normal g++ build: feeds every file of the
// directories (or files) named on the command line to LLVMFuzzerTestOneInput
// once, so CI replays each target's seed corpus and its regression inputs.
#include "tests/fuzz/fuzz_check.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

namespace fs = std::filesystem;

namespace {

/// Regular files under `dir`, sorted so runs are repeatable; dot files
/// (.gitkeep) are not inputs.
std::vector<fs::path> inputs_in(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file() && entry.path().filename().string().rfind('.', 0) != 0)
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

bool run_one(const fs::path& file) {
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    std::cerr << file.string() << ": cannot read\n";
    return false;
  }
  std::vector<char> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  // A copy the exact size of the input, as libFuzzer passes it, so that ASan
  // builds catch a read past its end.
  std::vector<std::uint8_t> data(bytes.begin(), bytes.end());
  LLVMFuzzerTestOneInput(data.empty() ? nullptr : data.data(), data.size());
  return true;
}

} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " CORPUS_DIR [REGRESSIONS_DIR|FILE]...\n";
    return 2;
  }
  std::size_t total = 0;
  for (int i = 1; i < argc; ++i) {
    fs::path where = argv[i];
    std::error_code ec;
    if (!fs::exists(where, ec)) {
      std::cerr << where.string() << ": does not exist\n";
      return 2;
    }
    auto files = fs::is_directory(where) ? inputs_in(where) : std::vector<fs::path>{where};
    for (const auto& file : files) {
      if (!run_one(file))
        return 2;
      ++total;
    }
    std::cout << files.size() << " inputs from " << where.string() << "\n";
  }
  // A smoke test that ran nothing would pass without testing anything.
  if (total == 0) {
    std::cerr << "no inputs: the seed corpus is empty\n";
    return 2;
  }
  std::cout << total << " inputs ran without a finding\n";
  return 0;
}
