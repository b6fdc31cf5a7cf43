// A gRPC message's bytes as one string, for the paths that carry calls the host did not decode
// (forwarding to other hosts, the HTTP gateway).
#pragma once

#include <grpcpp/support/byte_buffer.h>

#include <string>
#include <vector>

namespace gameverse::platform {

// Empty when the buffer cannot be read.
inline std::string to_string(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  out.reserve(buffer.Length());
  for (const auto& slice : slices) out.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  return out;
}

}  // namespace gameverse::platform
