// The gate's key fetch runs beside the calls, never inside one: with a key source that does not
// answer (the keys-source fixture, held by a file), tokens naming an unknown key are answered at
// once, and a rotated key is accepted once the source answers again.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <gameverse/tokens.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>

#include "gameverse/auth/v1/auth.pb.h"
#include "gameverse/echo/v1/echo.grpc.pb.h"
#include "host_process.hpp"

namespace gameverse::testing {
namespace {

namespace echo = gameverse::echo::v1;

struct KeyPair {
  std::string kid;
  std::string public_key;
  std::string secret_key;
};

KeyPair make_key(const std::string& kid) {
  tokens::ensure_sodium();
  KeyPair key{kid, std::string(crypto_sign_PUBLICKEYBYTES, '\0'),
              std::string(crypto_sign_SECRETKEYBYTES, '\0')};
  crypto_sign_keypair(reinterpret_cast<unsigned char*>(key.public_key.data()),
                      reinterpret_cast<unsigned char*>(key.secret_key.data()));
  return key;
}

std::string token_of(const KeyPair& key) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  return tokens::sign(key.kid, key.secret_key, {"ada", "s1", {"player"}, now, now + 600'000});
}

class GateKeyFetch : public ::testing::Test {
 protected:
  void SetUp() override {
    // The fixture finds its files through the environment the host inherits.
    setenv("GV_TEST_KEYS_DIR", keys_dir_.path().c_str(), 1);
    std::ofstream(keys_dir_.path() / "hold");
    host_ = std::make_unique<HostProcess>(
        "[host]\nwatch = false\n[[plugin]]\nname = \"keys-source\"\npath = \"" GV_KEYS_SOURCE_FIXTURE
        "\"\n[[plugin]]\nname = \"echo\"\npath = \"" GV_PLUGIN_DIR
        "/echo.so\"\n[plugin.access]\n\"/gameverse.echo.v1.Echo/WhoAmI\" = \"authenticated\"\n");
    echo_ = echo::Echo::NewStub(host_->channel());
  }
  void TearDown() override {
    unsetenv("GV_TEST_KEYS_DIR");
    if (HasFailure()) std::cerr << "host log:\n" << host_->log();
  }
  grpc::Status who_am_i(const std::string& token, echo::WhoAmIReply* reply = nullptr) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    context.AddMetadata("authorization", "Bearer " + token);
    echo::WhoAmIReply ignored;
    return echo_->WhoAmI(&context, echo::WhoAmIRequest(), reply != nullptr ? reply : &ignored);
  }
  void publish(const std::vector<KeyPair>& keys) {
    gameverse::auth::v1::VerificationKeys message;
    for (const KeyPair& key : keys) {
      auto* k = message.add_keys();
      k->set_kid(key.kid);
      k->set_algorithm("EdDSA");
      k->set_public_key(key.public_key);
    }
    std::ofstream(keys_dir_.path() / "keys", std::ios::binary) << message.SerializeAsString();
  }

  TempDir keys_dir_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<echo::Echo::Stub> echo_;
};

TEST_F(GateKeyFetch, UnknownKeysAreAnsweredWithoutWaitingForTheFetch) {
  // Calls with a new unknown kid each, many at once, while the key source holds every fetch: each
  // is answered (UNAVAILABLE while a fetch is out, else refused), none waits for the fetch, and
  // calls without a token go on being served meanwhile.
  std::vector<std::future<grpc::Status>> calls;
  for (int i = 0; i < 32; ++i) {
    calls.push_back(std::async(std::launch::async, [this, i] {
      return who_am_i(token_of(make_key("random-" + std::to_string(i))));
    }));
  }
  int unavailable = 0;
  for (auto& call : calls) {
    const grpc::Status status = call.get();
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      EXPECT_EQ(status.error_message(), "verification keys are being refreshed; retry");
      ++unavailable;
    } else {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAUTHENTICATED) << status.error_message();
    }
  }
  EXPECT_GT(unavailable, 0) << "no call saw the fetch in flight: the source did not hold it";
  grpc::ClientContext context;
  echo::EchoRequest request;
  echo::EchoReply reply;
  EXPECT_TRUE(echo_->Echo(&context, request, &reply).ok());

  // The key the auth plugin rotated to: accepted once the source answers with it.
  const KeyPair rotated = make_key("rotated");
  const std::string token = token_of(rotated);
  EXPECT_NE(who_am_i(token).error_code(), grpc::StatusCode::OK);
  publish({rotated});
  std::filesystem::remove(keys_dir_.path() / "hold");
  echo::WhoAmIReply me;
  ASSERT_TRUE(eventually([&] { return who_am_i(token, &me).ok(); }, std::chrono::seconds(30)));
  EXPECT_EQ(me.user_id(), "ada");
}

}  // namespace
}  // namespace gameverse::testing
