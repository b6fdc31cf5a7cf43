// Rooms to and from their records (gameverse/world/records/v1/records.proto).
#pragma once

#include "domain/room.hpp"
#include "gameverse/world/records/v1/records.pb.h"

namespace gameverse::world {

records::v1::RoomRecord to_record(const RoomImage& image);
RoomImage from_record(const records::v1::RoomRecord& record);
records::v1::InputRecord to_record(const std::string& client_id, const Input& input);
Input from_record(const records::v1::InputRecord& record);

}  // namespace gameverse::world
