// Stands in for the inventory plugin in resource-manager's tests: FindHeldItems says the items
// named in its `held` config are held. Only resource-manager's in-process calls are answered.
#include <gameverse/sdk/plugin.hpp>

#include <set>
#include <sstream>
#include <string>

#include "gameverse/inventory/v1/held_items_fixture.pb.h"

namespace sdk = gameverse::sdk;
namespace pb = ::gameverse::inventory::v1;

namespace {

class HeldItemsFixture final : public sdk::Plugin {
 public:
  explicit HeldItemsFixture(sdk::InitContext& init) {
    std::istringstream in(init.host.config_string("held"));
    for (std::string id; std::getline(in, id, ',');) {
      if (!id.empty()) held_.insert(id);
    }
  }

  static void describe(sdk::PluginBuilder<HeldItemsFixture>& b) {
    b.service("gameverse.inventory.v1.Inventory")
        .unary("FindHeldItems", &HeldItemsFixture::find_held_items, sdk::role("admin"));
    b.config_string("held", "", "Item ids said to be held, comma-separated");
  }

  sdk::Status find_held_items(sdk::CallContext& call, const pb::FindHeldItemsRequest& request,
                              pb::FindHeldItemsResponse& response) {
    if (call.calling_plugin() != "resource-manager") {
      return {sdk::StatusCode::kPermissionDenied, "only resource-manager asks this"};
    }
    for (const std::string& id : request.item_ids()) {
      if (held_.contains(id)) response.add_held_item_ids(id);
    }
    return sdk::Status::ok();
  }

 private:
  std::set<std::string> held_;
};

}  // namespace

GAMEVERSE_PLUGIN(HeldItemsFixture, "held-items-fixture", "0.1.0",
                 "Test fixture: answers FindHeldItems from its config")
