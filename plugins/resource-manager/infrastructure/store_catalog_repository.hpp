// The catalog in the host's store: collection "head" (key "current"), "definitions" (one
// document per definition, "<kind>/<id>"), "changes" (one per version) and "migrations" (one per
// removed item). A publish is one batch conditional on the head's store version.
#pragma once

#include <gameverse/sdk/store.hpp>

#include "domain/repository.hpp"

namespace gameverse::resources {

class StoreCatalogRepository final : public CatalogRepository {
 public:
  explicit StoreCatalogRepository(gameverse::sdk::Store store) : store_(store) {}

  Head head() override;
  CatalogState load(size_t history) override;
  std::optional<CatalogState> advance(const CatalogState& held, size_t history) override;
  bool commit(const CatalogState& base, const PublishPlan& plan, const ChangeRecord& record,
              int64_t& revision) override;

 private:
  bool try_load(size_t history, CatalogState& out);
  gameverse::sdk::Store store_;
};

// "item/sword" and back.
std::string definition_key(const Ref& ref);
std::string version_key(uint64_t version);

}  // namespace gameverse::resources
