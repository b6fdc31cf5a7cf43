#include "plugin/builtin.hpp"

#include <google/protobuf/descriptor.pb.h>

#include <set>

namespace gameverse::plugin {

namespace {

void add_with_imports(const google::protobuf::FileDescriptor* file, std::set<std::string>& added,
                      google::protobuf::FileDescriptorSet& set) {
  if (!added.insert(file->name()).second) return;
  for (int i = 0; i < file->dependency_count(); ++i) add_with_imports(file->dependency(i), added, set);
  file->CopyTo(set.add_file());
}

}  // namespace

std::string descriptor_set_of(std::initializer_list<const google::protobuf::FileDescriptor*> files) {
  google::protobuf::FileDescriptorSet set;
  std::set<std::string> added;
  for (const auto* file : files) add_with_imports(file, added, set);
  return set.SerializeAsString();
}

}  // namespace gameverse::plugin
