// The SDK's one mapping of a domain's refusal (gameverse::DomainError) to a call's status.
#include <gtest/gtest.h>
#include <gameverse/sdk/domain_error.hpp>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace gameverse::sdk {
namespace {

using K = DomainError::Kind;

TEST(SdkDomainError, EveryKindBecomesItsStatusCodeWithTheMessageUnchanged) {
  const std::vector<std::pair<K, StatusCode>> expected{
      {K::kInvalidArgument, StatusCode::kInvalidArgument},
      {K::kNotFound, StatusCode::kNotFound},
      {K::kAlreadyExists, StatusCode::kAlreadyExists},
      {K::kPermissionDenied, StatusCode::kPermissionDenied},
      {K::kUnauthenticated, StatusCode::kUnauthenticated},
      {K::kFailedPrecondition, StatusCode::kFailedPrecondition},
      {K::kAborted, StatusCode::kAborted},
      {K::kOutOfRange, StatusCode::kOutOfRange},
      {K::kResourceExhausted, StatusCode::kResourceExhausted},
      {K::kUnavailable, StatusCode::kUnavailable},
      {K::kDataLoss, StatusCode::kDataLoss},
  };
  ASSERT_EQ(expected.size(), static_cast<size_t>(K::kDataLoss)) << "a kind without its expected code";
  for (const auto& [kind, code] : expected) {
    const std::string message = "field x: refused as kind " + std::to_string(static_cast<int>(kind));
    const Status status = status_of(DomainError(kind, message));
    EXPECT_EQ(status.code(), code) << message;
    EXPECT_EQ(status.message(), message);
  }
}

TEST(SdkDomainError, AKindOutsideTheEnumIsInternalAndKeepsItsMessage) {
  const Status status = status_of(DomainError(static_cast<K>(0), "no kind"));
  EXPECT_EQ(status.code(), StatusCode::kInternal);
  EXPECT_EQ(status.message(), "no kind");
}

TEST(SdkDomainError, RetryAfterIsKeptWithTheRefusalAndNotByDefault) {
  try {
    throw DomainError(K::kResourceExhausted, "busy; retry in 2 s", 1500);
  } catch (const std::runtime_error& e) {
    const auto* refusal = dynamic_cast<const DomainError*>(&e);
    ASSERT_NE(refusal, nullptr);
    EXPECT_EQ(refusal->retry_after_ms(), 1500);
    EXPECT_EQ(refusal->kind(), K::kResourceExhausted);
    EXPECT_STREQ(refusal->what(), "busy; retry in 2 s");
  }
  EXPECT_EQ(DomainError(K::kNotFound, "gone").retry_after_ms(), 0);
}

// A plugin's own error type over DomainError, as a plugin with kinds of its own declares it.
class LockedOut : public DomainError {
 public:
  explicit LockedOut(int64_t retry_after_ms)
      : DomainError(Kind::kResourceExhausted, "too many attempts", retry_after_ms) {}
};

TEST(SdkDomainError, AnswerIsOkWhenTheWorkReturnsAndTheRefusalsStatusWhenItThrows) {
  int runs = 0;
  EXPECT_TRUE(answer([&] { ++runs; }).is_ok());
  EXPECT_EQ(runs, 1);

  const Status refused = answer([] { throw DomainError(K::kAlreadyExists, "name: taken"); });
  EXPECT_EQ(refused.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(refused.message(), "name: taken");

  const Status locked = answer([] { throw LockedOut(3000); });
  EXPECT_EQ(locked.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(locked.message(), "too many attempts");
}

TEST(SdkDomainError, AnswerLetsOtherExceptionsGoOnToTheTrampoline) {
  // The host's errors keep their own status, and anything else becomes INTERNAL, in the SDK's
  // trampolines: answer() does not swallow them.
  EXPECT_THROW(answer([] { throw Error(StatusCode::kDataLoss, "corrupt record"); }), Error);
  EXPECT_THROW(answer([] { throw std::logic_error("bug"); }), std::logic_error);
}

}  // namespace
}  // namespace gameverse::sdk
