// The PostgreSQL store's connection settings: what it adds to the operator's URL, and that a server
// that accepts connections but never answers fails the store's opening instead of hanging it.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "platform/store.hpp"

namespace gameverse::platform {
namespace {

TEST(PostgresConnectionDefaults, AreAddedToAUriWithoutAQuery) {
  EXPECT_EQ(with_postgres_connection_defaults("postgresql://gv@db.internal/game"),
            "postgresql://gv@db.internal/game?connect_timeout=5&keepalives=1&keepalives_idle=10"
            "&keepalives_interval=5&keepalives_count=3&tcp_user_timeout=30000");
}

TEST(PostgresConnectionDefaults, NeverOverrideWhatTheUrlSets) {
  EXPECT_EQ(
      with_postgres_connection_defaults("postgres://db/game?sslmode=require&connect_timeout=20&keepalives=0"
                                        "&keepalives_idle=1&keepalives_interval=1&keepalives_count=9"),
      "postgres://db/game?sslmode=require&connect_timeout=20&keepalives=0&keepalives_idle=1"
      "&keepalives_interval=1&keepalives_count=9&tcp_user_timeout=30000");
}

TEST(PostgresConnectionDefaults, AreAppendedToAKeywordValueString) {
  EXPECT_EQ(with_postgres_connection_defaults("host=db dbname=game connect_timeout=2"),
            "host=db dbname=game connect_timeout=2 keepalives=1 keepalives_idle=10 keepalives_interval=5"
            " keepalives_count=3 tcp_user_timeout=30000");
}

TEST(PostgresConnectionDefaults, AnUnparsableUrlIsRefusedWithLibpqsReason) {
  try {
    with_postgres_connection_defaults("host=db port");
    FAIL() << "a connection string with a keyword and no value was accepted";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("[store] postgresql_url is not a libpq connection string: "),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("port"), std::string::npos) << e.what();
  }
}

// A listening socket nobody accepts from: the kernel completes the TCP handshake, then the server
// says nothing, like a PostgreSQL host that froze. Opening the store must give up with UNAVAILABLE.
TEST(PostgresConnection, ASilentServerFailsTheOpeningInsteadOfHangingIt) {
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(listen(listener, 8), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string url =
      "postgresql://gameverse@127.0.0.1:" + std::to_string(ntohs(address.sin_port)) + "/postgres";
  try {
    open_postgres_store(url, 2);
    FAIL() << "the store opened on a server that never answered";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE) << e.what();
    EXPECT_NE(std::string(e.what()).find("timeout"), std::string::npos) << e.what();
  }
  close(listener);
}

}  // namespace
}  // namespace gameverse::platform
