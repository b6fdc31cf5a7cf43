// A new account through a host's real auth plugin, for tests that call services as a player.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "gameverse/auth/v1/auth.grpc.pb.h"

namespace gameverse::testing {

// The password sign_up gives every account, for tests that log in with it.
inline constexpr const char* kSignUpPassword = "correct horse battery";

// Grants `role` to `account_id` with the operator's token (the host's [admin] token), then
// refreshes the account's session with `refresh_token`, so that the access token returned carries
// the role.
inline gameverse::auth::v1::Session grant_role(gameverse::auth::v1::Auth::Stub& auth,
                                               const std::string& account_id,
                                               const std::string& refresh_token, const std::string& role,
                                               const std::string& operator_token) {
  namespace pb = gameverse::auth::v1;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + operator_token);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    pb::RoleRequest request;
    request.set_account_id(account_id);
    request.set_role(role);
    pb::Account account;
    const grpc::Status status = auth.GrantRole(&context, request, &account);
    EXPECT_TRUE(status.ok()) << status.error_message();
  }
  grpc::ClientContext context;
  pb::RefreshRequest request;
  request.set_refresh_token(refresh_token);
  pb::Session refreshed;
  const grpc::Status status = auth.Refresh(&context, request, &refreshed);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return refreshed;
}

// Registers `username` with kSignUpPassword; with a role, the operator's token grants it and the
// session returned is refreshed so that its access token carries the role.
inline gameverse::auth::v1::Session sign_up(gameverse::auth::v1::Auth::Stub& auth,
                                            const std::string& username, const std::string& role = {},
                                            const std::string& operator_token = {}) {
  namespace pb = gameverse::auth::v1;
  pb::Session session;
  grpc::ClientContext context;
  pb::RegisterRequest request;
  request.set_username(username);
  request.set_password(kSignUpPassword);
  const grpc::Status status = auth.Register(&context, request, &session);
  EXPECT_TRUE(status.ok()) << status.error_message();
  if (role.empty()) return session;
  return grant_role(auth, session.account().id(), session.refresh_token(), role, operator_token);
}

}  // namespace gameverse::testing
