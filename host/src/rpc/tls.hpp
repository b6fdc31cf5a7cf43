// The one port's TLS: credentials from [server.tls], with the PEM files checked first so that a
// wrong file is named instead of gRPC's generic failure to start.
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>

#include "config/config.hpp"

namespace gameverse::rpc {

// Insecure credentials when TLS is off. Throws std::runtime_error naming the file and what is
// wrong with it: unreadable, no PEM certificate or key, a key that does not belong to the
// certificate, a certificate that has expired or is not valid yet.
std::shared_ptr<grpc::ServerCredentials> server_credentials(const config::TlsConfig& tls);

}  // namespace gameverse::rpc
