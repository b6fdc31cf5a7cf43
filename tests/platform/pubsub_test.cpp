// The pub/sub bus on both backends: in process, and the Redis server `tools/gv test` starts
// (GAMEVERSE_TEST_REDIS_URL). Two buses on one Redis stand for two hosts; an outage test runs a
// Redis of its own.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "eventually.hpp"
#include "expect_contains.hpp"
#include "own_redis.hpp"
#include "platform/pubsub.hpp"
#include "platform/store.hpp"
#include "test_servers.hpp"

namespace gameverse::platform {
namespace {

using testing::eventually;

using std::chrono::milliseconds;

using testing::redis_url;
// What a subscriber saw.
struct Inbox {
  std::mutex mu;
  std::vector<std::string> messages;
  PubSub::Handler handler() {
    return [this](const std::string& topic, const std::string& payload) {
      std::lock_guard lock(mu);
      messages.push_back(topic + "=" + payload);
    };
  }
  std::vector<std::string> seen() {
    std::lock_guard lock(mu);
    return messages;
  }
};

class PubSubConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis") {
      ASSERT_FALSE(redis_url().empty())
          << "GAMEVERSE_TEST_REDIS_URL is not set: run the suite with `tools/gv test`";
    }
    bus_ = open();
    topic_ = "test." + std::to_string(std::random_device()());
  }
  std::unique_ptr<PubSub> open() const {
    return GetParam() == "memory" ? open_memory_pubsub() : open_redis_pubsub(redis_url());
  }
  std::unique_ptr<PubSub> bus_;
  std::string topic_;
  const int owner_ = 0;
};

TEST_P(PubSubConformance, DeliversToTheTopicsSubscribersInOrder) {
  Inbox mine, other;
  bus_->set_active(&owner_, true);
  bus_->subscribe(&owner_, topic_, mine.handler());
  bus_->subscribe(&owner_, topic_ + ".other", other.handler());
  for (int i = 0; i < 50; ++i) bus_->publish(topic_, std::to_string(i));
  ASSERT_TRUE(eventually([&] { return mine.seen().size() == 50; })) << mine.seen().size();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(mine.seen()[i], topic_ + "=" + std::to_string(i));
  EXPECT_TRUE(other.seen().empty());
  const std::string binary("a\0b", 3);
  bus_->publish(topic_ + ".other", binary);
  ASSERT_TRUE(eventually([&] { return other.seen().size() == 1; }));
  EXPECT_EQ(other.seen()[0], topic_ + ".other=" + binary);
}

TEST_P(PubSubConformance, InactiveOwnersWaitAndUnsubscribedOnesHearNothing) {
  Inbox loading, gone, control;
  const int loading_owner = 0;
  bus_->set_active(&owner_, true);
  bus_->subscribe(&loading_owner, topic_, loading.handler());
  const uint64_t id = bus_->subscribe(&owner_, topic_, gone.handler());
  bus_->subscribe(&owner_, topic_, control.handler());
  bus_->unsubscribe(id);
  bus_->publish(topic_, "1");
  ASSERT_TRUE(eventually([&] { return control.seen().size() == 1; }));
  bus_->set_active(&loading_owner, true);
  bus_->publish(topic_, "2");
  ASSERT_TRUE(eventually([&] { return control.seen().size() == 2; }));
  ASSERT_TRUE(eventually([&] { return loading.seen().size() == 1; }));
  EXPECT_EQ(loading.seen()[0], topic_ + "=2") << "a loading generation heard a message";
  EXPECT_TRUE(gone.seen().empty());
  EXPECT_EQ(bus_->subscriptions(&owner_), 1u);
}

// The hot-reload guarantee: while messages flow, a hand-over between two generations gives every
// message to exactly one of them.
TEST_P(PubSubConformance, HandOverGivesEveryMessageToExactlyOneGeneration) {
  constexpr int kMessages = 3000;
  std::vector<std::atomic<int>> seen(kMessages);
  auto counting = [&](const std::string&, const std::string& payload) { seen[std::stoi(payload)]++; };
  std::vector<std::unique_ptr<int>> generations;
  generations.push_back(std::make_unique<int>(0));
  bus_->subscribe(generations.back().get(), topic_, counting);
  bus_->set_active(generations.back().get(), true);
  std::thread publisher([&] {
    for (int i = 0; i < kMessages; ++i) bus_->publish(topic_, std::to_string(i));
  });
  for (int g = 0; g < 20; ++g) {
    std::this_thread::sleep_for(milliseconds(2));
    generations.push_back(std::make_unique<int>(g + 1));
    const void* old = generations[generations.size() - 2].get();
    bus_->subscribe(generations.back().get(), topic_, counting);  // made while "loading"
    bus_->hand_over(old, generations.back().get());
    bus_->cancel_all(old, true);
  }
  publisher.join();
  ASSERT_TRUE(eventually([&] {
    int total = 0;
    for (auto& s : seen) total += s;
    return total >= kMessages;
  }));
  std::this_thread::sleep_for(milliseconds(50));
  for (int i = 0; i < kMessages; ++i) ASSERT_EQ(seen[i], 1) << "message " << i;
}

TEST_P(PubSubConformance, UnsubscribeWaitsForTheRunningCallback) {
  std::atomic<bool> inside{false}, finished{false};
  bus_->set_active(&owner_, true);
  const uint64_t id = bus_->subscribe(&owner_, topic_, [&](const std::string&, const std::string&) {
    inside = true;
    std::this_thread::sleep_for(milliseconds(100));
    finished = true;
  });
  bus_->publish(topic_, "x");
  ASSERT_TRUE(eventually([&] { return inside.load(); }));
  bus_->unsubscribe(id);
  EXPECT_TRUE(finished) << "unsubscribe returned while the callback still ran";
}

TEST_P(PubSubConformance, BadTopicsAreRefusedClearly) {
  try {
    bus_->publish("", "x");
    FAIL() << "published to an empty topic";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_INVALID_ARGUMENT);
    EXPECT_CONTAINS(e.what(), "empty");
  }
  try {
    bus_->subscribe(&owner_, std::string(300, 't'), [](const std::string&, const std::string&) {});
    FAIL() << "subscribed to an over-long topic";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_INVALID_ARGUMENT);
    EXPECT_CONTAINS(e.what(), "300 bytes");
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, PubSubConformance, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

// Two buses on one Redis are two hosts: a message published on either reaches both.
TEST(RedisPubSub, MessagesCrossBetweenHosts) {
  ASSERT_FALSE(redis_url().empty())
      << "GAMEVERSE_TEST_REDIS_URL is not set: run the suite with `tools/gv test`";
  auto host_a = open_redis_pubsub(redis_url());
  auto host_b = open_redis_pubsub(redis_url());
  const std::string topic = "cross." + std::to_string(std::random_device()());
  const int a = 0, b = 0;
  Inbox inbox_a, inbox_b;
  host_a->set_active(&a, true);
  host_b->set_active(&b, true);
  host_a->subscribe(&a, topic, inbox_a.handler());
  host_b->subscribe(&b, topic, inbox_b.handler());
  host_a->publish(topic, "from a");
  host_b->publish(topic, "from b");
  ASSERT_TRUE(eventually([&] { return inbox_a.seen().size() == 2 && inbox_b.seen().size() == 2; }))
      << inbox_a.seen().size() << " " << inbox_b.seen().size();
  EXPECT_EQ(inbox_a.seen(), inbox_b.seen());
}

// A Redis of the test's own, stopped and started again: publishing fails at once with
// UNAVAILABLE while it is down, and the subscriptions come back by themselves.
TEST(RedisPubSub, OutageIsUnavailableAndSubscriptionsRecover) {
  testing::OwnRedis redis;
  ASSERT_TRUE(redis.start()) << "the test's Redis did not start";
  auto bus = open_redis_pubsub(redis.url());
  const int owner = 0;
  Inbox inbox;
  bus->set_active(&owner, true);
  bus->subscribe(&owner, "t", inbox.handler());
  bus->publish("t", "before");
  ASSERT_TRUE(eventually([&] { return inbox.seen().size() == 1; }));

  redis.stop();
  try {
    bus->publish("t", "during");
    FAIL() << "published with Redis down";
  } catch (const PlatformError& e) {
    EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE);
    EXPECT_CONTAINS(e.what(), redis.address());
  }

  ASSERT_TRUE(redis.start());
  // Once the listener has subscribed again, a publish reaches the old subscription.
  ASSERT_TRUE(eventually([&] {
    try {
      bus->publish("t", "after");
    } catch (const PlatformError& e) {
      EXPECT_EQ(e.code(), GV_STATUS_UNAVAILABLE);
    }
    const auto seen = inbox.seen();
    return std::find(seen.begin(), seen.end(), "t=after") != seen.end();
  })) << "the subscription did not come back after Redis did";
  bus.reset();
}

// The listener's connection authenticates too: messages arrive through a Redis that requires
// the password in the URL.
TEST(RedisPubSub, ThroughARedisThatRequiresAPassword) {
  testing::OwnRedis redis("pubsub-test-password");
  ASSERT_TRUE(redis.start()) << "the test's Redis did not start";
  auto bus = open_redis_pubsub(redis.url());
  const int owner = 0;
  Inbox inbox;
  bus->set_active(&owner, true);
  bus->subscribe(&owner, "t", inbox.handler());
  bus->publish("t", "hello");
  ASSERT_TRUE(eventually([&] { return inbox.seen().size() == 1; }));
  EXPECT_EQ(inbox.seen().front(), "t=hello");
  bus.reset();
}

}  // namespace
}  // namespace gameverse::platform
