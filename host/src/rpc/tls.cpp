#include "rpc/tls.hpp"

#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace gameverse::rpc {

namespace {

std::string read_pem(const std::filesystem::path& file, const char* what, bool key_file = false) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw TlsFileError(
        file, "TLS: cannot read the " + std::string(what) + " " + file.string() + ": " + std::strerror(errno),
        key_file);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
using Certificate = std::unique_ptr<X509, X509Deleter>;
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;

Bio bio_of(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate of a PEM file, checked to be valid now.
Certificate first_certificate(const std::string& pem, const std::filesystem::path& file, const char* what) {
  Bio bio = bio_of(pem);
  Certificate cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    throw TlsFileError(file, "TLS: the " + std::string(what) + " " + file.string() +
                                 " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    throw TlsFileError(file, "TLS: the certificate in " + file.string() + " has expired");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    throw TlsFileError(file, "TLS: the certificate in " + file.string() + " is not valid yet");
  }
  return cert;
}

}  // namespace

KeyPair read_key_pair(const std::filesystem::path& cert_file, const std::filesystem::path& key_file) {
  KeyPair pair{read_pem(cert_file, "certificate"), read_pem(key_file, "private key", true)};
  Certificate cert = first_certificate(pair.cert_pem, cert_file, "certificate file");
  Bio key_bio = bio_of(pair.key_pem);
  Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    throw TlsFileError(
        key_file, "TLS: the key file " + key_file.string() + " holds no unencrypted PEM private key", true);
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    throw TlsFileError(key_file,
                       "TLS: the key in " + key_file.string() + " does not belong to the certificate in " +
                           cert_file.string(),
                       true);
  }
  return pair;
}

std::string read_ca_file(const std::filesystem::path& ca_file) {
  std::string pem = read_pem(ca_file, "CA file");
  first_certificate(pem, ca_file, "CA file");
  return pem;
}

std::string cluster_peer_refusal(const grpc::AuthContext* auth, const ClusterPeerPolicy& policy) {
  if (!policy.require_certificate) return {};
  auto values = [auth](const char* name) {
    std::vector<std::string> out;
    if (auth != nullptr)
      for (const auto& value : auth->FindPropertyValues(name)) out.emplace_back(value.data(), value.size());
    return out;
  };
  const auto security = values(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
  if (std::find(security.begin(), security.end(), GRPC_SSL_TRANSPORT_SECURITY_TYPE) == security.end()) {
    return "the connection is not TLS";
  }
  // gRPC verified the certificate against [server.tls] client_ca_file in the handshake; a
  // connection that presented none has no peer identity.
  if (!auth->IsPeerAuthenticated()) {
    return "the connection presented no client certificate signed by a CA in [server.tls] client_ca_file";
  }
  if (policy.names.empty()) return {};
  std::vector<std::string> shown = values(GRPC_X509_SAN_PROPERTY_NAME);
  for (auto& name : values(GRPC_X509_CN_PROPERTY_NAME)) shown.push_back(std::move(name));
  for (const auto& name : shown) {
    if (std::find(policy.names.begin(), policy.names.end(), name) != policy.names.end()) return {};
  }
  std::string list;
  for (const auto& name : shown) list += (list.empty() ? "" : ", ") + name;
  return "the client certificate names " + (list.empty() ? std::string("nothing") : list) +
         ", none of them in [cluster] peer_names";
}

std::shared_ptr<grpc::ServerCredentials> server_credentials(const config::TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  auto [cert_pem, key_pem] = read_key_pair(tls.cert_file, tls.key_file);
  grpc::SslServerCredentialsOptions options(tls.require_client_cert
                                                ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  if (!tls.client_ca_file.empty()) {
    options.pem_root_certs = read_pem(tls.client_ca_file, "client CA file");
    first_certificate(options.pem_root_certs, tls.client_ca_file, "client CA file");
    if (!tls.require_client_cert) {
      options.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    }
  }
  options.pem_key_cert_pairs.push_back({key_pem, cert_pem});
  return grpc::SslServerCredentials(options);
}

}  // namespace gameverse::rpc
