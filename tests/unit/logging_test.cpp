// Request ids and the two log formats, on a logger writing to a string.
#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "logging/context.hpp"
#include "logging/format.hpp"
#include "logging/request_id.hpp"

namespace gameverse::logging {
namespace {

TEST(RequestId, SaneIdsAreKeptAsTheyAre) {
  EXPECT_TRUE(is_sane_request_id("a"));
  EXPECT_TRUE(is_sane_request_id("Req-42_x.y:z@host/path+b64=="));
  EXPECT_TRUE(is_sane_request_id(std::string(128, '7')));
  EXPECT_TRUE(is_sane_request_id("0123456789abcdef0123456789abcdef"));
}

TEST(RequestId, OthersAreNot) {
  EXPECT_FALSE(is_sane_request_id(""));
  EXPECT_FALSE(is_sane_request_id(std::string(129, '7')));
  for (const char* bad : {"has space", "quote\"", "back\\slash", "new\nline", "tab\t", "semi;colon", "comma,",
                          "percent%", "<script>", "caf\xc3\xa9"}) {
    EXPECT_FALSE(is_sane_request_id(bad)) << bad;
  }
  EXPECT_FALSE(is_sane_request_id(std::string_view("nul\0byte", 8)));
}

TEST(RequestId, TheKeyIsMatchedExactly) {
  EXPECT_TRUE(is_request_id_key("x-request-id"));
  EXPECT_FALSE(is_request_id_key("x-request-i"));
  EXPECT_FALSE(is_request_id_key("x-request-id2"));
  EXPECT_FALSE(is_request_id_key("X-Request-Id"));  // gRPC metadata keys are lower case
}

TEST(RequestId, GeneratedIdsAre32HexDigitsAndDoNotRepeat) {
  const std::regex hex32("[0-9a-f]{32}");
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id(GeneratedRequestId::make().view());
    ASSERT_TRUE(std::regex_match(id, hex32)) << id;
    ASSERT_TRUE(is_sane_request_id(id));
    seen.insert(id);
  }
  // Another thread has its own generator, seeded on its own.
  std::thread([&seen] {
    for (int i = 0; i < 10000; ++i) seen.insert(std::string(GeneratedRequestId::make().view()));
  }).join();
  EXPECT_EQ(seen.size(), 20000u);
}

std::string escaped(std::string_view text) {
  spdlog::memory_buf_t out;
  append_json_string_contents(text, out);
  return std::string(out.data(), out.size());
}

TEST(JsonEscaping, QuotesBackslashesAndControlCharactersAreEscaped) {
  EXPECT_EQ(escaped("plain text"), "plain text");
  EXPECT_EQ(escaped("say \"hi\" \\ bye"), "say \\\"hi\\\" \\\\ bye");
  EXPECT_EQ(escaped("a\nb\rc\td\be\ff"), "a\\nb\\rc\\td\\be\\ff");
  EXPECT_EQ(escaped(std::string_view("\0\x01\x1f\x7f", 4)), "\\u0000\\u0001\\u001f\x7f");
  std::string every_byte;
  for (int c = 0; c < 256; ++c) every_byte.push_back(static_cast<char>(c));
  const auto parsed = nlohmann::json::parse("\"" + escaped(every_byte) + "\"");  // throws if invalid
  EXPECT_EQ(parsed.get<std::string>().substr(0, 128), every_byte.substr(0, 128));
}

TEST(JsonEscaping, ValidUtf8IsKeptAndInvalidBytesBecomeReplacementCharacters) {
  const std::string valid = "caf\xc3\xa9 \xe2\x9c\x93 \xf0\x9f\x98\x80";  // é, ✓, 😀
  EXPECT_EQ(escaped(valid), valid);
  const std::string fffd = "\xef\xbf\xbd";
  EXPECT_EQ(escaped("a\xff"
                    "b"),
            "a" + fffd + "b");
  EXPECT_EQ(escaped("\xc0\xaf"), fffd + fffd);                        // an overlong '/'
  EXPECT_EQ(escaped("\xed\xa0\x80"), fffd + fffd + fffd);             // a UTF-16 surrogate
  EXPECT_EQ(escaped("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);  // above U+10FFFF
  EXPECT_EQ(escaped("end \xe2\x82"), "end " + fffd + fffd);           // cut short
  EXPECT_EQ(nlohmann::json::parse("\"" + escaped("x\xfe\"y") + "\"").get<std::string>(), "x" + fffd + "\"y");
}

// A logger like the host's, writing to a string in `format`.
struct CapturedLog {
  explicit CapturedLog(LogFormat format)
      : logger(std::make_shared<spdlog::logger>("gameverse",
                                                std::make_shared<spdlog::sinks::ostream_sink_mt>(out))) {
    logger->set_formatter(make_formatter(format));
    logger->set_level(spdlog::level::trace);
  }
  // Every line written since the last call, each parsed as JSON.
  std::vector<nlohmann::json> json_lines() {
    std::vector<nlohmann::json> lines;
    std::string line;
    std::istringstream in(out.str());
    while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
    out.str("");
    return lines;
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
};

TEST(JsonLog, AHostLineHasTimeLevelLoggerAndMessage) {
  CapturedLog log(LogFormat::kJson);
  log.logger->warn("disk {} full", "\"/var\"");
  const auto lines = log.json_lines();
  ASSERT_EQ(lines.size(), 1u);
  const nlohmann::json& line = lines[0];
  EXPECT_TRUE(std::regex_match(line.at("time").get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << line.at("time");
  EXPECT_EQ(line.at("level"), "warning");
  EXPECT_EQ(line.at("logger"), "host");
  EXPECT_EQ(line.at("message"), "disk \"/var\" full");
  EXPECT_FALSE(line.contains("request_id"));
  EXPECT_FALSE(line.contains("generation"));
}

TEST(JsonLog, LinesWrittenDuringACallCarryItsRequestId) {
  CapturedLog log(LogFormat::kJson);
  PluginLogger plugin(*log.logger, "echo");
  plugin.set_generation(3);
  const CallLogContext call{"req-1", "echo", 3};
  {
    const CallLogScope scope(&call);
    plugin.info("from the plugin");
    log.logger->error("from the host");
    const CallLogContext inner{"req-1", "inventory", 2};  // an in-process call it made
    {
      const CallLogScope nested(&inner);
      log.logger->info("inner");
    }
    log.logger->info("outer again");
  }
  plugin.info("outside any call");
  const auto lines = log.json_lines();
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].at("logger"), "echo");
  EXPECT_EQ(lines[0].at("generation"), 3);
  EXPECT_EQ(lines[0].at("request_id"), "req-1");
  EXPECT_EQ(lines[0].at("message"), "from the plugin");
  EXPECT_EQ(lines[1].at("logger"), "host");
  EXPECT_EQ(lines[1].at("request_id"), "req-1");
  EXPECT_EQ(lines[1].at("plugin"), "echo");  // the plugin serving the call the host line is about
  EXPECT_EQ(lines[1].at("generation"), 3);
  EXPECT_EQ(lines[2].at("plugin"), "inventory");
  EXPECT_EQ(lines[3].at("plugin"), "echo");
  EXPECT_EQ(lines[4].at("logger"), "echo");
  EXPECT_EQ(lines[4].at("generation"), 3);
  EXPECT_FALSE(lines[4].contains("request_id"));
  EXPECT_EQ(current_call(), nullptr);
}

TEST(JsonLog, GrpcsOwnLinesAreTheHostsLinesToo) {
  CapturedLog log(LogFormat::kJson);
  const std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  spdlog::set_default_logger(log.logger);
  route_grpc_logs_to_default_logger();
  grpc_init();  // gRPC drops its lines before it is initialized
  gpr_log(GPR_ERROR, "a \"quoted\" error %d", 7);
  grpc_shutdown();
  spdlog::set_default_logger(previous);
  const auto lines = log.json_lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].at("logger"), "host");
  EXPECT_EQ(lines[0].at("level"), "error");
  EXPECT_EQ(lines[0].at("message").get<std::string>().rfind("grpc: a \"quoted\" error 7 (", 0), 0u)
      << lines[0];
}

TEST(TextLog, LinesWrittenDuringACallEndWithTheRequestId) {
  CapturedLog log(LogFormat::kText);
  PluginLogger plugin(*log.logger, "echo");
  const CallLogContext call{"req-2", "echo", 1};
  {
    const CallLogScope scope(&call);
    plugin.info("hello");
  }
  plugin.info("bye");
  const std::string text = log.out.str();
  EXPECT_NE(text.find(" info [echo] hello [request_id=req-2]\n"), std::string::npos) << text;
  EXPECT_NE(text.find(" info [echo] bye\n"), std::string::npos) << text;
}

TEST(LogFormat, OnlyTextAndJsonAreFormats) {
  EXPECT_EQ(parse_log_format("text"), LogFormat::kText);
  EXPECT_EQ(parse_log_format("json"), LogFormat::kJson);
  EXPECT_FALSE(parse_log_format("JSON"));
  EXPECT_FALSE(parse_log_format(""));
}

}  // namespace
}  // namespace gameverse::logging
