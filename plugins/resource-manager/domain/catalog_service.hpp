// The current catalog, held in memory and swapped whole when a version is published here or
// announced by another host; publishing validates, checks holders, and commits atomically.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "domain/catalog.hpp"
#include "domain/repository.hpp"

namespace gameverse::resources {

struct PublishOutcome {
  uint64_t version = 0;
  int64_t published_unix_ms = 0;  // of `version`
  bool unchanged = false;
  size_t upserted = 0;
  size_t removed = 0;
};

// Thrown when a publish cannot go on: the message says why.
class PublishRefused : public DomainError {
 public:
  enum class Reason { kConflict, kHeld, kCannotConfirm };
  // A lost race is ABORTED (read again and retry); items still held, or not known to be free,
  // FAILED_PRECONDITION.
  PublishRefused(Reason reason, const std::string& message)
      : DomainError(reason == Reason::kConflict ? Kind::kAborted : Kind::kFailedPrecondition, message),
        reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

class CatalogService {
 public:
  // Asks who holds the given items; returns those held. Throws PublishRefused(kCannotConfirm)
  // when it cannot tell.
  using HeldItems = std::function<std::vector<std::string>(const std::vector<std::string>&)>;

  CatalogService(CatalogRepository& repository, Limits limits, size_t history,
                 std::function<int64_t()> now_ms);

  // The catalog as this host holds it; never touches the repository.
  std::shared_ptr<const CatalogState> current() const;

  // Reads the repository again when its head moved, or names another lineage (epoch or publish
  // id) than the one held; true when the catalog held changed.
  bool refresh();
  // Reads the repository whole (at start).
  void load();
  // The repository's head now.
  Head head() { return repository_.head(); }

  // Validates (ValidationError), checks holders of removed retired items, commits as the next
  // version (PublishRefused on a lost race) and holds it.
  // `actor` is recorded with the version.
  PublishOutcome publish(const PublishRequest& request, const HeldItems& held, const std::string& actor = {});

  const Limits& limits() const { return limits_; }

 private:
  // Holds `state`. Within one lineage never back (a slower read must not replace a newer version);
  // `lineage_changed`: the store's head is another lineage, and what it holds wins, older or not.
  void hold(std::shared_ptr<const CatalogState> state, bool lineage_changed = false);
  bool refresh_locked();
  // Refreshes again while a refresh asked for meanwhile is pending (store_mu_ held).
  void settle();
  void settle_quietly();

  CatalogRepository& repository_;
  const Limits limits_;
  const size_t history_;
  std::function<int64_t()> now_ms_;
  // One publish or refresh at a time on this host; the repository settles between hosts.
  std::mutex store_mu_;
  std::atomic<bool> refresh_wanted_{false};  // a refresh found store_mu_ taken
  mutable std::mutex mu_;
  std::shared_ptr<const CatalogState> state_;
};

}  // namespace gameverse::resources
