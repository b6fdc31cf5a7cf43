#include "rpc/tls.hpp"

#include <arpa/inet.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

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

namespace {

bool is_ip_literal(const std::string& name) {
  unsigned char address[16];
  return inet_pton(AF_INET, name.c_str(), address) == 1 || inet_pton(AF_INET6, name.c_str(), address) == 1;
}

// What `cert` names for host checks, for a refusal to show: its DNS and IP subjectAltNames, else
// (as X509_check_host does) its common name. At most 16, each cut to 253 characters.
std::string names_shown(X509* cert) {
  constexpr size_t kMaxNames = 16;
  std::vector<std::string> shown;
  size_t more = 0;
  auto add = [&](std::string name) {
    if (shown.size() == kMaxNames) {
      ++more;
      return;
    }
    if (name.size() > 253) name.resize(253);
    shown.push_back(std::move(name));
  };
  if (auto* sans =
          static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr))) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* san = sk_GENERAL_NAME_value(sans, i);
      if (san->type == GEN_DNS) {
        const ASN1_IA5STRING* dns = san->d.dNSName;
        add("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                                 static_cast<size_t>(ASN1_STRING_length(dns))));
      } else if (san->type == GEN_IPADD) {
        const ASN1_OCTET_STRING* ip = san->d.iPAddress;
        const int length = ASN1_STRING_length(ip);
        char text[INET6_ADDRSTRLEN] = {};
        if ((length == 4 || length == 16) &&
            inet_ntop(length == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text, sizeof text) !=
                nullptr) {
          add("IP:" + std::string(text));
        }
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (shown.empty()) {
    const X509_NAME* subject = X509_get_subject_name(cert);
    const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (index >= 0) {
      const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
      add("CN:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
                              static_cast<size_t>(ASN1_STRING_length(cn))));
    }
  }
  std::string list;
  for (const auto& name : shown) list += (list.empty() ? "" : ", ") + name;
  if (more > 0) list += " and " + std::to_string(more) + " more";
  return list.empty() ? std::string("nothing") : list;
}

}  // namespace

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
  // The verified leaf certificate, matched as a TLS client matches a server's (RFC 6125): a name
  // against the DNS subjectAltNames, the common name only when there are none, an IP address
  // against the IP subjectAltNames; email, URI and other kinds of subjectAltName never count.
  const auto pems = values(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pems.empty()) return "the connection's client certificate could not be read";
  Bio bio = bio_of(pems.front());
  Certificate cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return "the connection's client certificate could not be read";
  for (const auto& name : policy.names) {
    const int match = is_ip_literal(name) ? X509_check_ip_asc(cert.get(), name.c_str(), 0)
                                          : X509_check_host(cert.get(), name.data(), name.size(),
                                                            X509_CHECK_FLAG_NO_WILDCARDS, nullptr);
    if (match == 1) return {};
  }
  return "the client certificate names " + names_shown(cert.get()) + ", none of them in [cluster] peer_names";
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
