#include "rpc/tls.hpp"

#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace gameverse::rpc {

namespace {

std::string read_pem(const std::filesystem::path& file, const char* what) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    throw std::runtime_error("TLS: cannot read the " + std::string(what) + " " + file.string() + ": " +
                             std::strerror(errno));
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
    throw std::runtime_error("TLS: the " + std::string(what) + " " + file.string() +
                             " holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    throw std::runtime_error("TLS: the certificate in " + file.string() + " has expired");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    throw std::runtime_error("TLS: the certificate in " + file.string() + " is not valid yet");
  }
  return cert;
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> server_credentials(const config::TlsConfig& tls) {
  if (!tls.enabled()) return grpc::InsecureServerCredentials();
  const std::string cert_pem = read_pem(tls.cert_file, "certificate");
  const std::string key_pem = read_pem(tls.key_file, "private key");
  Certificate cert = first_certificate(cert_pem, tls.cert_file, "certificate file");
  Bio key_bio = bio_of(key_pem);
  Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    throw std::runtime_error("TLS: the key file " + tls.key_file.string() +
                             " holds no unencrypted PEM private key");
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    throw std::runtime_error("TLS: the key in " + tls.key_file.string() +
                             " does not belong to the certificate in " + tls.cert_file.string());
  }
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
