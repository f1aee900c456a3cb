// Node identity over TLS: CAF's openssl module verifies a peer's chain but never its name, so a
// node probes a peer's address itself and compares the certificate's CN with the name the
// database gives that address before trusting it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace turing::cluster {

/// PEM files, as CAF's openssl_certificate, openssl_key and openssl_cafile take them.
struct tls_files {
  std::string certificate;
  std::string key;
  std::string ca;
};

/// The subject CN of the first certificate in `pem_path`. Throws std::runtime_error naming the
/// file and the problem: missing, unreadable, not a PEM certificate, no CN (or several).
std::string certificate_common_name(const std::string& pem_path);

/// Throws std::runtime_error with a message naming the file and the problem when a file is
/// missing or unreadable, the key does not match the certificate, the certificate has no CN, or
/// the CA does not vouch for the certificate as a TLS server and client (expired, other CA, ...).
void check_tls_files(const tls_files& files);

/// What a probe found at an address.
struct peer_identity {
  enum class outcome {
    verified,    // chain verified against our CA; common_name is the peer's CN
    refused,     // TCP connection refused: nobody listens there (the process is gone)
    unreachable, // any other connect error (no route, bad address, ...)
    timeout,     // connect or TLS handshake unfinished when the time was up
    rejected,    // TLS handshake or chain verification failed, or the certificate has no CN
  };
  outcome result = outcome::unreachable;
  std::string common_name; // set when verified
  std::string error;       // why, when not verified
};

/// "verified", "refused", ... for logs.
const char* to_string(peer_identity::outcome result);

/// Opens a TLS connection (1.2 or later) to host:port with `tls`'s certificate and key, verifies
/// the peer's chain against `tls.ca`, reads the peer certificate's CN and closes. The whole probe
/// ends within `timeout` (name resolution aside: give numeric hosts). `verified` says who the
/// peer is, not that it accepts us (under TLS 1.3 a server checks our certificate after the
/// client's handshake has ended). Thread-safe. Throws std::runtime_error when our own files
/// cannot be loaded: that is our configuration, not the peer's fault (see check_tls_files).
peer_identity probe_peer_identity(const std::string& host, uint16_t port, const tls_files& tls,
                                  std::chrono::milliseconds timeout);

} // namespace turing::cluster
