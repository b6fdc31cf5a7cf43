#include "domain/model.hpp"

namespace gameverse::auth {

void check_username(const std::string& username) {
  using K = AuthError::Kind;
  if (username.size() < 3 || username.size() > 32) {
    throw AuthError(K::kInvalidArgument,
                    "a username has 3 to 32 characters; this one has " + std::to_string(username.size()));
  }
  if (username[0] < 'a' || username[0] > 'z') {
    throw AuthError(K::kInvalidArgument, "a username starts with a letter a-z");
  }
  for (char c : username) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) {
      throw AuthError(K::kInvalidArgument, "a username has only a-z, 0-9, '_', '.' and '-'; '" +
                                               std::string(1, c) + "' is not allowed");
    }
  }
}

void check_password(const std::string& password, const std::string& username) {
  using K = AuthError::Kind;
  if (password.size() < 10) throw AuthError(K::kInvalidArgument, "a password has at least 10 characters");
  if (password.size() > 128) throw AuthError(K::kInvalidArgument, "a password has at most 128 characters");
  if (password == username) throw AuthError(K::kInvalidArgument, "the password cannot be the username");
}

void check_role(const std::string& role) {
  if (known_roles().count(role) == 0) {
    throw AuthError(AuthError::Kind::kInvalidArgument,
                    "'" + role + "' is not a role (player, moderator or admin)");
  }
}

}  // namespace gameverse::auth
