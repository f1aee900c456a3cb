// Node identity over TLS: the checks of a node's own certificate files, and the probe that reads
// a peer's certificate CN, which CAF's openssl module verifies but never hands out.
#include "cluster/tls_identity.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace turing::cluster {

namespace {

using clock_type = std::chrono::steady_clock;

struct file_closer {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
struct x509_free {
  void operator()(X509* x) const { X509_free(x); }
};
struct pkey_free {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct store_free {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct store_ctx_free {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
struct x509_stack_free {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct ssl_ctx_free {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
struct ssl_free {
  void operator()(SSL* s) const { SSL_free(s); }
};
struct addrinfo_free {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

using file_ptr = std::unique_ptr<std::FILE, file_closer>;
using x509_ptr = std::unique_ptr<X509, x509_free>;

// Drains OpenSSL's error queue, which is per thread and which SSL_get_error() reads: what a failed
// call leaves there must not pass for the next call's reason. The first entry is the cause, the
// later ones the callers that passed it on ("system lib").
std::string openssl_error(const char* fallback) {
  std::string text;
  while (auto code = ERR_get_error()) {
    if (!text.empty())
      continue;
    const char* reason = ERR_reason_error_string(code);
    char buf[256];
    if (reason == nullptr)
      ERR_error_string_n(code, buf, sizeof buf);
    text = reason != nullptr ? reason : buf;
  }
  return text.empty() ? fallback : text;
}

// Without a callback OpenSSL asks for a passphrase on the terminal, which would hang a daemon:
// a key with a passphrase fails to load instead.
int no_passphrase(char*, int, int, void*) {
  return 0;
}

file_ptr open_file(const std::string& path, const char* what) {
  if (path.empty())
    throw std::runtime_error(std::string{"no "} + what + " file given");
  file_ptr f{std::fopen(path.c_str(), "r")};
  if (!f) {
    int err = errno;
    throw std::runtime_error(std::string{what} + " '" + path + "': " +
                             (err == ENOENT ? std::string{"no such file"} : std::strerror(err)));
  }
  return f;
}

// The one CN of `cert`; empty with `problem` set otherwise. Several CNs are refused: which of them
// names the node would be a guess.
std::string common_name_of(X509* cert, std::string& problem) {
  X509_NAME* subject = X509_get_subject_name(cert);
  int index = subject != nullptr ? X509_NAME_get_index_by_NID(subject, NID_commonName, -1) : -1;
  if (index < 0) {
    problem = "the certificate has no CN";
    return {};
  }
  if (X509_NAME_get_index_by_NID(subject, NID_commonName, index) >= 0) {
    problem = "the certificate has more than one CN";
    return {};
  }
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  int len = data != nullptr ? ASN1_STRING_to_UTF8(&utf8, data) : -1;
  if (len < 0) {
    ERR_clear_error();
    problem = "the certificate's CN is not a valid string";
    return {};
  }
  std::string cn{reinterpret_cast<const char*>(utf8), static_cast<size_t>(len)};
  OPENSSL_free(utf8);
  // "node-a\0.evil" must not compare equal to anything by way of C strings.
  if (cn.empty() || cn.find('\0') != std::string::npos) {
    problem = "the certificate's CN is empty or holds a NUL byte";
    return {};
  }
  return cn;
}

// The first certificate of a PEM file, and the ones after it (intermediates) into `rest`.
x509_ptr read_certificate(const std::string& path, const char* what,
                          STACK_OF(X509) * rest = nullptr) {
  auto f = open_file(path, what);
  x509_ptr cert{PEM_read_X509(f.get(), nullptr, no_passphrase, nullptr)};
  if (!cert) {
    ERR_clear_error();
    throw std::runtime_error(std::string{what} + " '" + path + "': not a PEM certificate");
  }
  while (rest != nullptr) {
    x509_ptr next{PEM_read_X509(f.get(), nullptr, no_passphrase, nullptr)};
    if (!next || sk_X509_push(rest, next.get()) == 0)
      break;
    next.release();
  }
  ERR_clear_error(); // the end of the file reads as an error
  return cert;
}

// Blocks SIGPIPE for this thread while OpenSSL writes to the socket (it uses write(), not send()
// with MSG_NOSIGNAL), then discards the SIGPIPE a write to a closed peer raised: the signal's
// disposition belongs to the application, which may well leave it fatal.
class sigpipe_guard {
public:
  sigpipe_guard() {
    sigemptyset(&sigpipe_);
    sigaddset(&sigpipe_, SIGPIPE);
    sigset_t pending;
    sigemptyset(&pending);
    // A SIGPIPE already pending (hence already blocked) belongs to someone else: leave it.
    was_pending_ = ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    ::pthread_sigmask(SIG_BLOCK, &sigpipe_, &old_mask_);
  }
  sigpipe_guard(const sigpipe_guard&) = delete;
  sigpipe_guard& operator=(const sigpipe_guard&) = delete;
  ~sigpipe_guard() {
    sigset_t pending;
    sigemptyset(&pending);
    if (!was_pending_ && ::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) {
      const timespec zero{0, 0};
      while (::sigtimedwait(&sigpipe_, nullptr, &zero) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr);
  }

private:
  sigset_t sigpipe_;
  sigset_t old_mask_;
  bool was_pending_ = false;
};

struct socket_closer {
  int fd = -1;
  socket_closer() = default;
  socket_closer(const socket_closer&) = delete;
  socket_closer& operator=(const socket_closer&) = delete;
  ~socket_closer() { reset(-1); }
  void reset(int next) {
    if (fd >= 0)
      ::close(fd);
    fd = next;
  }
};

// Milliseconds left for poll(), rounded up so that it never wakes just before the deadline and
// spins; 0 once the deadline has passed.
int remaining_ms(clock_type::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock_type::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

// Waits for `events` on fd until the deadline: true when ready (or in error: the caller's next
// call tells which), false when the time is up.
bool wait_for(int fd, short events, clock_type::time_point deadline) {
  for (;;) {
    int ms = remaining_ms(deadline);
    if (ms == 0)
      return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, ms);
    if (n > 0)
      return true;
    if (n < 0 && errno != EINTR)
      return true;
  }
}

peer_identity failed(peer_identity::outcome result, std::string error) {
  peer_identity r;
  r.result = result;
  r.error = std::move(error);
  return r;
}

x509_ptr peer_certificate(SSL* ssl) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  return x509_ptr{SSL_get1_peer_certificate(ssl)};
#else
  return x509_ptr{SSL_get_peer_certificate(ssl)};
#endif
}

// Text the peer chose, made safe for a log line.
std::string printable(std::string text) {
  for (char& c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = '?';
  return text;
}

// What a certificate that failed verification claims, for the operator who has to find out which
// CA issued it: " (unverified: CN 'node-a', issuer '/CN=turing node CA 1f2e3d4c')". OpenSSL keeps
// no peer certificate after a failed verification, so the verify callback records it on the way.
std::string describe_unverified(X509* cert) {
  std::string problem;
  std::string cn = common_name_of(cert, problem);
  char issuer[256] = "";
  X509_NAME_oneline(X509_get_issuer_name(cert), issuer, sizeof issuer);
  return " (unverified: CN '" + printable(cn) + "', issuer '" + printable(issuer) + "')";
}

int record_unverified(int preverify_ok, X509_STORE_CTX* store) {
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* note = ssl != nullptr ? static_cast<std::string*>(SSL_get_app_data(ssl)) : nullptr;
  if (preverify_ok != 1 && note != nullptr && note->empty()) {
    if (X509* leaf = X509_STORE_CTX_get0_cert(store))
      *note = describe_unverified(leaf);
  }
  return preverify_ok; // the decision stays OpenSSL's
}

std::unique_ptr<SSL_CTX, ssl_ctx_free> client_context(const tls_files& tls) {
  std::unique_ptr<SSL_CTX, ssl_ctx_free> ctx{SSL_CTX_new(TLS_client_method())};
  auto fail = [](const std::string& what) {
    throw std::runtime_error("TLS probe: " + what + ": " + openssl_error("unknown error"));
  };
  if (!ctx)
    fail("cannot create a TLS context");
  SSL_CTX_set_default_passwd_cb(ctx.get(), no_passphrase);
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1)
    fail("cannot require TLS 1.2");
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.certificate.c_str()) != 1)
    fail("cannot load certificate '" + tls.certificate + "'");
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key.c_str(), SSL_FILETYPE_PEM) != 1)
    fail("cannot load key '" + tls.key + "' for certificate '" + tls.certificate + "'");
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    fail("key '" + tls.key + "' does not match certificate '" + tls.certificate + "'");
  if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca.c_str(), nullptr) != 1)
    fail("cannot load CA '" + tls.ca + "'");
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, record_unverified);
  // One connection and done: no session to resume later.
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  return ctx;
}

// A TCP connection to one of host's addresses, or why there is none. Every address refusing is
// `refused` (the process is gone); any other failure makes it `unreachable` or `timeout`.
int connect_before(const std::string& host, uint16_t port, clock_type::time_point deadline,
                   peer_identity& failure) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    failure = failed(peer_identity::outcome::unreachable,
                     "cannot resolve '" + host + "': " + ::gai_strerror(rc));
    return -1;
  }
  std::unique_ptr<addrinfo, addrinfo_free> addresses{found};
  bool all_refused = true;
  std::string last_error = "no address";
  for (addrinfo* ai = addresses.get(); ai != nullptr; ai = ai->ai_next) {
    if (remaining_ms(deadline) == 0) {
      failure = failed(peer_identity::outcome::timeout, "connect did not finish in time");
      return -1;
    }
    socket_closer sock;
    sock.reset(
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (sock.fd < 0) {
      all_refused = false;
      last_error = std::string{"socket: "} + std::strerror(errno);
      continue;
    }
    int err = 0;
    if (::connect(sock.fd, ai->ai_addr, ai->ai_addrlen) < 0) {
      err = errno;
      // After EINTR the connect goes on in the background, as after EINPROGRESS.
      if (err == EINPROGRESS || err == EINTR) {
        if (!wait_for(sock.fd, POLLOUT, deadline)) {
          failure = failed(peer_identity::outcome::timeout, "connect did not finish in time");
          return -1;
        }
        socklen_t len = sizeof err;
        if (::getsockopt(sock.fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
          err = errno;
      }
    }
    if (err == 0) {
      int fd = sock.fd;
      sock.fd = -1;
      return fd;
    }
    all_refused = all_refused && err == ECONNREFUSED;
    last_error = std::string{"connect: "} + std::strerror(err);
  }
  failure =
      failed(all_refused ? peer_identity::outcome::refused : peer_identity::outcome::unreachable,
             last_error);
  return -1;
}

// Why a handshake failed, from the verification result when that was it: "certificate verify
// failed" alone does not tell an expired certificate from another CA's.
std::string handshake_error(SSL* ssl, int ssl_error, int sys_errno) {
  long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) {
    ERR_clear_error();
    auto* note = static_cast<std::string*>(SSL_get_app_data(ssl));
    return std::string{"certificate verify failed: "} + X509_verify_cert_error_string(verify) +
           (note != nullptr ? *note : std::string{});
  }
  if (ssl_error == SSL_ERROR_SYSCALL) {
    std::string detail = openssl_error("");
    if (!detail.empty())
      return "TLS handshake failed: " + detail;
    return sys_errno != 0 ? std::string{"TLS handshake failed: "} + std::strerror(sys_errno)
                          : "TLS handshake failed: the peer closed the connection";
  }
  return "TLS handshake failed: " + openssl_error("unknown error");
}

} // namespace

const char* to_string(peer_identity::outcome result) {
  switch (result) {
  case peer_identity::outcome::verified:
    return "verified";
  case peer_identity::outcome::refused:
    return "refused";
  case peer_identity::outcome::unreachable:
    return "unreachable";
  case peer_identity::outcome::timeout:
    return "timeout";
  case peer_identity::outcome::rejected:
    return "rejected";
  }
  return "unknown";
}

std::string certificate_common_name(const std::string& pem_path) {
  auto cert = read_certificate(pem_path, "certificate");
  std::string problem;
  auto cn = common_name_of(cert.get(), problem);
  if (cn.empty())
    throw std::runtime_error("certificate '" + pem_path + "': " + problem);
  return cn;
}

void check_tls_files(const tls_files& files) {
  // The certificate file may carry intermediates after the node's own certificate, as
  // SSL_CTX_use_certificate_chain_file (CAF's loader) allows.
  std::unique_ptr<STACK_OF(X509), x509_stack_free> chain{sk_X509_new_null()};
  if (!chain)
    throw std::runtime_error("out of memory");
  auto cert = read_certificate(files.certificate, "certificate", chain.get());
  {
    auto f = open_file(files.key, "key");
    std::unique_ptr<EVP_PKEY, pkey_free> key{
        PEM_read_PrivateKey(f.get(), nullptr, no_passphrase, nullptr)};
    if (!key) {
      ERR_clear_error();
      throw std::runtime_error("key '" + files.key +
                               "': not a PEM private key (or one with a passphrase, which turing "
                               "does not support)");
    }
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      ERR_clear_error();
      throw std::runtime_error("key '" + files.key + "' does not match certificate '" +
                               files.certificate + "'");
    }
  }
  std::string problem;
  if (common_name_of(cert.get(), problem).empty())
    throw std::runtime_error("certificate '" + files.certificate + "': " + problem +
                             ", and peers identify a node by it");

  open_file(files.ca, "CA"); // "no such file" rather than OpenSSL's "system lib"
  std::unique_ptr<X509_STORE, store_free> store{X509_STORE_new()};
  if (!store || X509_STORE_load_file(store.get(), files.ca.c_str()) != 1) {
    ERR_clear_error();
    throw std::runtime_error("CA '" + files.ca + "': no PEM certificate in it");
  }
  // A node is a TLS server to the peers that connect to it and a client to those it connects
  // to, and OpenSSL checks the extended key usage for each role.
  for (const char* role : {"ssl_server", "ssl_client"}) {
    std::unique_ptr<X509_STORE_CTX, store_ctx_free> ctx{X509_STORE_CTX_new()};
    if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), chain.get()) != 1 ||
        X509_STORE_CTX_set_default(ctx.get(), role) != 1) {
      throw std::runtime_error("cannot verify certificate '" + files.certificate +
                               "': " + openssl_error("out of memory"));
    }
    if (X509_verify_cert(ctx.get()) != 1) {
      int err = X509_STORE_CTX_get_error(ctx.get());
      ERR_clear_error();
      throw std::runtime_error("certificate '" + files.certificate + "' is not accepted by CA '" +
                               files.ca + "' for a TLS " +
                               (std::strcmp(role, "ssl_server") == 0 ? "server" : "client") + ": " +
                               X509_verify_cert_error_string(err));
    }
  }
}

peer_identity probe_peer_identity(const std::string& host, uint16_t port, const tls_files& tls,
                                  std::chrono::milliseconds timeout) {
  const auto deadline = clock_type::now() + timeout;
  ERR_clear_error();
  auto ctx = client_context(tls);

  peer_identity result;
  socket_closer sock;
  sock.reset(connect_before(host, port, deadline, result));
  if (sock.fd < 0)
    return result;

  std::string unverified; // filled by record_unverified, outlives the SSL that points to it
  std::unique_ptr<SSL, ssl_free> ssl{SSL_new(ctx.get())};
  if (!ssl || SSL_set_fd(ssl.get(), sock.fd) != 1)
    throw std::runtime_error("TLS probe: cannot create a connection: " +
                             openssl_error("out of memory"));
  SSL_set_app_data(ssl.get(), &unverified);
  sigpipe_guard no_sigpipe;
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(ssl.get());
    if (rc == 1)
      break;
    int sys_errno = errno;
    int err = SSL_get_error(ssl.get(), rc);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      if (!wait_for(sock.fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
        return failed(peer_identity::outcome::timeout, "TLS handshake did not finish in time");
      continue;
    }
    // OpenSSL has already sent the peer an alert if there was one to send; no close_notify after
    // a failed handshake.
    return failed(peer_identity::outcome::rejected, handshake_error(ssl.get(), err, sys_errno));
  }

  if (long verify = SSL_get_verify_result(ssl.get()); verify != X509_V_OK) {
    result = failed(peer_identity::outcome::rejected, std::string{"certificate verify failed: "} +
                                                          X509_verify_cert_error_string(verify));
  } else {
    auto peer = peer_certificate(ssl.get());
    std::string problem;
    std::string cn = peer ? common_name_of(peer.get(), problem) : std::string{};
    if (!peer)
      result = failed(peer_identity::outcome::rejected, "the peer sent no certificate");
    else if (cn.empty())
      result = failed(peer_identity::outcome::rejected, "peer certificate: " + problem);
    else {
      result = peer_identity{};
      result.result = peer_identity::outcome::verified;
      result.common_name = std::move(cn);
    }
  }

  // A clean end: close_notify, then our FIN, then the peer's data (TLS 1.3 session tickets, a CAF
  // node's BASP handshake) is read until it closes too, because closing a socket with unread data
  // resets the connection instead. Bounded by the deadline and a short linger: the answer is
  // known, a peer that keeps the connection open only gets a reset.
  ERR_clear_error();
  SSL_shutdown(ssl.get());
  ERR_clear_error();
  ::shutdown(sock.fd, SHUT_WR);
  const auto linger_end = std::min(deadline, clock_type::now() + std::chrono::milliseconds{100});
  char discard[4096];
  while (wait_for(sock.fd, POLLIN, linger_end)) {
    ssize_t n = ::recv(sock.fd, discard, sizeof discard, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
      break;
  }
  return result;
}

} // namespace turing::cluster
