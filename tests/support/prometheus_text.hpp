// A small, strict reader of the Prometheus text exposition format for the
// tests: it parses what /metrics serves back into samples, and says what is
// malformed instead of guessing.
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace turing::testing {

struct prom_sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct prom_family {
  std::string help;
  std::string type;
};

struct prom_text {
  std::vector<prom_sample> samples;
  std::map<std::string, prom_family> families; ///< by the name of its HELP/TYPE
  std::vector<std::string> errors;             ///< empty when the text parsed

  /// The value of `name` with exactly these labels; NaN when absent.
  double value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& s : samples)
      if (s.name == name && s.labels == labels)
        return s.value;
    return std::nan("");
  }
  /// Sum over every sample of `name` whose labels include `match`.
  double sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    double total = 0;
    for (const auto& s : samples) {
      if (s.name != name)
        continue;
      bool ok = true;
      for (const auto& [k, v] : match)
        ok = ok && s.labels.count(k) && s.labels.at(k) == v;
      if (ok)
        total += s.value;
    }
    return total;
  }
};

inline bool prom_name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

/// The family a sample belongs to: histograms' _bucket, _sum and _count
/// belong to the name their TYPE line gives.
inline std::string prom_family_of(const prom_text& t, const std::string& sample) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    std::string s{suffix};
    if (sample.size() > s.size() && sample.compare(sample.size() - s.size(), s.size(), s) == 0) {
      auto base = sample.substr(0, sample.size() - s.size());
      auto it = t.families.find(base);
      if (it != t.families.end() && it->second.type == "histogram")
        return base;
    }
  }
  return sample;
}

inline prom_text parse_prometheus_text(const std::string& text) {
  prom_text out;
  std::istringstream in{text};
  std::string line;
  int n = 0;
  auto fail = [&](const std::string& why) {
    out.errors.push_back("line " + std::to_string(n) + ": " + why + ": " + line);
  };
  while (std::getline(in, line)) {
    ++n;
    if (line.empty())
      continue;
    if (line[0] == '#') {
      std::istringstream words{line};
      std::string hash, kind, name;
      words >> hash >> kind >> name;
      if (kind != "HELP" && kind != "TYPE")
        continue; // a plain comment
      std::string rest;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ')
        rest.erase(0, 1);
      if (kind == "HELP") {
        if (out.families[name].help.size())
          fail("second HELP");
        out.families[name].help = rest;
      } else {
        if (rest != "counter" && rest != "gauge" && rest != "histogram" && rest != "summary" &&
            rest != "untyped")
          fail("unknown type");
        if (out.families[name].type.size())
          fail("second TYPE");
        out.families[name].type = rest;
      }
      continue;
    }
    prom_sample s;
    size_t i = 0;
    while (i < line.size() && prom_name_char(line[i], i == 0))
      s.name += line[i++];
    if (s.name.empty()) {
      fail("no metric name");
      continue;
    }
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string key;
        while (i < line.size() && prom_name_char(line[i], key.empty()))
          key += line[i++];
        if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          fail("bad label");
          break;
        }
        i += 2;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\' && i < line.size()) {
            char e = line[i++];
            value += e == 'n' ? '\n' : e; // \\ and \" stand for themselves
            if (e != 'n' && e != '\\' && e != '"')
              fail("bad escape in a label value");
          } else {
            value += c;
          }
        }
        if (!closed) {
          fail("unterminated label value");
          break;
        }
        if (s.labels.count(key))
          fail("label repeated");
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',')
          ++i;
      }
      if (i >= line.size() || line[i] != '}') {
        fail("unterminated labels");
        continue;
      }
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') {
      fail("no space before the value");
      continue;
    }
    auto value = line.substr(i + 1);
    if (value == "+Inf")
      s.value = INFINITY;
    else if (value == "-Inf")
      s.value = -INFINITY;
    else if (value == "NaN")
      s.value = std::nan("");
    else {
      char* end = nullptr;
      s.value = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0') {
        fail("bad value");
        continue;
      }
    }
    auto family = prom_family_of(out, s.name);
    if (!out.families.count(family) || out.families[family].type.empty())
      fail("sample before its TYPE line");
    out.samples.push_back(std::move(s));
  }
  return out;
}

} // namespace turing::testing
