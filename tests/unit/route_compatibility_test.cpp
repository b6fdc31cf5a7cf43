#include "plugin/route_compatibility.hpp"

#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

namespace gameverse::plugin {
namespace {

// One generation's proto file, as a plugin's embedded descriptor set would carry it.
class Generation {
 public:
  explicit Generation(const std::string& file_text) {
    google::protobuf::FileDescriptorProto file;
    EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(file_text, &file));
    file_ = pool_.BuildFile(file);
    EXPECT_NE(file_, nullptr);
  }

  const google::protobuf::Descriptor& message(const std::string& name) const {
    return *pool_.FindMessageTypeByName("game.v1." + name);
  }

  // The methods of service game.v1.Game, with `kinds` in order of declaration.
  std::vector<Method> methods(std::vector<gv_call_kind> kinds = {}) const {
    std::vector<Method> out;
    const auto* service = file_->FindServiceByName("Game");
    for (int i = 0; i < service->method_count(); ++i) {
      const auto* m = service->method(i);
      out.push_back({"/game.v1.Game/" + m->name(),
                     i < static_cast<int>(kinds.size()) ? kinds[i] : GV_CALL_UNARY,
                     static_cast<uint32_t>(i),
                     m,
                     false,
                     {}});
    }
    return out;
  }

 private:
  google::protobuf::DescriptorPool pool_;
  const google::protobuf::FileDescriptor* file_ = nullptr;
};

std::string file(const std::string& messages, const std::string& methods = "") {
  return R"(name: "game.proto" package: "game.v1" syntax: "proto3" )" + messages +
         R"( service { name: "Game" )" + methods + " }";
}

const std::string kScore = R"(
  message_type { name: "Score"
    field { name: "player" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
    field { name: "points" number: 2 type: TYPE_INT64 label: LABEL_OPTIONAL }
    field { name: "tags" number: 3 type: TYPE_STRING label: LABEL_REPEATED } })";
const std::string kBoard = R"(
  message_type { name: "Board"
    field { name: "top" number: 1 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".game.v1.Score" }
    field { name: "next" number: 2 type: TYPE_MESSAGE label: LABEL_OPTIONAL type_name: ".game.v1.Board" } })";
const std::string kGet =
    R"(method { name: "Get" input_type: ".game.v1.Score" output_type: ".game.v1.Board" })";

TEST(RouteCompatibility, SameTypesAreCompatible) {
  Generation a(file(kScore + kBoard, kGet)), b(file(kScore + kBoard, kGet));
  EXPECT_EQ(incompatible_messages(a.message("Board"), b.message("Board")), "");
  EXPECT_EQ(incompatible_routes(a.methods(), b.methods()), "");
}

TEST(RouteCompatibility, AddedAndRemovedFieldsAreCompatible) {
  Generation a(file(kScore)), b(file(R"(
  message_type { name: "Score"
    field { name: "player" number: 1 type: TYPE_STRING label: LABEL_OPTIONAL }
    field { name: "level" number: 4 type: TYPE_INT32 label: LABEL_OPTIONAL } })"));
  EXPECT_EQ(incompatible_messages(a.message("Score"), b.message("Score")), "");
}

TEST(RouteCompatibility, ChangedFieldTypeIsNamed) {
  Generation a(file(kScore)), b(file(R"(
  message_type { name: "Score"
    field { name: "points" number: 2 type: TYPE_STRING label: LABEL_OPTIONAL } })"));
  EXPECT_EQ(incompatible_messages(a.message("Score"), b.message("Score")),
            "game.v1.Score.points (field 2) changed type from int64 to string");
}

TEST(RouteCompatibility, ChangedRepetitionIsNamed) {
  Generation a(file(kScore)), b(file(R"(
  message_type { name: "Score"
    field { name: "tags" number: 3 type: TYPE_STRING label: LABEL_OPTIONAL } })"));
  EXPECT_EQ(incompatible_messages(a.message("Score"), b.message("Score")),
            "game.v1.Score.tags (field 3) changed between single and repeated");
}

TEST(RouteCompatibility, NestedAndRecursiveMessagesAreCompared) {
  Generation a(file(kScore + kBoard)), b(file(R"(
  message_type { name: "Score"
    field { name: "player" number: 1 type: TYPE_BYTES label: LABEL_OPTIONAL } })" +
                                              kBoard));
  EXPECT_EQ(incompatible_messages(a.message("Board"), b.message("Board")),
            "game.v1.Score.player (field 1) changed type from string to bytes");
}

TEST(RouteCompatibility, RenamedTypeIsIncompatible) {
  Generation a(file(kScore + kBoard, kGet)),
      b(file(kScore + kBoard,
             R"(method { name: "Get" input_type: ".game.v1.Board" output_type: ".game.v1.Board" })"));
  EXPECT_EQ(incompatible_routes(a.methods(), b.methods()),
            "method /game.v1.Game/Get: type game.v1.Score became game.v1.Board");
}

TEST(RouteCompatibility, ChangedCallKindIsIncompatible) {
  Generation a(file(kScore + kBoard, kGet)), b(file(kScore + kBoard, kGet));
  EXPECT_EQ(incompatible_routes(a.methods({GV_CALL_UNARY}), b.methods({GV_CALL_SERVER_STREAMING})),
            "method /game.v1.Game/Get changed its call kind");
}

TEST(RouteCompatibility, DroppedAndAddedMethodsAreCompatible) {
  const std::string put =
      R"(method { name: "Put" input_type: ".game.v1.Board" output_type: ".game.v1.Score" })";
  Generation a(file(kScore + kBoard, kGet)), b(file(kScore + kBoard, put));
  EXPECT_EQ(incompatible_routes(a.methods(), b.methods()), "");
  EXPECT_EQ(incompatible_routes(b.methods(), a.methods()), "");
}

}  // namespace
}  // namespace gameverse::plugin
