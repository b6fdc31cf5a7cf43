// Calls the host's gRPC-Web gateway with Connect's gRPC-Web transport (npm's @connectrpc/connect-web),
// the client browser builds of a game use, from the echo plugin's descriptor set: no generated code.
import { readFileSync } from "node:fs";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

const [baseUrl, descriptorSet, token] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorSet)));
const echo = createClient(registry.getService("gameverse.echo.v1.Echo"),
                          createGrpcWebTransport({ baseUrl, useBinaryFormat: true }));
const result = {};
const bytes = (text) => new TextEncoder().encode(text);
const text = (data) => new TextDecoder().decode(data);

const reply = await echo.echo({ payload: bytes("from the browser client") }, {
  onHeader: (headers) => { result.requestId = headers.get("x-request-id"); },
});
result.echo = text(reply.payload);
result.expand = [];
for await (const item of echo.expand({ payload: bytes("x"), count: 3 })) result.expand.push(Number(item.sequence));
try {
  await echo.fail({ message: "not here", code: 5 });
} catch (e) {
  const error = ConnectError.from(e);
  result.fail = { code: Code[error.code], message: error.rawMessage };
}
try {
  await echo.whoAmI({});
} catch (e) {
  result.anonymous = Code[ConnectError.from(e).code];
}
const me = await echo.whoAmI({}, { headers: { authorization: `Bearer ${token}` } });
result.user = me.userId;
console.log(JSON.stringify(result));
