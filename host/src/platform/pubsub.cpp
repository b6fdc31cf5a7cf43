#include "platform/pubsub.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "platform/redis.hpp"
#include "platform/store.hpp"

namespace gameverse::platform {

PubSub::PubSub() : thread_([this] { run(); }) {}

PubSub::~PubSub() {
  stop_delivery();
}

void PubSub::stop_delivery() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  queued_.notify_all();
  thread_.join();
}

void PubSub::check_topic(const std::string& topic) {
  if (topic.empty()) throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "the topic is empty");
  if (topic.size() > kMaxTopicBytes) {
    throw PlatformError(GV_STATUS_INVALID_ARGUMENT, "the topic is " + std::to_string(topic.size()) +
                                                        " bytes long; the limit is " +
                                                        std::to_string(kMaxTopicBytes));
  }
}

uint64_t PubSub::subscribe(const void* owner, const std::string& topic, Handler handler) {
  check_topic(topic);
  uint64_t id = 0;
  bool first_of_topic = false;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    first_of_topic = by_topic_.count(topic) == 0;
    subscriptions_.emplace(id, Subscription{owner, topic, std::make_shared<Handler>(std::move(handler))});
    by_topic_.emplace(topic, id);
  }
  if (first_of_topic) {
    topics_changed();
    await_subscribed(topic);
  }
  return id;
}

void PubSub::erase_locked(std::map<uint64_t, Subscription>::iterator it, bool& topics_changed) {
  auto [begin, end] = by_topic_.equal_range(it->second.topic);
  for (auto t = begin; t != end; ++t) {
    if (t->second == it->first) {
      by_topic_.erase(t);
      break;
    }
  }
  if (by_topic_.count(it->second.topic) == 0) topics_changed = true;
  subscriptions_.erase(it);
}

void PubSub::wait_not_running(std::unique_lock<std::mutex>& lock, const std::function<bool()>& done) {
  if (std::this_thread::get_id() == thread_id_) return;  // from a callback: it finishes its run
  ran_.wait(lock, done);
}

void PubSub::unsubscribe(uint64_t id) {
  bool changed = false;
  {
    std::unique_lock lock(mu_);
    auto it = subscriptions_.find(id);
    if (it == subscriptions_.end()) return;
    erase_locked(it, changed);
    wait_not_running(lock, [&] { return running_ != id; });
  }
  if (changed) topics_changed();
}

void PubSub::set_active(const void* owner, bool active) {
  std::lock_guard lock(mu_);
  if (active) {
    active_owners_.insert(owner);
  } else {
    active_owners_.erase(owner);
  }
}

void PubSub::hand_over(const void* from, const void* to) {
  std::lock_guard lock(mu_);
  active_owners_.erase(from);
  active_owners_.insert(to);
}

void PubSub::cancel_all(const void* owner, bool wait) {
  bool changed = false;
  {
    std::unique_lock lock(mu_);
    active_owners_.erase(owner);
    for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
      auto next = std::next(it);
      if (it->second.owner == owner) erase_locked(it, changed);
      it = next;
    }
    if (wait) wait_not_running(lock, [&] { return running_owner_ != owner; });
  }
  if (changed) topics_changed();
}

size_t PubSub::subscriptions(const void* owner) const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(subscriptions_.begin(), subscriptions_.end(),
                                           [owner](const auto& s) { return s.second.owner == owner; }));
}

uint64_t PubSub::delivered() const {
  std::lock_guard lock(mu_);
  return delivered_;
}

bool PubSub::deliver(const std::string& topic, const std::string& payload) {
  {
    std::lock_guard lock(mu_);
    if (by_topic_.count(topic) == 0) return true;  // nobody here listens
    if (queue_.size() >= kMaxQueuedMessages) return false;
    queue_.push_back({topic, payload});
  }
  queued_.notify_one();
  return true;
}

std::set<std::string> PubSub::topics() const {
  std::lock_guard lock(mu_);
  std::set<std::string> result;
  for (const auto& entry : by_topic_) result.insert(entry.first);
  return result;
}

void PubSub::run() {
  struct Target {
    uint64_t id;
    const void* owner;
    std::shared_ptr<Handler> handler;
  };
  std::unique_lock lock(mu_);
  thread_id_ = std::this_thread::get_id();
  std::vector<Target> targets;
  for (;;) {
    queued_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const Message message = std::move(queue_.front());
    queue_.pop_front();
    // Who receives a message is decided when it is taken from the queue, so that a hand-over
    // between generations gives every message to exactly one of them.
    targets.clear();
    auto [begin, end] = by_topic_.equal_range(message.topic);
    for (auto it = begin; it != end; ++it) {
      const Subscription& s = subscriptions_.at(it->second);
      if (active_owners_.count(s.owner) != 0) targets.push_back({it->second, s.owner, s.handler});
    }
    for (const Target& target : targets) {
      if (subscriptions_.count(target.id) == 0) continue;  // unsubscribed meanwhile
      running_ = target.id;
      running_owner_ = target.owner;
      lock.unlock();
      try {
        (*target.handler)(message.topic, message.payload);
      } catch (const std::exception& e) {
        spdlog::error("a subscriber of topic '{}' failed: {}", message.topic, e.what());
      }
      lock.lock();
      running_ = 0;
      running_owner_ = nullptr;
      ++delivered_;
      ran_.notify_all();
    }
  }
}

namespace {

class MemoryPubSub final : public PubSub {
 public:
  ~MemoryPubSub() override { stop_delivery(); }
  void publish(const std::string& topic, const std::string& payload) override {
    check_topic(topic);
    if (!deliver(topic, payload)) {
      throw PlatformError(GV_STATUS_RESOURCE_EXHAUSTED, "the subscribers of this host are " +
                                                            std::to_string(kMaxQueuedMessages) +
                                                            " messages behind; publish again later");
    }
  }
  std::string name() const override { return "memory"; }
};

// Publishes through a command connection; listens on a second one, which is in subscriber mode
// and is read with poll() next to an eventfd that says the local topics changed.
class RedisPubSub final : public PubSub {
 public:
  explicit RedisPubSub(const RedisAddress& address)
      : publisher_(address), address_(address), wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (wake_fd_ < 0) throw PlatformError(GV_STATUS_INTERNAL, "eventfd failed");
    listener_ = std::thread([this] { listen(); });
  }

  ~RedisPubSub() override {
    stop_ = true;
    wake();
    listener_.join();
    stop_delivery();
    ::close(wake_fd_);
  }

  void publish(const std::string& topic, const std::string& payload) override {
    check_topic(topic);
    publisher_.command({"PUBLISH", channel(topic), payload});
  }

  std::string name() const override { return "redis"; }

 protected:
  void topics_changed() override { wake(); }

  void await_subscribed(const std::string& topic) override {
    // Subscribed upstream within a second, unless Redis is unreachable: the subscription then
    // starts when the listener reconnects.
    std::unique_lock lock(confirmed_mu_);
    confirmed_cv_.wait_for(lock, std::chrono::seconds(1),
                           [&] { return confirmed_.count(topic) != 0 || down_; });
  }

 private:
  static constexpr std::string_view kPrefix = "gameverse:topic:";
  static std::string channel(const std::string& topic) { return std::string(kPrefix) + topic; }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }

  void set_connected(bool connected) {
    std::lock_guard lock(confirmed_mu_);
    down_ = !connected;
    if (!connected) confirmed_.clear();
    confirmed_cv_.notify_all();
  }

  // Sends SUBSCRIBE / UNSUBSCRIBE for the difference between the local topics and Redis's.
  bool sync_topics(redisContext* c, std::set<std::string>& subscribed) {
    const std::set<std::string> wanted = topics();
    std::vector<std::string> add, remove;
    std::set_difference(wanted.begin(), wanted.end(), subscribed.begin(), subscribed.end(),
                        std::back_inserter(add));
    std::set_difference(subscribed.begin(), subscribed.end(), wanted.begin(), wanted.end(),
                        std::back_inserter(remove));
    for (const auto& [verb, list] : {std::pair{"SUBSCRIBE", &add}, std::pair{"UNSUBSCRIBE", &remove}}) {
      if (list->empty()) continue;
      std::vector<std::string> args{verb};
      for (const auto& topic : *list) args.push_back(channel(topic));
      if (!append_redis_command(c, args)) return false;
    }
    int done = 0;
    while (!done) {
      if (redisBufferWrite(c, &done) != REDIS_OK) return false;
    }
    subscribed = wanted;
    return true;
  }

  void on_reply(redisReply* reply) {
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 3) return;
    const std::string_view kind(reply->element[0]->str, reply->element[0]->len);
    const redisReply* name = reply->element[1];
    if (name->type != REDIS_REPLY_STRING || name->len < kPrefix.size()) return;
    const std::string topic(name->str + kPrefix.size(), name->len - kPrefix.size());
    if (kind == "message" && reply->element[2]->type == REDIS_REPLY_STRING) {
      if (!deliver(topic, std::string(reply->element[2]->str, reply->element[2]->len))) {
        spdlog::warn("pub/sub: a message on topic '{}' was dropped: the subscribers are {} messages behind",
                     topic, kMaxQueuedMessages);
      }
    } else if (kind == "subscribe") {
      std::lock_guard lock(confirmed_mu_);
      confirmed_.insert(topic);
      confirmed_cv_.notify_all();
    } else if (kind == "unsubscribe") {
      std::lock_guard lock(confirmed_mu_);
      confirmed_.erase(topic);
    }
  }

  // Waits up to timeout for the eventfd; false when stopping.
  bool pause(std::chrono::milliseconds timeout) {
    pollfd fd{wake_fd_, POLLIN, 0};
    ::poll(&fd, 1, static_cast<int>(timeout.count()));
    uint64_t count = 0;
    [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
    return !stop_;
  }

  void listen() {
    std::chrono::milliseconds backoff(100);
    bool was_down = false;
    while (!stop_) {
      std::string error;
      std::unique_ptr<RedisLink> link = connect_redis(address_, error);
      if (!link) {
        if (!was_down)
          spdlog::warn("pub/sub: cannot reach Redis at {} ({}); retrying", address_.to_string(), error);
        was_down = true;
        set_connected(false);
        pause(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        continue;
      }
      redisContext* c = link->context();
      if (was_down) spdlog::info("pub/sub: Redis at {} is back", address_.to_string());
      was_down = false;
      backoff = std::chrono::milliseconds(100);
      set_connected(true);
      std::set<std::string> subscribed;
      bool healthy = sync_topics(c, subscribed);
      while (healthy && !stop_) {
        pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        if (::poll(fds, 2, 1000) < 0 && errno != EINTR) break;
        if (fds[1].revents & POLLIN) {
          uint64_t count = 0;
          [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
          if (stop_) break;
          healthy = sync_topics(c, subscribed);
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
          if (redisBufferRead(c) != REDIS_OK) {
            healthy = false;
            break;
          }
          void* reply = nullptr;
          while (redisGetReplyFromReader(c, &reply) == REDIS_OK && reply != nullptr) {
            on_reply(static_cast<redisReply*>(reply));
            freeReplyObject(reply);
            reply = nullptr;
          }
        }
      }
      if (!healthy && !stop_) {
        spdlog::warn("pub/sub: lost Redis at {} ({}); reconnecting", address_.to_string(),
                     c->errstr[0] != '\0' ? c->errstr : "connection closed");
        was_down = true;
      }
      link.reset();
      set_connected(false);
      if (!stop_) pause(backoff);
    }
  }

  RedisConnection publisher_;
  RedisAddress address_;
  int wake_fd_;
  std::atomic<bool> stop_{false};
  std::mutex confirmed_mu_;
  std::condition_variable confirmed_cv_;
  std::set<std::string> confirmed_;
  bool down_ = false;  // the last connection attempt failed or the connection broke
  std::thread listener_;
};

}  // namespace

std::unique_ptr<PubSub> open_memory_pubsub() {
  return std::make_unique<MemoryPubSub>();
}

std::unique_ptr<PubSub> open_redis_pubsub(const std::string& url, const std::string& ca_file) {
  RedisAddress address = parse_redis_url(url);
  address.ca_file = ca_file;
  return std::make_unique<RedisPubSub>(address);
}

}  // namespace gameverse::platform
