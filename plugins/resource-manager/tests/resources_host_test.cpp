// The resource-manager plugin in the real host, through a real gRPC client, on SQLite and on
// PostgreSQL (the server `tools/gv test` starts). PostgreSQL keeps the catalog between tests of a
// run, so every test names its definitions with a suffix of its own and builds on the version it
// finds.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include "eventually.hpp"

#include "gameverse/auth/v1/auth.grpc.pb.h"
#include "gameverse/platformprobe/v1/platform_probe.grpc.pb.h"
#include "gameverse/resources/v1/resources.grpc.pb.h"
#include "host_process.hpp"
#include "sign_up.hpp"
#include "test_servers.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::resources::v1;

constexpr const char* kOperatorToken = "resources-test-operator-token-01";

pb::ItemDefinition item(const std::string& id, int64_t max_stack = 99, bool retired = false) {
  pb::ItemDefinition d;
  d.set_id(id);
  d.set_name("The " + id);
  d.set_category("weapon");
  d.set_stackable(true);
  d.set_max_stack(max_stack);
  d.set_tradable(true);
  d.set_retired(retired);
  (*d.mutable_properties())["damage"].set_int_value(12);
  (*d.mutable_properties())["lore"].set_string_value("forged in " + id);
  return d;
}

std::string deterministic(const google::protobuf::Message& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

pb::CurrencyDefinition currency(const std::string& id, int64_t max_balance = 1'000'000) {
  pb::CurrencyDefinition d;
  d.set_id(id);
  d.set_name("Currency " + id);
  d.set_max_balance(max_balance);
  return d;
}

class ResourcesThroughTheHost : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      store_ = "[store]\nbackend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    suffix_ = "_" + std::to_string(std::random_device()() % 1'000'000);
    plugin_ = data_.path() / "resource-manager.so";  // a copy of its own, so a test can "rebuild" it
    std::filesystem::copy_file(GV_PLUGIN_DIR "/resource-manager.so", plugin_);
  }
  void TearDown() override {
    if (HasFailure() && host_) std::cerr << "host log:\n" << host_->log();
  }
  std::string config(const std::string& host_config = "", const std::string& data_dir = "") const {
    return "[host]\nwatch = false\ndata_dir = \"" + (data_dir.empty() ? data_.path().string() : data_dir) +
           "\"\n" + store_ + host_config + "[admin]\ntoken = \"" + kOperatorToken +
           "\"\n[[plugin]]\nname = \"resource-manager\"\npath = \"" + plugin_.string() +
           "\"\n[plugin.config]\nrefresh_interval_ms = 60000\n" + plugin_config_ +
           "[[plugin]]\nname = \"auth\"\npath = "
           "\"" GV_PLUGIN_DIR
           "/auth.so\"\n[plugin.config]\nargon2_opslimit = 1\nargon2_memlimit_kib = 8192\n";
  }
  // `plugins`: more [[plugin]] blocks, after the others.
  void start(const std::string& host_config = "", const std::string& plugins = "") {
    host_ = std::make_unique<HostProcess>(config(host_config) + plugins);
    resources_ = pb::Resources::NewStub(host_->channel());
  }
  std::string id(const std::string& base) const { return base + suffix_; }

  static void as_operator(grpc::ClientContext& context) {
    context.AddMetadata("authorization", std::string("Bearer ") + kOperatorToken);
  }
  grpc::Status publish(const pb::PublishRequest& request, pb::PublishResponse* response = nullptr,
                       pb::Resources::Stub* stub = nullptr) {
    grpc::ClientContext context;
    as_operator(context);
    pb::PublishResponse ignored;
    return (stub ? stub : resources_.get())->Publish(&context, request, response ? response : &ignored);
  }
  pb::GetCatalogResponse catalog_page(const std::string& token = "", uint32_t page_size = 0,
                                      pb::Resources::Stub* stub = nullptr) {
    grpc::ClientContext context;
    as_operator(context);
    pb::GetCatalogRequest request;
    request.set_page_token(token);
    request.set_page_size(page_size);
    pb::GetCatalogResponse response;
    const grpc::Status status = (stub ? stub : resources_.get())->GetCatalog(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  // Every page of the catalog, as bytes to compare (maps in key order).
  std::string whole_catalog(pb::Resources::Stub* stub = nullptr) {
    std::string all, token;
    do {
      pb::GetCatalogResponse page = catalog_page(token, 1000, stub);
      all += deterministic(page);
      token = page.next_page_token();
    } while (!token.empty());
    return all;
  }
  uint64_t version(pb::Resources::Stub* stub = nullptr) { return catalog_page("", 1, stub).version(); }
  pb::LookupDefinitionsResponse lookup(const std::vector<std::string>& items,
                                       const std::vector<std::string>& currencies = {},
                                       grpc::Status* status_out = nullptr) {
    grpc::ClientContext context;
    as_operator(context);
    pb::LookupDefinitionsRequest request;
    for (const auto& i : items) request.add_item_ids(i);
    for (const auto& c : currencies) request.add_currency_ids(c);
    pb::LookupDefinitionsResponse response;
    const grpc::Status status = resources_->LookupDefinitions(&context, request, &response);
    if (status_out)
      *status_out = status;
    else
      EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }
  // A change set adding these items and currencies on top of the version held now.
  pb::PublishRequest adding(std::vector<pb::ItemDefinition> items,
                            std::vector<pb::CurrencyDefinition> currencies = {}) {
    pb::PublishRequest request;
    request.set_expected_version(version());
    for (auto& i : items) *request.mutable_upsert()->add_items() = i;
    for (auto& c : currencies) *request.mutable_upsert()->add_currencies() = c;
    return request;
  }
  std::string player_token() {
    auto auth = gameverse::auth::v1::Auth::NewStub(host_->channel());
    return sign_up(*auth, "p" + std::to_string(std::random_device()() % 1000000)).access_token();
  }

  TempDir data_;
  std::string plugin_config_;  // more resource-manager config lines
  std::filesystem::path plugin_;
  std::string store_;
  std::string suffix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::Resources::Stub> resources_;
};

TEST_P(ResourcesThroughTheHost, APublishedCatalogIsReadWholeByIdAsADiffAndAfterARestart) {
  start();
  const uint64_t before = version();
  pb::PublishRequest request = adding({item(id("sword")), item(id("shield"))}, {currency(id("gold"))});
  pb::BundleDefinition* starter = request.mutable_upsert()->add_bundles();
  starter->set_id(id("starter"));
  starter->set_name("Starter pack");
  auto* grant = starter->add_items();
  grant->set_item_id(id("sword"));
  grant->set_count(1);
  auto* coins = starter->add_currencies();
  coins->set_currency_id(id("gold"));
  coins->set_amount(100);
  pb::AssetManifest* icon = request.mutable_upsert()->add_assets();
  icon->set_asset_id(id("sword"));
  icon->set_content_hash("sha256:00ff");
  icon->set_size_bytes(2048);
  icon->set_url("https://cdn.example.com/sword.png");
  pb::PublishResponse published;
  ASSERT_TRUE(publish(request, &published).ok());
  EXPECT_EQ(published.version(), before + 1);
  EXPECT_EQ(published.upserted(), 5u);

  // The same again: no new version.
  request.set_expected_version(published.version());
  pb::PublishResponse again;
  ASSERT_TRUE(publish(request, &again).ok());
  EXPECT_TRUE(again.unchanged());
  EXPECT_EQ(again.version(), published.version());

  // One definition.
  {
    grpc::ClientContext context;
    as_operator(context);
    pb::GetDefinitionRequest one;
    one.set_kind(pb::DEFINITION_KIND_BUNDLE);
    one.set_id(id("starter"));
    pb::GetDefinitionResponse response;
    ASSERT_TRUE(resources_->GetDefinition(&context, one, &response).ok());
    ASSERT_TRUE(response.has_bundle());
    EXPECT_EQ(response.bundle().currencies(0).amount(), 100);
    grpc::ClientContext missing_context;
    as_operator(missing_context);
    one.set_id(id("nothing"));
    const grpc::Status missing = resources_->GetDefinition(&missing_context, one, &response);
    EXPECT_EQ(missing.error_code(), grpc::StatusCode::NOT_FOUND);
  }

  // A change set, then the diff since the version before it.
  pb::PublishRequest change;
  change.set_expected_version(published.version());
  *change.mutable_upsert()->add_items() = item(id("shield"), 5);
  *change.mutable_upsert()->add_items() = item(id("bow"));
  pb::DefinitionRef* gone = change.add_remove();
  gone->set_kind(pb::DEFINITION_KIND_ASSET);
  gone->set_id(id("sword"));
  pb::PublishResponse changed;
  ASSERT_TRUE(publish(change, &changed).ok());
  EXPECT_EQ(changed.version(), published.version() + 1);
  EXPECT_EQ(changed.upserted(), 2u);
  EXPECT_EQ(changed.removed(), 1u);
  {
    grpc::ClientContext context;
    as_operator(context);
    pb::GetChangesRequest since;
    since.set_since_version(published.version());
    pb::GetChangesResponse diff;
    ASSERT_TRUE(resources_->GetChanges(&context, since, &diff).ok());
    EXPECT_FALSE(diff.refetch_all());
    EXPECT_EQ(diff.version(), changed.version());
    ASSERT_EQ(diff.upserted().items_size(), 2);
    EXPECT_EQ(diff.upserted().items(0).id(), id("bow"));
    EXPECT_EQ(diff.upserted().items(1).max_stack(), 5);
    ASSERT_EQ(diff.removed_size(), 1);
    EXPECT_EQ(diff.removed(0).kind(), pb::DEFINITION_KIND_ASSET);
    // A cache holding nothing, or a version no publish has made, is told to refetch.
    grpc::ClientContext from_nothing;
    as_operator(from_nothing);
    since.set_since_version(0);
    ASSERT_TRUE(resources_->GetChanges(&from_nothing, since, &diff).ok());
    EXPECT_TRUE(diff.refetch_all());
    EXPECT_EQ(diff.upserted().items_size(), 0);
    grpc::ClientContext ahead;
    as_operator(ahead);
    since.set_since_version(changed.version() + 1);
    ASSERT_TRUE(resources_->GetChanges(&ahead, since, &diff).ok());
    EXPECT_TRUE(diff.refetch_all());
    EXPECT_EQ(diff.version(), changed.version());
    grpc::ClientContext far_ahead;
    as_operator(far_ahead);
    since.set_since_version(std::numeric_limits<uint64_t>::max());
    ASSERT_TRUE(resources_->GetChanges(&far_ahead, since, &diff).ok());
    EXPECT_TRUE(diff.refetch_all());
    // A cache of another lineage (its epoch is not the catalog's) refetches; this one's does not.
    const std::string epoch = catalog_page("", 1).epoch();
    EXPECT_EQ(epoch.size(), 32u);
    EXPECT_EQ(diff.epoch(), epoch);
    grpc::ClientContext other_lineage;
    as_operator(other_lineage);
    since.set_since_version(published.version());
    since.set_since_epoch("0123456789abcdef0123456789abcdef");
    ASSERT_TRUE(resources_->GetChanges(&other_lineage, since, &diff).ok());
    EXPECT_TRUE(diff.refetch_all());
    grpc::ClientContext same_lineage;
    as_operator(same_lineage);
    since.set_since_epoch(epoch);
    ASSERT_TRUE(resources_->GetChanges(&same_lineage, since, &diff).ok());
    EXPECT_FALSE(diff.refetch_all());
    EXPECT_EQ(diff.upserted().items_size(), 2);
  }

  // Lookup: unknown ids are absent; more than 1000 ids are refused.
  pb::LookupDefinitionsResponse found = lookup({id("sword"), id("nope")}, {id("gold")});
  EXPECT_EQ(found.version(), changed.version());
  ASSERT_EQ(found.items_size(), 1);
  EXPECT_EQ(found.items(0).properties().at("damage").int_value(), 12);
  EXPECT_EQ(found.currencies_size(), 1);
  // An id named many times is answered once.
  const pb::LookupDefinitionsResponse repeated = lookup(std::vector<std::string>(1000, id("sword")));
  EXPECT_EQ(repeated.items_size(), 1);
  grpc::Status too_many;
  lookup(std::vector<std::string>(1001, id("sword")), {}, &too_many);
  EXPECT_EQ(too_many.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(too_many.error_message().find("1001 ids"), std::string::npos) << too_many.error_message();

  // Paging: every definition once, pages of 2.
  std::set<std::string> seen;
  std::string token;
  do {
    pb::GetCatalogResponse page = catalog_page(token, 2);
    EXPECT_LE(page.catalog().items_size() + page.catalog().currencies_size() + page.catalog().bundles_size() +
                  page.catalog().assets_size(),
              2);
    for (const auto& i : page.catalog().items()) EXPECT_TRUE(seen.insert("item/" + i.id()).second);
    for (const auto& c : page.catalog().currencies()) EXPECT_TRUE(seen.insert("currency/" + c.id()).second);
    for (const auto& b : page.catalog().bundles()) EXPECT_TRUE(seen.insert("bundle/" + b.id()).second);
    for (const auto& a : page.catalog().assets()) EXPECT_TRUE(seen.insert("asset/" + a.asset_id()).second);
    token = page.next_page_token();
  } while (!token.empty());
  for (const std::string& expected : {"item/" + id("sword"), "item/" + id("shield"), "item/" + id("bow"),
                                      "currency/" + id("gold"), "bundle/" + id("starter")}) {
    EXPECT_TRUE(seen.contains(expected)) << expected;
  }
  EXPECT_FALSE(seen.contains("asset/" + id("sword")));

  // A restart reads the same version back from the store.
  ASSERT_EQ(host_->stop(), 0);
  start();
  EXPECT_EQ(version(), changed.version());
  EXPECT_EQ(lookup({id("shield")}).items(0).max_stack(), 5);
}

TEST_P(ResourcesThroughTheHost, OfConcurrentPublishesOnTheSameVersionExactlyOneWins) {
  start();
  const uint64_t base = version();
  constexpr int kPublishers = 8;
  std::atomic<int> won{0}, aborted{0}, other{0};
  std::vector<std::thread> publishers;
  std::string abort_message;
  std::mutex mu;
  for (int p = 0; p < kPublishers; ++p) {
    publishers.emplace_back([&, p] {
      auto stub = pb::Resources::NewStub(host_->channel());
      pb::PublishRequest request;
      request.set_expected_version(base);
      *request.mutable_upsert()->add_items() = item(id("racer" + std::to_string(p)));
      const grpc::Status status = publish(request, nullptr, stub.get());
      if (status.ok())
        ++won;
      else if (status.error_code() == grpc::StatusCode::ABORTED) {
        ++aborted;
        std::lock_guard lock(mu);
        abort_message = status.error_message();
      } else {
        ++other;
      }
    });
  }
  for (auto& t : publishers) t.join();
  EXPECT_EQ(won, 1);
  EXPECT_EQ(aborted, kPublishers - 1);
  EXPECT_EQ(other, 0);
  EXPECT_NE(abort_message.find("version " + std::to_string(base)), std::string::npos) << abort_message;
  EXPECT_EQ(version(), base + 1);
  int present = 0;
  for (int p = 0; p < kPublishers; ++p) present += lookup({id("racer" + std::to_string(p))}).items_size();
  EXPECT_EQ(present, 1);
}

// Two hosts on one PostgreSQL store: the store's condition on the head settles the race.
TEST_P(ResourcesThroughTheHost, TwoHostsPublishingAtOnceCommitOneVersionEach) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "two hosts share a PostgreSQL store";
  start();
  TempDir other_dir;
  HostProcess other(config("", other_dir.path().string()));
  auto other_stub = pb::Resources::NewStub(other.channel());
  for (int round = 0; round < 10; ++round) {
    const uint64_t base = version();
    ASSERT_TRUE(eventually([&] { return version(other_stub.get()) == base; }, std::chrono::seconds(30)));
    std::atomic<int> won{0}, aborted{0};
    auto race = [&](pb::Resources::Stub* stub, const std::string& name) {
      pb::PublishRequest request;
      request.set_expected_version(base);
      *request.mutable_upsert()->add_items() = item(id(name + std::to_string(round)));
      const grpc::Status status = publish(request, nullptr, stub);
      if (status.ok()) ++won;
      if (status.error_code() == grpc::StatusCode::ABORTED) ++aborted;
    };
    std::thread a(race, resources_.get(), "a");
    std::thread b(race, other_stub.get(), "b");
    a.join();
    b.join();
    EXPECT_EQ(won, 1) << "round " << round;
    EXPECT_EQ(aborted, 1) << "round " << round;
    EXPECT_EQ(lookup({id("a" + std::to_string(round)), id("b" + std::to_string(round))}).items_size(), 1);
  }
}

TEST_P(ResourcesThroughTheHost, APlayerReadsButCannotPublish) {
  start();
  const std::string token = player_token();
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + token);
  pb::PublishResponse response;
  const grpc::Status refused = resources_->Publish(&context, adding({item(id("cheat"))}), &response);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED) << refused.error_message();
  EXPECT_EQ(lookup({id("cheat")}).items_size(), 0);
  grpc::ClientContext read_context;
  read_context.AddMetadata("authorization", "Bearer " + token);
  pb::LookupDefinitionsRequest read;
  read.add_item_ids(id("cheat"));
  pb::LookupDefinitionsResponse answer;
  EXPECT_TRUE(resources_->LookupDefinitions(&read_context, read, &answer).ok());
  grpc::ClientContext anonymous;
  EXPECT_EQ(resources_->LookupDefinitions(&anonymous, read, &answer).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

// A plugin calling Publish with its own trust passed no gate: the handler lets it publish only when
// resource-manager's trusted_plugins names it.
TEST_P(ResourcesThroughTheHost, APluginPublishesWithItsOwnTrustOnlyWhenTrusted) {
  const std::string probe =
      "[[plugin]]\nname = \"platform-probe\"\npath = \"" GV_PROBE_DIR "/platform-probe.so\"\n";
  auto relay_publish = [&](const pb::PublishRequest& publish) {
    auto stub = gameverse::platformprobe::v1::PlatformProbe::NewStub(host_->channel());
    grpc::ClientContext context;
    gameverse::platformprobe::v1::RelayRequest request;
    request.set_method("/gameverse.resources.v1.Resources/Publish");
    request.set_request(publish.SerializeAsString());
    request.set_as_plugin(true);
    gameverse::platformprobe::v1::RelayReply reply;
    return stub->RelayBlocking(&context, request, &reply);
  };
  start("", probe);
  const grpc::Status refused = relay_publish(adding({item(id("minted"))}));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(refused.error_message(),
            "plugin 'platform-probe' publishes with its own trust but is not in resource-manager's "
            "trusted_plugins");
  EXPECT_EQ(lookup({id("minted")}).items_size(), 0);

  host_.reset();
  plugin_config_ = "trusted_plugins = \"shop, platform-probe\"\n";
  start("", probe);
  const grpc::Status published = relay_publish(adding({item(id("minted"))}));
  ASSERT_TRUE(published.ok()) << published.error_message();
  EXPECT_EQ(lookup({id("minted")}).items_size(), 1);
}

// One account holds at most max_watchers_per_caller catalog watches on a host; a closed one frees
// its place.
TEST_P(ResourcesThroughTheHost, APlayersCatalogWatchesAreBounded) {
  start();
  const std::string token = player_token();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<pb::CatalogPublished>>> watches;
  auto open = [&] {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->AddMetadata("authorization", "Bearer " + token);
    contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    watches.push_back(resources_->WatchCatalog(contexts.back().get(), pb::WatchCatalogRequest()));
    pb::CatalogPublished first;
    return watches.back()->Read(&first);
  };
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(open()) << "watch " << i;
  EXPECT_FALSE(open());
  const grpc::Status refused = watches.back()->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("max_watchers_per_caller"), std::string::npos)
      << refused.error_message();
  contexts[0]->TryCancel();
  watches[0]->Finish();
  EXPECT_TRUE(eventually([&] { return open(); }, std::chrono::seconds(30)));
  for (auto& c : contexts) c->TryCancel();
}

// Accounts are free to make: the watches of all accounts from one network address are bounded
// too, and a closed one frees its place.
TEST_P(ResourcesThroughTheHost, CatalogWatchesFromOneAddressAreBoundedWhateverTheAccounts) {
  plugin_config_ = "max_watchers_per_address = 3\n";
  start();
  const std::string first = player_token(), second = player_token();
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReader<pb::CatalogPublished>>> watches;
  auto open = [&](const std::string& token) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    contexts.back()->AddMetadata("authorization", "Bearer " + token);
    contexts.back()->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    watches.push_back(resources_->WatchCatalog(contexts.back().get(), pb::WatchCatalogRequest()));
    pb::CatalogPublished sent;
    return watches.back()->Read(&sent);
  };
  ASSERT_TRUE(open(first));
  ASSERT_TRUE(open(first));
  ASSERT_TRUE(open(second));
  EXPECT_FALSE(open(second));  // the account has one; the address has three
  const grpc::Status refused = watches.back()->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("max_watchers_per_address"), std::string::npos)
      << refused.error_message();
  contexts[0]->TryCancel();
  watches[0]->Finish();
  EXPECT_TRUE(eventually([&] { return open(second); }, std::chrono::seconds(30)));
  for (auto& c : contexts) c->TryCancel();
}

TEST_P(ResourcesThroughTheHost, BadInputIsRefusedNamingTheProblemAndChangesNothing) {
  start();
  ASSERT_TRUE(publish(adding({item(id("sword"))}, {currency(id("gold"))})).ok());
  const uint64_t held = version();
  struct Case {
    std::string what;
    std::function<void(pb::PublishRequest&)> make;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"a bad id", [&](pb::PublishRequest& r) { *r.mutable_upsert()->add_items() = item("bad id!"); },
       "item 'bad id!' (#0): id"},
      {"an empty name",
       [&](pb::PublishRequest& r) {
         auto* i = r.mutable_upsert()->add_items();
         *i = item(id("nameless"));
         i->clear_name();
       },
       "(#0): name must be 1 to 128"},
      {"max_stack 0", [&](pb::PublishRequest& r) { *r.mutable_upsert()->add_items() = item(id("axe"), 0); },
       "max_stack is 0"},
      {"max_stack int64 max",
       [&](pb::PublishRequest& r) { *r.mutable_upsert()->add_items() = item(id("axe"), INT64_MAX); },
       "max_stack is 9223372036854775807"},
      {"max_balance negative",
       [&](pb::PublishRequest& r) {
         *r.mutable_upsert()->add_currencies() = currency(id("gems"), INT64_MIN);
       },
       "max_balance is -9223372036854775808"},
      {"a duplicate id",
       [&](pb::PublishRequest& r) {
         *r.mutable_upsert()->add_items() = item(id("twin"));
         *r.mutable_upsert()->add_items() = item(id("twin"));
       },
       "(#1): the id appears twice"},
      {"a dangling bundle",
       [&](pb::PublishRequest& r) {
         auto* b = r.mutable_upsert()->add_bundles();
         b->set_id(id("pack"));
         b->set_name("Pack");
         auto* x = b->add_items();
         x->set_item_id(id("ghost"));
         x->set_count(1);
       },
       "items names '" + id("ghost") + "', which is not a defined item"},
      {"an oversized property",
       [&](pb::PublishRequest& r) {
         auto* i = r.mutable_upsert()->add_items();
         *i = item(id("heavy"));
         (*i->mutable_properties())["lore"].set_string_value(std::string(5000, 'x'));
       },
       "bytes encoded; at most 3072"},
      {"a removal of an unknown id",
       [&](pb::PublishRequest& r) {
         auto* x = r.add_remove();
         x->set_kind(pb::DEFINITION_KIND_ITEM);
         x->set_id(id("never"));
       },
       "not defined in version"},
      {"a removal with no kind", [&](pb::PublishRequest& r) { r.add_remove()->set_id(id("sword")); },
       "remove #0: kind must be"},
      {"a currency removal",
       [&](pb::PublishRequest& r) {
         auto* x = r.add_remove();
         x->set_kind(pb::DEFINITION_KIND_CURRENCY);
         x->set_id(id("gold"));
       },
       "currency '" + id("gold") + "' cannot be removed"},
      {"more than one batch",
       [&](pb::PublishRequest& r) {
         for (int i = 0; i < 401; ++i)
           *r.mutable_upsert()->add_items() = item(id("many") + std::to_string(i));
       },
       "at most 400"},
  };
  for (const Case& c : cases) {
    pb::PublishRequest request;
    request.set_expected_version(held);
    c.make(request);
    const grpc::Status status = publish(request);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.what << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.expect), std::string::npos)
        << c.what << ": " << status.error_message();
  }
  pb::PublishRequest stale = adding({item(id("late"))});
  stale.set_expected_version(held + 100);
  const grpc::Status conflict = publish(stale);
  EXPECT_EQ(conflict.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_NE(conflict.error_message().find("current version is " + std::to_string(held)), std::string::npos);
  EXPECT_EQ(version(), held);
  EXPECT_EQ(
      lookup({id("axe"), id("twin"), id("nameless"), id("heavy"), id("many0"), id("late")}).items_size(), 0);

  // A page token that is not one.
  grpc::ClientContext context;
  as_operator(context);
  pb::GetCatalogRequest forged;
  forged.set_page_token("9.9.x");
  pb::GetCatalogResponse page;
  EXPECT_EQ(resources_->GetCatalog(&context, forged, &page).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(ResourcesThroughTheHost, RemovingAnItemNeedsAMigrationOrTheInventorysWordThatNobodyHoldsIt) {
  start();
  ASSERT_TRUE(
      publish(adding({item(id("sword")), item(id("shield")), item(id("hat")), item(id("old_hat"), 99, true)},
                     {currency(id("gold"))}))
          .ok());
  const uint64_t v = version();
  auto removing = [&](const std::string& item_id) {
    pb::PublishRequest r;
    r.set_expected_version(version());
    auto* x = r.add_remove();
    x->set_kind(pb::DEFINITION_KIND_ITEM);
    x->set_id(item_id);
    return r;
  };
  // Not retired, no migration.
  grpc::Status status = publish(removing(id("shield")));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("without a migration and was not retired"), std::string::npos)
      << status.error_message();
  // With a migration: removed, and a lookup of the id answers the migration.
  pb::PublishRequest migrated = removing(id("shield"));
  pb::ItemMigration* m = migrated.add_migrations();
  m->set_from_item_id(id("shield"));
  m->mutable_to_currency()->set_currency_id(id("gold"));
  m->mutable_to_currency()->set_amount(25);
  pb::PublishResponse done;
  ASSERT_TRUE(publish(migrated, &done).ok());
  pb::LookupDefinitionsResponse answer = lookup({id("shield")});
  EXPECT_EQ(answer.items_size(), 0);
  ASSERT_EQ(answer.migrations_size(), 1);
  EXPECT_EQ(answer.migrations(0).to_currency().amount(), 25);
  EXPECT_EQ(answer.migrations(0).catalog_version(), done.version());
  // Retired just now, without a migration: not yet, as another host may still grant it until it
  // reads the retirement (refresh_interval_ms is 60000 here).
  pb::PublishRequest retire = adding({item(id("hat"), 99, true)});
  ASSERT_TRUE(publish(retire).ok());
  status = publish(removing(id("hat")));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("retired too recently to be removed without a migration"),
            std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("possible from 20"), std::string::npos) << status.error_message();
  // Retired from its first version, without a migration: only with the inventory's word, and it
  // is not loaded here.
  status = publish(removing(id("old_hat")));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(status.error_message().find("inventory plugin"), std::string::npos) << status.error_message();
  EXPECT_NE(status.error_message().find("UNIMPLEMENTED"), std::string::npos) << status.error_message();
  EXPECT_EQ(lookup({id("hat")}).items_size(), 1);
  EXPECT_EQ(version(), v + 2);
  // After a restart (read back from the store), the kept migration still bounds its target: a full
  // stack of 99 shields converts into 2475 gold.
  ASSERT_EQ(host_->stop(), 0);
  start();
  status = publish(adding({}, {currency(id("gold"), 2000)}));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("max_balance 2000 is too low"), std::string::npos)
      << status.error_message();
  EXPECT_TRUE(publish(adding({}, {currency(id("gold"), 2475)})).ok());
}

// With FindHeldItems served (by a fixture standing in for the inventory): a retired item somebody
// holds stays; one nobody holds goes, and a lookup of it answers nothing.
TEST_P(ResourcesThroughTheHost, ARetiredItemGoesOnlyWhenTheInventorySaysNobodyHoldsIt) {
  start("", "[[plugin]]\nname = \"held-items-fixture\"\npath = \"" GV_FIXTURE_DIR
            "/held-items-fixture.so\"\n[plugin.config]\nheld = \"" +
                id("kept_hat") + "\"\n");
  ASSERT_TRUE(publish(adding({item(id("kept_hat"), 1, true), item(id("lost_hat"), 1, true)})).ok());
  const uint64_t v = version();
  auto removing = [&](const std::vector<std::string>& ids) {
    pb::PublishRequest r;
    r.set_expected_version(version());
    for (const auto& item_id : ids) {
      auto* x = r.add_remove();
      x->set_kind(pb::DEFINITION_KIND_ITEM);
      x->set_id(item_id);
    }
    return r;
  };
  const grpc::Status held = publish(removing({id("kept_hat"), id("lost_hat")}));
  EXPECT_EQ(held.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(held.error_message().find("'" + id("kept_hat") + "' are still held"), std::string::npos)
      << held.error_message();
  EXPECT_EQ(version(), v);
  EXPECT_EQ(lookup({id("kept_hat"), id("lost_hat")}).items_size(), 2);

  pb::PublishResponse done;
  ASSERT_TRUE(publish(removing({id("lost_hat")}), &done).ok());
  EXPECT_EQ(done.removed(), 1u);
  const pb::LookupDefinitionsResponse after = lookup({id("kept_hat"), id("lost_hat")});
  ASSERT_EQ(after.items_size(), 1);
  EXPECT_EQ(after.items(0).id(), id("kept_hat"));
  EXPECT_EQ(after.migrations_size(), 0);
}

// Ten thousand items, in change sets of 400 (one store batch each), read back page by page and
// after a restart.
TEST_P(ResourcesThroughTheHost, ACatalogOfTenThousandItemsIsPublishedInChangeSetsAndReadBack) {
  start();
  constexpr int kItems = 10000;
  for (int first = 0; first < kItems; first += 400) {
    std::vector<pb::ItemDefinition> items;
    for (int i = first; i < first + 400; ++i) items.push_back(item(id("bulk") + "_" + std::to_string(i)));
    const grpc::Status status = publish(adding(items));
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  auto count_mine = [&] {
    int mine = 0;
    std::string token;
    do {
      pb::GetCatalogResponse page = catalog_page(token, 1000);
      for (const auto& i : page.catalog().items()) mine += i.id().rfind(id("bulk"), 0) == 0;
      token = page.next_page_token();
    } while (!token.empty());
    return mine;
  };
  EXPECT_EQ(count_mine(), kItems);
  ASSERT_EQ(host_->stop(), 0);
  start();
  EXPECT_EQ(count_mine(), kItems);
}

// Readers never see a failed call while the plugin is reloaded; a WatchCatalog stream moves to the
// new generation and goes on with the next version.
TEST_P(ResourcesThroughTheHost, AReloadUnderReadLoadFailsNoCallAndTheWatchMovesOn) {
  start();
  ASSERT_TRUE(publish(adding({item(id("sword"))})).ok());
  grpc::ClientContext watch_context;
  as_operator(watch_context);
  watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto watch = resources_->WatchCatalog(&watch_context, pb::WatchCatalogRequest());
  pb::CatalogPublished seen;
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.version(), version());

  std::atomic<bool> stop{false};
  std::atomic<int64_t> ok{0}, failed{0};
  std::string failure;
  std::mutex mu;
  std::vector<std::thread> readers;
  for (int r = 0; r < 4; ++r) {
    readers.emplace_back([&] {
      auto stub = pb::Resources::NewStub(host_->channel());
      while (!stop) {
        grpc::ClientContext context;
        as_operator(context);
        pb::LookupDefinitionsRequest request;
        request.add_item_ids(id("sword"));
        pb::LookupDefinitionsResponse response;
        const grpc::Status status = stub->LookupDefinitions(&context, request, &response);
        if (status.ok() && response.items_size() == 1) {
          ++ok;
        } else {
          ++failed;
          std::lock_guard lock(mu);
          failure = status.ok() ? "the item was missing" : status.error_message();
        }
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return ok > 200; }, std::chrono::seconds(60)));
  std::ofstream(plugin_, std::ios::app | std::ios::binary) << '\n';  // a new build of the same code
  host_->signal(SIGHUP);
  const bool reloaded = eventually(
      [&] { return host_->log().find("plugin 'resource-manager' generation 2") != std::string::npos; },
      std::chrono::seconds(60));
  const int64_t at_reload = ok;
  eventually([&] { return ok > at_reload + 200; }, std::chrono::seconds(30));
  stop = true;
  for (auto& t : readers) t.join();
  ASSERT_TRUE(reloaded) << host_->log();
  EXPECT_EQ(failed, 0) << failure;

  pb::PublishResponse next;
  ASSERT_TRUE(publish(adding({item(id("after_reload"))}), &next).ok());
  ASSERT_TRUE(watch->Read(&seen));
  EXPECT_EQ(seen.version(), next.version());
  watch_context.TryCancel();
}

// The announcement on pub/sub: a second host (sharing the store and, with Redis, the pub/sub)
// holds the new version without a head check (refresh_interval_ms is a minute here), and its
// WatchCatalog streams it.
TEST_P(ResourcesThroughTheHost, APublishIsAnnouncedToAnotherHostsSubscribers) {
  if (GetParam() != "postgresql") GTEST_SKIP() << "two hosts share a PostgreSQL store";
  if (redis_url().empty()) GTEST_SKIP() << "GAMEVERSE_TEST_REDIS_URL is not set";
  const std::string pubsub = "[redis]\nurl = \"" + redis_url() + "\"\n[pubsub]\nbackend = \"redis\"\n";
  // The publishing host asks the fixture (nobody holds anything) before a removed id is defined
  // again.
  start(pubsub,
        "[[plugin]]\nname = \"held-items-fixture\"\npath = \"" GV_FIXTURE_DIR "/held-items-fixture.so\"\n");
  TempDir other_dir;
  HostProcess other(config(pubsub, other_dir.path().string()));
  auto other_stub = pb::Resources::NewStub(other.channel());
  grpc::ClientContext watch_context;
  as_operator(watch_context);
  watch_context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto watch = other_stub->WatchCatalog(&watch_context, pb::WatchCatalogRequest());
  pb::CatalogPublished seen;
  ASSERT_TRUE(watch->Read(&seen));
  pb::PublishResponse published;
  ASSERT_TRUE(publish(adding({item(id("announced"))}), &published).ok());
  do {
    ASSERT_TRUE(watch->Read(&seen));
  } while (seen.version() < published.version());
  EXPECT_EQ(seen.version(), published.version());
  EXPECT_GT(seen.published_unix_ms(), 0);
  EXPECT_EQ(version(other_stub.get()), published.version());

  // The other host follows change by change (a removal with a migration, the id defined again,
  // a bundle changed) to the very catalog this host holds, and to what a fresh read gives.
  pb::PublishRequest migrate;
  migrate.set_expected_version(published.version());
  *migrate.mutable_upsert()->add_items() = item(id("coin_item"), 200);  // a full stack of 99, times 2
  auto* gone = migrate.add_remove();
  gone->set_kind(pb::DEFINITION_KIND_ITEM);
  gone->set_id(id("announced"));
  pb::ItemMigration* m = migrate.add_migrations();
  m->set_from_item_id(id("announced"));
  m->mutable_to_item()->set_item_id(id("coin_item"));
  m->mutable_to_item()->set_count(2);
  pb::PublishRequest again;
  *again.mutable_upsert()->add_items() = item(id("announced"), 7);
  for (pb::PublishRequest* next : {&migrate, &again}) {
    ASSERT_TRUE(publish(*next, &published).ok());
    do {
      ASSERT_TRUE(watch->Read(&seen));
    } while (seen.version() < published.version());
    EXPECT_TRUE(whole_catalog(other_stub.get()) == whole_catalog()) << "at version " << published.version();
    grpc::ClientContext context;
    as_operator(context);
    pb::LookupDefinitionsRequest request;
    request.add_item_ids(id("announced"));
    pb::LookupDefinitionsResponse there;
    ASSERT_TRUE(other_stub->LookupDefinitions(&context, request, &there).ok());
    EXPECT_EQ(deterministic(there), deterministic(lookup({id("announced")})));
    if (next == &migrate) {
      ASSERT_EQ(there.migrations_size(), 1);
      EXPECT_EQ(there.migrations(0).to_item().count(), 2);
    } else {
      ASSERT_EQ(there.items_size(), 1);
      EXPECT_EQ(there.items(0).max_stack(), 7);
      EXPECT_EQ(there.migrations_size(), 0);
    }
  }
  watch_context.TryCancel();
  const std::string followed = whole_catalog(other_stub.get());
  other_stub.reset();
  other.stop();
  HostProcess fresh(config(pubsub, other_dir.path().string()));
  auto fresh_stub = pb::Resources::NewStub(fresh.channel());
  EXPECT_TRUE(whole_catalog(fresh_stub.get()) == followed);
}

// A cache far behind is told to refetch rather than sent an answer of any size: past 1000 refs,
// or past max_answer_bytes.
TEST_P(ResourcesThroughTheHost, GetChangesIsBoundedInRefsAndBytes) {
  plugin_config_ = "max_answer_bytes = 65536\n";
  start();
  auto changes_since = [&](uint64_t since) {
    grpc::ClientContext context;
    as_operator(context);
    pb::GetChangesRequest request;
    request.set_since_version(since);
    pb::GetChangesResponse response;
    const grpc::Status status = resources_->GetChanges(&context, request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  };
  auto items = [&](const std::string& prefix, int n, int lore_bytes) {
    std::vector<pb::ItemDefinition> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(item(id(prefix) + "_" + std::to_string(i)));
      (*out.back().mutable_properties())["lore"].set_string_value(
          std::string(static_cast<size_t>(lore_bytes), 'x'));
    }
    return out;
  };
  ASSERT_TRUE(publish(adding({item(id("seed"))})).ok());  // a version to hold (0: holds nothing)
  // 100 small items: listed.
  const uint64_t before = version();
  ASSERT_TRUE(publish(adding(items("small", 100, 10))).ok());
  pb::GetChangesResponse answer = changes_since(before);
  EXPECT_FALSE(answer.refetch_all());
  EXPECT_EQ(answer.upserted().items_size(), 100);
  // 100 items of 1 KiB: past 64 KiB.
  const uint64_t mid = version();
  ASSERT_TRUE(publish(adding(items("large", 100, 1024))).ok());
  answer = changes_since(mid);
  EXPECT_TRUE(answer.refetch_all());
  EXPECT_EQ(answer.upserted().items_size(), 0);
  EXPECT_LE(answer.ByteSizeLong(), 65536u);
  // Looked up by id, the same 100 items are refused rather than answered past the bound.
  std::vector<std::string> large_ids;
  for (int i = 0; i < 100; ++i) large_ids.push_back(id("large") + "_" + std::to_string(i));
  grpc::Status too_large;
  lookup(large_ids, {}, &too_large);
  EXPECT_EQ(too_large.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(too_large.error_message().find("max_answer_bytes"), std::string::npos)
      << too_large.error_message();
  EXPECT_EQ(lookup({large_ids.begin(), large_ids.begin() + 10}).items_size(), 10);
  // 1200 bare items (about 40 KiB in all) in three publishes: past 1000 refs.
  const uint64_t third = version();
  for (int k = 0; k < 3; ++k) {
    pb::PublishRequest request = adding({});
    for (int i = 0; i < 400; ++i) {
      pb::ItemDefinition* bare = request.mutable_upsert()->add_items();
      bare->set_id(id("m") + std::to_string(k * 400 + i));
      bare->set_name("m");
      bare->set_max_stack(1);
    }
    ASSERT_TRUE(publish(request).ok());
  }
  answer = changes_since(third);
  EXPECT_TRUE(answer.refetch_all());
  EXPECT_EQ(answer.upserted().items_size(), 0);
  // A GetCatalog page stays under max_answer_bytes too.
  EXPECT_LE(catalog_page("", 1000).ByteSizeLong(), 65536u);
}

INSTANTIATE_TEST_SUITE_P(Backends, ResourcesThroughTheHost, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
