#include "infrastructure/store_catalog_repository.hpp"

#include <cstdio>
#include <set>

#include "gameverse/resources/records/v1/records.pb.h"
#include "infrastructure/mapping.hpp"

namespace gameverse::resources {

namespace rec = ::gameverse::resources::records::v1;
using gameverse::sdk::Error;
using gameverse::sdk::StatusCode;
using gameverse::sdk::Store;

namespace {

constexpr const char* kHead = "head";
constexpr const char* kHeadKey = "current";
constexpr const char* kDefinitions = "definitions";
constexpr const char* kChanges = "changes";
constexpr const char* kMigrations = "migrations";
constexpr int kLoadAttempts = 8;
constexpr size_t kMaxAdvanceReads = 64;

Migration migration_of(const rec::StoredMigration& stored) {
  ::gameverse::resources::v1::ItemMigration m;
  m.ParseFromString(stored.SerializeAsString());  // the same fields 1 to 5
  Migration out = to_domain(m);
  out.from_max_stack = stored.from_max_stack();
  return out;
}

ChangeRecord change_of(const rec::ChangeRecord& m) {
  ChangeRecord out{m.version(), m.published_unix_ms(), {}, m.published_by(), m.publish_id()};
  for (int i = 0; i < m.changed_size(); ++i)
    out.changed.push_back(to_domain(m.changed(i), static_cast<size_t>(i)));
  return out;
}

}  // namespace

std::string definition_key(const Ref& ref) {
  return std::string(kind_name(ref.kind)) + "/" + ref.id;
}

std::string version_key(uint64_t version) {
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "%020llu", static_cast<unsigned long long>(version));
  return buffer;
}

Head StoreCatalogRepository::head() {
  auto head = store_.get<rec::Head>(kHead, kHeadKey);
  if (!head) return {};
  return {head->value.version(), head->value.epoch(), head->value.publish_id()};
}

CatalogState StoreCatalogRepository::load(size_t history) {
  CatalogState state;
  for (int attempt = 0; attempt < kLoadAttempts; ++attempt) {
    if (try_load(history, state)) return state;
  }
  throw Error(StatusCode::kUnavailable, "the catalog kept changing while it was read; try again");
}

// One read of the whole catalog; false when a publish moved the head meanwhile.
bool StoreCatalogRepository::try_load(size_t history, CatalogState& out) {
  out = CatalogState{};
  auto head = store_.get<rec::Head>(kHead, kHeadKey);
  if (!head) return true;  // nothing published yet
  const uint64_t version = head->value.version();
  out.catalog.version = version;
  out.catalog.published_unix_ms = head->value.published_unix_ms();
  out.catalog.epoch = head->value.epoch();
  out.catalog.publish_id = head->value.publish_id();
  out.head_revision = head->version;

  Store::Query query{kDefinitions, "", "", "", 1000};
  do {
    auto page = store_.list<rec::StoredDefinition>(query);
    for (auto& r : page.records) {
      if (r.value.version() > version) return false;  // a newer publish's document
      switch (r.value.definition_case()) {
        case rec::StoredDefinition::kItem:
          out.catalog.items[r.value.item().id()] = to_domain(r.value.item());
          if (r.value.item().retired())
            out.catalog.retired_since[r.value.item().id()] = r.value.retired_unix_ms();
          break;
        case rec::StoredDefinition::kCurrency:
          out.catalog.currencies[r.value.currency().id()] = to_domain(r.value.currency());
          break;
        case rec::StoredDefinition::kBundle:
          out.catalog.bundles[r.value.bundle().id()] = to_domain(r.value.bundle());
          break;
        case rec::StoredDefinition::kAsset:
          out.catalog.assets[r.value.asset().asset_id()] = to_domain(r.value.asset());
          break;
        default: throw Error(StatusCode::kDataLoss, "definition '" + r.key + "' holds no definition");
      }
    }
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());

  query = Store::Query{kMigrations, "", "", "", 1000};
  do {
    auto page = store_.list<rec::StoredMigration>(query);
    for (auto& r : page.records) {
      if (r.value.catalog_version() > version) return false;
      out.catalog.migrations[r.value.from_item_id()] = migration_of(r.value);
    }
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());

  // The change records of the last versions, newest first until one is missing.
  std::vector<ChangeRecord> newest_first;
  for (uint64_t v = version; v >= 1 && newest_first.size() < history; --v) {
    auto record = store_.get<rec::ChangeRecord>(kChanges, version_key(v));
    if (!record) break;
    newest_first.push_back(change_of(record->value));
  }
  out.history.assign(newest_first.rbegin(), newest_first.rend());

  auto again = store_.get<rec::Head>(kHead, kHeadKey);
  return again && again->version == head->version;
}

std::optional<CatalogState> StoreCatalogRepository::advance(const CatalogState& held, size_t history) {
  auto head = store_.get<rec::Head>(kHead, kHeadKey);
  if (!head || held.catalog.version == 0 || head->value.version() <= held.catalog.version ||
      head->value.version() - held.catalog.version > history || head->value.epoch() != held.catalog.epoch) {
    return std::nullopt;
  }
  // The store's record of the version held must be the publish held, or the histories differ.
  auto held_record = store_.get<rec::ChangeRecord>(kChanges, version_key(held.catalog.version));
  if (!held_record || held_record->value.publish_id() != held.catalog.publish_id) return std::nullopt;
  const uint64_t version = head->value.version();
  CatalogState out = held;
  out.catalog.version = version;
  out.catalog.published_unix_ms = head->value.published_unix_ms();
  out.catalog.epoch = head->value.epoch();
  out.catalog.publish_id = head->value.publish_id();
  out.head_revision = head->version;
  std::set<Ref> changed;
  for (uint64_t v = held.catalog.version + 1; v <= version; ++v) {
    auto record = store_.get<rec::ChangeRecord>(kChanges, version_key(v));
    if (!record) return std::nullopt;
    out.history.push_back(change_of(record->value));
    changed.insert(out.history.back().changed.begin(), out.history.back().changed.end());
    // One read per definition: past a few dozen, listing the whole catalog in pages is quicker.
    if (changed.size() > kMaxAdvanceReads) return std::nullopt;
  }
  if (out.history.size() > history) {
    out.history.erase(out.history.begin(),
                      out.history.begin() + static_cast<std::ptrdiff_t>(out.history.size() - history));
  }
  for (const Ref& ref : changed) {
    auto stored = store_.get<rec::StoredDefinition>(kDefinitions, definition_key(ref));
    if (stored && stored->value.version() > version) return std::nullopt;  // a newer publish's
    switch (ref.kind) {
      case Kind::kItem:
        out.catalog.items.erase(ref.id);
        out.catalog.retired_since.erase(ref.id);
        if (stored && stored->value.has_item()) {
          out.catalog.items[ref.id] = to_domain(stored->value.item());
          if (stored->value.item().retired())
            out.catalog.retired_since[ref.id] = stored->value.retired_unix_ms();
        }
        break;
      case Kind::kCurrency:
        out.catalog.currencies.erase(ref.id);
        if (stored && stored->value.has_currency())
          out.catalog.currencies[ref.id] = to_domain(stored->value.currency());
        break;
      case Kind::kBundle:
        out.catalog.bundles.erase(ref.id);
        if (stored && stored->value.has_bundle())
          out.catalog.bundles[ref.id] = to_domain(stored->value.bundle());
        break;
      case Kind::kAsset:
        out.catalog.assets.erase(ref.id);
        if (stored && stored->value.has_asset())
          out.catalog.assets[ref.id] = to_domain(stored->value.asset());
        break;
    }
    // An item removed may have a migration now; one defined again has none.
    if (ref.kind == Kind::kItem) {
      out.catalog.migrations.erase(ref.id);
      if (out.catalog.items.contains(ref.id)) continue;
      auto migration = store_.get<rec::StoredMigration>(kMigrations, ref.id);
      if (migration && migration->value.catalog_version() > version) return std::nullopt;
      if (migration) out.catalog.migrations[ref.id] = migration_of(migration->value);
    }
  }
  auto again = store_.get<rec::Head>(kHead, kHeadKey);
  if (!again || again->version != head->version) return std::nullopt;
  return out;
}

bool StoreCatalogRepository::commit(const CatalogState& base, const PublishPlan& plan,
                                    const ChangeRecord& record, int64_t& revision) {
  Store::Batch batch;
  const Catalog& next = plan.next;
  for (const Ref& ref : plan.upserted) {
    rec::StoredDefinition stored;
    stored.set_version(next.version);
    switch (ref.kind) {
      case Kind::kItem:
        to_proto(next.items.at(ref.id), *stored.mutable_item());
        if (auto since = next.retired_since.find(ref.id); since != next.retired_since.end())
          stored.set_retired_unix_ms(since->second);
        break;
      case Kind::kCurrency: to_proto(next.currencies.at(ref.id), *stored.mutable_currency()); break;
      case Kind::kBundle: to_proto(next.bundles.at(ref.id), *stored.mutable_bundle()); break;
      case Kind::kAsset: to_proto(next.assets.at(ref.id), *stored.mutable_asset()); break;
    }
    batch.put(kDefinitions, definition_key(ref), stored);
  }
  for (const Ref& ref : plan.removed) batch.erase(kDefinitions, definition_key(ref));
  for (const Migration& m : plan.new_migrations) {
    ::gameverse::resources::v1::ItemMigration api;
    to_proto(m, api);
    rec::StoredMigration stored;
    stored.ParseFromString(api.SerializeAsString());
    stored.set_from_max_stack(m.from_max_stack);
    batch.put(kMigrations, m.from_item_id, stored);
  }
  for (const std::string& id : plan.cleared_migrations) batch.erase(kMigrations, id);
  rec::ChangeRecord change;
  change.set_version(record.version);
  change.set_published_unix_ms(record.published_unix_ms);
  change.set_published_by(record.published_by);
  change.set_publish_id(record.publish_id);
  for (const Ref& ref : record.changed) to_proto(ref, *change.add_changed());
  batch.put(kChanges, version_key(record.version), change, Store::kCreateOnly);
  rec::Head head;
  head.set_version(next.version);
  head.set_published_unix_ms(next.published_unix_ms);
  head.set_epoch(next.epoch);
  head.set_publish_id(next.publish_id);
  batch.put(kHead, kHeadKey, head, base.catalog.version == 0 ? Store::kCreateOnly : base.head_revision);
  try {
    const std::vector<int64_t> versions = store_.commit(batch);
    revision = versions.back();
    return true;
  } catch (const Error& e) {
    if (e.status().code() == StatusCode::kAborted || e.status().code() == StatusCode::kFailedPrecondition ||
        e.status().code() == StatusCode::kAlreadyExists) {
      return false;
    }
    throw;
  }
}

}  // namespace gameverse::resources
