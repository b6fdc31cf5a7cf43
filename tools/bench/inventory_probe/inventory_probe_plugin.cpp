// The inventory's test and benchmark fixture (see inventory_probe.proto). Never load it in
// production: it acts with its own plugin trust on the caller's behalf. Its methods need the role
// admin (or the host's operator), and it forwards only the inventory methods the tests need.
#include <gameverse/sdk/plugin.hpp>

#include <algorithm>
#include <array>
#include <string_view>

#include "gameverse/inventoryprobe/v1/inventory_probe.pb.h"

namespace {

namespace sdk = gameverse::sdk;
namespace pb = gameverse::inventoryprobe::v1;

// The only methods CallAsPlugin forwards.
constexpr std::array<std::string_view, 4> kForwarded = {
    "/gameverse.inventory.v1.Inventory/Grant",
    "/gameverse.inventory.v1.Inventory/Revoke",
    "/gameverse.inventory.v1.Inventory/GetInventory",
    "/gameverse.inventory.v1.Inventory/FindHeldItems",
};

// Checked again in the handler: an admin, or the host's operator ([admin] token).
bool is_admin(const sdk::CallContext& context) {
  return sdk::meets_role(context.principal(), "admin");
}

const sdk::Status kAdminsOnly{sdk::StatusCode::kPermissionDenied, "the inventory probe serves admins only"};

class InventoryProbe final : public sdk::Plugin {
 public:
  explicit InventoryProbe(sdk::InitContext& init) : host_(init.host) {}

  static void describe(sdk::PluginBuilder<InventoryProbe>& b) {
    const std::string admin = sdk::role("admin");
    b.service("gameverse.inventoryprobe.v1.InventoryProbe")
        .blocking("CallAsPlugin", &InventoryProbe::call_as_plugin, admin)
        .blocking("RawBatch", &InventoryProbe::raw_batch, admin);
    b.collection("players").collection("ledger").collection("idempotency").collection("offers");
    b.collection("offer_index").collection("holders");
  }

  sdk::Status call_as_plugin(sdk::CallContext& context, const pb::CallAsPluginRequest& request,
                             pb::CallAsPluginResponse& response) {
    if (!is_admin(context)) return kAdminsOnly;
    if (std::find(kForwarded.begin(), kForwarded.end(), request.method()) == kForwarded.end()) {
      return {sdk::StatusCode::kPermissionDenied,
              "method: the inventory probe forwards only the inventory's Grant, Revoke, GetInventory and "
              "FindHeldItems, not '" +
                  request.method() + "'"};
    }
    sdk::CallResult result = host_.call(request.method(), request.request(), sdk::as_plugin);
    response.set_code(static_cast<int32_t>(result.status.code()));
    response.set_message(result.status.message());
    response.set_response(result.response);
    return sdk::Status::ok();
  }

  // The same reads and writes as the inventory's change of that shape, values of similar size,
  // retried on a conflict as the inventory does.
  sdk::Status raw_batch(sdk::CallContext& context, const pb::RawBatchRequest& request,
                        pb::RawBatchResponse& response) {
    if (!is_admin(context)) return kAdminsOnly;
    const sdk::Store store = host_.store();
    const std::string value(96, 'x');
    const bool accept = request.shape() == pb::SHAPE_ACCEPT;
    for (uint32_t attempt = 1; attempt <= 8; ++attempt) {
      response.set_attempts(attempt);
      store.get("idempotency", request.key());
      sdk::Store::Batch batch;
      std::vector<std::string> players = {request.player_a()};
      if (accept) {
        players.push_back(request.player_b());
        store.get("offers", request.key());
      }
      for (const std::string& p : players) {
        const auto doc = store.get("players", p);
        batch.put("players", p, value, doc ? doc->version : sdk::Store::kCreateOnly, p);
        batch.put("ledger", p + "/" + request.key(), value, sdk::Store::kCreateOnly, p);
        batch.put("holders", "item/" + p, std::string());
      }
      if (accept) {
        batch.put("offers", request.key(), value);
        batch.erase("offer_index", request.player_a() + "/out/" + request.key());
        batch.erase("offer_index", request.player_b() + "/in/" + request.key());
      }
      batch.put("idempotency", request.key(), value, sdk::Store::kCreateOnly);
      try {
        store.commit(batch);
        return sdk::Status::ok();
      } catch (const sdk::Error& e) {
        if (e.code() != sdk::StatusCode::kAborted && e.code() != sdk::StatusCode::kAlreadyExists) throw;
      }
    }
    return {sdk::StatusCode::kAborted, "conflicts on every attempt"};
  }

 private:
  sdk::Host host_;
};

}  // namespace

GAMEVERSE_PLUGIN(InventoryProbe, "inventory-probe", "1.0.0", "Inventory test and benchmark fixture")
