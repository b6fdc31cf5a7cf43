#include "infrastructure/mapping.hpp"

namespace gameverse::resources {

Item to_domain(const pb::ItemDefinition& m) {
  Item d{m.id(),       m.name(),       m.category(), m.stackable(), m.max_stack(),
         m.tradable(), m.consumable(), {},           m.retired()};
  for (const auto& [key, value] : m.properties()) {
    PropertyValue v;
    switch (value.value_case()) {
      case pb::PropertyValue::kIntValue: v = value.int_value(); break;
      case pb::PropertyValue::kDoubleValue: v = value.double_value(); break;
      case pb::PropertyValue::kStringValue: v = value.string_value(); break;
      case pb::PropertyValue::kBoolValue: v = value.bool_value(); break;
      default: break;
    }
    d.properties.emplace(key, std::move(v));
  }
  return d;
}

Currency to_domain(const pb::CurrencyDefinition& m) {
  return {m.id(), m.name(), m.max_balance(), m.retired()};
}

Bundle to_domain(const pb::BundleDefinition& m) {
  Bundle d{m.id(), m.name(), {}, {}, m.retired()};
  for (const auto& a : m.items()) d.items.push_back({a.item_id(), a.count()});
  for (const auto& a : m.currencies()) d.currencies.push_back({a.currency_id(), a.amount()});
  return d;
}

Asset to_domain(const pb::AssetManifest& m) {
  return {m.asset_id(), m.content_hash(), m.size_bytes(), m.url()};
}

Migration to_domain(const pb::ItemMigration& m) {
  Migration d;
  d.from_item_id = m.from_item_id();
  if (m.has_to_item()) d.to_item = ItemAmount{m.to_item().item_id(), m.to_item().count()};
  if (m.has_to_currency())
    d.to_currency = CurrencyAmount{m.to_currency().currency_id(), m.to_currency().amount()};
  d.discard = m.discard();
  d.catalog_version = m.catalog_version();
  return d;
}

Ref to_domain(const pb::DefinitionRef& m, size_t index) {
  switch (m.kind()) {
    case pb::DEFINITION_KIND_ITEM: return {Kind::kItem, m.id()};
    case pb::DEFINITION_KIND_CURRENCY: return {Kind::kCurrency, m.id()};
    case pb::DEFINITION_KIND_BUNDLE: return {Kind::kBundle, m.id()};
    case pb::DEFINITION_KIND_ASSET: return {Kind::kAsset, m.id()};
    default:
      throw ValidationError(
          ValidationError::Reason::kInvalid,
          "remove #" + std::to_string(index) + ": kind must be ITEM, CURRENCY, BUNDLE or ASSET");
  }
}

void to_proto(const Item& d, pb::ItemDefinition& m) {
  m.set_id(d.id);
  m.set_name(d.name);
  m.set_category(d.category);
  m.set_stackable(d.stackable);
  m.set_max_stack(d.max_stack);
  m.set_tradable(d.tradable);
  m.set_consumable(d.consumable);
  m.set_retired(d.retired);
  auto& props = *m.mutable_properties();
  for (const auto& [key, value] : d.properties) {
    pb::PropertyValue& v = props[key];
    if (const auto* i = std::get_if<int64_t>(&value)) v.set_int_value(*i);
    if (const auto* x = std::get_if<double>(&value)) v.set_double_value(*x);
    if (const auto* s = std::get_if<std::string>(&value)) v.set_string_value(*s);
    if (const auto* b = std::get_if<bool>(&value)) v.set_bool_value(*b);
  }
}

void to_proto(const Currency& d, pb::CurrencyDefinition& m) {
  m.set_id(d.id);
  m.set_name(d.name);
  m.set_max_balance(d.max_balance);
  m.set_retired(d.retired);
}

void to_proto(const Bundle& d, pb::BundleDefinition& m) {
  m.set_id(d.id);
  m.set_name(d.name);
  m.set_retired(d.retired);
  for (const ItemAmount& a : d.items) {
    auto* x = m.add_items();
    x->set_item_id(a.item_id);
    x->set_count(a.count);
  }
  for (const CurrencyAmount& a : d.currencies) {
    auto* x = m.add_currencies();
    x->set_currency_id(a.currency_id);
    x->set_amount(a.amount);
  }
}

void to_proto(const Asset& d, pb::AssetManifest& m) {
  m.set_asset_id(d.asset_id);
  m.set_content_hash(d.content_hash);
  m.set_size_bytes(d.size_bytes);
  m.set_url(d.url);
}

void to_proto(const Migration& d, pb::ItemMigration& m) {
  m.set_from_item_id(d.from_item_id);
  if (d.to_item) {
    m.mutable_to_item()->set_item_id(d.to_item->item_id);
    m.mutable_to_item()->set_count(d.to_item->count);
  }
  if (d.to_currency) {
    m.mutable_to_currency()->set_currency_id(d.to_currency->currency_id);
    m.mutable_to_currency()->set_amount(d.to_currency->amount);
  }
  m.set_discard(d.discard);
  m.set_catalog_version(d.catalog_version);
}

void to_proto(const Ref& d, pb::DefinitionRef& m) {
  m.set_kind(static_cast<pb::DefinitionKind>(static_cast<int>(d.kind)));
  m.set_id(d.id);
}

void append_definition(const Catalog& catalog, const Ref& ref, pb::Catalog& out) {
  switch (ref.kind) {
    case Kind::kItem:
      if (auto it = catalog.items.find(ref.id); it != catalog.items.end())
        to_proto(it->second, *out.add_items());
      break;
    case Kind::kCurrency:
      if (auto it = catalog.currencies.find(ref.id); it != catalog.currencies.end())
        to_proto(it->second, *out.add_currencies());
      break;
    case Kind::kBundle:
      if (auto it = catalog.bundles.find(ref.id); it != catalog.bundles.end())
        to_proto(it->second, *out.add_bundles());
      break;
    case Kind::kAsset:
      if (auto it = catalog.assets.find(ref.id); it != catalog.assets.end())
        to_proto(it->second, *out.add_assets());
      break;
  }
}

}  // namespace gameverse::resources
