// Between the domain's definitions and the gameverse.resources.v1 messages (the API's and the
// stored records').
#pragma once

#include "domain/catalog.hpp"
#include "gameverse/resources/v1/resources.pb.h"

namespace gameverse::resources {

namespace pb = ::gameverse::resources::v1;

Item to_domain(const pb::ItemDefinition& m);
Currency to_domain(const pb::CurrencyDefinition& m);
Bundle to_domain(const pb::BundleDefinition& m);
Asset to_domain(const pb::AssetManifest& m);
Migration to_domain(const pb::ItemMigration& m);
// Throws ValidationError for DEFINITION_KIND_UNSPECIFIED or an unknown kind.
Ref to_domain(const pb::DefinitionRef& m, size_t index);

void to_proto(const Item& d, pb::ItemDefinition& m);
void to_proto(const Currency& d, pb::CurrencyDefinition& m);
void to_proto(const Bundle& d, pb::BundleDefinition& m);
void to_proto(const Asset& d, pb::AssetManifest& m);
void to_proto(const Migration& d, pb::ItemMigration& m);
void to_proto(const Ref& d, pb::DefinitionRef& m);

// Appends the definition `ref` names in `catalog` to `out` (nothing when absent).
void append_definition(const Catalog& catalog, const Ref& ref, pb::Catalog& out);

}  // namespace gameverse::resources
