#include "infrastructure/room_codec.hpp"

namespace gameverse::world {

namespace rec = records::v1;

rec::InputRecord to_record(const std::string& client_id, const Input& input) {
  rec::InputRecord r;
  r.set_client_id(client_id);
  r.set_kind(static_cast<uint32_t>(input.kind));
  r.set_seq(input.seq);
  r.set_entity_id(input.entity_id);
  r.set_type(input.type);
  r.set_x(input.position.x);
  r.set_y(input.position.y);
  r.set_z(input.position.z);
  for (const auto& [name, value] : input.components) {
    rec::ComponentRecord* c = r.add_components();
    c->set_name(name);
    c->set_value(value);
  }
  return r;
}

Input from_record(const rec::InputRecord& r) {
  Input in;
  in.kind = static_cast<Input::Kind>(r.kind());
  in.seq = r.seq();
  in.entity_id = r.entity_id();
  in.type = r.type();
  in.position = {r.x(), r.y(), r.z()};
  for (const auto& c : r.components()) in.components.emplace_back(c.name(), c.value());
  return in;
}

rec::RoomRecord to_record(const RoomImage& image) {
  rec::RoomRecord r;
  r.set_id(image.id);
  r.set_tick(image.tick);
  r.set_tick_unix_ms(image.tick_unix_ms);
  r.set_next_entity_id(image.next_entity_id);
  for (const Entity& e : image.entities) {
    rec::EntityRecord* out = r.add_entities();
    out->set_id(e.id);
    out->set_type(e.type);
    out->set_owner(e.owner);
    out->set_x(e.position.x);
    out->set_y(e.position.y);
    out->set_z(e.position.z);
    out->set_previous_x(e.previous_position.x);
    out->set_previous_y(e.previous_position.y);
    out->set_previous_z(e.previous_position.z);
    out->set_position_tick(e.position_tick);
    out->set_components_tick(e.components_tick);
    for (const auto& [name, c] : e.components) {
      rec::ComponentRecord* component = out->add_components();
      component->set_name(name);
      component->set_value(c.value);
      component->set_changed_tick(c.changed_tick);
    }
  }
  for (const auto& c : image.clients) {
    rec::ClientRecord* out = r.add_clients();
    out->set_id(c.id);
    out->set_view_x(c.view.x);
    out->set_view_y(c.view.y);
    out->set_view_z(c.view.z);
    out->set_focus_entity(c.focus_entity);
    out->set_acked_tick(c.acked_tick);
    for (const auto& [id, known] : c.known) {
      rec::KnownRecord* k = out->add_known();
      k->set_id(id);
      k->set_x(known.position.x);
      k->set_y(known.position.y);
      k->set_z(known.position.z);
      k->set_state_tick(known.state_tick);
    }
  }
  for (const auto& [client_id, input] : image.queued) *r.add_queued() = to_record(client_id, input);
  return r;
}

RoomImage from_record(const rec::RoomRecord& r) {
  RoomImage image;
  image.id = r.id();
  image.tick = r.tick();
  image.tick_unix_ms = r.tick_unix_ms();
  image.next_entity_id = r.next_entity_id();
  for (const auto& in : r.entities()) {
    Entity e;
    e.id = in.id();
    e.type = in.type();
    e.owner = in.owner();
    e.position = {in.x(), in.y(), in.z()};
    e.previous_position = {in.previous_x(), in.previous_y(), in.previous_z()};
    e.position_tick = in.position_tick();
    e.components_tick = in.components_tick();
    for (const auto& c : in.components()) e.components[c.name()] = {c.value(), c.changed_tick()};
    image.entities.push_back(std::move(e));
  }
  for (const auto& in : r.clients()) {
    RoomImage::ClientImage c;
    c.id = in.id();
    c.view = {in.view_x(), in.view_y(), in.view_z()};
    c.focus_entity = in.focus_entity();
    c.acked_tick = in.acked_tick();
    for (const auto& k : in.known())
      c.known.emplace_back(k.id(), Known{{k.x(), k.y(), k.z()}, k.state_tick()});
    image.clients.push_back(std::move(c));
  }
  for (const auto& q : r.queued()) image.queued.emplace_back(q.client_id(), from_record(q));
  return image;
}

}  // namespace gameverse::world
