// The one port's TLS: credentials from [server.tls], with the PEM files checked first so that a
// wrong file is named instead of gRPC's generic failure to start.
#pragma once

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/server_credentials.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"

namespace gameverse::rpc {

// What is wrong with a PEM file, which file it is, and whether it is the private key's.
class TlsFileError : public std::runtime_error {
 public:
  TlsFileError(std::filesystem::path file, const std::string& what, bool key_file = false)
      : std::runtime_error(what), file_(std::move(file)), key_file_(key_file) {}
  const std::filesystem::path& file() const { return file_; }
  bool key_file() const { return key_file_; }

 private:
  std::filesystem::path file_;
  bool key_file_;
};

struct KeyPair {
  std::string cert_pem;  // the certificate (chain)
  std::string key_pem;   // its private key
};

// A certificate and its key, read and checked: throws TlsFileError naming the file when one
// is unreadable, holds no PEM certificate or unencrypted key, the key does not belong to the
// certificate, or the certificate has expired or is not valid yet.
KeyPair read_key_pair(const std::filesystem::path& cert_file, const std::filesystem::path& key_file);

// A PEM file of CA certificates, checked to hold one valid now; throws naming the file.
std::string read_ca_file(const std::filesystem::path& ca_file);

// [cluster] require_peer_certificate and peer_names: what a forwarded call's connection must show.
struct ClusterPeerPolicy {
  bool require_certificate = false;  // a client certificate verified against [server.tls] client_ca_file
  // Lower-case DNS names and IP addresses, one of which the certificate must match as a server's
  // would (X509_check_host without wildcards: its DNS subjectAltNames, its CN only when it has
  // none; X509_check_ip_asc: its IP subjectAltNames). Empty: no certificate is accepted.
  std::vector<std::string> names;
};

// Empty when a call whose connection has `auth` may forward a caller under `policy`; else why not,
// for the caller to read.
std::string cluster_peer_refusal(const grpc::AuthContext* auth, const ClusterPeerPolicy& policy);

// Insecure credentials when TLS is off. Throws TlsFileError naming the file and what is
// wrong with it: unreadable, no PEM certificate or key, a key that does not belong to the
// certificate, a certificate that has expired or is not valid yet.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const config::TlsConfig& tls);

}  // namespace gameverse::rpc
