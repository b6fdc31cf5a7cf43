// The store as plugins see it: the real host with the store-probe plugin, on SQLite and on the
// PostgreSQL server `tools/gv test` starts, called through a real gRPC client.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <random>

#include "expect_contains.hpp"
#include "gameverse/storeprobe/v1/store_probe.grpc.pb.h"
#include "host_process.hpp"

namespace gameverse::testing {
namespace {

namespace pb = gameverse::storeprobe::v1;

class StoreHostTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string store = "[store]\nmax_value_bytes = 4096\n";
    if (GetParam() == "postgresql") {
      const char* url = std::getenv("GAMEVERSE_TEST_POSTGRES_URL");
      ASSERT_NE(url, nullptr) << "GAMEVERSE_TEST_POSTGRES_URL is not set: run the suite with `tools/gv test`";
      store += "backend = \"postgresql\"\npostgresql_url = \"" + std::string(url) + "\"\n";
    }
    config_ = "[host]\nwatch = false\nplugin_dir = \"" GV_PROBE_DIR "\"\ndata_dir = \"" +
              data_.path().string() + "\"\n" + store + "[[plugin]]\nname = \"store-probe\"\n";
    start();
    prefix_ = "run" + std::to_string(std::random_device()()) + "/";
  }

  void start() {
    host_ = std::make_unique<HostProcess>(config_);
    probe_ = pb::StoreProbe::NewStub(host_->channel());
  }

  grpc::Status put(const std::string& key, const std::string& value, std::optional<int64_t> expected = {},
                   int64_t* version = nullptr, const std::string& collection = "items") {
    grpc::ClientContext context;
    pb::Write request;
    request.set_collection(collection);
    request.set_key(prefix_ + key);
    request.set_value(value);
    if (expected) request.set_expected_version(*expected);
    pb::Versions reply;
    grpc::Status status = probe_->Put(&context, request, &reply);
    if (status.ok() && version != nullptr) *version = reply.versions(0);
    return status;
  }

  grpc::Status get(const std::string& key, pb::Object* object) {
    grpc::ClientContext context;
    pb::Key request;
    request.set_collection("items");
    request.set_key(prefix_ + key);
    return probe_->Get(&context, request, object);
  }

  TempDir data_;
  std::string config_;
  std::string prefix_;
  std::unique_ptr<HostProcess> host_;
  std::unique_ptr<pb::StoreProbe::Stub> probe_;
};

TEST_P(StoreHostTest, PutGetAndVersions) {
  int64_t version = 0;
  ASSERT_TRUE(put("sword", "damage=7", {}, &version).ok());
  EXPECT_EQ(version, 1);
  pb::Object object;
  ASSERT_TRUE(get("sword", &object).ok());
  EXPECT_EQ(object.value(), "damage=7");
  EXPECT_EQ(object.version(), 1);

  grpc::Status stale = put("sword", "damage=9", 5);
  EXPECT_EQ(stale.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_CONTAINS(stale.error_message(), "expected version 5 of the key, it is 1");
  ASSERT_TRUE(put("sword", "damage=9", 1, &version).ok());
  EXPECT_EQ(version, 2);
  EXPECT_EQ(put("sword", "again", 0).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(get("missing", &object).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_P(StoreHostTest, BadInputGetsClearErrors) {
  grpc::Status unknown = put("k", "v", {}, nullptr, "secrets");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(unknown.error_message(),
            "collection 'secrets' is not declared by plugin 'store-probe' (declared: items, profiles)");

  grpc::ClientContext context;
  pb::Write empty;
  empty.set_collection("items");
  pb::Versions reply;
  grpc::Status status = probe_->Put(&context, empty, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "the key is empty");

  grpc::Status big = put("big", std::string(5000, 'x'));
  EXPECT_EQ(big.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(big.error_message(), "the value is 5000 bytes, more than max_value_bytes 4096");
}

TEST_P(StoreHostTest, BatchIsAllOrNothing) {
  ASSERT_TRUE(put("gold", "10").ok());
  grpc::ClientContext context;
  pb::Writes batch;
  auto* spend = batch.add_writes();
  spend->set_collection("items");
  spend->set_key(prefix_ + "gold");
  spend->set_value("0");
  spend->set_expected_version(1);
  auto* buy = batch.add_writes();
  buy->set_collection("profiles");
  buy->set_key(prefix_ + "armour");
  buy->set_value("owned");
  buy->set_expected_version(0);
  auto* stale = batch.add_writes();
  stale->set_collection("items");
  stale->set_key(prefix_ + "gold");
  stale->set_value("again");
  stale->set_expected_version(1);  // the first write of the batch already moved it to 2
  pb::Versions reply;
  grpc::Status status = probe_->Batch(&context, batch, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  pb::Object gold;
  ASSERT_TRUE(get("gold", &gold).ok());
  EXPECT_EQ(gold.value(), "10");
  EXPECT_EQ(gold.version(), 1);

  batch.mutable_writes()->RemoveLast();
  grpc::ClientContext again;
  ASSERT_TRUE(probe_->Batch(&again, batch, &reply).ok());
  EXPECT_EQ(reply.versions_size(), 2);
  ASSERT_TRUE(get("gold", &gold).ok());
  EXPECT_EQ(gold.value(), "0");
}

TEST_P(StoreHostTest, ListPagesWithCursorsThatCannotBeTamperedWith) {
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(put("page/" + std::to_string(i), "v").ok());
  std::vector<std::string> keys;
  std::string cursor;
  std::string first_cursor;
  do {
    grpc::ClientContext context;
    pb::Query query;
    query.set_collection("items");
    query.set_key_prefix(prefix_ + "page/");
    query.set_limit(3);
    query.set_cursor(cursor);
    pb::Page page;
    ASSERT_TRUE(probe_->List(&context, query, &page).ok());
    for (const auto& object : page.objects()) keys.push_back(object.key());
    cursor = page.next_cursor();
    if (first_cursor.empty()) first_cursor = cursor;
  } while (!cursor.empty());
  ASSERT_EQ(keys.size(), 7u);
  EXPECT_EQ(keys.front(), prefix_ + "page/0");
  EXPECT_EQ(keys.back(), prefix_ + "page/6");

  std::string tampered = first_cursor;
  tampered[0] ^= 1;
  grpc::ClientContext context;
  pb::Query query;
  query.set_collection("items");
  query.set_key_prefix(prefix_ + "page/");
  query.set_cursor(tampered);
  pb::Page page;
  grpc::Status status = probe_->List(&context, query, &page);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(status.error_message(), "the cursor is not valid for this query");
}

// The key that signs cursors is kept in the store: behind a load balancer the next page may be
// asked of another host. Before it was, each host made its own and refused the others' cursors.
TEST_P(StoreHostTest, ACursorFromOneHostWorksOnAnotherOnTheSameStore) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(put("shared/" + std::to_string(i), "v").ok());
  HostProcess other(config_);
  auto other_probe = pb::StoreProbe::NewStub(other.channel());
  auto list = [&](pb::StoreProbe::Stub& stub, const std::string& cursor, pb::Page& page) {
    grpc::ClientContext context;
    pb::Query query;
    query.set_collection("items");
    query.set_key_prefix(prefix_ + "shared/");
    query.set_limit(2);
    query.set_cursor(cursor);
    return stub.List(&context, query, &page);
  };
  pb::Page first;
  ASSERT_TRUE(list(*probe_, "", first).ok());
  ASSERT_FALSE(first.next_cursor().empty());
  pb::Page second;
  const grpc::Status status = list(*other_probe, first.next_cursor(), second);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(second.objects_size(), 2);
  EXPECT_EQ(second.objects(0).key(), prefix_ + "shared/2");
  // And back: the other host's cursor on the first.
  pb::Page third;
  ASSERT_TRUE(list(*probe_, second.next_cursor(), third).ok());
  ASSERT_EQ(third.objects_size(), 1);
  EXPECT_EQ(third.objects(0).key(), prefix_ + "shared/4");

  std::string tampered = first.next_cursor();
  tampered[0] ^= 1;
  pb::Page refused;
  const grpc::Status bad = list(*other_probe, tampered, refused);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_CONTAINS(bad.error_message(), "the cursor is not valid for this query");
  EXPECT_EQ(other.stop(), 0) << other.log();
}

TEST_P(StoreHostTest, DataOutlivesTheHost) {
  ASSERT_TRUE(put("saved", "yes").ok());
  EXPECT_EQ(host_->stop(), 0) << host_->log();
  start();
  pb::Object object;
  ASSERT_TRUE(get("saved", &object).ok());
  EXPECT_EQ(object.value(), "yes");
  EXPECT_CONTAINS(host_->log(), "at schema version 1");
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreHostTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace gameverse::testing
