#include "plugin/route_compatibility.hpp"

#include <algorithm>
#include <set>

namespace gameverse::plugin {

namespace {

// `seen`: types already compared, so recursive messages end.
std::string incompatible_messages(const google::protobuf::Descriptor& old_type,
                                  const google::protobuf::Descriptor& new_type, std::set<std::string>& seen) {
  if (old_type.full_name() != new_type.full_name()) {
    return "type " + old_type.full_name() + " became " + new_type.full_name();
  }
  if (!seen.insert(old_type.full_name()).second) return "";
  for (int i = 0; i < old_type.field_count(); ++i) {
    const auto* old_field = old_type.field(i);
    const auto* new_field = new_type.FindFieldByNumber(old_field->number());
    if (new_field == nullptr) continue;  // removed fields are skipped by old readers: compatible
    const std::string where = old_type.full_name() + "." + old_field->name() + " (field " +
                              std::to_string(old_field->number()) + ")";
    if (old_field->type() != new_field->type()) {
      return where + " changed type from " + old_field->type_name() + " to " + new_field->type_name();
    }
    if (old_field->is_repeated() != new_field->is_repeated())
      return where + " changed between single and repeated";
    if (old_field->message_type() != nullptr) {
      std::string nested =
          incompatible_messages(*old_field->message_type(), *new_field->message_type(), seen);
      if (!nested.empty()) return nested;
    }
  }
  return "";
}

}  // namespace

std::string incompatible_messages(const google::protobuf::Descriptor& old_type,
                                  const google::protobuf::Descriptor& new_type) {
  std::set<std::string> seen;
  return incompatible_messages(old_type, new_type, seen);
}

std::string incompatible_routes(const std::vector<Method>& old_methods,
                                const std::vector<Method>& new_methods) {
  for (const Method& old_method : old_methods) {
    const auto new_method = std::find_if(new_methods.begin(), new_methods.end(), [&](const Method& m) {
      return m.full_name == old_method.full_name;
    });
    if (new_method == new_methods.end()) continue;  // dropped methods answer UNIMPLEMENTED: not a type change
    if (old_method.kind != new_method->kind)
      return "method " + old_method.full_name + " changed its call kind";
    std::string why =
        incompatible_messages(*old_method.descriptor->input_type(), *new_method->descriptor->input_type());
    if (why.empty()) {
      why = incompatible_messages(*old_method.descriptor->output_type(),
                                  *new_method->descriptor->output_type());
    }
    if (!why.empty()) return "method " + old_method.full_name + ": " + why;
  }
  return "";
}

}  // namespace gameverse::plugin
