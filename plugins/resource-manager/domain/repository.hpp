// Where catalog versions are kept. The store implementation is infrastructure/; tests use an
// in-memory one.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "domain/catalog.hpp"

namespace gameverse::resources {

// A catalog version as read, with the change records of the versions before it that are kept.
struct CatalogState {
  Catalog catalog;
  std::vector<ChangeRecord> history;  // ascending, consecutive, ending at catalog.version (when any)
  int64_t head_revision = 0;          // the repository's token for the head: a commit builds on it
};

// What the head names now: the version and its lineage.
struct Head {
  uint64_t version = 0;  // 0: nothing published
  std::string epoch;
  std::string publish_id;
};

class CatalogRepository {
 public:
  virtual ~CatalogRepository() = default;
  virtual Head head() = 0;
  // The current catalog, consistent as of one version, and up to `history` change records.
  virtual CatalogState load(size_t history) = 0;
  // The current catalog from `held` and what the versions after it changed, read definition by
  // definition; nullopt when that cannot be done (their change records are not kept, a publish
  // moved the head meanwhile, the store's record of `held`'s version is another publish's): load()
  // then.
  virtual std::optional<CatalogState> advance(const CatalogState& held, size_t history) {
    (void)held;
    (void)history;
    return std::nullopt;
  }
  // Writes plan.next (its version set) over `base`, all in one atomic write that holds only when
  // the head is still base.head_revision. False (and nothing written) when another publish came
  // first. Returns the new head revision through `revision`. May throw when the store cannot
  // say whether the write held (the caller then reads the head for plan.next.publish_id).
  virtual bool commit(const CatalogState& base, const PublishPlan& plan, const ChangeRecord& record,
                      int64_t& revision) = 0;
};

}  // namespace gameverse::resources
