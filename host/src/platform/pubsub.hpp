// The host's publish/subscribe bus. Topics are shared by every plugin (and, with Redis, by every
// host on the same Redis); a subscription belongs to one plugin generation: it delivers while
// that generation serves, moves to the next generation at the swap and ends when it retires.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "platform/platform_error.hpp"

namespace gameverse::platform {

class PubSub {
 public:
  using Handler = std::function<void(const std::string& topic, const std::string& payload)>;
  static constexpr size_t kMaxTopicBytes = 256;
  static constexpr size_t kMaxQueuedMessages = 100'000;

  virtual ~PubSub();
  PubSub(const PubSub&) = delete;
  PubSub& operator=(const PubSub&) = delete;

  // Delivers payload to every subscriber of topic. PlatformError: INVALID_ARGUMENT for an empty or
  // over-long topic, UNAVAILABLE while the bus is unreachable, RESOURCE_EXHAUSTED when the
  // subscribers are kMaxQueuedMessages behind.
  virtual void publish(const std::string& topic, const std::string& payload) = 0;
  virtual std::string name() const = 0;

  // Callbacks run one at a time, in publish order, on the bus's delivery thread. A subscription
  // of an owner that is not active yet (a generation still loading) waits for set_active().
  uint64_t subscribe(const void* owner, const std::string& topic, Handler handler);
  // When it returns, the callback is not running and will not run again (unless called from that
  // very callback, which then finishes its run). Unknown ids are ignored.
  void unsubscribe(uint64_t id);
  // Subscriptions deliver only while their owner is active (its generation serves).
  void set_active(const void* owner, bool active);
  // At once: from's subscriptions end and to's start, so that every message reaches one of them.
  void hand_over(const void* from, const void* to);
  // Ends the owner's subscriptions; with wait, also waits for its running callback.
  void cancel_all(const void* owner, bool wait);
  size_t subscriptions(const void* owner) const;
  uint64_t delivered() const;

 protected:
  PubSub();
  static void check_topic(const std::string& topic);
  // Queues a message for the local subscribers; false when the queue is full.
  bool deliver(const std::string& topic, const std::string& payload);
  // The topics with at least one subscription, for a bus that subscribes upstream per topic.
  std::set<std::string> topics() const;
  virtual void topics_changed() {}
  // Returns once a new topic is subscribed upstream, so that a message published anywhere after
  // subscribe() returns reaches the subscriber.
  virtual void await_subscribed(const std::string& /*topic*/) {}
  // Derived destructors stop the delivery thread before their own members go.
  void stop_delivery();

 private:
  struct Subscription {
    const void* owner;
    std::string topic;
    std::shared_ptr<Handler> handler;
  };
  struct Message {
    std::string topic;
    std::string payload;
  };

  void run();
  void wait_not_running(std::unique_lock<std::mutex>& lock, const std::function<bool()>& done);
  void erase_locked(std::map<uint64_t, Subscription>::iterator it, bool& topics_changed);

  mutable std::mutex mu_;
  std::condition_variable queued_;
  std::condition_variable ran_;
  std::deque<Message> queue_;
  std::map<uint64_t, Subscription> subscriptions_;
  std::multimap<std::string, uint64_t> by_topic_;
  std::set<const void*> active_owners_;
  uint64_t next_id_ = 1;
  uint64_t running_ = 0;  // the subscription whose callback runs now
  const void* running_owner_ = nullptr;
  uint64_t delivered_ = 0;
  bool stopping_ = false;
  std::thread::id thread_id_;
  std::thread thread_;
};

std::unique_ptr<PubSub> open_memory_pubsub();

// redis://host:port (see parse_redis_url; rediss:// with `ca_file` as for the cache). Publishing goes through
// Redis (every host on it receives, this one too); subscribing follows the local subscriptions topic by
// topic. While Redis is unreachable publish fails with UNAVAILABLE and the subscriber reconnects with a
// growing backoff (100 ms to 5 s), then subscribes again. Redis pub/sub delivers at most once: messages
// published while a host is cut off do not reach it.
std::unique_ptr<PubSub> open_redis_pubsub(const std::string& url, const std::string& ca_file = "");

}  // namespace gameverse::platform
