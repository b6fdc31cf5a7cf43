// TLS and mutual TLS on the one port, with a CA and certificates made by openssl for the test,
// and a real gRPC client with real credentials.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "certificates.hpp"
#include "expect_contains.hpp"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "host_process.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::echo::v1;

std::string host_config(const Certificates& certs, const std::string& extra) {
  return "[server.tls]\ncert_file = \"" + certs.path("server.pem") + "\"\nkey_file = \"" +
         certs.path("server.key") + "\"\n" + extra +
         "[host]\nwatch = false\n[admin]\nallow_loopback = true\n[[plugin]]\nname = \"echo\"\npath = "
         "\"" GV_PLUGIN_DIR "/echo.so\"\n";
}

std::shared_ptr<grpc::Channel> tls_channel(const HostProcess& host, const Certificates& certs,
                                           const char* client = nullptr) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = certs.pem("ca.pem");
  if (client != nullptr) {
    options.pem_private_key = certs.pem((std::string(client) + ".key").c_str());
    options.pem_cert_chain = certs.pem((std::string(client) + ".pem").c_str());
  }
  return grpc::CreateChannel(host.address(), grpc::SslCredentials(options));
}

grpc::Status echo(const std::shared_ptr<grpc::Channel>& channel, std::string* out = nullptr) {
  auto stub = pb::Echo::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  pb::EchoRequest request;
  request.set_payload("over TLS");
  pb::EchoReply reply;
  grpc::Status status = stub->Echo(&context, request, &reply);
  if (out != nullptr) *out = reply.payload();
  return status;
}

TEST(Tls, ThePortServesTlsAndRefusesPlaintext) {
  Certificates certs;
  HostProcess host(host_config(certs, ""));
  std::string reply;
  const grpc::Status secure = echo(tls_channel(host, certs), &reply);
  ASSERT_TRUE(secure.ok()) << secure.error_message() << "\n" << host.log();
  EXPECT_EQ(reply, "over TLS");
  EXPECT_FALSE(echo(host.channel()).ok()) << "a plaintext client was served on a TLS port";
  EXPECT_CONTAINS(host.log(), "(port " + std::to_string(host.port()) + ", TLS)");
  EXPECT_EQ(host.stop(), 0) << host.log();
}

// The oldest protocol the port speaks is TLS 1.2: openssl offering only TLS 1.1 (with the security
// level lowered, so that the refusal is the server's) gets no session; TLS 1.2 and 1.3 do.
TEST(Tls, TheOldestProtocolIsTls12) {
  Certificates certs;
  HostProcess host(host_config(certs, ""));
  TempDir out;
  // What openssl printed for a handshake offering only `protocol`. (Its exit code says nothing:
  // gRPC may close a session that sends no HTTP/2 before or after openssl prints it.)
  auto handshake = [&](const std::string& protocol) {
    const std::string log = (out.path() / (protocol + ".log")).string();
    const std::string command = "echo | timeout 10 openssl s_client -connect " + host.address() + " -" +
                                protocol + " -cipher DEFAULT@SECLEVEL=0 -alpn h2 -CAfile " +
                                certs.path("ca.pem") + " > " + log + " 2>&1";
    EXPECT_NE(std::system(command.c_str()), -1);
    return read_file(log);
  };
  const std::string tls11 = handshake("tls1_1");
  EXPECT_CONTAINS(tls11, "no peer certificate available");  // no session was made
  EXPECT_CONTAINS(tls11, "Cipher is (NONE)");
  for (const char* protocol : {"tls1_2", "tls1_3"}) {
    const std::string log = handshake(protocol);
    EXPECT_CONTAINS(log, "Server certificate");
    EXPECT_EQ(log.find("Cipher is (NONE)"), std::string::npos) << log;
    EXPECT_CONTAINS(log, std::string("New, TLSv1.") + protocol[5] + ", Cipher is ");
  }
  EXPECT_TRUE(echo(tls_channel(host, certs)).ok()) << "the host stopped serving";
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST(Tls, MutualTlsRequiresAClientCertificateFromTheConfiguredCa) {
  Certificates certs;
  HostProcess host(
      host_config(certs, "client_ca_file = \"" + certs.path("ca.pem") + "\"\nrequire_client_cert = true\n"));
  const grpc::Status with_cert = echo(tls_channel(host, certs, "client"));
  EXPECT_TRUE(with_cert.ok()) << with_cert.error_message();
  EXPECT_FALSE(echo(tls_channel(host, certs)).ok()) << "a client without a certificate was served";
  EXPECT_FALSE(echo(tls_channel(host, certs, "stranger")).ok())
      << "a client certificate from an untrusted CA was accepted";
  EXPECT_CONTAINS(host.log(), "TLS, client certificates required");
  // gvctl speaks TLS too.
  const std::string gvctl =
      std::string(GV_GVCTL_BINARY) + " --addr " + host.address() + " --tls-ca " + certs.path("ca.pem");
  EXPECT_EQ(std::system((gvctl + " --tls-cert " + certs.path("client.pem") + " --tls-key " +
                         certs.path("client.key") + " list > /dev/null 2>&1")
                            .c_str()),
            0);
  EXPECT_NE(std::system((gvctl + " list > /dev/null 2>&1").c_str()), 0)
      << "gvctl got in without a certificate";
  EXPECT_EQ(host.stop(), 0) << host.log();
}

TEST(Tls, BadCertificateFilesAreNamedAndNothingStarts) {
  Certificates certs;
  auto start_error = [&](const std::string& tls_lines) {
    try {
      HostProcess host("[server.tls]\n" + tls_lines + "[host]\nwatch = false\n");
      return std::string("the host started");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
  };
  const std::string mismatch = start_error("cert_file = \"" + certs.path("server.pem") + "\"\nkey_file = \"" +
                                           certs.path("client.key") + "\"\n");
  EXPECT_CONTAINS(mismatch, "TLS: the key in " + certs.path("client.key") +
                                " does not belong to the certificate in " + certs.path("server.pem"));
  const std::string missing = start_error("cert_file = \"" + certs.path("nope.pem") + "\"\nkey_file = \"" +
                                          certs.path("server.key") + "\"\n");
  EXPECT_CONTAINS(
      missing, "TLS: cannot read the certificate " + certs.path("nope.pem") + ": No such file or directory");
  const std::string not_pem = start_error("cert_file = \"" + certs.path("server.csr") + "\"\nkey_file = \"" +
                                          certs.path("server.key") + "\"\n");
  EXPECT_CONTAINS(not_pem, "holds no PEM certificate");
  const std::string half = start_error("cert_file = \"" + certs.path("server.pem") + "\"\n");
  EXPECT_CONTAINS(half, "server.tls.key_file: TLS needs both cert_file and key_file");
}

}  // namespace
}  // namespace gameverse::testing
