// Whether a new generation's routes can replace the old ones under live callers: the same call
// kinds, and message types an old reader and a new writer (and the reverse) agree on.
#pragma once

#include <google/protobuf/descriptor.h>

#include <string>
#include <vector>

#include "plugin/plugin.hpp"

namespace gameverse::plugin {

// Why `new_type` cannot stand in for `old_type`; empty when it can. Field by field: a shared
// field number keeps its type and its repetition, recursively; removed and added fields are fine.
std::string incompatible_messages(const google::protobuf::Descriptor& old_type,
                                  const google::protobuf::Descriptor& new_type);

// Why the methods of a new generation cannot replace the old ones; empty when they can: a method
// whose call kind, request type or response type changed in an incompatible way. Methods that
// are dropped or added are compatible.
std::string incompatible_routes(const std::vector<Method>& old_methods,
                                const std::vector<Method>& new_methods);

}  // namespace gameverse::plugin
