// One conformance suite for the cache backends: in process, and the Redis server `tools/gv test`
// starts (GAMEVERSE_TEST_REDIS_URL). An outage test runs a Redis of its own.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "eventually.hpp"
#include "expect_contains.hpp"
#include "own_redis.hpp"
#include "platform/cache.hpp"
#include "platform/pubsub.hpp"
#include "platform/redis.hpp"

namespace gameverse::platform {
namespace {

using std::chrono::milliseconds;

class CacheConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      cache_ = open_memory_cache();
    } else {
      const char* url = std::getenv("GAMEVERSE_TEST_REDIS_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_REDIS_URL is not set: run the suite with `tools/gv test`";
      cache_ = open_redis_cache(url);
    }
    prefix_ = "test:" + std::to_string(std::random_device()()) + ":";
  }
  std::unique_ptr<CacheBackend> cache_;
  std::string prefix_;
};

TEST_P(CacheConformance, SetGetEraseKeepBytes) {
  const std::string value("a\0b\xff", 4);
  cache_->set(prefix_ + "k", value, milliseconds(0));
  EXPECT_EQ(cache_->get(prefix_ + "k"), value);
  cache_->erase(prefix_ + "k");
  EXPECT_EQ(cache_->get(prefix_ + "k"), std::nullopt);
  EXPECT_EQ(cache_->get(prefix_ + "never"), std::nullopt);
}

TEST_P(CacheConformance, ValuesExpire) {
  cache_->set(prefix_ + "short", "v", milliseconds(50));
  cache_->set(prefix_ + "long", "v", milliseconds(60000));
  EXPECT_EQ(cache_->get(prefix_ + "short"), "v");
  std::this_thread::sleep_for(milliseconds(120));
  EXPECT_EQ(cache_->get(prefix_ + "short"), std::nullopt);
  EXPECT_EQ(cache_->get(prefix_ + "long"), "v");
}

TEST_P(CacheConformance, CountersCountWithinTheirWindow) {
  EXPECT_EQ(cache_->increment(prefix_ + "fails", 1, milliseconds(100)), 1);
  EXPECT_EQ(cache_->increment(prefix_ + "fails", 1, milliseconds(100)), 2);
  EXPECT_EQ(cache_->increment(prefix_ + "fails", 5, milliseconds(100)), 7);
  std::this_thread::sleep_for(milliseconds(200));  // the window opened by the first increment ended
  EXPECT_EQ(cache_->increment(prefix_ + "fails", 1, milliseconds(100)), 1);
  cache_->set(prefix_ + "text", "abc", milliseconds(0));
  try {
    cache_->increment(prefix_ + "text", 1, milliseconds(0));
    FAIL() << "incremented text";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_FAILED_PRECONDITION);
  }
}

TEST_P(CacheConformance, ConcurrentIncrementsAreAtomic) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i) cache_->increment(prefix_ + "hits", 1, milliseconds(0));
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(cache_->get(prefix_ + "hits"), "400");
}

// A lease: taken only when free, renewed and released only by its holder, free again once it lapses.
TEST_P(CacheConformance, CompareAndSetMakesLeases) {
  const std::string lease = prefix_ + "room:7";
  EXPECT_TRUE(cache_->compare_and_set(lease, std::nullopt, "host-a", milliseconds(150)));
  EXPECT_FALSE(cache_->compare_and_set(lease, std::nullopt, "host-b", milliseconds(150))) << "taken twice";
  EXPECT_FALSE(cache_->compare_and_set(lease, "host-b", "host-b", milliseconds(150))) << "renewed by another";
  EXPECT_FALSE(cache_->compare_and_set(lease, "host-b", std::nullopt, milliseconds(0)))
      << "released by another";
  EXPECT_EQ(cache_->get(lease), "host-a");
  EXPECT_TRUE(cache_->compare_and_set(lease, "host-a", "host-a", milliseconds(60000)));  // renewed
  EXPECT_TRUE(cache_->compare_and_set(lease, "host-a", std::nullopt, milliseconds(0)));  // released
  EXPECT_EQ(cache_->get(lease), std::nullopt);
  EXPECT_FALSE(cache_->compare_and_set(lease, "host-a", std::nullopt, milliseconds(0)))
      << "nothing to release";

  EXPECT_TRUE(cache_->compare_and_set(lease, std::nullopt, "host-a", milliseconds(50)));
  std::this_thread::sleep_for(milliseconds(120));  // the holder died: its lease lapses
  EXPECT_FALSE(cache_->compare_and_set(lease, "host-a", "host-a", milliseconds(50)))
      << "renewed a lapsed lease";
  EXPECT_TRUE(cache_->compare_and_set(lease, std::nullopt, "host-b", milliseconds(0)));
  EXPECT_EQ(cache_->get(lease), "host-b");

  const std::string bytes("a\0\xff", 3);  // compared as bytes, not as C strings
  cache_->set(prefix_ + "bytes", bytes, milliseconds(0));
  EXPECT_FALSE(cache_->compare_and_set(prefix_ + "bytes", std::string("a"), "x", milliseconds(0)));
  EXPECT_TRUE(cache_->compare_and_set(prefix_ + "bytes", bytes, std::string("\0", 1), milliseconds(0)));
  EXPECT_EQ(cache_->get(prefix_ + "bytes"), std::string("\0", 1));
  EXPECT_FALSE(cache_->compare_and_set(prefix_ + "bytes", std::string(), "x", milliseconds(0)))
      << "an empty expected value matched a one-byte value";
}

TEST_P(CacheConformance, OneOfManyRacingTakesALease) {
  constexpr int kRacers = 8;
  for (int round = 0; round < 20; ++round) {
    const std::string lease = prefix_ + "race:" + std::to_string(round);
    std::atomic<int> winners = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < kRacers; ++t) {
      threads.emplace_back([&, t] {
        if (cache_->compare_and_set(lease, std::nullopt, "racer-" + std::to_string(t), milliseconds(60000)))
          ++winners;
      });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(winners.load(), 1) << "round " << round;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CacheConformance, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

// Keys nobody reads again (a failure counter per client address) do not pile up in process:
// later writes drop the expired ones.
TEST(MemoryCache, ExpiredEntriesThatNobodyReadsAreDropped) {
  auto cache = open_memory_cache();
  for (int i = 0; i < 1000; ++i) cache->increment("failures:10.0.0." + std::to_string(i), 1, milliseconds(1));
  cache->set("last", "x", milliseconds(1));
  ASSERT_TRUE(testing::eventually([&] { return !cache->get("last"); }));  // every counter has expired
  for (int i = 0; i < 200; ++i) cache->set("current", std::to_string(i), milliseconds(0));
  EXPECT_EQ(cache->entry_count(), 1u);
  EXPECT_EQ(cache->get("current"), "199");
  // Entries overwritten or erased leave nothing behind in the expiry order either.
  cache->set("current", "again", milliseconds(1));
  cache->erase("current");
  EXPECT_EQ(cache->entry_count(), 0u);
}

// A Redis of the test's own, stopped and started again: calls fail at once with UNAVAILABLE while
// it is down and succeed again by themselves once it is back.
TEST(RedisOutage, UnavailableWhileDownAndRecoversByItself) {
  testing::OwnRedis redis;
  ASSERT_TRUE(redis.start()) << "the test's Redis did not start";
  auto cache = open_redis_cache(redis.url());
  cache->set("k", "before", milliseconds(0));

  redis.stop();
  for (int i = 0; i < 3; ++i) {
    try {
      cache->get("k");
      FAIL() << "a call succeeded with Redis down";
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE);
      EXPECT_CONTAINS(e.what(), redis.address());
    }
  }

  ASSERT_TRUE(redis.start());
  bool recovered = false;
  for (int i = 0; i < 300 && !recovered; ++i) {
    try {
      cache->set("k", "after", milliseconds(0));
      recovered = cache->get("k") == "after";
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE);
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
  EXPECT_TRUE(recovered) << "the cache did not reconnect to Redis";
}

// A Redis that requires a password: the URL's password is sent with AUTH (the default user, and
// a named user), a wrong or missing one is refused at start-up, and no message shows it.
TEST(RedisAuth, ThePasswordInTheUrlIsSentAndNeverShown) {
  const std::string password = "s3cret-pw-for-the-test";
  testing::OwnRedis redis(password);
  ASSERT_TRUE(redis.start()) << "the test's Redis did not start";
  auto cache = open_redis_cache(redis.url());
  cache->set("k", "v", milliseconds(0));
  EXPECT_EQ(cache->get("k"), "v");
  auto as_default_user = open_redis_cache("redis://default:" + password + "@" + redis.address());
  EXPECT_EQ(as_default_user->get("k"), "v");
  // Percent-encoded characters in the password are decoded: "%2D" is "-".
  auto encoded = open_redis_cache("redis://:s3cret%2Dpw-for-the-test@" + redis.address());
  EXPECT_EQ(encoded->get("k"), "v");

  auto refusal = [](const std::string& url) {
    try {
      open_redis_cache(url);
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE) << e.what();
      return std::string(e.what());
    }
    return std::string("connected");
  };
  const std::string wrong = refusal("redis://:not-the-password@" + redis.address());
  EXPECT_CONTAINS(wrong, "Redis refused the credentials in the URL");
  EXPECT_CONTAINS(wrong, redis.address());
  EXPECT_EQ(wrong.find("not-the-password"), std::string::npos) << wrong;
  // Without a password the connection is made, but every command is refused.
  auto anonymous = open_redis_cache("redis://" + redis.address());
  try {
    anonymous->get("k");
    ADD_FAILURE() << "Redis answered a client without the password";
  } catch (const PlatformError& e) {
    EXPECT_CONTAINS(e.what(), "NOAUTH");
  }
}

TEST(RedisAuth, UrlsAreCheckedAndMessagesMaskThePassword) {
  EXPECT_EQ(parse_redis_url("redis://:pw@cache.internal:6380").password, "pw");
  const RedisAddress named = parse_redis_url("redis://game:p%40ss@cache.internal:6379/");
  EXPECT_EQ(named.user, "game");
  EXPECT_EQ(named.password, "p@ss");
  EXPECT_EQ(named.to_string(), "cache.internal:6379");
  EXPECT_EQ(redacted_redis_url("redis://game:p%40ss@cache.internal:6379"),
            "redis://game:***@cache.internal:6379");
  EXPECT_EQ(redacted_redis_url("redis://cache.internal:6379"), "redis://cache.internal:6379");
  for (const std::string url : {"redis://:hunter2@host", "rediss://:hunter2@host",
                                "redis://:hunter2@host:99999", "redis://:hun%2ter2@host:6379"}) {
    try {
      parse_redis_url(url);
      ADD_FAILURE() << "accepted a bad Redis URL";
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.code(), GV_STATUS_INVALID_ARGUMENT);
      EXPECT_EQ(std::string(e.what()).find("hunter2"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("hun%2ter2"), std::string::npos) << e.what();
    }
  }
}

// rediss://: TLS to a Redis that speaks only TLS, its certificate (for the name "localhost" only)
// from a CA the test makes. The right CA and name connect; another CA, or another name for the
// same server, are refused at start-up and say why.
TEST(RedisTls, TheServerIsVerifiedAndTheConnectionWorks) {
  testing::TempDir dir;
  const auto file = [&](const std::string& name) { return (dir.path() / name).string(); };
  const std::string quiet = " > /dev/null 2>&1";
  for (const std::string ca : {"ca", "other-ca"}) {
    ASSERT_EQ(std::system(("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=" + ca + " -keyout " +
                           file(ca + ".key") + " -out " + file(ca + ".pem") + quiet)
                              .c_str()),
              0);
  }
  std::ofstream(file("san.ext")) << "subjectAltName=DNS:localhost\n";
  ASSERT_EQ(
      std::system(("openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout " + file("server.key") +
                   " -out " + file("server.csr") + quiet + " && openssl x509 -req -days 1 -in " +
                   file("server.csr") + " -CA " + file("ca.pem") + " -CAkey " + file("ca.key") +
                   " -CAcreateserial -extfile " + file("san.ext") + " -out " + file("server.pem") + quiet)
                      .c_str()),
      0);
  testing::OwnRedis redis("tls-test-password",
                          testing::OwnRedis::Tls{file("server.pem"), file("server.key"), file("ca.pem")});
  ASSERT_TRUE(redis.start()) << "the test's TLS Redis did not start";
  const std::string port = redis.address().substr(redis.address().rfind(':'));
  const std::string by_name = "rediss://:tls-test-password@localhost" + port;

  auto cache = open_redis_cache(by_name, file("ca.pem"));
  cache->set("k", "over TLS", milliseconds(0));
  EXPECT_EQ(cache->get("k"), "over TLS");
  EXPECT_EQ(cache->increment("n", 2, milliseconds(0)), 2);
  auto bus = open_redis_pubsub(by_name, file("ca.pem"));
  const int owner = 0;
  std::vector<std::string> seen;
  std::mutex seen_mu;
  bus->set_active(&owner, true);
  bus->subscribe(&owner, "t", [&](const std::string& topic, const std::string& payload) {
    std::lock_guard lock(seen_mu);
    seen.push_back(topic + "=" + payload);
  });
  bus->publish("t", "hello");
  EXPECT_TRUE(testing::eventually([&] {
    std::lock_guard lock(seen_mu);
    return seen == std::vector<std::string>{"t=hello"};
  }));
  bus.reset();

  auto refusal = [](const std::string& url, const std::string& ca_file) {
    try {
      open_redis_cache(url, ca_file);
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE) << e.what();
      return std::string(e.what());
    }
    return std::string("connected");
  };
  EXPECT_CONTAINS(refusal(by_name, file("other-ca.pem")),
                  "TLS: the server's certificate is refused: ");  // its chain ends in a CA not trusted
  EXPECT_CONTAINS(refusal("rediss://:tls-test-password@" + redis.address(), file("ca.pem")),
                  "TLS: the server's certificate is refused: IP address mismatch");
  // A plaintext client gets no answer it can read.
  EXPECT_NE(refusal("redis://:tls-test-password@" + redis.address(), ""), "connected");
}

}  // namespace
}  // namespace gameverse::platform
