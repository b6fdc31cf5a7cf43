#include "domain/hash_limiter.hpp"

#include "domain/model.hpp"

namespace gameverse::auth {

namespace {

thread_local HashLimiter::CallScope* current_scope = nullptr;

AuthError busy() {
  return AuthError(AuthError::Kind::kBusy,
                   "auth is busy checking passwords (hash_workers and hash_queue are taken); retry in 1 s",
                   1000);
}

}  // namespace

HashLimiter::CallScope::CallScope(std::chrono::system_clock::time_point deadline,
                                  std::function<bool()> cancelled)
    : deadline_(deadline), cancelled_(std::move(cancelled)), outer_(current_scope) {
  current_scope = this;
}

HashLimiter::CallScope::~CallScope() {
  current_scope = outer_;
}

HashLimiter::Slot::~Slot() {
  if (owner_ != nullptr) owner_->release();
}

void HashLimiter::check_not_full() const {
  std::lock_guard lock(mu_);
  if (working_ >= workers_ && waiting_ >= queue_) throw busy();
}

HashLimiter::Slot HashLimiter::acquire() {
  std::unique_lock lock(mu_);
  if (working_ < workers_) {
    ++working_;
    return Slot(this);
  }
  if (waiting_ >= queue_) throw busy();
  ++waiting_;
  const CallScope* scope = current_scope;
  // Cancellation has no wake-up of its own: look at it every few milliseconds.
  constexpr auto kPoll = std::chrono::milliseconds(20);
  while (working_ >= workers_) {
    if (scope != nullptr && ((scope->cancelled_ && scope->cancelled_()) ||
                             std::chrono::system_clock::now() >= scope->deadline_)) {
      --waiting_;
      throw AuthError(AuthError::Kind::kBusy,
                      "auth is busy checking passwords; the call ended (deadline or cancellation) while "
                      "it waited for a hash worker",
                      1000);
    }
    if (scope == nullptr) {
      freed_.wait(lock);
    } else {
      freed_.wait_for(lock, kPoll);
    }
  }
  --waiting_;
  ++working_;
  return Slot(this);
}

void HashLimiter::release() {
  {
    std::lock_guard lock(mu_);
    --working_;
  }
  freed_.notify_one();
}

}  // namespace gameverse::auth
