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

class CatalogRepository {
 public:
  virtual ~CatalogRepository() = default;
  // The version the head names now (0: nothing published).
  virtual uint64_t head_version() = 0;
  // The current catalog, consistent as of one version, and up to `history` change records.
  virtual CatalogState load(size_t history) = 0;
  // The current catalog from `held` and what the versions after it changed, read definition by
  // definition; nullopt when that cannot be done (their change records are not kept, a publish
  // moved the head meanwhile): load() then.
  virtual std::optional<CatalogState> advance(const CatalogState& held, size_t history) {
    (void)held;
    (void)history;
    return std::nullopt;
  }
  // Writes plan.next (its version set) over `base`, all in one atomic write that holds only when
  // the head is still base.head_revision. False (and nothing written) when another publish came
  // first. Returns the new head revision through `revision`.
  virtual bool commit(const CatalogState& base, const PublishPlan& plan, const ChangeRecord& record,
                      int64_t& revision) = 0;
};

}  // namespace gameverse::resources
