// The store probe: every store call of the SDK behind an RPC, for the store's host tests.
#include <gameverse/sdk/plugin.hpp>

#include "gameverse/storeprobe/v1/store_probe.pb.h"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::storeprobe::v1;

void fill(const sdk::Store::Object& from, pb::Object& to) {
  to.set_key(from.key);
  to.set_value(from.value);
  to.set_owner(from.owner);
  to.set_version(from.version);
  to.set_created_unix_ms(from.created_unix_ms);
  to.set_updated_unix_ms(from.updated_unix_ms);
}

void add(sdk::Store::Batch& batch, const pb::Write& w) {
  const int64_t expected = w.has_expected_version() ? w.expected_version() : sdk::Store::kAnyVersion;
  if (w.is_delete()) {
    batch.erase(w.collection(), w.key(), expected);
  } else {
    batch.put(w.collection(), w.key(), w.value(), expected, w.owner());
  }
}

class StoreProbe final : public sdk::Plugin {
 public:
  explicit StoreProbe(sdk::InitContext& init) : store_(init.host.store()) {}

  static void describe(sdk::PluginBuilder<StoreProbe>& b) {
    b.service("gameverse.storeprobe.v1.StoreProbe")
        .blocking("Put", &StoreProbe::write, sdk::kPublic)
        .blocking("Delete", &StoreProbe::write, sdk::kPublic)
        .blocking("Get", &StoreProbe::get, sdk::kPublic)
        .blocking("Batch", &StoreProbe::batch, sdk::kPublic)
        .blocking("List", &StoreProbe::list, sdk::kPublic);
    b.collection("items").collection("profiles");
  }

  sdk::Status write(sdk::CallContext&, const pb::Write& request, pb::Versions& reply) {
    sdk::Store::Batch batch;
    add(batch, request);
    for (int64_t v : store_.commit(batch)) reply.add_versions(v);
    return sdk::Status::ok();
  }

  sdk::Status batch(sdk::CallContext&, const pb::Writes& request, pb::Versions& reply) {
    sdk::Store::Batch batch;
    for (const auto& w : request.writes()) add(batch, w);
    for (int64_t v : store_.commit(batch)) reply.add_versions(v);
    return sdk::Status::ok();
  }

  sdk::Status get(sdk::CallContext&, const pb::Key& request, pb::Object& reply) {
    auto object = store_.get(request.collection(), request.key());
    if (!object) return {sdk::StatusCode::kNotFound, "no such key"};
    fill(*object, reply);
    return sdk::Status::ok();
  }

  sdk::Status list(sdk::CallContext&, const pb::Query& request, pb::Page& reply) {
    sdk::Store::Page page = store_.list(
        {request.collection(), request.key_prefix(), request.owner(), request.cursor(), request.limit()});
    for (const auto& object : page.objects) fill(object, *reply.add_objects());
    reply.set_next_cursor(page.next_cursor);
    return sdk::Status::ok();
  }

 private:
  sdk::Store store_;
};

}  // namespace

GAMEVERSE_PLUGIN(StoreProbe, "store-probe", "1.0.0", "The host's store behind RPCs, for tests")
