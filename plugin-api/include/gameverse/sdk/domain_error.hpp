// gameverse/sdk/domain_error.hpp — a domain's refusal (gameverse::DomainError) as a call's status.
#pragma once

#include <gameverse/domain_error.hpp>

#include "gameverse/sdk/status.hpp"

namespace gameverse::sdk {

// The status a domain refusal ends a call with: its kind's code and its message, unchanged.
inline Status status_of(const DomainError& e) {
  using K = DomainError::Kind;
  switch (e.kind()) {
    case K::kInvalidArgument: return {StatusCode::kInvalidArgument, e.what()};
    case K::kNotFound: return {StatusCode::kNotFound, e.what()};
    case K::kAlreadyExists: return {StatusCode::kAlreadyExists, e.what()};
    case K::kPermissionDenied: return {StatusCode::kPermissionDenied, e.what()};
    case K::kUnauthenticated: return {StatusCode::kUnauthenticated, e.what()};
    case K::kFailedPrecondition: return {StatusCode::kFailedPrecondition, e.what()};
    case K::kAborted: return {StatusCode::kAborted, e.what()};
    case K::kOutOfRange: return {StatusCode::kOutOfRange, e.what()};
    case K::kResourceExhausted: return {StatusCode::kResourceExhausted, e.what()};
    case K::kUnavailable: return {StatusCode::kUnavailable, e.what()};
    case K::kDataLoss: return {StatusCode::kDataLoss, e.what()};
  }
  return {StatusCode::kInternal, e.what()};
}

// Runs a handler's work: OK when it returns, the refusal's status when the domain refuses. Other
// exceptions go on: an sdk::Error (the host's, e.g. DATA_LOSS for a corrupt record) keeps its
// status, and the SDK turns anything else into INTERNAL.
template <class Work>
Status answer(Work&& work) {
  try {
    work();
    return Status::ok();
  } catch (const DomainError& e) {
    return status_of(e);
  }
}

}  // namespace gameverse::sdk
